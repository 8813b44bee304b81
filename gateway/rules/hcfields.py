"""Healthchecks' management API in our terms (pure: no I/O, no clock; ``now`` comes in).

What :mod:`web.hcapi` needs to speak Healthchecks' dialect (its ``templates/docs/api.md``):

- :func:`check_dict`: a check as Healthchecks shows it, per API version (1, 2, 3) and key
  (read-write: ``uuid``, the URLs and ``channels``; read-only: ``unique_key`` instead).
- :func:`hc_status`: its status words. Our ``late`` is its ``grace``; API v1 says ``started``
  while a run is under way (Healthchecks' ``get_status(with_started=v == 1)``).
- :func:`unique_key`: Healthchecks' stable read-only identifier, the SHA-1 of the first 16 hex
  digits of the UUID without dashes. For our own (non-UUID) tokens: the SHA-1 of the token's
  first 16 characters, the same rule applied to the token as it is.
- :func:`parse_spec`: a create/update body checked the way Healthchecks checks it (strictly typed,
  the first problem in its field order, in its words: ``json validation error: timeout is too
  small``), and :func:`spec_changes`, what it changes on one of our checks.
- :func:`ping_dict`, :func:`flip_dict`, :func:`channels_of`: pings, status changes and the
  owner's SMS and email recipients as Healthchecks' integrations.

Where we differ, and why:

- A ``schedule`` must be a 5-field cron expression; OnCalendar expressions are refused with
  Healthchecks' own message (our scheduler has no OnCalendar).
- Keyword filters map onto ours (:mod:`gateway.rules.keywords`): ``start_kw``/``success_kw``/
  ``failure_kw`` are our lists, ``filter_subject``/``filter_body`` where to look. Ours ignore
  case and count an unmatched mail as a success when no success keyword is set; HTTP body
  filtering (``filter_http_body``, ``filter_default_fail``) does not exist here, so ``true`` is
  refused rather than silently ignored.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
import zoneinfo
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from croniter import croniter

from gateway.model import Check, Event, Ping, PingKind, Status
from gateway.rules import keywords
from gateway.rules import schedule as sched
from gateway.rules import status as st
from gateway.rules.phone import mask
from gateway.rules.slugs import UUID, slugify

VERSIONS = (1, 2, 3)
DURATION_MIN, DURATION_MAX = 60, 31_536_000  # timeout and grace: 1 minute to 365 days
DEFAULT_TIMEOUT, DEFAULT_GRACE = 86_400, 3_600  # Healthchecks' defaults for a new check
UNIQUE_FIELDS = ("name", "slug", "tags", "timeout", "grace")
KEYWORD_FIELDS = ("start_kw", "success_kw", "failure_kw", "subject", "subject_fail", "filter_subject", "filter_body")

# Healthchecks' legacy zone names it still takes, mapped to the current ones (as its check_tz).
LEGACY_ZONES = {"Europe/Kiev": "Europe/Kyiv", "Europe/Uzhgorod": "Europe/Kyiv", "Europe/Zaporozhye": "Europe/Kyiv"}

# The channel ids are stable UUIDs derived from the recipient (RFC 4122 name-based, URL namespace).
_SMS, _EMAIL = "sms", "email"


class SpecError(ValueError):
    """A request Healthchecks would refuse with 400; the message is its ``error`` text."""


# ---------------------------------------------------------------- checks as Healthchecks shows them


def unique_key(token: str) -> str:
    """Healthchecks' ``unique_key`` of a check with ping token ``token`` (see the module docstring)."""
    half = token.replace("-", "").lower()[:16] if UUID.fullmatch(token) else token[:16]
    return hashlib.sha1(half.encode()).hexdigest()


def isostring(ts: float | None) -> str | None:
    """POSIX seconds as Healthchecks writes a time: ISO 8601, UTC offset, whole seconds."""
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(int(ts), dt.UTC).isoformat()


def hc_status(check: Check, now: float, *, v: int = 3) -> str:
    """new, up, grace, down, paused, and (API v1 only) started."""
    status = st.evaluate(check, now).status
    if v == 1 and check.last_start is not None and status not in (Status.DOWN, Status.PAUSED):
        return "started"
    return "grace" if status is Status.LATE else status.value


