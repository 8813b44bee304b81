"""Maintenance windows: times when a check's outage tells nobody yet.

A window covers every check (``all``), the checks with a tag (``tag:office``) or some checks by
id (``checks:3,5``), once (``start`` to ``end``) or on a cron schedule in a time zone for
``duration`` seconds each time ("0 3 * * 0", Europe/Paris, 30 min: every Sunday 03:00 local
time, across DST changes). Inside a window a check behaves as if muted until the window ends
(:func:`gateway.rules.policy.silence_end`): pings are recorded and statuses change as usual, no
alert starts, and a check still down when the window ends alerts then.

Pure: no I/O, no clock; ``now`` comes in as an argument. The store keeps the windows; the
service puts the ones in force into :class:`gateway.rules.settings.Settings` (``maintenance``).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass

from croniter import croniter

from gateway.model import Check, Schedule
from gateway.rules import schedule as sched
from gateway.rules.durations import format_duration

DURATION_MIN = 60.0
DURATION_MAX = 30 * 86400.0  # a one-off window
RECURRING_MAX = 7 * 86400.0  # each firing of a recurring one
TAG = re.compile(r"[^\s,]{1,64}")


class MaintenanceError(ValueError):
    """A window that cannot work; ``field`` names the input to correct."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Window:
    """One maintenance window as stored. One-off: ``start`` and ``end``; recurring: ``cron``,
    ``tz`` and ``duration`` (seconds each firing lasts). ``ended_early``: when the owner ended
    it (a recurring one never fires again)."""

    id: int
    scope: str  # "all" | "tag:NAME" | "checks:ID,ID"
    start: float | None = None
    end: float | None = None
    cron: str | None = None
    tz: str = "UTC"
    duration: float | None = None
    created: float = 0.0
    ended_early: float | None = None

    @property
    def recurring(self) -> bool:
        return self.cron is not None

    @property
    def tag(self) -> str | None:
        return self.scope[4:] if self.scope.startswith("tag:") else None

    @property
    def check_ids(self) -> tuple[int, ...]:
        if not self.scope.startswith("checks:"):
            return ()
        return tuple(int(p) for p in self.scope[7:].split(",") if p.isdigit())


def covers(w: Window, check: Check) -> bool:
    """Whether ``w``'s scope takes in ``check`` (whenever the window is open)."""
    if w.scope == "all":
        return True
    tag = w.tag
    if tag is not None:
        return tag in check.tag_list
    return check.id in w.check_ids


def open_until(w: Window, now: float) -> float | None:
    """The end of ``w``'s opening that ``now`` falls in, or None when it is closed at ``now``."""
    if w.ended_early is not None and now >= w.ended_early:
        return None
    end: float | None
    if w.cron is None:
        if w.start is None or w.end is None or not w.start <= now < w.end:
            return None
        end = w.end
    else:
        firing = last_firing(w, now)
        if firing is None or firing + (w.duration or 0.0) <= now:
            return None
        end = firing + (w.duration or 0.0)
    return min(end, w.ended_early) if w.ended_early is not None else end


def active_end(windows: Iterable[Window], check: Check, now: float) -> float | None:
    """The end of the windows covering ``check`` at ``now`` (the latest, when several are
    open), or None when none is."""
    ends = [e for w in windows if covers(w, check) and (e := open_until(w, now)) is not None]
    return max(ends) if ends else None


def last_firing(w: Window, now: float) -> float | None:
    """The real time of the latest firing of a recurring window at or before ``now``.

    Walks the local wall clock as :mod:`gateway.rules.schedule` does: a firing in the hour a
    spring change skips happens when the clock has moved on (02:30 → 03:30), one in the hour an
    autumn change repeats happens at the first pass that is not after ``now``."""
    if w.cron is None:
        return None
    zone = sched._zone(w.tz)
    local = dt.datetime.fromtimestamp(now, zone).replace(tzinfo=None, fold=0)
    # one second on: croniter's get_prev is strictly before its start, and a firing at ``now``
    # itself counts; three hours on covers an autumn change's repeated hour
    walk = croniter(w.cron, local + dt.timedelta(hours=3, seconds=1))
    for _ in range(400):
        naive: dt.datetime = walk.get_prev(dt.datetime)
        placed = [t for t in sched._placements(naive, zone) if t <= now]
        if placed:
            return max(placed)
    return None


def next_opening(w: Window, now: float) -> float | None:
    """When ``w`` next opens after ``now`` (for the pages and the list), or None: a one-off
    window already begun or over, an ended one."""
    if w.ended_early is not None:
        return None
    if w.cron is None:
        return w.start if w.start is not None and w.start > now else None
    return sched.expected_after(sched_schedule(w), now)


def sched_schedule(w: Window) -> Schedule:
    return Schedule(period=60.0, grace=0.0, cron=w.cron, tz=w.tz)


