"""When a check expects its next ping. Pure: no clock reads, ``anchor`` and ``now`` come in as arguments."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from functools import lru_cache

from croniter import croniter

from gateway.model import Schedule

MAX_PERIOD = 365 * 86400.0
_MAX_SKIPS = 400  # firings looked at around an autumn change (every minute for 3 h, and more)
_BACK = dt.timedelta(hours=3)  # more than any DST shift (2 h at most, Troll station)
_NO_SHIFT = dt.timedelta(0)


class ScheduleError(ValueError):
    """A schedule that cannot work: says what is wrong and what is allowed."""


@lru_cache(maxsize=256)
def _zone(name: str) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as e:
        raise ScheduleError(f"unknown time zone {name!r} (use an IANA name such as Europe/Paris)") from e


def validate(schedule: Schedule) -> Schedule:
    """Return ``schedule`` unchanged if it can work, else raise ScheduleError."""
    if not 1.0 <= schedule.period <= MAX_PERIOD:
        raise ScheduleError("period must be between 1s and 365d")
    if not 0.0 <= schedule.grace <= MAX_PERIOD:
        raise ScheduleError("grace must be between 0s and 365d")
    _zone(schedule.tz)
    if schedule.cron is not None:
        if len(schedule.cron.split()) != 5:
            raise ScheduleError(f"{schedule.cron!r} is not a 5-field cron expression (e.g. '*/15 * * * *')")
        _check_cron_ranges(schedule.cron)
        if not croniter.is_valid(schedule.cron):
            raise ScheduleError(f"{schedule.cron!r} is not a 5-field cron expression (e.g. '*/15 * * * *')")
    return schedule


# The five fields and the numbers each takes (day of week: 0 and 7 are Sunday).
_CRON_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 7))


def _check_cron_ranges(cron: str) -> None:
    """Every number of ``cron`` within its field's range, every step within the field's span
    (croniter takes ``*/61`` for minutes); names (``mon``, ``jan``) and ``L``, ``#`` are left to
    croniter. Raises ScheduleError naming the field (and "cron": the service sorts errors by it)."""
    for text, (field, lo, hi) in zip(cron.split(), _CRON_FIELDS, strict=True):
        for item in text.split(","):
            base, slash, step = item.partition("/")
            span = hi - lo + 1
            if slash and (not step.isdigit() or not 1 <= int(step) <= span):
                raise ScheduleError(f"{cron!r}: a step in the cron {field} field must be 1 to {span}, not {step!r}")
            base, hash_, nth = base.partition("#")
            if hash_ and nth.isdigit() and not 1 <= int(nth) <= 5:
                raise ScheduleError(f"{cron!r}: in the cron {field} field, #{nth} must be #1 to #5")
            for part in base.split("-"):
                if part.isdigit() and not lo <= int(part) <= hi:
                    raise ScheduleError(f"{cron!r}: the cron {field} field takes {lo}-{hi}, not {part}")


def expected_after(schedule: Schedule, anchor: float) -> float:
    """The time the next ping is expected, given the last one (or a restart) at ``anchor``.

    Period schedules: ``anchor + period``. Cron schedules: the first firing strictly after
    ``anchor`` in the schedule's time zone (so DST shifts follow local time).

    The expression walks the local wall clock (naive times), and each firing is placed in the
    zone here: croniter's own handling of aware times across DST changes differs between its
    versions (3.x puts 03:00 on the autumn change day at 04:00). A wall time in the repeated hour
    of an autumn change fires in both passes (``*/10`` keeps pinging every 10 min); one in the
    skipped hour of a spring change fires when the clock has moved on (02:30 → 03:30).
    """
    if schedule.cron is None:
        return anchor + schedule.period
    zone = _zone(schedule.tz)
    local = dt.datetime.fromtimestamp(anchor, zone)
    walk = croniter(schedule.cron, local.replace(tzinfo=None))
    first: dt.datetime = walk.get_next(dt.datetime)
    t = first.replace(tzinfo=zone).timestamp()
    if t > anchor and _offset(zone, t) >= (local.utcoffset() or _NO_SHIFT) and len(_placements(first, zone)) == 1:
        return t  # no autumn change in between: the common case, one step
    # An autumn change lies ahead: wall times run back, so walk from before it and take the
    # earliest real time after the anchor among both passes of each wall time.
    walk = croniter(schedule.cron, local.replace(tzinfo=None) - _BACK)
    best: float | None = None
    for _ in range(_MAX_SKIPS):
        naive: dt.datetime = walk.get_next(dt.datetime)
        times = _placements(naive, zone)
        best = min([x for x in (best, *times) if x is not None and x > anchor], default=None)
        if best is not None and times[0] > best + _BACK.total_seconds():
            return best
    if best is None:
        raise ScheduleError(f"{schedule.cron!r} never fires after {anchor}")
    return best


def _offset(zone: dt.tzinfo, t: float) -> dt.timedelta:
    return dt.datetime.fromtimestamp(t, zone).utcoffset() or _NO_SHIFT


def _placements(naive: dt.datetime, zone: dt.tzinfo) -> list[float]:
    """The real times the wall time ``naive`` happens at in ``zone``: two in an autumn change's
    repeated hour, else one (a time a spring change skips: the one the clock moved on to)."""
    times = sorted({naive.replace(tzinfo=zone, fold=fold).timestamp() for fold in (0, 1)})
    real = [t for t in times if dt.datetime.fromtimestamp(t, zone).replace(tzinfo=None) == naive]
    return real or [naive.replace(tzinfo=zone).timestamp()]


def deadlines(schedule: Schedule, anchor: float | None, last_start: float | None) -> tuple[float, float] | None:
    """``(late_at, down_at)`` for a check last anchored at ``anchor``; None when nothing is expected.

    A ``/start`` without its success or fail (``last_start``) must finish within ``grace``.
    """
    inf = float("inf")
    late_at = down_at = inf
    if anchor is not None:
        late_at = expected_after(schedule, anchor)
        down_at = late_at + schedule.grace
    if last_start is not None:
        down_at = min(down_at, last_start + schedule.grace)
        late_at = min(late_at, down_at)
    if down_at == inf:
        return None
    return late_at, down_at