def next_ping(check: Check, now: float) -> float | None:
    """When the grace period starts (Healthchecks' ``next_ping``): the expected time while up or
    late, or the start of a run under way if sooner; None when new, paused or down."""
    status = st.evaluate(check, now).status
    result = None
    if status in (Status.UP, Status.LATE) and check.anchor is not None:
        result = sched.expected_after(check.schedule, check.anchor)
    if check.last_start is not None and status is not Status.DOWN:
        result = check.last_start if result is None else min(result, check.last_start)
    return result


def keyword_fields(check: Check) -> dict[str, Any]:
    """Our email keyword filters as Healthchecks' keyword fields ("" and false when none)."""
    f = _filters(check)
    on = f.active
    success, failure = ",".join(f.success), ",".join(f.fail)
    return {
        "subject": success if on and f.subject else "",
        "subject_fail": failure if on and f.subject else "",
        "start_kw": ",".join(f.start),
        "success_kw": success,
        "failure_kw": failure,
        "filter_subject": on and f.subject,
        "filter_body": on and f.body,
        "filter_http_body": False,
        "filter_default_fail": False,
    }


def _filters(check: Check) -> keywords.Filters:
    if not check.filters:
        return keywords.Filters(subject=False)
    try:
        return keywords.parse_filters(json.loads(check.filters))
    except (ValueError, keywords.FilterError):
        return keywords.Filters(subject=False)


def check_dict(
    check: Check,
    now: float,
    *,
    v: int,
    readonly: bool,
    base_url: str,
    badge_url: str,
    channels: str = "",
) -> dict[str, Any]:
    """``check`` as Healthchecks' API answers it (its ``Check.to_dict``). ``channels``: the
    comma-separated ids of the integrations it alerts (:func:`check_channels`)."""
    out: dict[str, Any] = {
        "name": check.name,
        "slug": check.slug,
        "tags": check.tags,
        "desc": check.desc,
        "grace": int(check.schedule.grace),
        "n_pings": check.n_pings,
        "status": hc_status(check, now, v=v),
        "started": check.last_start is not None,
        "last_ping": isostring(check.last_ping),
        "next_ping": isostring(next_ping(check, now)),
        "manual_resume": check.manual_resume,
        "methods": check.methods,
        **keyword_fields(check),
        "badge_url": badge_url,
    }
    if check.last_duration:
        out["last_duration"] = int(check.last_duration)
    if readonly:
        out["unique_key"] = unique_key(check.token)
    else:
        update_url = f"{base_url}/api/v{v}/checks/{check.token}"
        out["uuid"] = check.token
        out["ping_url"] = f"{base_url}/ping/{check.token}"
        out["update_url"] = update_url
        out["pause_url"] = update_url + "/pause"
        out["resume_url"] = update_url + "/resume"
        out["channels"] = channels
    if check.schedule.cron is None:
        out["timeout"] = int(check.schedule.period)
    else:
        out["schedule"] = check.schedule.cron
        out["tz"] = check.schedule.tz
    return out


def matches_tags(check: Check, tags: Iterable[str]) -> bool:
    """Whether ``check`` has every one of ``tags`` (``?tag=`` repeated: all must match)."""
    return set(tags) <= set(check.tag_list)


# ---------------------------------------------------------------- pings and flips


def ping_dict(ping: Ping, *, v: int, base_url: str, token: str) -> dict[str, Any]:
    """A ping as Healthchecks lists it; ``n`` is our ping id (unique across checks)."""
    email = ping.source == "email"
    out: dict[str, Any] = {
        "type": ping.kind.value,
        "date": dt.datetime.fromtimestamp(ping.at, dt.UTC).isoformat(),
        "n": ping.id,
        "scheme": "email" if email else "http",
        "remote_addr": ping.remote_addr,
        "method": "email" if email else (ping.method or ""),
        "ua": ping.user_agent or "",
        "rid": ping.rid,
        "body_url": f"{base_url}/api/v{v}/checks/{token}/pings/{ping.id}/body" if ping.body else None,
    }
    if ping.duration is not None and ping.kind in (PingKind.SUCCESS, PingKind.FAIL):
        out["duration"] = round(ping.duration, 2)
    return out


