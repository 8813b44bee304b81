"""``GammuModem``: the :class:`~modem.interface.Modem` interface over python-gammu.

python-gammu can segfault on odd modem replies, so gammu never runs in the
gateway's process: every ``GammuModem`` owns one worker process
(``python -m modem.gammu_worker``, JSON lines over its stdin/stdout) and awaits
its replies on asyncio pipes, so the event loop never blocks on gammu. A dead
worker is :class:`~modem.errors.PortGone`: recoverable, the next :meth:`open`
starts a fresh one.

gammu offers no new-SMS callback that survives a process boundary, so inbound
messages are polled (every ``poll_interval`` seconds) as well as read once in
:meth:`open`; each is deleted from the modem only after the handler returned.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from modem.errors import ModemError, ModemTimeout, PortGone, SimError
from modem.interface import InboundHandler, InboundSms, Modem, ModemStatus

logger = logging.getLogger(__name__)

_PACKAGE_ROOT = str(Path(__file__).resolve().parents[1])

# gammu error names (the GSMError subclasses' names) by what a retry can do.
_PORT_GONE = frozenset(
    {
        "ERR_DEVICENOTEXIST",
        "ERR_DEVICEOPENERROR",
        "ERR_DEVICEREADERROR",
        "ERR_DEVICEWRITEERROR",
        "ERR_DEVICEBUSY",
        "ERR_DEVICELOCKED",
        "ERR_DEVICENOTWORK",
        "ERR_DEVICEDTRRTSERROR",
        "ERR_DEVICECHANGESPEEDERROR",
        "ERR_DEVICEPARITYERROR",
        "ERR_NOTCONNECTED",
    }
)
_SIM = frozenset({"ERR_SECURITYERROR", "ERR_NOSIM"})
_PERMANENT = frozenset(
    {
        "ERR_DEVICENOPERMISSION",  # fix the udev rules / group membership first
        "ERR_DEVICENODRIVER",
        "ERR_UNKNOWNMODELSTRING",
        "ERR_UNKNOWNCONNECTIONTYPESTRING",
        "ERR_UNCONFIGURED",
        "ERR_NOTSUPPORTED",
        "ERR_NOTIMPLEMENTED",
        "ERR_INVALIDDATA",
        "ERR_INVALIDLOCATION",
        "ERR_EMPTYSMSC",
        "ERR_PERMISSION",
        "ERR_BADFEATURE",
        "ERR_DISABLED",
    }
)


def map_gammu_error(name: str, text: str = "", where: str = "") -> ModemError:
    """The modem-layer exception for a gammu error (by its ``ERR_*`` name)."""
    message = f"gammu {name}: {text}" + (f" (in {where})" if where else "")
    if name == "ERR_TIMEOUT":
        return ModemTimeout(message)
    if name in _PORT_GONE:
        return PortGone(message)
    if name in _SIM:
        return SimError(message)
    return ModemError(message, permanent=name in _PERMANENT)


class GammuModem(Modem):
    """A modem driven by python-gammu in a worker process.

    ``GammuModem("/dev/ttyUSB0")`` uses gammu's AT driver;
    ``GammuModem(dirpath, connection="none", model="dummy")`` its dummy driver.

    ``pin`` is entered when the SIM asks for one (a refusal is ``SimError``);
    ``smsc`` overrides the SIM's service centre. Inbound messages are read every
    ``poll_interval`` seconds (0: only in :meth:`open` and :meth:`poll_inbound`).
    ``request_timeout`` bounds one worker request: gammu gives up on a silent
    modem after ~20 s per AT command by itself, so this only catches a worker
    that stopped answering (it is killed: ``ModemTimeout``). A multipart message
    missing parts is handed over incomplete after ``multipart_timeout`` seconds.
    """

    backend = "gammu"

    def __init__(
        self,
        device: str,
        *,
        connection: str = "at",
        model: str = "",
        pin: str | None = None,
        smsc: str | None = None,
        poll_interval: float = 5.0,
        request_timeout: float = 90.0,
        multipart_timeout: float = 600.0,
    ) -> None:
        self.device = device
        self.connection = connection
        self.model = model
        self._pin = pin
        self._smsc = smsc
        self.poll_interval = poll_interval
        self.request_timeout = request_timeout
        self.multipart_timeout = multipart_timeout
        self._handler: InboundHandler | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._lock: asyncio.Lock | None = None
        self._seq = 0
        self._poll_task: asyncio.Task[None] | None = None
        self._partial_seen: dict[str, float] = {}

    @property
    def worker_pid(self) -> int | None:
        """The worker process's id while it runs (for diagnostics and tests)."""
        proc = self._proc
        return proc.pid if proc is not None and proc.returncode is None else None

    def set_inbound_handler(self, handler: InboundHandler) -> None:
        self._handler = handler

    # -- lifecycle

    async def open(self) -> None:
        await self.close()
        self._lock = asyncio.Lock()
        await self._start_worker()
        try:
            await self._call(
                "init",
                device=self.device,
                connection=self.connection,
                model=self.model,
                pin=self._pin,
            )
            await self.poll_inbound()
        except BaseException:
            await self.close()
            raise
        if self.poll_interval > 0:
            self._poll_task = asyncio.create_task(self._poll_loop(), name="gammu-inbound-poll")
        logger.info("gammu modem open on %s (%s)", self.device, self.connection)

    async def close(self) -> None:
        task, self._poll_task = self._poll_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        proc = self._proc
        if proc is None:
            return
        if proc.returncode is None:
            try:
                await self._call("close", timeout=10.0)
            except ModemError:
                pass
        await self._reap(proc)

    async def _start_worker(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
        try:
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "modem.gammu_worker",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                env=env,
                limit=1 << 24,
            )
        except OSError as exc:
            raise PortGone(f"cannot start the gammu worker: {exc}") from exc
        logger.debug("gammu worker started, pid %d", self._proc.pid)

    async def _reap(self, proc: asyncio.subprocess.Process) -> None:
        """Make sure ``proc`` is gone and its pipes closed."""
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            async with asyncio.timeout(5.0):
                await proc.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        if self._proc is proc:
            self._proc = None

    # -- requests

    async def _call(self, op: str, *, timeout: float | None = None, **args: Any) -> Any:
        """One request/reply with the worker; raises ModemError subclasses only."""
        if self._lock is None:
            raise PortGone("the gammu modem is not open")
        async with self._lock:
            proc = self._proc
            if proc is None or proc.returncode is not None or proc.stdin is None or proc.stdout is None:
                raise PortGone("the gammu worker is not running")
            self._seq += 1
            seq = self._seq
            try:
                proc.stdin.write(json.dumps({"id": seq, "op": op, "args": args}).encode() + b"\n")
                await proc.stdin.drain()
            except (BrokenPipeError, ConnectionResetError):
                raise await self._worker_died(proc) from None
            deadline = time.monotonic() + (timeout or self.request_timeout)
            while True:
                try:
                    # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a
                    # cancellation that races with the read, and close() would hang.
                    async with asyncio.timeout(deadline - time.monotonic()):
                        line = await proc.stdout.readline()
                except TimeoutError:
                    logger.warning("gammu worker silent for %s: killing it", op)
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                    await self._reap(proc)
                    raise ModemTimeout(f"gammu worker did not answer {op}") from None
                except ValueError:  # a line longer than the stream limit: protocol broken
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                    raise await self._worker_died(proc) from None
                if not line:
                    raise await self._worker_died(proc)
                try:
                    reply = json.loads(line)
                except ValueError:
                    logger.warning("gammu worker wrote a non-JSON line; ignored")
                    continue
                if isinstance(reply, dict) and reply.get("id") == seq:
                    break  # older ids: answers to requests whose caller was cancelled
        if reply.get("ok"):
            return reply.get("result")
        error = reply.get("error") or {}
        kind = error.get("kind")
        if kind == "sim":
            raise SimError(str(error.get("text")))
        if kind == "gammu":
            raise map_gammu_error(str(error.get("name")), str(error.get("text", "")), str(error.get("where", "")))
        logger.error("gammu worker bug in %s: %s\n%s", op, error.get("text"), error.get("where"))
        raise ModemError(f"gammu worker failed in {op}: {error.get('name')}: {error.get('text')}")

    async def _worker_died(self, proc: asyncio.subprocess.Process) -> PortGone:
        await self._reap(proc)
        code = proc.returncode
        if code is not None and code < 0:
            try:
                how = f"killed by signal {-code} ({signal.Signals(-code).name})"
            except ValueError:
                how = f"killed by signal {-code}"
        else:
            how = f"exit status {code}"
        logger.warning("gammu worker died: %s", how)
        return PortGone(f"the gammu worker died: {how}")

    # -- the Modem interface

    async def status(self) -> ModemStatus:
        info = await self._call("status")
        return ModemStatus(
            backend=self.backend,
            port=self.device,
            manufacturer=info.get("manufacturer"),
            model=info.get("model"),
            revision=info.get("revision"),
            imei=info.get("imei"),
            sim=info.get("sim"),
            registration=info.get("registration"),
            operator=info.get("operator"),
            signal_dbm=info.get("signal_dbm"),
            smsc=info.get("smsc"),
            storage_used=info.get("storage_used"),
            storage_total=info.get("storage_total"),
        )

    async def send_sms(self, number: str, text: str, *, report: bool = False) -> list[int]:
        """Send through gammu. ``report`` is ignored: the worker does not ask for status
        reports (none would be read back), so callers must not wait for any."""
        refs = await self._call("send", number=number, text=text, smsc=self._smsc)
        return [int(r) for r in refs]

    async def poll_inbound(self) -> int:
        """Read stored inbound messages now and hand them over; returns how many were handled.

        Messages stay on the modem when no handler is set or the handler raised.
        An incomplete multipart message waits ``multipart_timeout`` seconds for its
        other parts, then goes out with ``complete=False``.
        """
        if self._handler is None:
            return 0
        groups = await self._call("inbound")
        handled = 0
        now = time.monotonic()
        seen_keys = {g["key"] for g in groups}
        for key in [k for k in self._partial_seen if k not in seen_keys]:
            del self._partial_seen[key]
        for group in groups:
            if not group["complete"]:
                first_seen = self._partial_seen.setdefault(group["key"], now)
                if now - first_seen < self.multipart_timeout:
                    continue
            sms = InboundSms(
                sender=group["sender"],
                text=group["text"],
                sent_at=dt.datetime.fromisoformat(group["sent_at"]) if group["sent_at"] else None,
                received_at=dt.datetime.now(dt.UTC),
                parts=group["parts"],
                complete=group["complete"],
                storage=tuple(group["locations"]),
            )
            try:
                await self._handler(sms)
            except Exception:
                logger.exception("inbound SMS handler failed; the message stays on the modem")
                continue
            await self._call("delete", locations=group["locations"])
            self._partial_seen.pop(group["key"], None)
            handled += 1
        return handled

    async def _poll_loop(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                await self.poll_inbound()
            except PortGone:
                logger.warning("gammu inbound poll stopped: the worker is gone")
                return
            except ModemError as exc:
                logger.warning("gammu inbound poll failed: %s", exc)
