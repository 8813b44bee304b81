"""``hbgw serve``: wires the store, the service, the watchdog and the listeners into one process.

The main thread runs one asyncio loop (watchdog, SMTP, modem, alive ticker, pruning); the HTTP
server (uvicorn, its own loop) runs in a thread this module owns and stops. SIGTERM/SIGINT stop
it cleanly; SIGHUP re-reads deadlines (the ``hbgw check`` CLI sends it after changing checks).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import functools
import json
import logging
import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.config import Config, parse_hostport
from gateway.intake.inbox import Inbox
from gateway.intake.smscommands import CommandRunner
from gateway.rules import policy
from gateway.runtime.channels import Channel, EmailChannel, SmsChannel
from gateway.runtime.dispatch import Dispatcher
from gateway.runtime.watchdog import Watchdog
from gateway.service import MODEM_LOG_EVERY, Service, iso
from gateway.store import Store
from modem.driver import ModemKeeper, create_modem
from web.app import Site

logger = logging.getLogger(__name__)

ALIVE_EVERY = 10.0  # seconds between "still running" marks (bounds the offline window's error)
PRUNE_EVERY = 6 * 3600.0  # seconds between history clean-ups (the first comes a minute after start)
RUN_FILE = "run.json"


class _HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline for each request head. uvicorn arms its
    keep-alive timer only after a response, so a client that connects and sends nothing, or
    trickles a request line byte by byte, would hold a connection slot forever (slowloris).
    Here a connection waiting for a request head gets ``timeout_keep_alive`` seconds in all."""

    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_head()

    def on_headers_complete(self) -> None:
        self._stop_head_timer()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def _await_head(self) -> None:
        if self._head_timer is None and not self.transport.is_closing():
            self._head_timer = self.loop.call_later(self.timeout_keep_alive, self._head_timeout)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        self._head_timer = None
        if (self.cycle is None or self.cycle.response_complete) and not self.transport.is_closing():
            self.transport.close()


class _Server(uvicorn.Server):
    """uvicorn's server, ticking once a second instead of ten times: the tick only refreshes the
    Date header (1 s resolution) and looks at ``should_exit``, and an idle gateway on a Pi should
    sleep. ``stop()`` wakes it at once, so shutting down is no slower."""

    _loop: asyncio.AbstractEventLoop | None = None
    _wake: asyncio.Event | None = None

    async def main_loop(self) -> None:
        self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
        while not await self.on_tick(0):  # counter 0: refresh the Date header every tick
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._wake.wait()

    def exit_soon(self) -> None:
        """Ask the server to stop, from any thread."""
        self.should_exit = True
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already closed
                loop.call_soon_threadsafe(wake.set)


class HttpServer:
    """uvicorn (httptools parser) on its own event loop, in a thread we own. The socket is bound
    here (port 0 allowed), so a busy port fails in the constructor with OSError; ``start()``
    returns once it serves; ``stop()`` returns within a few seconds."""

    def __init__(
        self, app: Any, host: str, port: int, *, idle_timeout: float = 30.0, max_connections: int = 1000
    ) -> None:
        family, kind, proto, _, addr = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        self._sock = socket.socket(family, kind, proto)
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and host in ("::", ""):
                self._sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            self._sock.bind(addr)
            self._sock.listen(2048)
        except OSError:
            self._sock.close()
            raise
        config = uvicorn.Config(
            app,
            http=_HttpProtocol,
            loop="asyncio",
            lifespan="off",
            interface="asgi3",
            ws="none",  # plain HTTP only, whatever else is installed beside us
            log_config=None,
            access_log=False,
            server_header=False,
            proxy_headers=False,  # X-Forwarded-For is judged by [http] trusted_proxies (web.app)
            limit_concurrency=max_connections,
            timeout_keep_alive=idle_timeout,  # type: ignore[arg-type]  # call_later takes a float
            timeout_graceful_shutdown=2,
        )
        self._server = _Server(config)
        self._thread = threading.Thread(target=self._serve, name="hbgw-http", daemon=True)
        self._error: BaseException | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._sock.getsockname()[:2]
        return str(host), int(port)

    def _serve(self) -> None:
        try:
            asyncio.run(self._server.serve(sockets=[self._sock]))
        except BaseException as e:  # uvicorn may sys.exit() on a start-up failure
            self._error = e
            logger.exception("HTTP server stopped with an error")

    def start(self) -> HttpServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise OSError(f"the HTTP server did not start: {self._error or 'timeout'}")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        """Stop accepting, let the requests in flight answer (2 s at most), close the rest."""
        self._server.exit_soon()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._sock.close()