def is_hc_flip(old: str | None, new: str | None) -> bool:
    """Whether one of our flips is one Healthchecks would have: it has no ``late`` state (a late
    check is still ``up`` there, so up→late and late→up are no flips, late→down is up→down)."""
    return new != Status.LATE.value and not (old == Status.LATE.value and new == Status.UP.value)


def flip_dict(event: Event) -> dict[str, Any]:
    return {"timestamp": isostring(event.at), "up": 1 if event.new_status == Status.UP.value else 0}


@dataclass(frozen=True)
class FlipWindow:
    """``?start=``, ``?end=`` (UNIX seconds) and ``?seconds=`` of a flips request, checked."""

    start: float | None = None  # flips at or after
    end: float | None = None  # flips before


def parse_flip_window(query: Mapping[str, str], now: float) -> FlipWindow:
    """Raises SpecError (Healthchecks answers 400 without a message) for a bad value."""

    def number(key: str, top: int) -> int | None:
        raw = query.get(key)
        if raw is None or raw == "":
            return None
        try:
            value = int(raw)
        except ValueError:
            raise SpecError(f"{key} must be an integer") from None
        if not 0 <= value <= top:
            raise SpecError(f"{key} is out of bounds")
        return value

    start, end = number("start", 10_000_000_000), number("end", 10_000_000_000)
    seconds = number("seconds", DURATION_MAX)
    lower = [float(t) for t in (start, now - seconds if seconds else None) if t is not None]
    return FlipWindow(max(lower) if lower else None, float(end) if end is not None else None)


# ---------------------------------------------------------------- integrations


@dataclass(frozen=True)
class Channel:
    """One of the owner's recipients as a Healthchecks integration."""

    id: str
    name: str
    kind: str  # "sms" | "email"

    def to_dict(self) -> dict[str, str]:
        return {"id": self.id, "name": self.name, "kind": self.kind}


def channels_of(sms_to: Sequence[str], email_to: Sequence[str]) -> list[Channel]:
    """The owner's SMS numbers and email addresses as integrations, ids stable per recipient."""
    out = [Channel(str(uuid.uuid5(uuid.NAMESPACE_URL, f"tel:{n}")), f"SMS {mask(n)}", _SMS) for n in sms_to]
    out += [Channel(str(uuid.uuid5(uuid.NAMESPACE_URL, f"mailto:{a}")), f"Email {mask(a)}", _EMAIL) for a in email_to]
    return out


def check_channels(check: Check, channels: Sequence[Channel]) -> str:
    """The ids of the integrations ``check`` alerts, sorted and comma-separated (as Healthchecks)."""
    on = {_SMS: check.sms_enabled, _EMAIL: check.email_enabled}
    return ",".join(sorted(c.id for c in channels if on[c.kind]))


def select_channels(value: str, channels: Sequence[Channel]) -> dict[str, bool]:
    """A spec's ``channels`` as our per-check switches: ``"*"`` all, ``""`` none, else ids or names
    (comma-separated). A check alerts every recipient of a kind or none, so naming one SMS
    integration turns SMS on for the check. Raises SpecError in Healthchecks' words."""
    if value == "*":
        return {"sms_enabled": True, "email_enabled": True}
    kinds: set[str] = set()
    if value != "":
        for ident in value.split(","):
            if ident == "":
                raise SpecError("empty channel identifier")
            found = [c for c in channels if ident in (c.id, c.name)]
            if not found:
                raise SpecError(f"invalid channel identifier: {ident}")
            if len(found) > 1:
                raise SpecError(f"non-unique channel identifier: {ident}")
            kinds.add(found[0].kind)
    return {"sms_enabled": _SMS in kinds, "email_enabled": _EMAIL in kinds}


# ---------------------------------------------------------------- create/update bodies

