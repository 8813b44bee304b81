"""A gateway in the test's own process, on clocks the test moves by hand.

The real Service over a real SQLite store, the real Dispatcher running on an event loop of its
own (a thread, as in the daemon), the real Inbox and CommandRunner for SMS commands; only the
clocks and the two channels belong to the test. The channels are real implementations of
:class:`Channel` that keep what they were given instead of handing it to a modem or a relay.

Time moves only when the test says so, so "nothing more was sent" is an exact statement about
a moment: move the clock, let the watchdog's step run (:meth:`Gateway.tick`), let the
dispatcher send whatever is due then (:meth:`Gateway.dispatch`), and compare.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from pathlib import Path
from typing import Any

from gateway.config import Config, parse
from gateway.intake.inbox import Inbox
from gateway.intake.smscommands import CommandRunner
from gateway.model import Event, Flip, PingKind, PingMeta
from gateway.runtime.channels import Channel, ChannelError
from gateway.runtime.dispatch import Dispatcher
from gateway.service import PingOutcome, Service
from gateway.store import Store
from modem.driver import InboundSms
from tests.support.daemon import wait_for

T0 = 1_800_000_000.0  # 2027-01-15 08:00 UTC
OWNER = "+15551230001"
EMAIL = "owner@example.test"


def config(
    data_dir: Path,
    *,
    alerts: dict[str, Any] | None = None,
    security: dict[str, Any] | None = None,
    contacts: dict[str, Any] | None = None,
    modem: dict[str, Any] | None = None,
    relay: dict[str, Any] | None = None,
) -> Config:
    """A config as the file would give it: ``alerts``, ``security``, ``contacts``, ``modem`` and
    ``relay`` are its tables (values as TOML has them), laid over SMS to OWNER, email to EMAIL,
    no coalescing delay, UTC."""
    table = {"sms_to": [OWNER], "email_to": [EMAIL], "coalesce": "0s", "tz": "UTC", **(alerts or {})}
    tables = {
        "alerts": table,
        "security": security or {},
        "contacts": contacts or {},
        "modem": modem or {},
        "relay": relay or {},
    }
    return parse({"data_dir": str(data_dir), **tables})


class Clocks:
    """A wall clock (``clocks()``) and a boot clock the test moves by hand."""

    def __init__(self) -> None:
        self.wall, self.boot = T0, 1000.0

    def __call__(self) -> float:
        return self.wall

    def run(self, seconds: float) -> None:
        """Time passes: both clocks move."""
        self.wall += seconds
        self.boot += seconds

    def step(self, seconds: float) -> None:
        """Someone sets the wall clock: only it moves."""
        self.wall += seconds


class RecordingChannel(Channel):
    """A channel that keeps each message it is given; ``fail_next`` makes sends raise first."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.sent: list[tuple[str, str]] = []  # (recipient, text), in order
        self.failures: list[ChannelError] = []

    def fail_next(self, error: ChannelError, count: int = 1) -> None:
        self.failures += [error] * count

    async def send(self, recipient: str, text: str) -> str:
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append((recipient, text))
        return f"{self.name}-{len(self.sent)}"

    def texts(self) -> list[str]:
        return [text for _, text in self.sent]