@dataclasses.dataclass
class ModemParts:
    keeper: ModemKeeper
    network: Any  # modem.simulator.Network in demo mode: the simulated phone network
    transport: Any  # the simulator's pty, in demo mode
    backend: str
    device: str

    def describe(self) -> dict[str, Any]:
        h = self.keeper.health
        st = h.status
        out: dict[str, Any] = {
            "backend": self.backend,
            "port": self.device,
            "connected": h.connected,
            "last_error": h.last_error,
            "since": h.since.isoformat(),
            "retrying": h.retrying,
        }
        for key in ("manufacturer", "model", "imei", "sim", "registration", "operator", "signal_dbm", "smsc"):
            out[key] = getattr(st, key) if st is not None else None
        return out

    async def close(self) -> None:
        await self.keeper.stop()
        if self.transport is not None:
            await asyncio.to_thread(self.transport.stop)


class AlreadyRunning(OSError):
    """Another ``hbgw serve`` holds the data dir."""


class DataDirLock:
    """One daemon per data dir: an exclusive ``flock`` on ``hbgw.lock``, held for the life of
    the process. The kernel drops it when the process ends however it ends (``kill -9``
    included), so a stale lock file is harmless. Two daemons on one database would both flip
    checks and both send every alert, and fight over the modem."""

    NAME = "hbgw.lock"

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / self.NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = _read_pid(fd)
                raise AlreadyRunning(
                    f"another hbgw serve is running on {self.path.parent}" + (f" (pid {pid})" if pid else "")
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the lock
            self._fd = None

    @classmethod
    def holder(cls, data_dir: Path) -> int | None:
        """The PID of the daemon holding ``data_dir`` (0 if it cannot be read), or None."""
        try:
            fd = os.open(data_dir / cls.NAME, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_pid(fd) or 0
        finally:
            os.close(fd)
        return None


def _read_pid(fd: int) -> int | None:
    text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else None


def sd_notify(message: str) -> None:
    """Tell systemd (Type=notify) ``message``; a no-op outside systemd."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.connect(addr)
        s.sendall(message.encode())


class Daemon:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.stopping = asyncio.Event()
        self.http: HttpServer | None = None
        self.modem: ModemParts | None = None
        self.smtp: Any = None

    def _start_modem(self, service: Service, tasks: list[asyncio.Task[Any]]) -> ModemParts | None:
        """Open the configured modem backend (in demo mode a simulated modem on a pty)."""
        m = self.config.modem
        if m.backend == "none":
            return None
        network = transport = None
        if m.backend == "simulator":
            from modem.simulator import Network, PtyModem, SimOptions, Simulator

            network = Network()
            transport = PtyModem(Simulator(network, SimOptions(operator="HBGW Demo"))).start()
            device, backend = transport.device, "at"
        else:
            device, backend = m.device, m.backend
        factory = functools.partial(create_modem, backend, device, baudrate=m.baudrate, pin=m.pin, smsc=m.smsc)
        keeper = ModemKeeper(factory, Inbox(service, run_command=CommandRunner(service)))
        self.modem = ModemParts(keeper, network, transport, backend, device)
        service.modem_status_source = self.modem.describe
        tasks.append(asyncio.create_task(keeper.run(), name="modem"))
        tasks.append(asyncio.create_task(self._modem_log(service, keeper), name="modem-log"))
        return self.modem

    async def _modem_log(self, service: Service, keeper: ModemKeeper) -> None:
        """Record modem health every minute and when it changes (the web page's 24 h signal graph,
        ``hbgw status``), and email the owner when the modem has been unusable for
        ``[alerts] modem_alert_after``."""
        after = self.config.alerts.modem_alert_after
        interval = max(0.5, min(60.0, after / 4))
        trouble_since: float | None = None
        alerted = False
        last_log, logged = 0.0, None
        while True:
            h = keeper.health
            st = h.status
            now = time.time()
            trouble = policy.modem_trouble(h.connected, st.sim if st else None, st.registration if st else None)
            if trouble is None:
                if alerted:
                    await asyncio.to_thread(
                        service.notify_owner_by_email, "hbgw: the modem works again; SMS alerts resumed."
                    )
                trouble_since, alerted = None, False
            elif trouble_since is None:
                trouble_since = now
            if policy.modem_alert_due(trouble_since, alerted, now, after):
                alerted = True
                detail = f"{trouble}; last error: {h.last_error}" if h.last_error else trouble
                logger.error("modem unusable for %.0f s: %s", now - (trouble_since or now), trouble)
                await asyncio.to_thread(
                    service.notify_owner_by_email,
                    f"hbgw: cannot send SMS for {int(now - (trouble_since or now))} s: {detail}."
                    " Alerts go by email meanwhile; check the modem page.",
                )
            state = (h.connected, st.registration if st else None, h.last_error)
            if now - last_log >= MODEM_LOG_EVERY or state != logged:  # `hbgw status` reads it
                last_log, logged = now, state
                try:
                    await asyncio.to_thread(
                        service.store.log_modem,
                        now,
                        h.connected,
                        st.signal_dbm if st else None,
                        st.registration if st else None,
                        st.operator if st else None,
                        h.last_error,
                    )
                except Exception as e:
                    logger.error("cannot record modem health: %s", e)
            await keeper.health_changed(interval)

    async def run(self) -> int:
        """Serve until SIGTERM/SIGINT. Returns the process exit code. Raises AlreadyRunning
        when another daemon serves the same data dir."""
        lock = DataDirLock(self.config.data_dir)
        lock.acquire()
        try:
            return await self._serve()
        finally:
            lock.release()

    async def _serve(self) -> int:
        cfg = self.config
        store = Store(cfg.db_path).open()
        tasks: list[asyncio.Task[Any]] = []
        dispatcher: Dispatcher | None = None
        dispatch_task: asyncio.Task[None] | None = None
        site: Site | None = None
        try:
            service = Service(store, cfg)
            last_alive = store.get_setting("last_alive")
            service.fresh_start(float(last_alive) if last_alive else None)
            store.set_setting("last_alive", repr(time.time()))
            if cfg.demo:
                from gateway.runtime import demo

                demo.seed(service)

            watchdog = Watchdog(service)
            service.on_deadline(watchdog.nudge)
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stopping.set)
            loop.add_signal_handler(signal.SIGHUP, watchdog.wake)

            modem_parts = self._start_modem(service, tasks)
            demo_phone = modem_parts.network if modem_parts is not None and cfg.demo else None

            host, port = parse_hostport(cfg.http.listen)
            site = Site(service, cfg, demo_phone=demo_phone)
            self.http = HttpServer(site.app, host, port, idle_timeout=cfg.http.idle_timeout).start()
            bound = self.http.address
            if not cfg.http.base_url:
                service.base_url = service.base_url.rsplit(":", 1)[0] + f":{bound[1]}"
            logger.info("HTTP heartbeats on http://%s:%d/ping/", *bound)
            channels: dict[str, Channel] = {}
            if cfg.email.host:
                channels["email"] = EmailChannel(cfg.email)
            if modem_parts is not None:
                channels["sms"] = SmsChannel(modem_parts.keeper)
            dispatcher = Dispatcher(service, channels, cfg)
            service.on_outbox(dispatcher.nudge)
            dispatch_task = asyncio.create_task(dispatcher.run(), name="dispatch")

            tasks.append(asyncio.create_task(watchdog.run(), name="watchdog"))
            tasks.append(asyncio.create_task(self._alive(store), name="alive"))
            tasks.append(asyncio.create_task(self._prune(store), name="prune"))
            from gateway.runtime import peer  # peer heartbeat, daily summary SMS (when configured)

            tasks.extend(peer.start_tasks(service, cfg, dispatcher.nudge))
            if cfg.demo:
                tasks.append(asyncio.create_task(demo.pinger(service), name="demo-pinger"))
            run_info: dict[str, Any] = {
                "pid": os.getpid(),
                "http": f"{bound[0]}:{bound[1]}",
                "base_url": service.base_url,
                "started": iso(time.time()),
            }
            if cfg.smtp.listen:
                from gateway.intake.mail import start_smtp

                smtp = self.smtp = await start_smtp(service, cfg)
                # serve() also closes the listener when the finally block cancels the tasks
                tasks.append(asyncio.create_task(smtp.serve(), name="smtp"))
                run_info["smtp"] = "{}:{}".format(*smtp.address)
            self._write_run_file(run_info)
            sd_notify("READY=1\nSTATUS=serving")
            logger.info("hbgw ready (data in %s)", cfg.data_dir)
            await self.stopping.wait()
            logger.info("stopping")
            sd_notify("STOPPING=1")
            return 0
        finally:
            if self.http is not None:
                self.http.stop()
            if site is not None:
                site.close()
            if self.smtp is not None:  # stop accepting before finishing the SMS in flight
                with contextlib.suppress(Exception):
                    await self.smtp.close()
            if dispatcher is not None and dispatch_task is not None:
                # finish the SMS in flight (bounded: systemd allows 10 s in all)
                dispatcher.request_stop()
                try:
                    await asyncio.wait_for(asyncio.shield(dispatch_task), timeout=7)
                except (TimeoutError, Exception):
                    dispatch_task.cancel()
                    await asyncio.gather(dispatch_task, return_exceptions=True)
            if self.modem is not None:
                await self.modem.close()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            with contextlib.suppress(Exception):
                store.set_setting("last_alive", repr(time.time()))
            store.close()
            with contextlib.suppress(OSError):
                (cfg.data_dir / RUN_FILE).unlink()

    async def _alive(self, store: Store) -> None:
        """Record that the gateway is running, so a restart knows how long it was away; also
        keeps the systemd watchdog fed from the event loop itself (a stalled loop misses it)."""
        every = ALIVE_EVERY
        usec = os.environ.get("WATCHDOG_USEC", "")
        if usec.isdigit() and int(usec) > 0 and os.environ.get("WATCHDOG_PID") in (None, str(os.getpid())):
            every = min(every, int(usec) / 2e6)  # WatchdogSec=: feed it twice per period
        while True:
            await asyncio.sleep(every)
            sd_notify("WATCHDOG=1")
            try:
                await asyncio.to_thread(store.set_setting, "last_alive", repr(time.time()))
            except Exception as e:
                logger.error("cannot record last-alive time: %s", e)

    async def _prune(self, store: Store, first: float = 60.0) -> None:
        """Forget old events, finished messages and received SMS, so the file stays small on a
        box that runs for years (Store.prune says how old)."""
        await asyncio.sleep(first)
        while True:
            try:
                removed = await asyncio.to_thread(store.prune, time.time())
                if any(removed.values()):
                    logger.info("pruned old history: %s", ", ".join(f"{n} {t} rows" for t, n in removed.items() if n))
            except Exception as e:
                logger.error("cannot prune old history: %s", e)
            await asyncio.sleep(PRUNE_EVERY)

    def _write_run_file(self, info: dict[str, Any]) -> None:
        path: Path = self.config.data_dir / RUN_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(info) + "\n")
        tmp.replace(path)


def read_run_file(data_dir: Path) -> dict[str, Any] | None:
    """What a running daemon wrote about itself (pid, bound addresses), or None."""
    try:
        info: dict[str, Any] = json.loads((data_dir / RUN_FILE).read_text())
    except (OSError, ValueError):
        return None
    return info