_TEXT_MAX = {
    "channels": None,
    "desc": None,
    "failure_kw": 200,
    "name": 100,
    "schedule": 100,
    "slug": 100,
    "start_kw": 200,
    "subject": 200,
    "subject_fail": 200,
    "success_kw": 200,
    "tags": None,
    "tz": None,
}
_FLAGS = ("filter_subject", "filter_body", "filter_http_body", "filter_default_fail", "manual_resume")
_DURATIONS = ("grace", "timeout")
# Healthchecks' Spec declares its fields in this order; its error names the first bad one.
_ORDER = (
    "channels",
    "desc",
    "failure_kw",
    "filter_subject",
    "filter_body",
    "filter_http_body",
    "filter_default_fail",
    "grace",
    "manual_resume",
    "methods",
    "name",
    "schedule",
    "slug",
    "start_kw",
    "subject",
    "subject_fail",
    "success_kw",
    "tags",
    "timeout",
    "tz",
    "unique",
)
_SLUG_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")


@dataclass(frozen=True)
class Spec:
    """A checked create/update body: only the fields it gave (None means "not given")."""

    fields: Mapping[str, Any]

    def get(self, key: str) -> Any:
        return self.fields.get(key)

    def has(self, key: str) -> bool:
        return key in self.fields

    @property
    def kind(self) -> str | None:
        """ "cron" (a schedule wins over a timeout), "simple", or None: the schedule stays."""
        if self.fields.get("schedule"):
            return "cron"
        if self.fields.get("timeout"):
            return "simple"
        return None


def _error(field: str, what: str) -> SpecError:
    return SpecError(f"json validation error: {field} {what}")


def valid_zone(name: str) -> bool:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def valid_cron(expr: str) -> bool:
    return "\n" not in expr.strip() and len(expr.split()) == 5 and bool(croniter.is_valid(expr))


def parse_spec(data: Mapping[str, Any]) -> Spec:
    """A create/update body (already a JSON object) checked as Healthchecks checks it: strict
    types (an int is not a bool, a float is not a number of seconds, null is never allowed),
    lengths, ranges and values; unknown keys (such as ``api_key``) are ignored. Raises
    SpecError naming the first bad field in Healthchecks' field order."""
    out: dict[str, Any] = {}
    for key in _ORDER:
        if key not in data:
            continue
        value = data[key]
        if key in _TEXT_MAX:
            out[key] = _checked_text(key, _text(key, value, _TEXT_MAX[key]))
        elif key in _FLAGS:
            if not isinstance(value, bool):
                raise _error(key, "is not a boolean")
            out[key] = value
        elif key in _DURATIONS:
            # Healthchecks takes whole seconds only (JSON integers; true counts as 1)
            if not isinstance(value, int):
                raise _error(key, "is not a number")
            if value < DURATION_MIN:
                raise _error(key, "is too small")
            if value > DURATION_MAX:
                raise _error(key, "is too large")
            out[key] = int(value)
        elif key == "methods":
            if not isinstance(value, str) or value not in ("", "POST"):
                raise _error(key, "has unexpected value")
            out[key] = value
        elif key == "unique":
            if not isinstance(value, list):
                raise _error(key, "is not an array")
            for item in value:
                if not isinstance(item, str) or item not in UNIQUE_FIELDS:
                    raise SpecError("json validation error: an item in 'unique' has unexpected value")
            out[key] = list(value)
    for key in ("filter_http_body", "filter_default_fail"):
        if out.get(key):
            raise _error(key, "is not supported here (no HTTP body keyword filtering)")
    return Spec(out)


def _checked_text(key: str, value: str) -> str:
    if key == "schedule" and not valid_cron(value):
        raise _error(key, "is not a valid cron or OnCalendar expression")
    if key == "slug" and not set(value) <= _SLUG_CHARS:
        raise _error(key, "does not match pattern")
    if key == "tz":
        value = LEGACY_ZONES.get(value, value)
        if not valid_zone(value):
            raise _error(key, "is not a valid timezone")
    return value


