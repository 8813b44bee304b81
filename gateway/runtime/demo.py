"""Demo mode: a few example checks and a pinger that keeps some of them alive, so a newcomer sees
up, late and down (and the alerts they cause) within minutes of ``hbgw serve --demo``."""

from __future__ import annotations

import asyncio
import logging

from gateway.model import PingKind, PingMeta
from gateway.service import Service
from gateway.store import Conflict, NotFound

logger = logging.getLogger(__name__)

# name, period, grace, pinged by the demo pinger
DEMO_CHECKS = (
    ("web1", 60.0, 30.0, True),
    ("db1", 60.0, 30.0, True),
    ("backup", 120.0, 60.0, False),  # never pinged again after the first: goes down in ~3 min
)
PING_EVERY = 20.0


def seed(service: Service) -> None:
    for name, period, grace, _ in DEMO_CHECKS:
        try:
            check = service.add_check(name, period=period, grace=grace)
        except Conflict:
            continue
        service.record_ping(check.token, PingKind.SUCCESS, meta=PingMeta(source="demo"))


async def pinger(service: Service) -> None:
    """Ping the demo checks that should stay up, like their servers' cron jobs would."""
    while True:
        for name, _, _, alive in DEMO_CHECKS:
            if not alive:
                continue
            try:
                check = service.get_check(name)
            except NotFound:
                continue  # deleted on the page: fine, it is a demo
            if check.status.value != "paused":
                meta = PingMeta(source="demo", user_agent="hbgw-demo-pinger")
                await asyncio.wrap_future(service.submit_ping(check.token, None, PingKind.SUCCESS, None, meta))
        await asyncio.sleep(PING_EVERY)
