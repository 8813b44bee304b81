"""The daily "all is well" SMS (``[alerts] daily_summary = "08:00"``).

A gateway that died silently sends no alerts, so its owner cannot tell "all servers fine" from
"the alarm is dead". One short SMS a day at a fixed local time settles it: no SMS, go and look.

:func:`run` is the asyncio task the daemon starts; when and what come from the pure
:mod:`gateway.rules.summary`, and its one write is :meth:`Service.queue_daily_summary`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
import zoneinfo
from collections.abc import Callable
from typing import TYPE_CHECKING

from gateway.rules.summary import next_run

if TYPE_CHECKING:
    from gateway.config import Config
    from gateway.service import Service

logger = logging.getLogger(__name__)

_MAX_SLEEP = 60.0  # re-read the wall clock at least this often (clock steps, suspend)


async def run(service: Service, config: Config, *, clock: Callable[[], float] = time.time) -> None:
    """Queue the summary every day at ``[alerts] daily_summary`` (local time in ``[alerts] tz``),
    through :meth:`Service.queue_daily_summary` (once per local day, even across restarts)."""
    minute = config.alerts.daily_summary
    if minute is None:
        return
    if not config.alerts.sms_to:
        logger.warning("[alerts] daily_summary is set but sms_to is empty: no daily summary")
        return
    zone = zoneinfo.ZoneInfo(config.alerts.tz)
    while True:
        at = next_run(clock(), minute, zone)
        while (left := at - clock()) > 0:
            await asyncio.sleep(min(left, _MAX_SLEEP))
        day = dt.datetime.fromtimestamp(at, zone).date().isoformat()
        try:
            await service.queue_daily_summary(day)
        except Exception as e:  # a full disk must not end the task: try again tomorrow
            logger.error("cannot queue the daily summary: %s", e)
