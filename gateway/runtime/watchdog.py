"""Turns passed deadlines into status flips, as soon as they pass.

The priority queue is the partial index on ``checks.next_deadline`` (every heartbeat precomputes
its check's next deadline in the same transaction that stores it), so memory holds only the one
moment to wake up at. The task sleeps until that moment; a ping that sets an earlier deadline
wakes it from the store's writer thread through ``call_soon_threadsafe``. It never polls for deadlines; it
does re-read the earliest deadline every ``recheck`` seconds, to notice changes made by another
process (the ``hbgw check`` CLI), which also sends SIGHUP to wake it at once.

Deadlines are wall-clock times, so each look also compares how far the wall clock moved with how
far the boot clock moved (:class:`ClockWatch`). A Raspberry Pi has no battery clock: it boots at
the time it was shut down and NTP later steps it forward by hours, which would make every
deadline "pass" at once. A step is handed to :meth:`Service.clock_stepped` before any flip.
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


CLOCK_STEP = 2.0  # seconds; NTP slews at most 0.5 ms/s, so 30 s between looks drift 15 ms


def boot_clock() -> float:
    """Seconds since boot, time suspended included: how far the wall clock should have moved."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


class ClockWatch:
    """Notices steps of the wall clock by comparing it with a clock nobody sets. Pure."""

    def __init__(self, threshold: float = CLOCK_STEP) -> None:
        self.threshold = threshold
        self._last: tuple[float, float] | None = None

    def step(self, wall: float, boot: float) -> float:
        """How far the wall clock jumped since the last look (0.0 for none, or under the
        threshold): positive forward, negative back."""
        last, self._last = self._last, (wall, boot)
        if last is None:
            return 0.0
        drift = (wall - last[0]) - (boot - last[1])
        return drift if abs(drift) >= self.threshold else 0.0

    def undo(self, step: float) -> None:
        """Report ``step`` again at the next look (handling it failed)."""
        if self._last is not None:
            self._last = (self._last[0] - step, self._last[1])


class Watchdog:
    def __init__(
        self,
        service: Service,
        *,
        recheck: float = 30.0,
        clock: Callable[[], float] = time.time,
        boot: Callable[[], float] = boot_clock,
    ) -> None:
        self.service = service
        self.recheck = recheck
        self.clock = clock
        self.boot = boot
        self.clock_watch = ClockWatch()
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
            step = self.clock_watch.step(now, self.boot())
            if step:
                await self._clock_stepped(now - step, now)
                continue
            if nxt is not None and nxt <= now:
                await self._advance(now)
                continue
            self._target = min(nxt if nxt is not None else math.inf, now + self.recheck)
            try:  # not wait_for: on 3.11 it can swallow the cancellation that stops this loop
                async with asyncio.timeout(max(0.0, self._target - now)):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def _clock_stepped(self, expected: float, now: float) -> None:
        try:
            await self.service.clock_stepped_async(expected, now)
        except Exception:
            logger.exception("could not re-anchor checks after a clock step; retrying in 1 s")
            self.clock_watch.undo(now - expected)
            await asyncio.sleep(1)

    async def _advance(self, now: float) -> list[Flip]:
        try:
            flips = await self.service.advance_async(now)
        except Exception:
            # The store is failing (disk full, read-only): keep the loop alive, try again soon.
            logger.exception("watchdog could not record status changes; retrying in 1 s")
            await asyncio.sleep(1)
            return []
        return flips  # each logged by name where it was decided (Service.advance_async)