def in_force(w: Window, now: float) -> bool:
    """Whether ``w`` still matters at ``now``: not ended, and recurring or not over yet."""
    if w.ended_early is not None and w.ended_early <= now:
        return False
    return w.cron is not None or (w.end is not None and w.end > now)


# ------------------------------------------------------------------------------ input


def parse_scope(*, all_checks: bool = False, tag: str | None = None, check_ids: Iterable[int] = ()) -> str:
    """The stored scope for one of: every check, a tag, some checks. Raises MaintenanceError."""
    ids = sorted(set(check_ids))
    given = sum((all_checks, tag is not None, bool(ids)))
    if given != 1:
        raise MaintenanceError("scope", "give exactly one of: the checks, a tag, or all")
    if all_checks:
        return "all"
    if tag is not None:
        tag = tag.strip()
        if tag.casefold().startswith("tag:"):
            tag = tag[4:]
        if not TAG.fullmatch(tag):
            raise MaintenanceError("tag", f"{tag!r} is not a tag (one word, no spaces or commas)")
        return f"tag:{tag}"
    return "checks:" + ",".join(str(i) for i in ids)


def duration(value: float, *, recurring: bool) -> float:
    hi = RECURRING_MAX if recurring else DURATION_MAX
    if not DURATION_MIN <= value <= hi:
        raise MaintenanceError("for", f"a window lasts from {format_duration(DURATION_MIN)} to {format_duration(hi)}")
    return value


def parse_start(text: str | None, tz: str, now: float, length: float) -> float:
    """When a one-off window starts: None or "" or "now" → ``now``; "02:00" → the next 02:00 in
    ``tz`` (today's, when a window of ``length`` from it is still running); an ISO date and
    time ("2027-01-17T02:00", a naive one in ``tz``). Raises MaintenanceError (field "from")."""
    if text is None or not text.strip() or text.strip().casefold() == "now":
        return now
    zone = _zone(tz)
    raw = text.strip()
    m = re.fullmatch(r"(\d{1,2}):(\d{2})", raw)
    if m:
        h, mi = int(m.group(1)), int(m.group(2))
        if h > 23 or mi > 59:
            raise MaintenanceError("from", f"{raw!r} is not a time of day like 02:00")
        today = dt.datetime.fromtimestamp(now, zone).date()
        t = dt.datetime.combine(today, dt.time(h, mi), tzinfo=zone).timestamp()
        return (
            t
            if t + length > now
            else dt.datetime.combine(today + dt.timedelta(days=1), dt.time(h, mi), tzinfo=zone).timestamp()
        )
    try:
        when = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise MaintenanceError("from", f"{raw!r} is not a time like 02:00 or 2027-01-17T02:00") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=zone)
    return when.timestamp()


def one_off(scope: str, start: float, length: float, now: float) -> Window:
    """A validated one-off window (id 0 until stored). Raises MaintenanceError."""
    length = duration(length, recurring=False)
    if start + length <= now:
        raise MaintenanceError("from", "that window would be over already")
    return Window(0, scope, start=start, end=start + length, created=now)


def recurring(scope: str, cron: str, tz: str, length: float, now: float) -> Window:
    """A validated recurring window (id 0 until stored). Raises MaintenanceError."""
    length = duration(length, recurring=True)
    _zone(tz)
    try:
        sched.validate(Schedule(period=60.0, grace=0.0, cron=cron.strip(), tz=tz))
    except sched.ScheduleError as e:
        raise MaintenanceError("cron", str(e)) from None
    return Window(0, scope, cron=cron.strip(), tz=tz, duration=length, created=now)


def _zone(tz: str) -> dt.tzinfo:
    try:
        return sched._zone(tz)
    except sched.ScheduleError as e:
        raise MaintenanceError("tz", str(e)) from None


# ------------------------------------------------------------------------------ words


def describe_scope(w: Window, names: dict[int, str]) -> str:
    """ "all checks", "tag office", "web1, db1" (``names``: check names by id)."""
    if w.scope == "all":
        return "all checks"
    if w.tag is not None:
        return f"tag {w.tag}"
    return ", ".join(names.get(i, f"#{i} (removed)") for i in w.check_ids)


def describe_when(w: Window, zone: dt.tzinfo) -> str:
    """ "2027-01-17 02:00 to 03:00" or "0 3 * * 0 (Europe/Paris) for 30m"."""
    if w.cron is not None:
        return f"{w.cron} ({w.tz}) for {format_duration(w.duration or 0.0)}"
    a = dt.datetime.fromtimestamp(w.start or 0.0, zone)
    b = dt.datetime.fromtimestamp(w.end or 0.0, zone)
    end = b.strftime("%H:%M") if a.date() == b.date() else b.strftime("%Y-%m-%d %H:%M")
    return f"{a:%Y-%m-%d %H:%M} to {end}"