def _text(key: str, value: Any, limit: int | None) -> str:
    if not isinstance(value, str):
        raise _error(key, "is not a string")
    if limit is not None and len(value) > limit:
        raise _error(key, "is too long")
    return value


def find_unique(checks: Iterable[Check], spec: Spec) -> Check | None:
    """The check a create with ``unique`` updates instead (the oldest match), or None: no
    ``unique``, a listed field absent from the spec, or nothing matches."""
    unique = spec.get("unique")
    if not unique or any(not spec.has(f) for f in unique):
        return None
    tests = {
        "name": lambda c: c.name == spec.get("name"),
        "slug": lambda c: c.slug == spec.get("slug"),
        "tags": lambda c: c.tag_list == spec.get("tags").split(),
        "timeout": lambda c: c.schedule.period == spec.get("timeout"),
        "grace": lambda c: c.schedule.grace == spec.get("grace"),
    }
    found = [c for c in checks if all(tests[f](c) for f in unique)]
    return min(found, key=lambda c: c.id) if found else None


def spec_changes(spec: Spec, *, v: int, check: Check | None, channels: Sequence[Channel]) -> dict[str, Any]:
    """What ``spec`` changes, as :meth:`Service.patch_check` fields (``check`` None: a new check,
    which gets Healthchecks' defaults and, unlike there, every channel unless ``channels`` says
    otherwise). A name sets the slug too in API v1 and v2; an explicit slug wins. Raises
    SpecError (an unknown channel)."""
    out: dict[str, Any] = {}
    if spec.has("name"):
        out["name"] = spec.get("name")
        if v < 3:
            out["slug"] = slugify(spec.get("name"))
    kind = spec.kind
    if kind == "simple":
        out["period"] = float(spec.get("timeout"))
        out["cron"] = None
    elif kind == "cron":
        out["cron"] = spec.get("schedule")
    for key in ("slug", "tags", "desc", "manual_resume", "methods", "tz"):
        if spec.has(key):
            out[key] = spec.get(key)
    if spec.has("grace"):
        out["grace"] = float(spec.get("grace"))
    if check is None:
        out.setdefault("period", float(DEFAULT_TIMEOUT))
        out.setdefault("grace", float(DEFAULT_GRACE))
        out.setdefault("slug", "")
    if spec.has("channels"):
        out.update(select_channels(spec.get("channels"), channels))
    elif check is None:
        out.update(sms_enabled=True, email_enabled=True)
    if any(spec.has(k) for k in KEYWORD_FIELDS):
        out["filters"] = _merged_filters(spec, check)
    return out


def _merged_filters(spec: Spec, check: Check | None) -> dict[str, Any]:
    """Our filters after Healthchecks' keyword fields in ``spec`` (``subject``/``subject_fail``,
    its deprecated pair, set the success/failure keywords and switch subject filtering on when
    any are set)."""
    cur = _filters(check) if check is not None else keywords.Filters(subject=False)
    on = cur.active
    words = {"start": list(cur.start), "success": list(cur.success), "fail": list(cur.fail)}
    subject, body = on and cur.subject, on and cur.body

    def split(text: str) -> list[str]:
        return [w.strip() for w in text.split(",") if w.strip()]

    for key, ours in (("start_kw", "start"), ("success_kw", "success"), ("failure_kw", "fail")):
        if spec.has(key):
            words[ours] = split(spec.get(key))
    for key, ours in (("subject", "success"), ("subject_fail", "fail")):
        if spec.has(key):
            words[ours] = split(spec.get(key))
            subject = bool(words["success"] or words["fail"])
    if spec.has("filter_subject"):
        subject = spec.get("filter_subject")
    if spec.has("filter_body"):
        body = spec.get("filter_body")
    if not (subject or body) or not any(words.values()):
        return {}  # no filtering: every mail is a success, as in Healthchecks
    return {"subject": subject, "body": body, **words}


def new_check_name(spec: Spec, token: str) -> str:
    """A name for a check created without one (ours need a name; Healthchecks allows "")."""
    return spec.get("name") or spec.get("slug") or f"check-{token[:8]}"
