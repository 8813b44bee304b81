"""``ModemKeeper``: one modem backend, kept open (reopened with backoff, its health reported)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import enum
import logging
import os
import subprocess
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

from modem.errors import ModemError, ModemTimeout, PortGone, SimError
from modem.interface import CallResult, InboundHandler, Modem, ModemStatus, ReportHandler, SimAbsent

logger = logging.getLogger(__name__)

T = TypeVar("T")


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
    # The recovery ladder's current step, e.g. "radio cycle (step 2 of 5)", "gave up after 5
    # steps"; None while the modem works (or trouble has not lasted ``recover_after`` yet).
    recovery: str | None = None


class Step(enum.StrEnum):
    """The rungs of the recovery ladder, cheapest first (``GAVE_UP`` ends it)."""

    RESYNC = "resync"  # ESC, then AT
    RADIO_CYCLE = "radio cycle"  # AT+CFUN=4, AT+CFUN=1 (or AT+CFUN=1,1)
    REOPEN = "port reopen"
    REENUMERATE = "USB re-enumeration"  # sysfs: authorized 0 then 1
    POWER_CYCLE = "power-cycle command"  # [modem] power_cycle_command (uhubctl ...)
    GAVE_UP = "gave up"


class RecoveryLadder:
    """Which recovery step is due, and when: pure (no I/O, no clock; ``now`` is any
    monotonic time in seconds, passed in).

    Trouble (no answer, not registered) that lasted ``recover_after`` seconds takes the
    first step; each further step comes ``step_wait`` seconds after the previous one ended,
    so every step has time to show its effect and the ladder never climbs faster than that.
    After the last step has had its wait, :attr:`Step.GAVE_UP`; nothing after that until
    :meth:`recovered` (the modem worked again) resets the ladder.
    """

    def __init__(self, steps: Sequence[Step], *, recover_after: float, step_wait: float) -> None:
        if Step.GAVE_UP in steps:
            raise ValueError("GAVE_UP is not a step to take")
        self.steps = (*steps, Step.GAVE_UP)
        self.recover_after = recover_after
        self.step_wait = step_wait
        self._since: float | None = None  # trouble began
        self._taken = 0  # steps taken (GAVE_UP included)
        self._ended: float | None = None  # the last step ended

    @property
    def in_trouble(self) -> bool:
        return self._since is not None

    @property
    def current(self) -> Step | None:
        """The last step taken in this spell of trouble (None: none yet)."""
        return self.steps[self._taken - 1] if self._taken else None

    def trouble(self, now: float) -> bool:
        """The modem failed at ``now``; True when this starts a spell of trouble."""
        if self._since is not None:
            return False
        self._since = now
        return True

    def recovered(self) -> Step | None:
        """The modem works: reset. Returns the last step taken (what cured it), if any."""
        last = self.current
        self._since, self._taken, self._ended = None, 0, None
        return last

    def due(self) -> float | None:
        """When the next step is due; None without trouble or after GAVE_UP."""
        if self._since is None or self._taken >= len(self.steps):
            return None
        if self._taken == 0:
            return self._since + self.recover_after
        assert self._ended is not None
        return self._ended + self.step_wait

    def next_step(self, now: float) -> Step | None:
        """The step to take at ``now`` (counted as taken), or None when none is due.
        Call :meth:`ended` when it is done."""
        due = self.due()
        if due is None or now < due:
            return None
        step = self.steps[self._taken]
        self._taken += 1
        self._ended = now
        return step

    def ended(self, now: float) -> None:
        """The step taken last finished at ``now``: the wait for the next one starts."""
        self._ended = now

    def label(self, step: Step) -> str:
        """``"radio cycle (step 2 of 5)"``; ``"gave up after 5 steps"``."""
        n = len(self.steps) - 1
        if step is Step.GAVE_UP:
            return f"gave up after {n} step{'s' if n != 1 else ''}"
        return f"{step} (step {self.steps.index(step) + 1} of {n})"


@dataclass(frozen=True)
class RecoveryEvent:
    """One step the keeper took (or the recovery that ended the ladder)."""

    at: dt.datetime  # UTC
    step: str  # a Step value, or "recovered"
    detail: str  # what happened ("the modem answered", "failed: ..."); what cured it
    label: str = ""  # as the health showed it: "radio cycle (step 2 of 5)"


@runtime_checkable
class Recoverable(Protocol):
    """What a backend offers for the first rungs (``AtModem`` has them; gammu does not)."""

    async def ping(self) -> None: ...

    async def resync(self) -> None: ...

    async def radio_cycle(self, *, full_reset: bool = False) -> None: ...


def usb_device_for(tty: str, sysfs_root: str | os.PathLike[str] = "/sys") -> Path | None:
    """The sysfs directory of the USB device behind the serial port ``tty`` (a ``/dev`` path or
    a link to one, such as ``/dev/serial/by-id/...``): ``<root>/class/tty/<name>/device``,
    then up to the first directory with both ``authorized`` and ``idVendor`` (a USB device,
    not one of its interfaces). None when there is none (a pty, a socket, a UART), and for a
    root hub (``usbN``): de-authorizing that cuts every port and may not come back.
    """
    name = os.path.basename(os.path.realpath(tty))
    root = Path(os.path.realpath(sysfs_root))
    start = root / "class" / "tty" / name / "device"
    if not name or not start.exists():
        return None
    here = Path(os.path.realpath(start))
    while here != root and root in here.parents:
        if (here / "authorized").exists() and (here / "idVendor").exists():
            return None if here.name.startswith("usb") else here
        here = here.parent
    return None


def _write_attribute(path: Path, value: str) -> None:
    with open(path, "w", encoding="ascii") as f:
        f.write(value)


class ModemKeeper:
    """Keeps one modem backend open: opens it, reopens it with backoff when the device
    vanishes or stops answering, refreshes its status, and is what the gateway sends
    through. Generic over :class:`Modem` (``AtModem``, ``GammuModem``).

    Backoff doubles from ``min_backoff`` to ``max_backoff`` and is reset only after a
    connection survived ``stable_after`` seconds, so a flapping port is never hammered.
    A :class:`SimError` (wrong PIN, PUK, no PIN configured) stops all reopening until the
    process restarts; :class:`SimAbsent` (no SIM, SIM failure: no PIN was sent) is retried
    every ``sim_retry_interval`` seconds.

    The recovery ladder (:class:`RecoveryLadder`): a modem that stops answering (``AT`` or a
    send times out, it cannot be opened, its port vanished) or stays off the network
    (registration "searching"/"unregistered") for ``recover_after`` seconds is resynced,
    its radio cycled (``radio_full_reset``: ``AT+CFUN=1,1`` instead), its port reopened, its
    USB device re-enumerated through sysfs (``usb_device_for(device, sysfs_root)``; only when
    ``device`` is given and has one), and ``power_cycle_command`` run (argv, no shell, at most
    ``power_cycle_timeout`` s), one step every ``step_wait`` seconds (default
    ``recover_after``), then it gives up: reopening goes on at the usual backoff, the owner
    hears from the modem watch. The ladder resets once the modem answers and is registered.
    ``recover_after=None`` turns the ladder off.
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
        recover_after: float | None = 120.0,
        step_wait: float | None = None,
        device: str | None = None,
        sysfs_root: str = "/sys",
        power_cycle_command: Sequence[str] = (),
        power_cycle_timeout: float = 60.0,
        reenumerate_settle: float = 2.0,
        radio_full_reset: bool = False,
        report_handler: ReportHandler | None = None,
    ) -> None:
        self._factory = factory
        self._handler = handler
        self._report_handler = report_handler
        self._status_interval = status_interval
        self._min_backoff = min_backoff
        self._max_backoff = max_backoff
        self._sim_retry_interval = sim_retry_interval
        self._stable_after = stable_after
        self._modem: Modem | None = None
        self._connected = asyncio.Event()
        self._stopping = asyncio.Event()
        self._reconnect = asyncio.Event()
        self._poked = asyncio.Event()  # trouble began outside the supervisor (see _trouble)
        self._reconnect_reason = ""
        self._done = asyncio.Event()
        self._running = False
        self._health_changed = asyncio.Event()
        self._health = ModemHealth(False, None, dt.datetime.now(dt.UTC), None)
        self._device = device
        self._sysfs_root = sysfs_root
        self._power_cycle_command = tuple(power_cycle_command)
        self._power_cycle_timeout = power_cycle_timeout
        self._reenumerate_settle = reenumerate_settle
        self._radio_full_reset = radio_full_reset
        steps = [Step.RESYNC, Step.RADIO_CYCLE, Step.REOPEN]
        if device is not None and not device.startswith(("socket://", "rfc2217://")):
            steps.append(Step.REENUMERATE)
        if self._power_cycle_command:
            steps.append(Step.POWER_CYCLE)
        self._ladder: RecoveryLadder | None = None
        if recover_after is not None:
            wait = recover_after if step_wait is None else step_wait
            self._ladder = RecoveryLadder(steps, recover_after=recover_after, step_wait=wait)
        self._trouble_reason = ""
        self._fresh_device = False  # a re-enumeration or power cycle ran: reopen soon
        self._events: deque[RecoveryEvent] = deque(maxlen=100)

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

    @property
    def recovery_events(self) -> tuple[RecoveryEvent, ...]:
        """The latest recovery steps taken, and recoveries, oldest first (no I/O)."""
        return tuple(self._events)

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
                if self._report_handler is not None:
                    modem.set_report_handler(self._report_handler)
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
                    self._trouble(f"cannot open: {exc}")
                    await self._pause(backoff)
                    backoff = self._min_backoff if self._take_fresh() else min(backoff * 2, self._max_backoff)
                    continue
                opened_at = loop.time()
                self._modem = modem
                self._reconnect.clear()
                self._health = dataclasses.replace(
                    self._health, connected=True, last_error=None, since=dt.datetime.now(dt.UTC), retrying=True
                )
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
                if loop.time() - opened_at >= self._stable_after or self._take_fresh():
                    backoff = self._min_backoff
                self._set_down(reason)
                self._trouble(f"lost: {reason}")
                logger.warning("modem lost (%s); reopening in %g s", reason, backoff)
                await self._pause(backoff)
                backoff = self._min_backoff if self._take_fresh() else min(backoff * 2, self._max_backoff)
        finally:
            self._set_connected_false()
            self._running = False
            self._done.set()

    async def stop(self) -> None:
        """Stop :meth:`run` (closing the modem, letting an SMS in flight finish)."""
        self._stopping.set()
        if self._running:
            await self._done.wait()

    async def send_sms(self, number: str, text: str, *, wait: float, report: bool = False) -> list[int]:
        """Send through the connected modem, waiting up to ``wait`` s for one; ``report``
        asks for status reports (they come to ``report_handler``).

        Raises PortGone when no modem is connected in time (or it vanished mid-send:
        the keeper then reconnects), and what :meth:`Modem.send_sms` raises.
        """
        modem = await self._wait_modem(wait)
        refs = await self._guard(modem.send_sms(number, text, report=report), "SMS send timed out")
        self._works()
        return refs

    async def call(self, number: str, ring_for: float, *, wait: float) -> CallResult:
        """Call ``number`` through the connected modem (:meth:`Modem.call`), waiting up to
        ``wait`` s for one. Raises PortGone like :meth:`send_sms`. A "failed" call (the
        modem did not answer ``ATD``, or stopped answering) counts as trouble for the
        recovery ladder, which the next status check clears when the modem is fine."""
        modem = await self._wait_modem(wait)
        result = await self._guard(modem.call(number, ring_for), "call timed out")
        if result.outcome == "failed":
            self._trouble(f"call failed: {result.detail}")
        return result

    async def ussd(self, code: str, *, wait: float, timeout: float = 30.0) -> str:
        """The network's answer to USSD ``code`` (:meth:`Modem.ussd`), waiting up to ``wait``
        s for a modem. Raises PortGone like :meth:`send_sms`, ModemTimeout (trouble for the
        ladder, like a send timeout), ModemError."""
        modem = await self._wait_modem(wait)
        return await self._guard(modem.ussd(code, timeout), "USSD request timed out")

    async def own_number(self, *, wait: float) -> str | None:
        """The SIM's own number (:meth:`Modem.own_number`), None when unknown. Raises
        PortGone like :meth:`send_sms`, ModemTimeout."""
        modem = await self._wait_modem(wait)
        return await self._guard(modem.own_number(), "AT+CNUM timed out")

    async def _guard(self, op: Awaitable[T], timed_out: str) -> T:
        """Await ``op``: a vanished port asks for a reconnect, a timeout is trouble."""
        try:
            return await op
        except PortGone as exc:
            self._request_reconnect(str(exc))
            raise
        except ModemTimeout:
            # Not reopened at once: the recovery ladder climbs if this lasts recover_after.
            self._trouble(timed_out)
            raise

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
        """Check the modem periodically (and climb the recovery ladder while it is in
        trouble) until it is lost, a step needs a reopen, or we stop; say why."""
        loop = asyncio.get_running_loop()
        waiters: dict[asyncio.Future[Any], str] = {
            asyncio.ensure_future(modem.wait_gone()): "port gone",
            asyncio.ensure_future(self._stopping.wait()): "stopped",
            asyncio.ensure_future(self._reconnect.wait()): "reconnect",
        }
        news: asyncio.Future[Any] | None = None
        try:
            while True:
                try:
                    await self._check(modem)
                except PortGone as exc:
                    return str(exc)
                except ModemError as exc:
                    logger.warning("modem status refresh failed: %s", exc)
                except Exception:
                    logger.exception("bug in modem status refresh")
                if any(fut.done() for fut in waiters):  # gone, stopping, or a reopen asked for
                    timeout = 0.0
                else:
                    step = await self._climb(modem)
                    if step in (Step.REOPEN, Step.REENUMERATE, Step.POWER_CYCLE):
                        return f"recovery: {step}"
                    timeout = self._status_interval
                    due = self._ladder.due() if self._ladder is not None else None
                    if due is not None:
                        timeout = max(0.0, min(timeout, due - loop.time()))
                if news is None or news.done():
                    # the modem's own reports (registration lost, storage full), or trouble a
                    # send ran into (a timeout): look now, not at the next status_interval
                    news = asyncio.ensure_future(self._news(modem))
                done, _ = await asyncio.wait([*waiters, news], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                for fut in done:
                    if fut is news:
                        continue
                    why = waiters[fut]
                    return self._reconnect_reason if why == "reconnect" else why
        finally:
            pending: list[asyncio.Future[Any]] = [*waiters, *([news] if news is not None else [])]
            for fut in pending:
                fut.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _check(self, modem: Modem) -> None:
        """Is the modem answering and on the network? Feeds the ladder. Raises PortGone."""
        status = await modem.status()  # first: a sender waiting for the lock sees it fresh
        self._health = dataclasses.replace(self._health, status=status)
        if isinstance(modem, Recoverable):
            # status() swallows timeouts (unknown fields): ask plainly whether it answers.
            try:
                await modem.ping()
            except ModemTimeout:
                self._trouble("not answering")
                return
        if status.registration in ("searching", "unregistered"):
            self._trouble(f"not registered ({status.registration})")
        else:
            self._works()

    async def _news(self, modem: Modem) -> None:
        """Return when the modem reported news or a send found trouble (:meth:`_trouble`)."""
        poked = asyncio.ensure_future(self._poked.wait())
        reported = asyncio.ensure_future(modem.wait_news())
        try:
            await asyncio.wait([poked, reported], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for fut in (poked, reported):
                fut.cancel()
            await asyncio.gather(poked, reported, return_exceptions=True)
        self._poked.clear()

    # -- recovery ladder ---------------------------------------------------------------------

    def _trouble(self, why: str) -> None:
        ladder = self._ladder
        if ladder is None:
            return
        self._trouble_reason = why
        if ladder.trouble(asyncio.get_running_loop().time()):
            logger.warning("modem trouble (%s): recovery starts in %g s unless it passes", why, ladder.recover_after)
            self._poked.set()  # the supervisor's wait was timed before this: wake it

    def _works(self) -> None:
        ladder = self._ladder
        if ladder is None or not ladder.in_trouble:
            return
        cured_by = ladder.recovered()
        if cured_by is not None:
            what = "after giving up" if cured_by is Step.GAVE_UP else f"after step {cured_by}"
            logger.warning("modem recovery: the modem works again (%s)", what)
            self._event("recovered", what)
        if self._health.recovery is not None:
            self._health = dataclasses.replace(self._health, recovery=None)

    def _take_fresh(self) -> bool:
        fresh, self._fresh_device = self._fresh_device, False
        return fresh

    def _event(self, step: str, detail: str, label: str = "") -> None:
        self._events.append(RecoveryEvent(dt.datetime.now(dt.UTC), step, detail, label))

    async def _climb(self, modem: Modem | None) -> Step | None:
        """Take the ladder's next step if one is due; return it."""
        ladder = self._ladder
        if ladder is None:
            return None
        loop = asyncio.get_running_loop()
        step = ladder.next_step(loop.time())
        if step is None:
            return None
        label = ladder.label(step)
        self._health = dataclasses.replace(self._health, recovery=label)
        if step is Step.GAVE_UP:
            logger.error(
                "modem recovery %s (%s): reopening at the usual backoff until the modem works again",
                label,
                self._trouble_reason,
            )
            self._event(step, self._trouble_reason, label)
            return step
        logger.warning("modem recovery: %s (%s)", label, self._trouble_reason)
        try:
            outcome = await self._take(step, modem)
        except PortGone as exc:
            outcome = f"port gone: {exc}"
        except ModemError as exc:
            outcome = f"failed: {exc}"
        except Exception as exc:
            logger.exception("bug in modem recovery step %s", step)
            outcome = f"failed: {type(exc).__name__}"
        ladder.ended(loop.time())
        logger.warning("modem recovery: %s: %s", step, outcome)
        self._event(step, outcome, label)
        return step

    async def _take(self, step: Step, modem: Modem | None) -> str:
        """Run one step; say what happened. Raises ModemError from the modem."""
        if step in (Step.RESYNC, Step.RADIO_CYCLE):
            if modem is None:
                return "skipped: the port is not open"
            if not isinstance(modem, Recoverable):
                return f"skipped: the {modem.backend} backend cannot"
            if step is Step.RESYNC:
                await modem.resync()
                return "the modem answered"
            await modem.radio_cycle(full_reset=self._radio_full_reset)
            return "the radio was switched off and on"
        if step is Step.REOPEN:
            return "closing and opening the port" if modem is not None else "opening the port again"
        if step is Step.REENUMERATE:
            return await self._reenumerate()
        if step is Step.POWER_CYCLE:
            return await self._power_cycle()
        raise AssertionError(step)

    async def _reenumerate(self) -> str:
        assert self._device is not None
        usb = usb_device_for(self._device, self._sysfs_root)
        if usb is None:
            return f"skipped: no USB device found for {self._device} under {self._sysfs_root}"
        attribute = usb / "authorized"
        try:
            await asyncio.to_thread(_write_attribute, attribute, "0")
            # The kernel drops the device (our port vanishes); give it a moment before it is
            # authorized again and enumerated afresh (new tty, maybe under a new name).
            await self._sleep(self._reenumerate_settle)
            await asyncio.to_thread(_write_attribute, attribute, "1")
        except OSError as exc:
            # EACCES under the hardened unit without the udev rule (docs/install.md).
            return f"failed: cannot write {attribute}: {exc.strerror or exc}"
        self._fresh_device = True
        return f"{usb.name} de-authorized and authorized again"

    async def _power_cycle(self) -> str:
        argv = self._power_cycle_command
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
            )
        except OSError as exc:
            return f"failed: cannot run {argv[0]}: {exc.strerror or exc}"
        try:
            async with asyncio.timeout(self._power_cycle_timeout):
                out, _ = await proc.communicate()
        except TimeoutError:
            proc.kill()
            await proc.wait()
            return f"failed: {argv[0]} still running after {self._power_cycle_timeout:g} s (killed)"
        self._fresh_device = True
        tail = out.decode("utf-8", "replace").strip().splitlines()[-1:] if out else []
        said = f": {tail[0][:200]}" if tail else ""
        return f"{argv[0]} exited with status {proc.returncode}{said}"

    async def _pause(self, seconds: float) -> None:
        """Sleep ``seconds`` while disconnected, taking the ladder's steps as they fall due.
        Returns early (to open now) after a step that made a fresh device or asked to reopen."""
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while not self._stopping.is_set():
            now = loop.time()
            if now >= end:
                return
            due = self._ladder.due() if self._ladder is not None else None
            if due is not None and due <= now:
                step = await self._climb(None)
                if step in (Step.REOPEN, Step.REENUMERATE, Step.POWER_CYCLE):
                    return
                continue
            await self._sleep((end if due is None else min(end, due)) - now)

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
        self._health = dataclasses.replace(
            self._health, connected=False, last_error=error, since=since, retrying=retrying
        )

    def _set_connected_false(self) -> None:
        if self._health.connected:
            self._health = dataclasses.replace(self._health, connected=False, since=dt.datetime.now(dt.UTC))


def _replace_status(health: ModemHealth, status: ModemStatus) -> ModemHealth:
    return dataclasses.replace(health, status=status)
