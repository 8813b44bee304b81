"""The daily "all is well" SMS (``[alerts] daily_summary = "08:00"``).

A gateway that died silently sends no alerts, so its owner cannot tell "all servers fine" from
"the alarm is dead". One short SMS a day at a fixed local time settles it: no SMS, go and look.

:func:`summary_text` and :func:`next_run` are pure (they take ``now`` and the facts); :func:`run`
is the asyncio task the daemon starts, and :func:`queue_summary` the one write it makes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import time
import zoneinfo
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from gateway.model import Status

if TYPE_CHECKING:
    from gateway.config import Config
    from gateway.service import Service

logger = logging.getLogger(__name__)

SMS_LIMIT = 160  # one GSM-7 message
SENT_KEY = "daily_summary_day"  # setting: the local date of the last summary queued
_MAX_SLEEP = 60.0  # re-read the wall clock at least this often (clock steps, suspend)


def parse_clock(text: str) -> int:
    """``"08:00"`` → minutes after midnight (480). Raises ValueError."""
    m = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*", text)
    if not m or int(m.group(1)) > 23 or int(m.group(2)) > 59:
        raise ValueError(f"{text!r} is not a time of day like 08:00")
    return int(m.group(1)) * 60 + int(m.group(2))


def next_run(now: float, minute_of_day: int, zone: dt.tzinfo) -> float:
    """The first moment strictly after ``now`` when the local time in ``zone`` is
    ``minute_of_day``. On a day whose clock skips that time (DST), it is the moment the same
    offset from midnight lands on; when the time happens twice, the first one."""
    day = dt.datetime.fromtimestamp(now, zone).date()
    at = dt.time(minute_of_day // 60, minute_of_day % 60)
    while True:
        t = dt.datetime.combine(day, at, tzinfo=zone).timestamp()
        if t > now:
            return t
        day += dt.timedelta(days=1)


def summary_text(statuses: Mapping[str, Status], modem: str | None) -> str:
    """The SMS: ``"hbgw daily: 6 up, 0 down, modem ok. All is well."``.

    ``statuses``: every check's status by name; ``modem``: ``"ok"``, ``"offline"`` or None (no
    modem configured). Down and late checks are named, as many as fit in one GSM-7 SMS.
    """
    count = {s: 0 for s in Status}
    for s in statuses.values():
        count[s] += 1
    parts = [f"{count[Status.UP]} up", f"{count[Status.DOWN]} down"] if statuses else ["no checks yet"]
    parts += [f"{count[s]} {s.value}" for s in (Status.LATE, Status.PAUSED, Status.NEW) if count[s]]
    if modem is not None:
        parts.append(f"modem {modem}")
    head = "hbgw daily: " + ", ".join(parts) + "."
    troubled = sorted(
        (n for n, s in statuses.items() if s in (Status.DOWN, Status.LATE)),
        key=lambda n: (statuses[n] != Status.DOWN, n.casefold()),
    )
    if not troubled:
        return head + (" All is well." if modem in (None, "ok") else " Check the modem.")
    names: list[str] = []
    for i, name in enumerate(troubled):
        left = len(troubled) - i - 1
        line = f"{head} Not OK: {', '.join([*names, name])}{f' +{left} more' if left else ''}."
        if names and len(line) > SMS_LIMIT:
            break
        names.append(name)
    more = len(troubled) - len(names)
    return f"{head} Not OK: {', '.join(names)}{f' +{more} more' if more else ''}."


def modem_word(status: Mapping[str, Any] | None) -> str | None:
    """``"ok"`` / ``"offline"`` from the daemon's modem description, None without a modem."""
    if status is None:
        return None
    return "ok" if status.get("connected") else "offline"


def queue_summary(service: Service, day: str, nudge: Callable[[], None] | None = None) -> int:
    """Queue today's summary SMS to every ``[alerts] sms_to`` number, once per local ``day``
    (ISO date) even across restarts. Returns how many messages were queued."""
    store = service.store
    if store.get_setting(SENT_KEY) == day:
        return 0
    numbers = service.config.alerts.sms_to
    now = service.clock()
    statuses = {c.name: service.status_of(c, now) for c in service.list_checks()}
    text = summary_text(statuses, modem_word(service.modem_status()))
    for number in numbers:
        store.queue_message("summary", "sms", number, text, now)
    store.set_setting(SENT_KEY, day)
    if numbers and nudge is not None:
        nudge()
    logger.info("daily summary queued for %d recipient(s)", len(numbers))
    return len(numbers)


async def run(service: Service, config: Config, nudge: Callable[[], None] | None = None) -> None:
    """Queue the summary every day at ``[alerts] daily_summary`` (local time in ``[alerts] tz``)."""
    minute = config.alerts.daily_summary
    if minute is None:
        return
    if not config.alerts.sms_to:
        logger.warning("[alerts] daily_summary is set but sms_to is empty: no daily summary")
        return
    zone = zoneinfo.ZoneInfo(config.alerts.tz)
    while True:
        at = next_run(time.time(), minute, zone)
        while (left := at - time.time()) > 0:
            await asyncio.sleep(min(left, _MAX_SLEEP))
        day = dt.datetime.fromtimestamp(at, zone).date().isoformat()
        try:
            await asyncio.to_thread(queue_summary, service, day, nudge)
        except Exception as e:  # a full disk must not end the task: try again tomorrow
            logger.error("cannot queue the daily summary: %s", e)
