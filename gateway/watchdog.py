"""Turns passed deadlines into status flips, as soon as they pass.

The priority queue is the partial index on ``checks.next_deadline`` (every heartbeat precomputes
its check's next deadline in the same transaction that stores it), so memory holds only the one
moment to wake up at. The task sleeps until that moment; a ping that sets an earlier deadline
wakes it from the store's writer thread through ``call_soon_threadsafe``. It never polls for deadlines; it
does re-read the earliest deadline every ``recheck`` seconds, to notice changes made by another
process (the ``hbgw check`` CLI), which also sends SIGHUP to wake it at once.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable

from gateway.model import Flip
from gateway.service import Service

logger = logging.getLogger(__name__)


class Watchdog:
    def __init__(self, service: Service, *, recheck: float = 30.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.service = service
        self.recheck = recheck
        self.clock = clock
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        # The moment the task sleeps until. +inf while it is (re)computing, so that a deadline
        # committed concurrently always wakes it (see nudge).
        self._target = math.inf

    def nudge(self, deadline: float) -> None:
        """A check's next deadline is now ``deadline``. Safe to call from any thread."""
        loop = self._loop
        if loop is not None and deadline < self._target:
            try:
                loop.call_soon_threadsafe(self._wake.set)
            except RuntimeError:  # loop closed during shutdown
                pass

    def wake(self) -> None:
        """Re-read deadlines now (after another process changed checks). Loop thread only."""
        self._wake.set()

    async def run(self) -> None:
        """Run until cancelled."""
        self._loop = asyncio.get_running_loop()
        while True:
            self._target = math.inf
            self._wake.clear()
            # No await between here and the wait below: a nudge from another thread either sees
            # _target == inf (and wakes us), or sees the target we are about to sleep until.
            try:
                nxt = self.service.next_deadline()
            except Exception:
                logger.exception("cannot read deadlines; retrying in 1 s")
                nxt = self.clock() + 1
            now = self.clock()
            if nxt is not None and nxt <= now:
                await self._advance()
                continue
            self._target = min(nxt if nxt is not None else math.inf, now + self.recheck)
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=max(0.0, self._target - now))
            except TimeoutError:
                pass

    async def _advance(self) -> list[Flip]:
        try:
            flips = await asyncio.to_thread(self.service.advance)
        except Exception:
            # The store is failing (disk full, read-only): keep the loop alive, try again soon.
            logger.exception("watchdog could not record status changes; retrying in 1 s")
            await asyncio.sleep(1)
            return []
        for f in flips:
            logger.info("check id=%d %s -> %s", f.check_id, f.old.value, f.new.value)
        return flips
