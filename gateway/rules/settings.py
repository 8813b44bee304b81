"""The settings that govern alerts: one frozen type, one validator per field.

The config file's ``[alerts]`` table (and, for older files, ``[security] sms_allow / sms_pin``),
the web settings page and the JSON API all go through the functions here, so a value accepted in
one place is accepted in the others and means the same.

Which wins when the file and the page disagree: the page stores only the fields the owner
changed there (:func:`overrides`); every other field follows the config file, edits included.
A field changed on the page wins until the owner clicks "use the config file's values"
(:data:`Settings` from :func:`apply` with no overrides). The page and ``hbgw status`` name the
fields that are set on the page, with the file's value beside them.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import re
import zoneinfo
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gateway.rules.durations import format_duration, parse_duration

if TYPE_CHECKING:
    from gateway.rules.escalation import Step
    from gateway.rules.maintenance import Window

E164 = re.compile(r"\+[1-9]\d{6,14}")
EMAIL = re.compile(r"[^@\s,;<>]+@[^@\s,;<>]+")
PIN = re.compile(r"\d{4,8}")
# An apprise URL ("ntfy://host/topic", "json://127.0.0.1:8000/hook", "tgram://token/chat"): only
# its form is checked here; whether apprise knows the scheme is found at the first send, since
# loading apprise's plugins costs tens of MB that a gateway without push should not pay.
PUSH_URL = re.compile(r"([A-Za-z][A-Za-z0-9+.-]{0,31})://\S+")
REPEAT_MIN = 1.0  # seconds; short intervals are for demos and tests, the SMS budget bounds them
REPEAT_MAX = 365 * 86400.0
BUDGET_MAX = 10_000


@dataclass(frozen=True)
class Settings:
    """Who gets alerts, who may command the gateway, and how often and when messages go out."""

    sms_to: tuple[str, ...] = ()
    email_to: tuple[str, ...] = ()
    sms_allow: tuple[str, ...] = ()  # numbers whose SMS are commands (E.164)
    sms_pin: str | None = field(default=None, repr=False)  # commands must start with it
    repeat: float = 900.0  # seconds between reminders while a check stays down
    coalesce: float = 3.0  # seconds an alert waits for others to the same recipient
    # seconds a check's DOWN waits when it has parents: a parent down by then makes it silent
    dependency_window: float = 120.0
    max_sms_per_hour: int = 30
    silent_summary_min: int = 3  # this many DOWNs together read "N of M servers silent"
    quiet_hours: tuple[int, int] | None = None  # minutes after midnight (start, end), local time
    tz: str = "UTC"  # for times in messages and quiet hours
    fallback_after: int = 3  # failed SMS attempts before the alert goes by email too
    modem_alert_after: float = 600.0  # modem unusable this long: email the owner
    daily_summary: int | None = None  # minutes after midnight (in tz) of the "all is well" SMS
    # [[alerts.escalation]] with its [contacts] resolved (gateway.rules.escalation); () means
    # sms_to and email_to are told at DOWN, as without a ladder. Config file only.
    escalation: tuple[Step, ...] = ()
    # [alerts.ladders.NAME]: other ladders a check can follow instead (its ``ladder``); "none"
    # is always there: no ladder, sms_to and email_to as without one.
    ladders: tuple[tuple[str, tuple[Step, ...]], ...] = ()
    call_answer_acks: bool = False  # an answered escalation call acknowledges the outage
    ring_for: float = 30.0  # seconds an escalation call rings before the gateway hangs up
    # apprise URLs told of every alert like sms_to and email_to; they hold tokens: never shown
    # (the outbox, logs and pages see push_key(url) instead). Config file only.
    push_to: tuple[str, ...] = field(default=(), repr=False)
    # the maintenance windows in force (gateway.rules.maintenance): kept in the database, put
    # here by the service when it loads the settings and whenever a window is added or ended
    maintenance: tuple[Window, ...] = ()

    def ladder(self, name: str | None) -> tuple[Step, ...]:
        """The steps a check with ``ladder`` = ``name`` follows: the default ladder for None (or
        a name no longer in the config), none for "none"."""
        if name == "none":
            return ()
        return next((steps for n, steps in self.ladders if n == name), self.escalation)

    @property
    def push_targets(self) -> dict[str, str]:
        """Every push URL an alert may go to (``push_to`` and the ladders' push steps), by its
        :func:`push_key`: what the push channel needs to find the URL of an outbox row."""
        urls = list(self.push_to)
        for steps in (self.escalation, *(s for _, s in self.ladders)):
            for step in steps:
                urls += [u for c in step.push for u in c.push]
        return {push_key(u): u for u in urls}

    @property
    def ladder_names(self) -> tuple[str, ...]:
        return ("none", *(n for n, _ in self.ladders))

    @property
    def zone(self) -> dt.tzinfo:
        try:
            return zoneinfo.ZoneInfo(self.tz)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            return dt.UTC


# The fields the settings page and the API edit; the others live in the config file only.
EDITABLE = ("sms_to", "email_to", "sms_allow", "sms_pin", "repeat", "quiet_hours", "max_sms_per_hour")


class SettingsError(ValueError):
    """A value a person must correct; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


# ------------------------------------------------------------------------------ one rule per field


def phone_numbers(field: str, values: Iterable[str]) -> tuple[str, ...]:
    """Numbers as E.164: spaces, dots, dashes and brackets dropped, ``00`` read as ``+``,
    duplicates and empty entries dropped. Raises SettingsError naming the first bad one."""
    out: list[str] = []
    for raw in values:
        if not isinstance(raw, str):
            raise SettingsError(field, "expected phone numbers as text")
        number = re.sub(r"[\s().-]", "", raw)
        if not number:
            continue
        if number.startswith("00"):
            number = "+" + number[2:]
        if not E164.fullmatch(number):
            raise SettingsError(
                field, f"{raw.strip()!r} is not an E.164 number (international format, e.g. +15551234567)"
            )
        if number not in out:
            out.append(number)
    return tuple(out)


def email_addresses(field: str, values: Iterable[str]) -> tuple[str, ...]:
    """Addresses as given, trimmed; duplicates and empty entries dropped. Raises SettingsError."""
    out: list[str] = []
    for raw in values:
        if not isinstance(raw, str):
            raise SettingsError(field, "expected email addresses as text")
        addr = raw.strip()
        if not addr:
            continue
        if len(addr) > 254 or not EMAIL.fullmatch(addr):
            raise SettingsError(field, f"{addr!r} is not an email address")
        if addr not in out:
            out.append(addr)
    return tuple(out)


def push_urls(field: str, values: Iterable[str]) -> tuple[str, ...]:
    """apprise URLs (``scheme://...``), trimmed; duplicates and empty entries dropped. Raises
    SettingsError naming the entry by its position, never by its text (it may hold a token)."""
    out: list[str] = []
    for i, raw in enumerate(values, 1):
        if not isinstance(raw, str):
            raise SettingsError(field, 'expected apprise URLs as text, e.g. "ntfy://ntfy.sh/my-topic"')
        url = raw.strip()
        if not url:
            continue
        if not PUSH_URL.fullmatch(url):
            raise SettingsError(field, f"entry {i} is not an apprise URL (scheme://..., e.g. ntfy://ntfy.sh/my-topic)")
        if url not in out:
            out.append(url)
    return tuple(out)


def push_key(url: str) -> str:
    """What stands for a push URL wherever it could be seen (outbox rows, logs, pages, the API):
    its scheme and a short digest, ``ntfy://***#1a2b3c4d``. The URL itself (its tokens, and for
    ntfy.sh the topic, which is the secret) stays in the config file and the push channel."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else "push"
    return f"{scheme}://***#{hashlib.sha256(url.encode()).hexdigest()[:8]}"


def pin(field: str, value: str | None) -> str | None:
    """A PIN is 4 to 8 digits; empty means none. Raises SettingsError."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise SettingsError(field, "a PIN is 4 to 8 digits, as text")
    text = value.strip()
    if not text:
        return None
    if not PIN.fullmatch(text):
        raise SettingsError(field, "a PIN is 4 to 8 digits (or leave it empty)")
    return text


def duration(field: str, value: str | float | int, lo: float, hi: float = REPEAT_MAX) -> float:
    """A duration ("90s", "15m", "2h", "1d", or seconds as a number) within [lo, hi]."""
    if isinstance(value, bool):
        raise SettingsError(field, "a duration such as 90s, 15m, 2h or 1d")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        try:
            seconds = parse_duration(value)
        except ValueError as e:
            raise SettingsError(field, str(e)) from None
    else:
        raise SettingsError(field, "a duration such as 90s, 15m, 2h or 1d")
    if not lo <= seconds <= hi:
        raise SettingsError(field, f"must be between {format_duration(lo)} and {format_duration(hi)}")
    return seconds


def whole_number(field: str, value: str | int, lo: int, hi: int) -> int:
    if isinstance(value, bool):
        raise SettingsError(field, "a whole number")
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise SettingsError(field, "a whole number") from None
    if not isinstance(value, int):
        raise SettingsError(field, "a whole number")
    if not lo <= value <= hi:
        raise SettingsError(field, f"must be between {lo} and {hi}, got {value}")
    return value


def quiet_hours(field: str, value: str | None) -> tuple[int, int] | None:
    """``"22:00-07:00"`` → (1320, 420); empty means none. Raises SettingsError."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise SettingsError(field, "a time range like 22:00-07:00")
    m = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*", value)
    if not m:
        raise SettingsError(field, f"{value!r} is not a time range like 22:00-07:00")
    h1, m1, h2, m2 = (int(x) for x in m.groups())
    if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59:
        raise SettingsError(field, f"{value!r} has an invalid time")
    return h1 * 60 + m1, h2 * 60 + m2


def time_of_day(field: str, value: str) -> int:
    """``"08:00"`` → minutes after midnight (480). Raises SettingsError."""
    m = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*", value)
    if not m or int(m.group(1)) > 23 or int(m.group(2)) > 59:
        raise SettingsError(field, f"{value!r} is not a time of day like 08:00")
    return int(m.group(1)) * 60 + int(m.group(2))


def time_zone(field: str, value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise SettingsError(field, f"unknown time zone {value!r} (use an IANA name such as Europe/Paris)") from None
    return value


def format_quiet_hours(q: tuple[int, int] | None) -> str:
    if q is None:
        return ""
    return f"{q[0] // 60:02d}:{q[0] % 60:02d}-{q[1] // 60:02d}:{q[1] % 60:02d}"


# ------------------------------------------------------------------------------ page and API edits


def _lines(value: Any) -> list[str]:
    """A list from a form's text area (one per line, or comma-separated) or from JSON."""
    if value is None:
        return []
    if isinstance(value, str):
        return [p for p in re.split(r"[\n,;]+", value) if p.strip()]
    if isinstance(value, list | tuple):
        return list(value)
    raise TypeError


def parse_edit(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Validate the editable fields present in ``raw`` (form strings or JSON values); returns
    them typed. Unknown keys are refused. Raises SettingsError naming the first bad field."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in EDITABLE:
            raise SettingsError(key, f"not a setting (the settings are {', '.join(EDITABLE)})")
        try:
            if key in ("sms_to", "sms_allow"):
                out[key] = phone_numbers(key, _lines(value))
            elif key == "email_to":
                out[key] = email_addresses(key, _lines(value))
            elif key == "sms_pin":
                out[key] = pin(key, value)
            elif key == "repeat":
                out[key] = duration(key, value, REPEAT_MIN)
            elif key == "quiet_hours":
                out[key] = quiet_hours(key, value)
            elif key == "max_sms_per_hour":
                out[key] = whole_number(key, value, 1, BUDGET_MAX)
        except TypeError:
            raise SettingsError(key, "a list, or one entry per line") from None
    return out


def overrides(file: Settings, wanted: Settings) -> dict[str, Any]:
    """The editable fields where ``wanted`` differs from the config file: what the page stores."""
    return {k: getattr(wanted, k) for k in EDITABLE if getattr(wanted, k) != getattr(file, k)}


def apply(file: Settings, saved: Mapping[str, Any]) -> Settings:
    """The settings in force: the file's, with the fields saved on the page replaced. Saved
    values are validated again (a hand-edited or damaged row raises SettingsError)."""
    fields = parse_edit({k: _from_json(k, v) for k, v in saved.items()})
    return dataclasses.replace(file, **fields)


def to_json(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Stored form of page overrides: durations as seconds, quiet hours as "22:00-07:00"."""
    out: dict[str, Any] = {}
    for k, v in fields.items():
        if k == "quiet_hours":
            out[k] = format_quiet_hours(v)
        elif k == "sms_pin":
            out[k] = v or ""
        elif isinstance(v, tuple):
            out[k] = list(v)
        else:
            out[k] = v
    return out


def _from_json(key: str, value: Any) -> Any:
    if key == "quiet_hours" and isinstance(value, list):  # stored as [start, end] before
        if not value:
            return ""
        if len(value) != 2 or not all(isinstance(v, int) and 0 <= v < 24 * 60 for v in value):
            raise SettingsError(key, f"{value!r} is not a stored time range")
        return format_quiet_hours((value[0], value[1]))
    return value
