"""Alert decisions: what to send, to whom, and when the next reminder is due.

Pure: every function takes the stored facts and ``now``; no clock, no I/O. The store calls these
inside the transaction that records a flip, so a flip and the alerts it causes are written (or
not) together.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from gateway.model import Check, Flip, Status
from gateway.rules import escalation, maintenance
from gateway.rules.durations import humanize
from gateway.rules.settings import Settings, push_key

SMS_CHARS = 160


@dataclass(frozen=True)
class Outgoing:
    """One outbox row to write: a message for one recipient on one channel."""

    kind: str  # down | fail | up | reminder | escalation | note | test | reply | budget | modem | forward
    channel: str  # sms | email | call | push
    recipient: str  # a number, an address; for push the URL's push_key (the URL holds tokens)
    text: str
    check_id: int | None
    dedupe: str  # unique per alert and recipient: a retried decision never doubles a row
    check_name: str | None = None


def quiet_until(t: float, s: Settings) -> float | None:
    """If ``t`` falls in quiet hours, the moment they end; else None."""
    if s.quiet_hours is None:
        return None
    start, end = s.quiet_hours
    if start == end:
        return None
    local = dt.datetime.fromtimestamp(t, s.zone)
    minute = local.hour * 60 + local.minute
    inside = start <= minute < end if start < end else (minute >= start or minute < end)
    if not inside:
        return None
    end_day = local.date() if minute < end else local.date() + dt.timedelta(days=1)
    end_at = dt.datetime.combine(end_day, dt.time(end // 60, end % 60), tzinfo=s.zone)
    return end_at.timestamp()


def clock(t: float, s: Settings) -> str:
    return dt.datetime.fromtimestamp(t, s.zone).strftime("%H:%M")


def excerpt(body: str | None, n: int = 60) -> str:
    """A one-line excerpt of a ping body, safe for an SMS."""
    if not body:
        return ""
    text = " ".join(body.replace("\xa0", " ").split())
    return text if len(text) <= n else text[: n - 3] + "..."


# ------------------------------------------------------------------------------ texts


def down_text(check: Check, s: Settings, now: float) -> str:
    if check.last_ping is None:
        return f"DOWN {check.name}: no heartbeat yet. Reply ACK {check.name} to silence."
    return (
        f"DOWN {check.name}: no heartbeat since {clock(check.last_ping, s)}"
        f" ({humanize(now - check.last_ping)}). Reply ACK {check.name} to silence."
    )


def fail_text(check: Check, body: str | None, s: Settings, now: float) -> str:
    what = f"exit status {check.last_exit_status}" if check.last_exit_status else "failure reported"
    tail = excerpt(body)
    return (
        f"FAIL {check.name}: {what} at {clock(now, s)}"
        + (f": {tail}" if tail else "")
        + f". Reply ACK {check.name} to silence."
    )


def reminder_text(check: Check, down_since: float, s: Settings, now: float) -> str:
    return (
        f"STILL DOWN {check.name} for {humanize(now - down_since)} (since {clock(down_since, s)})."
        f" Reply ACK {check.name} to silence."
    )


def escalation_text(check: Check, down_since: float, s: Settings, now: float) -> str:
    return (
        f"STILL DOWN {check.name} for {humanize(now - down_since)} (since {clock(down_since, s)}),"
        f" nobody acknowledged. Reply ACK {check.name} to stop the escalation."
    )


def call_text(check: Check) -> str:
    """What a call row says in the outbox (the call itself only rings)."""
    return f"call: {check.name} is DOWN. Reply ACK {check.name} by SMS to stop the calls."


def up_text(check: Check, down_since: float | None, now: float) -> str:
    if down_since is None:
        return f"UP {check.name}"
    return f"UP {check.name} after {humanize(now - down_since)}"


def offline_note_text(since: float | None, until: float, n: int, s: Settings) -> str:
    start = clock(since, s) if since is not None else "?"
    return (
        f"hbgw was offline from {start} to {clock(until, s)}; {n} server(s) given a fresh"
        f" period, no alerts for that time."
    )


# ------------------------------------------------------------------------------ decisions


Recipients = tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]  # (phones, addresses, push URLs)


def _fan_out(
    kind: str,
    check: Check | None,
    text: str,
    key: str,
    s: Settings,
    *,
    sms: bool = True,
    email: bool = True,
    to: Recipients | None = None,
) -> list[Outgoing]:
    """One row per recipient. Push follows the email toggle (both go over the internet, the SMS
    toggle is about the modem and the SIM's budget); a push row names its URL by its push_key."""
    cid, name = (check.id, check.name) if check else (None, None)
    phones, emails, pushes = to if to is not None else (s.sms_to, s.email_to, s.push_to)
    out = [Outgoing(kind, "sms", n, text, cid, f"{key}:sms:{n}", name) for n in phones if sms]
    out += [Outgoing(kind, "email", a, text, cid, f"{key}:email:{a}", name) for a in emails if email]
    keys = [push_key(u) for u in pushes] if email else []
    out += [Outgoing(kind, "push", k, text, cid, f"{key}:push:{k}", name) for k in keys]
    return out


def ladder(check: Check, s: Settings) -> tuple[escalation.Step, ...]:
    """The escalation steps ``check`` follows: its own named ladder, else the default one."""
    return s.ladder(check.ladder)


def told(check: Check, s: Settings) -> Recipients:
    """(numbers, addresses, push URLs) that hear about ``check``'s outage beyond its first alert
    (reminders, UP): without a ladder ``sms_to``, ``email_to`` and ``push_to``, with one everyone
    its steps reached."""
    steps = ladder(check, s)
    if not steps:
        return s.sms_to, s.email_to, s.push_to
    return escalation.told(steps, check.ladder_step)


def step_alerts(
    check: Check, steps: Sequence[escalation.Step], first: int, key: str, s: Settings, text: str, kind: str
) -> list[Outgoing]:
    """The rows of escalation ``steps`` (``first``: the index of the first of them in the
    ladder), SMS, email and push of ``kind``: SMS and calls to phones (the check's SMS toggle
    governs both), email to addresses and push to URLs (the email toggle governs both)."""
    out: list[Outgoing] = []
    for i, step in enumerate(steps, first):
        k = f"{key}:step{i}"
        phones = tuple(c.phone for c in step.sms if c.phone)
        emails = tuple(c.email for c in step.email if c.email)
        pushes = tuple(dict.fromkeys(u for c in step.push for u in c.push))
        to = (phones, emails, pushes)
        out += _fan_out(kind, check, text, k, s, sms=check.sms_enabled, email=check.email_enabled, to=to)
        if check.sms_enabled:
            out += [
                Outgoing("call", "call", c.phone, call_text(check), check.id, f"{k}:call:{c.phone}", check.name)
                for c in step.call
                if c.phone
            ]
    return out


def silence_end(check: Check, s: Settings, t: float) -> float | None:
    """When the silence ``check`` is in at ``t`` ends: its mute (or snooze) and the maintenance
    windows covering it, one after the other when they overlap or touch; None when nothing
    silences it at ``t``. A silenced check tells nobody: its DOWN waits, and so do its reminders
    and ladder steps, until this time."""
    end: float | None = None
    at = t
    for _ in range(16):  # windows chained end to start; bounded, a cycle cannot happen
        later = at
        if check.muted_until is not None and check.muted_until > later:
            later = check.muted_until
        window = maintenance.active_end(s.maintenance, check, later)
        if window is not None and window > later:
            later = window
        if later == at:
            break
        end = at = later
    return end


def silenced(check: Check, now: float, s: Settings) -> bool:
    return silence_end(check, s, now) is not None


def _silenced(check: Check, now: float, s: Settings) -> bool:
    return silenced(check, now, s)


def alerts_for_flip(
    before: Check,
    after: Check,
    flip: Flip,
    *,
    key: str,
    down_since: float | None,
    body: str | None,
    s: Settings,
    now: float,
) -> list[Outgoing]:
    """What a status change sends: DOWN (or FAIL with the exit status and body excerpt) when a
    check goes down, UP with the downtime when it comes back, nothing otherwise. Respects the
    check's SMS and email toggles, a mute and maintenance windows (the DOWN waits; an UP
    follows only an outage someone heard of); never alerts for a paused check."""
    if after.status is Status.PAUSED or before.status is Status.PAUSED:
        return []
    sms, email = after.sms_enabled, after.email_enabled
    if after.status is Status.DOWN and before.status is not Status.DOWN:
        if _silenced(after, now, s):
            return []
        text = fail_text(after, body, s, now) if flip.reason == "fail" else down_text(after, s, now)
        kind = "fail" if flip.reason == "fail" else "down"
        steps = ladder(after, s)
        if steps:
            return step_alerts(after, steps[: escalation.first_steps(steps)], 0, key, s, text, kind)
        return _fan_out(kind, after, text, key, s, sms=sms, email=email)
    if before.status is Status.DOWN and after.status in (Status.UP, Status.NEW):
        if not before.outage_told or (after.muted_until is not None and after.muted_until > now):
            # nobody heard it went down (a mute, a snooze, a maintenance window); an outage
            # that was told gets its UP even inside a window (the owner would think it down)
            return []
        up = up_text(after, down_since, now)
        return _fan_out("up", after, up, key, s, sms=sms, email=email, to=told(before, s))
    return []


def own_down(check: Check, s: Settings, now: float) -> tuple[list[Outgoing], int]:
    """The DOWN of a child that was silent behind a down parent (gateway.rules.dependencies)
    and is still down after the parent recovered and its own grace passed: its rows, and the
    ladder steps that takes (its first steps, as at a DOWN)."""
    if check.status is not Status.DOWN or check.acked:
        return [], 0
    key = f"own{check.id}@{check.down_since!r}"
    text = down_text(check, s, now)
    steps = ladder(check, s)
    if steps:
        n = escalation.first_steps(steps)
        return step_alerts(check, steps[:n], 0, key, s, text, "down"), n
    return _fan_out("down", check, text, key, s, sms=check.sms_enabled, email=check.email_enabled), 0


def next_reminder(check: Check, last_alert: float, s: Settings) -> float | None:
    """When the next reminder for a down check is due, or None when none will be: recovered,
    paused, acknowledged, or both its channels off. A mute, a maintenance window or quiet hours
    push it later. When the last alert fell in a maintenance window (a DOWN that told nobody, a
    reminder held back), the owner has heard nothing since: it is due when the silence ends.
    (Not so for a mute: ``muted_until`` does not say when the mute began, so an alert before it
    cannot be told from one it held back; the reminder keeps its interval then.)"""
    if check.status is not Status.DOWN or check.acked:
        return None
    phones, emails, pushes = told(check, s)
    if not (check.sms_enabled and phones) and not (check.email_enabled and (emails or pushes)):
        return None
    due = last_alert + (check.repeat or s.repeat)
    if maintenance.active_end(s.maintenance, check, last_alert) is not None:
        due = silence_end(check, s, last_alert) or due
    due = silence_end(check, s, due) or due
    return quiet_until(due, s) or due


def reminders(check: Check, *, down_since: float, s: Settings, now: float) -> list[Outgoing]:
    """The reminder due now for a check that is still down (the caller checked ``next_reminder``)."""
    if check.status is not Status.DOWN or check.acked or _silenced(check, now, s):
        return []
    key = f"rem{check.id}@{int(now)}"
    return _fan_out(
        "reminder",
        check,
        reminder_text(check, down_since, s, now),
        key,
        s,
        sms=check.sms_enabled,
        email=check.email_enabled,
        to=told(check, s),
    )


def next_step(check: Check, s: Settings) -> float | None:
    """When the ladder's next step is due for a down check, or None: no ladder, every step
    taken, acknowledged, or not down. Quiet hours hold a "wait" step; a mute or a maintenance
    window holds every step."""
    steps = ladder(check, s)
    if not steps or check.status is not Status.DOWN or check.acked or check.down_since is None:
        return None
    due = escalation.next_at(steps, check.ladder_step, check.down_since, lambda t: quiet_until(t, s))
    if due is not None:
        due = silence_end(check, s, due) or due
    return due


def next_alert(check: Check, last_alert: float, s: Settings) -> float | None:
    """``alert_at``: the earlier of the next reminder and the next escalation step."""
    times = [t for t in (next_reminder(check, last_alert, s), next_step(check, s)) if t is not None]
    return min(times) if times else None


def escalations(check: Check, s: Settings, now: float) -> tuple[list[Outgoing], int]:
    """The escalation steps due now for a down check (the caller saw ``next_step`` ≤ now):
    their rows, and how many steps that takes (to add to ``ladder_step``)."""
    if check.status is not Status.DOWN or check.acked or _silenced(check, now, s) or check.down_since is None:
        return [], 0
    due = next_step(check, s)
    if due is None or due > now:  # not yet, or held by quiet hours
        return [], 0
    steps = escalation.due(ladder(check, s), check.ladder_step, check.down_since, now)
    if not steps:
        return [], 0
    key = f"esc{check.id}@{check.down_since!r}"
    text = escalation_text(check, check.down_since, s, now)
    # the first step after a mute is the owner's first word of this outage: a DOWN, not "still"
    kind = "escalation" if check.ladder_step else "down"
    return step_alerts(check, steps, check.ladder_step, key, s, text, kind), len(steps)


def offline_note(since: float | None, until: float, n: int, s: Settings) -> list[Outgoing]:
    return _fan_out("note", None, offline_note_text(since, until, n, s), f"offline@{int(until)}", s)


def clock_note_text(before: float, after: float, n: int, s: Settings) -> str:
    return (
        f"hbgw's clock jumped from {clock(before, s)} to {clock(after, s)}; {n} server(s)"
        f" given a fresh period, no alerts for the skipped time."
    )


def clock_note(before: float, after: float, n: int, s: Settings) -> list[Outgoing]:
    return _fan_out("note", None, clock_note_text(before, after, n, s), f"clock@{int(after)}", s)


def modem_trouble(connected: bool, sim: str | None, registration: str | None, radio: str | None = None) -> str | None:
    """What is wrong with the modem, in a few words, or None when it can send SMS."""
    if not connected:
        return "modem not connected"
    if radio == "refused":
        return "the modem's radio is off and it refused to switch it on"
    if radio == "off":
        return "the modem's radio is off"
    if sim not in (None, "READY"):
        return f"SIM problem ({sim})"
    if registration not in (None, "home", "roaming"):
        return f"not registered on the network ({registration})"
    return None


MODEM_NOTE_GAP = 600.0  # at least this long between two notes to the owner about the modem


@dataclass(frozen=True)
class ModemSpell:
    """What the owner has been told about the modem: the state the modem watch keeps between
    looks. ``told``: they heard it cannot send SMS, and not yet that it works again."""

    trouble_since: float | None = None
    ok_since: float | None = None
    told: bool = False
    last_note: float | None = None


def modem_spell(spell: ModemSpell, trouble: bool, now: float, after: float) -> tuple[ModemSpell, str | None]:
    """The next state after a look at the modem, and the note due now: ``"down"`` once trouble
    has lasted ``after`` (and the last note is MODEM_NOTE_GAP old), ``"up"`` once a modem the
    owner was told about has worked for ``after`` in a row, else None. A modem that flaps faster
    than that stays one spell (one note when it breaks, one when it has really recovered), and
    a new spell is told at most once per MODEM_NOTE_GAP."""
    if trouble:
        since = spell.trouble_since if spell.trouble_since is not None else now
        spell = dataclasses.replace(spell, trouble_since=since, ok_since=None)
        quiet = spell.last_note is None or now - spell.last_note >= MODEM_NOTE_GAP
        if not spell.told and now - since >= after and quiet:
            return dataclasses.replace(spell, told=True, last_note=now), "down"
        return spell, None
    if not spell.told:
        return dataclasses.replace(spell, trouble_since=None, ok_since=None), None
    ok_since = spell.ok_since if spell.ok_since is not None else now
    if now - ok_since >= after:
        return ModemSpell(last_note=now), "up"
    return dataclasses.replace(spell, trouble_since=None, ok_since=ok_since), None


STORAGE_NOTE_GAP = 86400.0  # at most one note a day about a full SMS storage

STORAGE_FULL_TEXT = (
    "hbgw: the modem's SMS storage was full, so the network held new SMS (your commands too). "
    "hbgw read and cleared it; if this repeats, check the modem page."
)


@dataclass(frozen=True)
class StorageWatch:
    """The storage-full reports the modem watch has seen (``reports``: the modem's count when
    last looked at) and when it last told the owner."""

    reports: int = 0
    last_note: float | None = None


def storage_full_note(watch: StorageWatch, reports: int | None, now: float) -> tuple[StorageWatch, bool]:
    """The next state after a look at the modem's storage-full count, and whether to tell the
    owner now: once when new reports arrive, then not again for STORAGE_NOTE_GAP however often
    it fills (each report was read and cleared at once by the modem layer). A count lower than
    before means the modem was reopened (it counts from zero again)."""
    if reports is None:
        return watch, False
    new = reports - watch.reports if reports >= watch.reports else reports
    if new <= 0:
        return dataclasses.replace(watch, reports=reports), False
    if watch.last_note is not None and now - watch.last_note < STORAGE_NOTE_GAP:
        return dataclasses.replace(watch, reports=reports), False
    return StorageWatch(reports=reports, last_note=now), True


# ------------------------------------------------------------------------------ sending

BUDGET_EXEMPT = frozenset({"test", "budget", "reply", "canary"})  # never held back by the SMS budget
MAX_BACKOFF = 300.0


def counts_against_budget(kinds: Iterable[str]) -> bool:
    """Whether a message merging rows of these kinds is held to the SMS budget: everything but a
    test SMS, the budget notice itself and replies to the owner's commands."""
    return not all(k in BUDGET_EXEMPT for k in kinds)


def retry_delay(attempts: int) -> float:
    """Seconds before trying a failed message again: 5 s, 10 s, 20 s ... at most 5 min."""
    return float(min(MAX_BACKOFF, 5.0 * 2 ** (attempts - 1)))


def give_up(permanent: bool, attempts: int, fallback_after: int) -> bool:
    """Whether a failed message goes by email instead of being tried again."""
    return permanent or attempts >= fallback_after


def budget_notice_text(budget: int, until: float, s: Settings) -> str:
    return (
        f"hbgw: SMS budget of {budget}/h reached; further alerts by email until {clock(until, s)}."
        " Send STATUS for a summary."
    )


def sms_failing_text(error: str) -> str:
    return (
        f"hbgw: sending SMS is failing ({error}). Alerts are going by email until the"
        " modem works again; check the modem page."
    )


# ------------------------------------------------------------------------------ coalescing


@dataclass(frozen=True)
class Pending:
    """An outbox row waiting to be merged with others for the same recipient."""

    kind: str
    check_name: str | None
    text: str
    created: float
    sent: bool = False  # already delivered (state 'sent'): never part of a later message


# rows that tell a check's state ("escalation": a later ladder step; "call": a ladder call, on
# its own channel, which rings only while the check is still down)
ALERT_KINDS = frozenset({"down", "fail", "up", "reminder", "escalation", "call"})
_STILL_DOWN = frozenset({"reminder", "escalation", "call"})
_DOWNISH = frozenset({"down", "fail"})


@dataclass(frozen=True)
class _Item:
    """One thing a merged message says: a server's state now, or a row that is not an alert."""

    text: str
    row: Pending | None = None  # the row it repeats in short form (its full text when alone)
    silent: str | None = None  # the name, when it belongs in the "N servers silent" line
    since: float = 0.0


def merge(rows: Sequence[Pending], *, watched: int, s: Settings, statuses: Mapping[str, Status] | None = None) -> str:
    """One message for alerts decided close together for the same recipient, describing the
    state *now* (``statuses``: each named check's current status; a check missing from it, or
    every check when it is None, is taken to be as its latest row says).

    A server is named once: down now, its latest DOWN (or FAIL, or STILL DOWN); down and back
    within the merge, folded into "(web1 down 14:13, back 14:14)"; back from an outage the owner
    was told of, its UP; nothing when the rows add nothing to what the owner knows (a reminder
    for a server up now, an UP for one down again). Rows already sent are never repeated. Several
    servers silent now (``silent_summary_min`` or more): one line saying so, which points at the
    network or power. One item left: its row's own text. Kept within one SMS where possible.
    Returns "" when nothing is left to say.
    """
    live = [r for r in rows if not r.sent]
    items = _items(live, statuses, s)
    if not items:
        return ""
    if len(items) == 1:
        only = items[0]
        return only.row.text if only.row is not None else only.text
    silent = [i for i in items if i.silent is not None]
    parts: list[str] = []
    if len(silent) >= s.silent_summary_min:
        since = clock(min(i.since for i in silent), s)
        names = _names([i.silent or "?" for i in silent], 60)
        n = len(silent)
        parts.append(f"{n} of {max(watched, n)} servers silent since {since}: network or power? {names}")
        parts += [i.text for i in items if i.silent is None]
    else:
        parts += [i.text for i in items]
    text = ". ".join(parts)
    if len(text) > SMS_CHARS:
        # Too long for one SMS even in short form: keep the headline and count the rest.
        head, rest = parts[0], len(parts) - 1
        text = head + (f". +{rest} more, send STATUS" if rest else "")
    return text


def _items(rows: Sequence[Pending], statuses: Mapping[str, Status] | None, s: Settings) -> list[_Item]:
    """What to say, in the order the rows first mention it: one item per server (its rows
    reduced to its state now), and each other row as it is (an identical text once)."""
    order: list[str] = []  # keys: "c:<name>" for a server, "t:<text>" for any other row
    by_check: dict[str, list[Pending]] = {}
    others: dict[str, Pending] = {}
    for r in rows:
        if r.kind in ALERT_KINDS and r.check_name:
            key = "c:" + r.check_name
            by_check.setdefault(r.check_name, []).append(r)
        else:
            key = "t:" + r.text
            others.setdefault(r.text, r)
        if key not in order:
            order.append(key)
    items: list[_Item] = []
    for key in order:
        if key.startswith("t:"):
            items.append(_Item(others[key[2:]].text, others[key[2:]]))
            continue
        name = key[2:]
        history = sorted(by_check[name], key=lambda r: r.created)
        now = statuses.get(name) if statuses is not None else None
        if now is None:
            now = Status.UP if history[-1].kind == "up" else Status.DOWN
        item = _state_now(name, history, now, s)
        if item is not None:
            items.append(item)
    return items


def _state_now(name: str, history: list[Pending], now: Status, s: Settings) -> _Item | None:
    """One server's rows (oldest first) reduced to what is true now, or None when they add
    nothing to what the owner already knows."""
    downs = [r for r in history if r.kind in _DOWNISH]
    ups = [r for r in history if r.kind == "up"]
    if now is Status.DOWN:
        if downs:
            last = downs[-1]
            silent = name if last.kind == "down" else None
            return _Item(_short(last), last, silent, last.created)
        reminders = [r for r in history if r.kind in _STILL_DOWN]
        if reminders:
            return _Item(_short(reminders[-1]), reminders[-1])
        return None  # back and down again: the owner still knows it as down
    first = history[0]
    if first.kind in _DOWNISH:
        # The owner was never told of this outage, and it is over: say both in one.
        went = "failed" if first.kind == "fail" else "down"
        back = [u for u in ups if u.created >= first.created]
        end = "paused now" if now is Status.PAUSED else "up now"
        if back:
            end = f"back {clock(back[0].created, s)}"
        return _Item(f"({name} {went} {clock(first.created, s)}, {end})")
    if ups:
        return _Item(_short(ups[0]), ups[0])  # the recovery from the outage the owner knows of
    return None  # only reminders, and it is not down any more


def _short(r: Pending) -> str:
    word = {"down": "DOWN", "fail": "FAIL", "up": "UP", "reminder": "STILL DOWN", "escalation": "STILL DOWN"}.get(
        r.kind
    )
    if word and r.check_name:
        if r.kind == "up":
            return r.text  # "UP web1 after 47 min" is already short
        return f"{word} {r.check_name}"
    return r.text


def _names(names: list[str], limit: int) -> str:
    out = ""
    for i, n in enumerate(names):
        piece = n if not out else ", " + n
        if len(out) + len(piece) > limit:
            return out + f" +{len(names) - i}"
        out += piece
    return out
