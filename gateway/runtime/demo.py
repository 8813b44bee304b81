"""Demo mode: a few example checks and a pinger that keeps some of them alive, so a newcomer sees
up, late and down (and the alerts they cause) within minutes of ``hbgw serve --demo``."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

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


class DemoPhone:
    """The owner's phone in demo mode: the simulated network's SMS both ways, and the calls the
    escalation ladder makes to it, which the modem page lets the visitor answer or reject."""

    def __init__(self, network: Any, simulator: Any) -> None:
        self.network = network
        self.simulator = simulator

    def sent(self) -> list[Any]:
        return list(self.network.sent())

    def inject(self, sender: str, text: str) -> None:
        self.network.inject(sender, text)

    def ringing(self, number: str) -> bool:
        """A call from the gateway is ringing on ``number`` now."""
        calls = [c for c in self.network.calls() if c.number == number]
        return bool(calls) and not calls[-1].ended and not calls[-1].answered

    def answer(self) -> bool:
        return bool(self.simulator.answer_call())

    def reject(self) -> bool:
        return bool(self.simulator.reject_call())


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
