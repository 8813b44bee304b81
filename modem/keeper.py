"""``ModemKeeper``: one modem backend, kept open (reopened with backoff, its health reported)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass

from modem.errors import ModemError, ModemTimeout, PortGone, SimError
from modem.interface import InboundHandler, Modem, ModemStatus, SimAbsent

# Named as before the split into modules: log filters (and a test) select "modem.driver".
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModemHealth:
    """What the web page and ``/healthz`` show about the modem. ``since``: when
    ``connected`` last changed (UTC). ``retrying`` False means the keeper gave up until a
    restart (wrong PIN, PUK)."""

    connected: bool
    last_error: str | None
    since: dt.datetime
    status: ModemStatus | None
    retrying: bool = True


class ModemKeeper:
    """Keeps one modem backend open: opens it, reopens it with backoff when the device
    vanishes or stops answering, refreshes its status, and is what the gateway sends
    through. Generic over :class:`Modem` (``AtModem``, ``GammuModem``).

    Backoff doubles from ``min_backoff`` to ``max_backoff`` and is reset only after a
    connection survived ``stable_after`` seconds, so a flapping port is never hammered.
    A :class:`SimError` (wrong PIN, PUK, no PIN configured) stops all reopening until the
    process restarts; :class:`SimAbsent` (no SIM, SIM failure: no PIN was sent) is retried
    every ``sim_retry_interval`` seconds.
    """

    def __init__(
        self,
        factory: Callable[[], Modem],
        handler: InboundHandler,
        *,
        status_interval: float = 60.0,
        min_backoff: float = 1.0,
        max_backoff: float = 60.0,
        sim_retry_interval: float = 300.0,
        stable_after: float = 30.0,
    ) -> None:
        self._factory = factory
        self._handler = handler
        self._status_interval = status_interval
        self._min_backoff = min_backoff
        self._max_backoff = max_backoff
        self._sim_retry_interval = sim_retry_interval
        self._stable_after = stable_after
        self._modem: Modem | None = None
        self._connected = asyncio.Event()
        self._stopping = asyncio.Event()
        self._reconnect = asyncio.Event()
        self._reconnect_reason = ""
        self._done = asyncio.Event()
        self._running = False
        self._timeouts = 0
        self._health_changed = asyncio.Event()
        self._health = ModemHealth(False, None, dt.datetime.now(dt.UTC), None)

    @property
    def health(self) -> ModemHealth:
        """The current health snapshot (no I/O)."""
        return self._health

    @property
    def _health(self) -> ModemHealth:
        return self.__health

    @_health.setter
    def _health(self, value: ModemHealth) -> None:
        self.__health = value
        self._health_changed.set()

    async def health_changed(self, timeout: float) -> None:
        """Return once the health snapshot changed since the last call, or after ``timeout``."""
        # asyncio.timeout, not wait_for: on 3.11 wait_for swallows a cancellation that arrives
        # as the event is set, and a task that loops on this would then never stop.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._health_changed.wait()
        self._health_changed.clear()

    async def run(self) -> None:
        """Keep the modem open until :meth:`stop`. Never raises ModemError."""
        if self._running:
            raise RuntimeError("ModemKeeper.run is already running")
        self._running = True
        backoff = self._min_backoff
        loop = asyncio.get_running_loop()
        try:
            while not self._stopping.is_set():
                try:
                    modem = self._factory()
                except Exception as exc:  # a configuration error (bad PIN format, ...)
                    logger.error("modem cannot be created: %s. Not retrying.", exc)
                    self._set_down(exc, retrying=False)
                    await self._stopping.wait()
                    break
                modem.set_inbound_handler(self._handler)
                try:
                    await modem.open()
                except SimAbsent as exc:
                    await self._close(modem)
                    self._set_down(exc)
                    logger.error("modem: %s; retrying in %g s", exc, self._sim_retry_interval)
                    await self._sleep(self._sim_retry_interval)
                    continue
                except SimError as exc:
                    await self._close(modem)
                    self._set_down(exc, retrying=False)
                    logger.error("modem: %s. Not reopening until restarted.", exc)
                    await self._stopping.wait()
                    break
                except Exception as exc:
                    await self._close(modem)
                    if not isinstance(exc, ModemError):
                        logger.exception("bug while opening the modem")
                    else:
                        logger.warning("modem open failed: %s; retrying in %g s", exc, backoff)
                    self._set_down(exc)
                    await self._sleep(backoff)
                    backoff = min(backoff * 2, self._max_backoff)
                    continue
                opened_at = loop.time()
                self._modem = modem
                self._timeouts = 0
                self._reconnect.clear()
                self._health = ModemHealth(True, None, dt.datetime.now(dt.UTC), self._health.status)
                self._connected.set()
                logger.info("modem connected")
                try:
                    reason = await self._supervise(modem)
                finally:
                    self._connected.clear()
                    self._modem = None
                    await self._close(modem)
                if self._stopping.is_set():
                    break
                if loop.time() - opened_at >= self._stable_after:
                    backoff = self._min_backoff
                self._set_down(reason)
                logger.warning("modem lost (%s); reopening in %g s", reason, backoff)
                await self._sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)
        finally:
            self._set_connected_false()
            self._running = False
            self._done.set()

    async def stop(self) -> None:
        """Stop :meth:`run` (closing the modem, letting an SMS in flight finish)."""
        self._stopping.set()
        if self._running:
            await self._done.wait()

    async def send_sms(self, number: str, text: str, *, wait: float) -> list[int]:
        """Send through the connected modem, waiting up to ``wait`` s for one.

        Raises PortGone when no modem is connected in time (or it vanished mid-send:
        the keeper then reconnects), and what :meth:`Modem.send_sms` raises.
        """
        modem = await self._wait_modem(wait)
        try:
            refs = await modem.send_sms(number, text)
        except PortGone as exc:
            self._request_reconnect(str(exc))
            raise
        except ModemTimeout:
            self._timeouts += 1
            if self._timeouts >= 2:  # a modem that stopped answering: reopening resets it
                self._request_reconnect("repeated timeouts")
            raise
        self._timeouts = 0
        return refs

    async def status(self) -> ModemStatus:
        """Fresh status from the connected modem. Raises PortGone when none is connected."""
        modem = self._modem
        if modem is None or not self._connected.is_set():
            raise PortGone(f"modem not connected ({self._health.last_error or 'starting'})")
        try:
            status = await modem.status()
        except PortGone as exc:
            self._request_reconnect(str(exc))
            raise
        self._health = _replace_status(self._health, status)
        return status

    # -- internals ---------------------------------------------------------------------------

    async def _wait_modem(self, wait: float) -> Modem:
        try:
            await asyncio.wait_for(self._connected.wait(), wait)
        except TimeoutError:
            raise PortGone(f"modem not connected ({self._health.last_error or 'starting'})") from None
        modem = self._modem
        if modem is None:
            raise PortGone("modem not connected")
        return modem

    def _request_reconnect(self, reason: str) -> None:
        self._reconnect_reason = reason
        self._reconnect.set()

    async def _supervise(self, modem: Modem) -> str:
        """Refresh status periodically until the modem is lost or we stop; say why."""
        waiters = {
            asyncio.ensure_future(modem.wait_gone()): "port gone",
            asyncio.ensure_future(self._stopping.wait()): "stopped",
            asyncio.ensure_future(self._reconnect.wait()): "reconnect",
        }
        try:
            while True:
                try:
                    status = await modem.status()
                    self._health = _replace_status(self._health, status)
                except PortGone as exc:
                    return str(exc)
                except ModemError as exc:
                    logger.warning("modem status refresh failed: %s", exc)
                except Exception:
                    logger.exception("bug in modem status refresh")
                done, _ = await asyncio.wait(
                    waiters, timeout=self._status_interval, return_when=asyncio.FIRST_COMPLETED
                )
                for fut in done:
                    why = waiters[fut]
                    return self._reconnect_reason if why == "reconnect" else why
        finally:
            for fut in waiters:
                fut.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)

    async def _close(self, modem: Modem) -> None:
        try:
            await modem.close()
        except Exception:
            logger.exception("closing the modem failed")

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    def _set_down(self, exc: BaseException | str, *, retrying: bool = True) -> None:
        error = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
        since = self._health.since if not self._health.connected else dt.datetime.now(dt.UTC)
        self._health = ModemHealth(False, error, since, self._health.status, retrying)

    def _set_connected_false(self) -> None:
        if self._health.connected:
            self._health = ModemHealth(False, self._health.last_error, dt.datetime.now(dt.UTC), self._health.status)


def _replace_status(health: ModemHealth, status: ModemStatus) -> ModemHealth:
    return ModemHealth(health.connected, health.last_error, health.since, status, health.retrying)
