"""The escalation ladder: who is told of an outage, when, and how, until someone acknowledges.

``[contacts]`` names the people once (``owner = { phone = "+...", email = "...", push =
["ntfy://..."] }``) and each ``[[alerts.escalation]]`` step says how long after DOWN it runs and
whom it texts, calls, mails or pushes to (apprise URLs: ntfy, Gotify, Telegram, a webhook...).
The first step runs at DOWN (``after = "0m"``); each later one only if nobody acknowledged by
then. Reminders and the UP message go to everyone told so far. Without a ladder
the recipients are ``[alerts] sms_to``, ``email_to`` and ``push_to``, as before.

Quiet hours hold a later step until they end (``quiet = "wait"``, the default) unless the
step says ``quiet = "send"`` (a call that must wake someone); the first step of an outage is
never held.

Pure: the validators raise :class:`~gateway.rules.settings.SettingsError`; the decisions take
``now`` and the check as stored (``ladder_step``: the steps taken in this outage).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.rules.durations import format_duration
from gateway.rules.settings import SettingsError, duration, email_addresses, phone_numbers, push_urls

CONTACT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,31}")
MAX_STEPS = 20


@dataclass(frozen=True)
class Contact:
    """A person the ladder can reach: by ``phone`` (SMS and calls), by ``email``, by ``push``
    (apprise URLs, which hold tokens: kept out of the repr), or any of them."""

    name: str
    phone: str | None = None
    email: str | None = None
    push: tuple[str, ...] = field(default=(), repr=False)


@dataclass(frozen=True)
class Step:
    """One rung: ``after`` seconds after DOWN, text ``sms``, call ``call``, mail ``email``,
    push to ``push``. ``quiet``: "wait" holds the step through quiet hours, "send" does not."""

    after: float
    sms: tuple[Contact, ...] = ()
    call: tuple[Contact, ...] = ()
    email: tuple[Contact, ...] = ()
    quiet: str = "wait"
    push: tuple[Contact, ...] = ()

    def describe(self) -> str:
        """ "after 10m: call owner; sms partner" (the settings page, ``hbgw status``)."""
        parts = [f"{how} {', '.join(c.name for c in who)}" for how, who in self._means() if who]
        when = f"after {format_duration(self.after)}" if self.after else "at DOWN"
        return f"{when}: " + "; ".join(parts)

    def _means(self) -> tuple[tuple[str, tuple[Contact, ...]], ...]:
        return (("sms", self.sms), ("call", self.call), ("email", self.email), ("push", self.push))


# ------------------------------------------------------------------------------ reading the file


def contacts(table: Mapping[str, Any]) -> dict[str, Contact]:
    """``[contacts]``: name → ``{ phone = "...", email = "...", push = ["ntfy://..."] }`` (``push``:
    one apprise URL or a list). Raises SettingsError naming the contact and key."""
    out: dict[str, Contact] = {}
    for name, entry in table.items():
        field = f"contacts.{name}"
        if not CONTACT_NAME.fullmatch(name):
            raise SettingsError(field, "a contact name is a letter, then letters, digits, - or _ (at most 32)")
        if not isinstance(entry, Mapping):
            raise SettingsError(field, 'expected a table: { phone = "+15551234567", email = "a@example.net" }')
        unknown = sorted(set(entry) - {"phone", "email", "push"})
        if unknown:
            raise SettingsError(f"{field}.{unknown[0]}", "unknown key (a contact has phone, email and push)")
        phone = phone_numbers(f"{field}.phone", [entry["phone"]]) if "phone" in entry else ()
        email = email_addresses(f"{field}.email", [entry["email"]]) if "email" in entry else ()
        raw_push = entry.get("push", [])
        if not isinstance(raw_push, list | str):
            raise SettingsError(f"{field}.push", 'expected apprise URLs, e.g. ["ntfy://ntfy.sh/my-topic"]')
        push = push_urls(f"{field}.push", [raw_push] if isinstance(raw_push, str) else raw_push)
        if not phone and not email and not push:
            raise SettingsError(field, "a contact needs a phone number, an email address, or both (or a push URL)")
        out[name] = Contact(name, phone[0] if phone else None, email[0] if email else None, push)
    return out


def steps(raw: Sequence[Any], known: Mapping[str, Contact]) -> tuple[Step, ...]:
    """``[[alerts.escalation]]`` tables → steps in time order. Raises SettingsError naming the
    step: unknown keys or contacts, a contact without the phone or email a step needs, two
    steps at one time, no step at ``0m``."""
    if not isinstance(raw, Sequence) or isinstance(raw, str):
        raise SettingsError("escalation", "expected [[alerts.escalation]] tables")
    if len(raw) > MAX_STEPS:
        raise SettingsError("escalation", f"at most {MAX_STEPS} steps")
    out: list[Step] = []
    for i, table in enumerate(raw, 1):
        field = f"escalation[{i}]"
        if not isinstance(table, Mapping):
            raise SettingsError(field, "expected a table with after, sms, call, email, push")
        unknown = sorted(set(table) - {"after", "sms", "call", "email", "push", "quiet"})
        if unknown:
            raise SettingsError(
                f"{field}.{unknown[0]}", "unknown key (a step has after, sms, call, email, push, quiet)"
            )
        if "after" not in table:
            raise SettingsError(f"{field}.after", 'missing: how long after DOWN this step runs ("0m", "10m")')
        step = Step(
            after=duration(f"{field}.after", table["after"], 0.0),
            sms=_who(f"{field}.sms", table.get("sms", []), known, "phone"),
            call=_who(f"{field}.call", table.get("call", []), known, "phone"),
            email=_who(f"{field}.email", table.get("email", []), known, "email"),
            quiet=_quiet(f"{field}.quiet", table.get("quiet", "wait")),
            push=_who(f"{field}.push", table.get("push", []), known, "push"),
        )
        if not (step.sms or step.call or step.email or step.push):
            raise SettingsError(field, "a step must text, call or mail someone, or push to them")
        out.append(step)
    out.sort(key=lambda s: s.after)
    if out and out[0].after != 0:
        raise SettingsError("escalation", 'the first step runs at DOWN: give it after = "0m"')
    times = [s.after for s in out]
    if len(set(times)) != len(times):
        raise SettingsError("escalation", "two steps at the same time: merge them into one")
    return tuple(out)


def named_ladders(raw: Any, known: Mapping[str, Contact]) -> tuple[tuple[str, tuple[Step, ...]], ...]:
    """``[alerts.ladders.NAME]`` → (name, steps) pairs, each read as :func:`steps`. Raises
    SettingsError naming the ladder (and the step)."""
    if not isinstance(raw, Mapping):
        raise SettingsError("ladders", "expected [[alerts.ladders.NAME]] tables")
    out = []
    for name, tables in raw.items():
        if not CONTACT_NAME.fullmatch(name) or name == "none":
            raise SettingsError(
                f"ladders.{name}", 'a ladder name is a letter, then letters, digits, - or _ (not "none")'
            )
        try:
            out.append((name, steps(tables, known)))
        except SettingsError as e:
            raise SettingsError(f"ladders.{name}.{e.field}", str(e)) from None
    return tuple(out)


def _who(field: str, names: Any, known: Mapping[str, Contact], needs: str) -> tuple[Contact, ...]:
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise SettingsError(field, 'expected contact names, e.g. ["owner"]')
    out: list[Contact] = []
    for name in names:
        contact = known.get(name)
        if contact is None:
            raise SettingsError(field, f"unknown contact {name!r} (add it under [contacts])")
        if not getattr(contact, needs):  # None, or no push URLs
            raise SettingsError(field, f"contact {name!r} has no {needs}")
        if contact not in out:
            out.append(contact)
    return tuple(out)


def _quiet(field: str, value: Any) -> str:
    if value not in ("wait", "send"):
        raise SettingsError(field, 'either "wait" (held through quiet hours) or "send"')
    return str(value)


# ------------------------------------------------------------------------------ decisions


def first_steps(ladder: Sequence[Step]) -> int:
    """How many steps run at DOWN (those at ``0m``: one, as :func:`steps` allows)."""
    return sum(1 for s in ladder if s.after <= 0)


def due(ladder: Sequence[Step], taken: int, down_since: float, now: float) -> list[Step]:
    """The steps not yet taken whose time has come (the caller checked acks, mutes, quiet
    hours through :func:`next_at`)."""
    return [s for s in ladder[taken:] if down_since + s.after <= now]


def next_at(ladder: Sequence[Step], taken: int, down_since: float, quiet_until: Any) -> float | None:
    """When the next step is due (``quiet_until(t)``: the end of quiet hours around ``t``, or
    None outside them), or None when every step was taken."""
    if taken >= len(ladder):
        return None
    step = ladder[taken]
    at = down_since + step.after
    if step.quiet == "wait":
        held = quiet_until(at)
        if held is not None:
            return float(held)
    return at


def told(ladder: Sequence[Step], taken: int) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """(phone numbers, email addresses, push URLs) of everyone the steps taken so far reached:
    who gets the reminders and the UP message."""
    phones: list[str] = []
    emails: list[str] = []
    pushes: list[str] = []
    for step in ladder[:taken]:
        for c in (*step.sms, *step.call):
            if c.phone and c.phone not in phones:
                phones.append(c.phone)
        for c in step.email:
            if c.email and c.email not in emails:
                emails.append(c.email)
        for url in (u for c in step.push for u in c.push):
            if url not in pushes:
                pushes.append(url)
    return tuple(phones), tuple(emails), tuple(pushes)