class Gateway:
    """Service, store, dispatcher and SMS command intake on :class:`Clocks`. Use with ``with``."""

    def __init__(
        self,
        data_dir: Path,
        *,
        alerts: dict[str, Any] | None = None,
        security: dict[str, Any] | None = None,
        contacts: dict[str, Any] | None = None,
        modem: dict[str, Any] | None = None,
        relay: dict[str, Any] | None = None,
        clocks: Clocks | None = None,
    ) -> None:
        """``alerts``, ``security``, ``contacts``, ``modem`` and ``relay``: as for :func:`config`."""
        self.clocks = clocks or Clocks()
        self.config = config(data_dir, alerts=alerts, security=security, contacts=contacts, modem=modem, relay=relay)
        self.sms, self.email = RecordingChannel("sms"), RecordingChannel("email")
        self.call = RecordingChannel("call")  # the escalation ladder's phone calls
        self.store = Store(self.config.db_path)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="clockrig-loop", daemon=True)

    def __enter__(self) -> Gateway:
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        self.store.open()
        try:
            self.service = Service(self.store, self.config, clock=self.clocks)
            channels: dict[str, Channel] = {"sms": self.sms, "email": self.email, "call": self.call}
            self.dispatcher = Dispatcher(self.service, channels, self.config, clock=self.clocks)
            self.service.on_outbox(self.dispatcher.nudge)  # wired as the daemon wires it
            runner = CommandRunner(self.service, clock=self.clocks)
            self.intake = Inbox(self.service, run_command=runner, clock=self.clocks)
        except BaseException:
            self.store.close()
            self.loop.close()
            raise
        self.thread.start()
        self.running = asyncio.run_coroutine_threadsafe(self.dispatcher.run(), self.loop)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.loop.call_soon_threadsafe(self.dispatcher.request_stop)
            self.running.result(timeout=10)  # also raises what the dispatcher raised
        finally:
            asyncio.run_coroutine_threadsafe(self.loop.shutdown_default_executor(), self.loop).result(timeout=10)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)
            self.loop.close()
            self.store.close()

    # ------------------------------------------------------------------ what the outside does

    def add(self, name: str, period: float, grace: float) -> None:
        self.service.add_check(name, period=period, grace=grace)

    def depends_on(self, name: str, *parents: str) -> None:
        """``name``'s parents become ``parents`` (as ``hbgw check set NAME --depends-on``)."""
        self.service.deps.set(name, list(parents))

    def ping(self, *names: str, kind: PingKind = PingKind.SUCCESS, exit_status: int | None = None) -> None:
        for name in names:
            token = self.service.get_check(name).token
            assert self.service.record_ping(token, kind, exit_status, PingMeta()) is PingOutcome.OK

    def receive(self, sender: str, text: str) -> None:
        """An SMS arrives from the modem: stored, carried out, answered (then :meth:`dispatch`)."""
        now = dt.datetime.fromtimestamp(self.clocks(), dt.UTC)
        sms = InboundSms(sender=sender, text=text, sent_at=now, received_at=now)
        asyncio.run_coroutine_threadsafe(self.intake(sms), self.loop).result(timeout=10)

    # ------------------------------------------------------------------ what the daemon's tasks do

    def tick(self, seconds: float = 0.0) -> list[Flip]:
        """``seconds`` pass; the watchdog's step (flips and reminders due now), then
        :meth:`dispatch`. Returns the flips."""
        self.clocks.run(seconds)
        flips = self.service.advance(self.clocks())
        self.dispatch()
        return flips

    def dispatch(self) -> None:
        """Wake the dispatcher and return once it has sent everything due at the clocks' now:
        nothing claimed and unfinished, nothing waiting whose time has come. The clocks stand
        still meanwhile, so what is not due now stays unsent."""
        self.dispatcher.nudge()
        wait_for(self._settled, timeout=10, interval=0.002, what="the dispatcher to send what is due")

    def _settled(self) -> bool:
        # Two reads of the outbox around the read of what is due: equal (states and attempts
        # only move forward), so the outbox stood still in between, with nothing sending and
        # nothing due. The dispatcher has nothing left to do until the clocks move.
        if not self.dispatcher.idle:  # a claim in hand, or what follows a send (an answered call's ACK)
            return False
        before = self.service.views.outbox(1000)
        if any(r.state == "sending" for r in before):
            return False
        if self.service.views.health(None)["outbox"]["overdue_since"] is not None:
            return False
        return self.service.views.outbox(1000) == before

    # ------------------------------------------------------------------ what the test reads

    def outbox(self) -> list[dict[str, Any]]:
        return outbox(self.service)

    def inbox(self) -> list[dict[str, Any]]:
        return inbox(self.service)

    def events(self, name: str | None = None) -> list[Event]:
        return events(self.service, name)

    def describe(self, name: str) -> dict[str, Any]:
        return describe(self.service, name)


# Every read goes through these, in the forms the CLI's --json prints, so that the tests do not
# depend on how the service arranges its read side.


def outbox(service: Service) -> list[dict[str, Any]]:
    """Every outbox row (as ``hbgw sms outbox --json`` shows it), oldest first."""
    return [r.to_json() for r in sorted(service.views.outbox(1000), key=lambda r: r.id)]


def inbox(service: Service) -> list[dict[str, Any]]:
    """Every stored inbound SMS (as ``hbgw sms inbox --json`` shows it), oldest first."""
    return [r.to_json() for r in sorted(service.views.inbox(1000), key=lambda r: r.id)]


def events(service: Service, name: str | None = None) -> list[Event]:
    """The events of the check ``name`` (of every check and none, without it), oldest first."""
    check_id = service.get_check(name).id if name is not None else None
    return list(reversed(service.store.list_events(check_id, 1000)))


def describe(service: Service, name: str) -> dict[str, Any]:
    """The check as ``hbgw check show --json`` shows it."""
    return service.views.describe(service.get_check(name))
