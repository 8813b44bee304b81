"""When a check expects its next ping. Pure: no clock reads, ``anchor`` and ``now`` come in as arguments."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from functools import lru_cache

from croniter import croniter

from gateway.model import Schedule

MAX_PERIOD = 365 * 86400.0


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
    if schedule.cron is not None and (len(schedule.cron.split()) != 5 or not croniter.is_valid(schedule.cron)):
        raise ScheduleError(f"{schedule.cron!r} is not a 5-field cron expression (e.g. '*/15 * * * *')")
    return schedule


def expected_after(schedule: Schedule, anchor: float) -> float:
    """The time the next ping is expected, given the last one (or a restart) at ``anchor``.

    Period schedules: ``anchor + period``. Cron schedules: the first firing strictly after
    ``anchor`` in the schedule's time zone (so DST shifts follow local time).
    """
    if schedule.cron is None:
        return anchor + schedule.period
    start = dt.datetime.fromtimestamp(anchor, _zone(schedule.tz))
    return float(croniter(schedule.cron, start).get_next(float))


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
