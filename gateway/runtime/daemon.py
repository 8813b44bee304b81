"""``hbgw serve``: wires the store, the service, the watchdog and the listeners into one process.

The main thread runs one asyncio loop (watchdog, dispatcher, SMTP, modem, alive ticker, pruning);
the HTTP server (:mod:`web.server`) runs in a thread of its own. SIGTERM/SIGINT stop it cleanly;
SIGHUP re-reads deadlines (the ``hbgw check`` CLI sends it after changing checks). The parts are
entered on one ``AsyncExitStack``, so they close in the reverse order they opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from gateway.config import Config, parse_hostport
from gateway.intake.inbox import Inbox
from gateway.intake.smscommands import CommandRunner
from gateway.model import ModemReport, iso
from gateway.runtime import process
from gateway.runtime.channels import CallChannel, Channel, EmailChannel, PushChannel, SmsChannel
from gateway.runtime.dispatch import Dispatcher
from gateway.runtime.modemwatch import ModemWatch
from gateway.runtime.watchdog import Watchdog
from gateway.service import Service
from gateway.store import Store
from modem.driver import DeliveryReport, ModemKeeper, create_modem
from web.app import Site
from web.server import HttpServer

if TYPE_CHECKING:  # imported where used: a gateway without a simulator or a canary never loads them
    from gateway.runtime.demo import DemoPhone

logger = logging.getLogger(__name__)

ALIVE_EVERY = 10.0  # seconds between "still running" marks (bounds the offline window's error)
PRUNE_EVERY = 6 * 3600.0  # seconds between history clean-ups (the first comes a minute after start)
DISPATCH_GRACE = 7.0  # seconds to finish the SMS in flight on SIGTERM (systemd allows 10 in all)


@dataclasses.dataclass
class ModemParts:
    keeper: ModemKeeper
    phone: DemoPhone | None  # in demo mode: the owner's simulated phone (SMS both ways, calls)
    transport: Any  # the simulator's pty, in demo mode
    backend: str
    device: str

    def describe(self) -> ModemReport:
        h = self.keeper.health
        st = h.status
        known = {}
        if st is not None:
            keys = (
                "manufacturer",
                "model",
                "imei",
                "sim",
                "registration",
                "operator",
                "signal_dbm",
                "smsc",
                "storage_used",
                "storage_total",
                "radio",
                "access_technology",
                "registration_note",
            )
            known = {k: getattr(st, k) for k in keys}
        return ModemReport(
            self.backend,
            self.device,
            h.connected,
            h.last_error,
            h.since.timestamp(),
            h.retrying,
            recovery=h.recovery,
            **known,
        )

    async def close(self) -> None:
        await self.keeper.stop()
        if self.transport is not None:
            await asyncio.to_thread(self.transport.stop)


async def _delivery_report(service: Service, report: DeliveryReport) -> None:
    """A delivery report from the modem, marked on the SMS it reports on."""
    at = report.discharged_at.timestamp() if report.discharged_at else None
    await service.smspath.record_delivery_report(report.recipient, report.reference, report.state, report.reason, at)


class Daemon:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.stopping = asyncio.Event()
        self.http: HttpServer | None = None
        self.modem: ModemParts | None = None

    def _start_modem(self, service: Service, tasks: list[asyncio.Task[Any]]) -> ModemParts | None:
        """Open the configured modem backend (in demo mode a simulated modem on a pty)."""
        m = self.config.modem
        if m.backend == "none":
            return None
        phone: DemoPhone | None = None
        transport = None
        if m.backend == "simulator":
            from gateway.runtime.demo import DemoPhone
            from modem.simulator import Network, PtyModem, SimOptions, Simulator

            network = Network()
            # The demo phone rings until the visitor answers or rejects it on the modem page.
            options = SimOptions(operator="HBGW Demo", call_outcome="no-answer", no_answer_seconds=120.0)
            simulator = Simulator(network, options)
            transport = PtyModem(simulator).start()
            phone = DemoPhone(network, simulator)
            device, backend = transport.device, "at"
        else:
            device, backend = m.device, m.backend
        factory = functools.partial(
            create_modem, backend, device, baudrate=m.baudrate, pin=m.pin, smsc=m.smsc, send_timeout=m.send_timeout
        )
        keeper = ModemKeeper(
            factory,
            Inbox(service, run_command=CommandRunner(service)),
            recover_after=m.recover_after,
            # The simulator's pty has no USB device to re-enumerate.
            device=None if m.backend == "simulator" else device,
            sysfs_root=m.sysfs_root,
            power_cycle_command=m.power_cycle_command,
            report_handler=functools.partial(_delivery_report, service),
        )
        self.modem = ModemParts(keeper, phone, transport, backend, device)
        service.modem_status_source = self.modem.describe
        watch = ModemWatch(service, keeper, alert_after=self.config.alerts.modem_alert_after, clock=service.clock)
        tasks.append(asyncio.create_task(keeper.run(), name="modem"))
        tasks.append(asyncio.create_task(watch.run(), name="modem-watch"))
        if m.canary_at is not None or m.balance_ussd is not None:
            from gateway.runtime.smspath import SmsPathWatch

            smspath = SmsPathWatch(service, keeper, self.config, clock=service.clock)
            tasks.append(asyncio.create_task(smspath.run(), name="sms-path"))
        return self.modem

    async def run(self) -> int:
        """Serve until SIGTERM/SIGINT. Returns the process exit code. Raises AlreadyRunning
        when another daemon serves the same data dir."""
        lock = process.DataDirLock(self.config.data_dir)
        lock.acquire()
        try:
            return await self._serve()
        finally:
            lock.release()

    async def _serve(self) -> int:
        # Each part is pushed on the stack as it opens, so shutdown runs in reverse: HTTP stops
        # accepting, the site closes, SMTP closes, the dispatcher finishes the SMS in flight, the
        # modem closes, the remaining tasks are cancelled, the last-alive mark is written, the
        # store closes, the run file goes. A failing step does not skip the ones after it.
        cfg = self.config
        async with contextlib.AsyncExitStack() as stack:
            stack.callback(process.remove_run_file, cfg.data_dir)
            store = Store(cfg.db_path).open()
            stack.callback(store.close)
            service = Service(store, cfg)
            service.fresh_start(service.last_alive())
            service.note_alive_now()
            stack.callback(_quietly, service.note_alive_now, "cannot record the last-alive time")
            if cfg.demo:
                from gateway.runtime import demo

                demo.seed(service)

            watchdog = Watchdog(service)
            service.on_deadline(watchdog.nudge)
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stopping.set)
            loop.add_signal_handler(signal.SIGHUP, _reload, service, watchdog)

            tasks: list[asyncio.Task[Any]] = []
            stack.push_async_callback(_cancel, tasks)
            modem_parts = self._start_modem(service, tasks)
            if modem_parts is not None:
                stack.push_async_callback(modem_parts.close)

            channels: dict[str, Channel] = {}
            if cfg.email.host:
                channels["email"] = EmailChannel(cfg.email)
            if modem_parts is not None:
                channels["sms"] = SmsChannel(modem_parts.keeper)
                channels["call"] = CallChannel(
                    modem_parts.keeper, ring_for=cfg.alerts.ring_for, voice=service.note_voice
                )
            push_targets = cfg.alerts.push_targets  # apprise is loaded at the first push, not here
            if push_targets:
                channels["push"] = PushChannel(push_targets)
                logger.info("push notifications to %d target(s)", len(push_targets))
            dispatcher = Dispatcher(service, channels, cfg)
            service.on_outbox(dispatcher.nudge)
            dispatch_task = asyncio.create_task(dispatcher.run(), name="dispatch")
            stack.push_async_callback(_finish_dispatch, dispatcher, dispatch_task)

            smtp_address: tuple[str, int] | None = None
            if cfg.smtp.listen:
                from gateway.intake.mail import start_smtp

                smtp = await start_smtp(service, cfg)
                # serve() closes the listener too, should the task be cancelled first
                tasks.append(asyncio.create_task(smtp.serve(), name="smtp"))
                stack.push_async_callback(_quietly_async, smtp.close, "cannot close the SMTP listener")
                smtp_address = smtp.address

            host, port = parse_hostport(cfg.http.listen)
            demo_phone = modem_parts.phone if modem_parts is not None and cfg.demo else None
            site = Site(service, cfg, demo_phone=demo_phone)
            stack.callback(site.close)
            self.http = HttpServer(
                site.app, host, port, idle_timeout=cfg.http.idle_timeout, trusted_proxies=cfg.http.trusted_proxies
            ).start()
            stack.callback(self.http.stop)  # first to go: stop accepting
            bound = self.http.address
            if not cfg.http.base_url:
                service.base_url = service.base_url.rsplit(":", 1)[0] + f":{bound[1]}"
            logger.info("HTTP heartbeats on http://%s:%d/ping/", *bound)

            tasks.append(asyncio.create_task(watchdog.run(), name="watchdog"))
            tasks.append(asyncio.create_task(self._alive(service), name="alive"))
            tasks.append(asyncio.create_task(self._prune(service), name="prune"))
            from gateway.runtime import peer  # peer heartbeat, daily summary SMS (when configured)

            tasks.extend(peer.start_tasks(service, cfg))
            if cfg.demo:
                tasks.append(asyncio.create_task(demo.pinger(service), name="demo-pinger"))

            run_info: dict[str, Any] = {
                "pid": os.getpid(),
                "http": f"{bound[0]}:{bound[1]}",
                "base_url": service.base_url,
                "started": iso(service.clock()),
            }
            if smtp_address is not None:
                run_info["smtp"] = "{}:{}".format(*smtp_address)
            process.write_run_file(cfg.data_dir, run_info)
            process.sd_notify("READY=1\nSTATUS=serving")
            logger.info("hbgw ready (data in %s)", cfg.data_dir)
            await self.stopping.wait()
            logger.info("stopping")
            process.sd_notify("STOPPING=1")
        return 0

    async def _alive(self, service: Service) -> None:
        """Record that the gateway is running, so a restart knows how long it was away; also
        keeps the systemd watchdog fed from the event loop itself (a stalled loop misses it)."""
        every = process.watchdog_every(ALIVE_EVERY)
        while True:
            await asyncio.sleep(every)
            process.sd_notify("WATCHDOG=1")
            try:
                await service.note_alive()
            except Exception as e:
                logger.error("cannot record last-alive time: %s", e)

    async def _prune(self, service: Service, first: float = 60.0) -> None:
        """Forget old events, finished messages and received SMS, so the file stays small on a
        box that runs for years (Store.prune says how old)."""
        await asyncio.sleep(first)
        while True:
            try:
                removed = await service.prune()
                if any(removed.values()):
                    logger.info("pruned old history: %s", ", ".join(f"{n} {t} rows" for t, n in removed.items() if n))
            except Exception as e:
                logger.error("cannot prune old history: %s", e)
            await asyncio.sleep(PRUNE_EVERY)


async def _finish_dispatch(dispatcher: Dispatcher, task: asyncio.Task[None]) -> None:
    """Let the dispatcher finish the SMS in flight, for DISPATCH_GRACE seconds at most."""
    dispatcher.request_stop()
    try:
        await asyncio.wait_for(asyncio.shield(task), timeout=DISPATCH_GRACE)
    except Exception:  # the grace ran out, or the dispatcher failed
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _cancel(tasks: list[asyncio.Task[Any]]) -> None:
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _quietly(fn: Callable[[], object], what: str) -> None:
    try:
        fn()
    except Exception as e:
        logger.error("%s: %s", what, e)


async def _quietly_async(fn: Callable[[], Awaitable[object]], what: str) -> None:
    try:
        await fn()
    except Exception as e:
        logger.error("%s: %s", what, e)


def _reload(service: Service, watchdog: Watchdog) -> None:
    """SIGHUP: the command line changed checks or maintenance windows: put the windows in force
    again and re-read deadlines."""
    try:
        service.load_owner_settings()
    except Exception:
        logger.exception("cannot reload the settings and maintenance windows")
    watchdog.wake()
