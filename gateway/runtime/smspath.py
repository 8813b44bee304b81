"""The daemon's task that proves the SMS path: the daily canary (an SMS to the gateway's own
number, expected back within ``[modem] canary_timeout``) and, with ``[modem] balance_ussd``, the
prepaid balance asked every ``balance_every``.

When and what are :mod:`gateway.rules.smspath`; the writes are ``service.smspath``'s; the clock
is injected, so a test drives :meth:`SmsPathWatch.step` by hand.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
import zoneinfo
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from gateway.rules import smspath
from modem.errors import ModemError

if TYPE_CHECKING:
    from gateway.config import Config
    from gateway.service import Service

logger = logging.getLogger(__name__)

_MAX_SLEEP = 60.0  # re-read the wall clock at least this often (clock steps, suspend)


class ModemSide(Protocol):
    """What the task needs of :class:`modem.driver.ModemKeeper`."""

    async def own_number(self, *, wait: float) -> str | None: ...

    async def ussd(self, code: str, *, wait: float, timeout: float = 30.0) -> str: ...


class SmsPathWatch:
    def __init__(
        self, service: Service, modem: ModemSide, config: Config, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.service = service
        self.modem = modem
        self.m = config.modem
        self.zone = zoneinfo.ZoneInfo(config.alerts.tz)
        self.clock = clock
        self._number: str | None = self.m.own_number
        self._warned = False

    async def run(self) -> None:
        """Watch until cancelled. Never raises: a failure is logged and tried at the next look."""
        while True:
            try:
                wake = await self.step()
            except Exception:
                logger.exception("bug in the SMS path watch")
                wake = self.clock() + _MAX_SLEEP
            while (left := wake - self.clock()) > 0:
                await asyncio.sleep(min(left, _MAX_SLEEP))

    async def step(self) -> float:
        """One look at ``clock()``: give up an overdue canary, send the day's canary, ask the
        balance, as due. Returns when to look next."""
        wakes = []
        if self.m.canary_at is not None:
            wakes.append(await self._canary())
        if self.m.balance_ussd is not None:
            wakes.append(await self._balance())
        return min(wakes) if wakes else self.clock() + 86400.0

    async def _canary(self) -> float:
        svc = self.service.smspath
        assert self.m.canary_at is not None
        await svc.canary_overdue(self.m.canary_timeout)
        state = svc.state()
        now = self.clock()
        at = smspath.next_send(now, self.m.canary_at, self.m.canary_window, self.zone, state.day)
        if at <= now:
            number = await self._own_number()
            if number is not None:
                day = dt.datetime.fromtimestamp(now, self.zone).date().isoformat()
                await svc.send_canary(number, day)
                logger.info("canary SMS queued to the gateway's own number")
                state = svc.state()
            at = smspath.next_send(now, self.m.canary_at, self.m.canary_window, self.zone, state.day)
        deadline = state.deadline(self.m.canary_timeout)
        return min(at, deadline) if deadline is not None else at

    async def _own_number(self) -> str | None:
        if self._number is None:
            try:
                self._number = await self.modem.own_number(wait=30.0)
            except ModemError as e:
                logger.warning("cannot ask the SIM for its number: %s", e)
        if self._number is None and not self._warned:
            self._warned = True
            logger.warning("no daily canary: set [modem] own_number (the SIM does not report its number)")
        return self._number

    async def _balance(self) -> float:
        code = self.m.balance_ussd
        assert code is not None
        b = self.service.smspath.balance()
        now = self.clock()
        due = (b.asked_at or 0.0) + self.m.balance_every  # never asked: now (the keeper waits for the modem)
        if b.failures == 1:
            due = min(due, (b.asked_at or now) + 3600.0)  # one failure: ask again within the hour
        if now < due:
            return due
        try:
            answer = await self.modem.ussd(code, wait=30.0, timeout=30.0)
        except ModemError as e:
            logger.warning("balance check (%s) failed: %s", code, e)
            await self.service.smspath.record_balance(None, str(e))
        else:
            b = await self.service.smspath.record_balance(answer, None)
            logger.info("prepaid balance: %s", "unread" if b.amount is None else f"{b.amount:.2f}")
        failed_once = self.service.smspath.balance().failures == 1
        return self.clock() + (3600.0 if failed_once else self.m.balance_every)
