"""GammuModem: python-gammu in a worker process, on gammu's dummy driver and, through
gammu's own AT driver, on the simulated modem over a real pty."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import gammu
import pytest

from modem.driver import InboundSms
from modem.errors import ModemError, ModemTimeout, PortGone, SimError
from modem.gammu import GammuModem, map_gammu_error
from modem.simulator import Network, PtyModem, SimOptions, Simulator

NUMBER = "+15551234567"
SENDER = "+15557654321"
SENT_AT = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


# --------------------------------------------------------------------------- helpers


@dataclass
class Inbox:
    messages: list[InboundSms] = field(default_factory=list)
    fail: bool = False
    arrived: asyncio.Event | None = None

    async def handler(self, sms: InboundSms) -> None:
        if self.fail:
            raise RuntimeError("handler failed")
        self.messages.append(sms)
        if self.arrived is not None:
            self.arrived.set()


def dummy_dir(tmp_path: Path) -> Path:
    root = tmp_path / "phone"
    for folder in range(1, 6):
        (root / "sms" / str(folder)).mkdir(parents=True)
    return root


def store_inbound(root: Path, text: str, *, first_slot: int, parts: slice | None = None) -> int:
    """Write ``text`` as SIM-inbox smsbackup files (gammu's own format); returns the part count."""
    encoded = gammu.EncodeSMS(
        {
            "Class": -1,
            "Unicode": not text.isascii(),
            "Entries": [{"ID": "ConcatenatedTextLong", "Buffer": text}],
        }
    )
    chosen = encoded[parts] if parts is not None else encoded
    for offset, message in enumerate(chosen):
        message.update(
            {
                "Number": SENDER,
                "Type": "Deliver",
                "Folder": 1,
                "State": "UnRead",
                "DateTime": SENT_AT,
                "SMSC": {"Location": 0, "Number": "+15550000000"},
            }
        )
        # Written aside then renamed: a poll must never see a half-written file.
        staging = root / f"staging-{first_slot + offset}"
        gammu.SaveSMSBackup(str(staging), [message])
        staging.replace(root / "sms" / "1" / str(first_slot + offset))
    return len(encoded)


def inbox_files(root: Path) -> list[str]:
    return sorted(os.listdir(root / "sms" / "1"))


def worker_of(modem: GammuModem) -> int | None:
    return modem.worker_pid


def dummy(root: Path, **kwargs: float) -> GammuModem:
    return GammuModem(str(root), connection="none", model="dummy", **kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- error mapping


@pytest.mark.parametrize(
    ("name", "kind", "permanent"),
    [
        ("ERR_TIMEOUT", ModemTimeout, False),
        ("ERR_DEVICENOTEXIST", PortGone, False),
        ("ERR_DEVICEOPENERROR", PortGone, False),
        ("ERR_DEVICEWRITEERROR", PortGone, False),
        ("ERR_SECURITYERROR", SimError, True),
        ("ERR_NOSIM", SimError, True),
        ("ERR_DEVICENOPERMISSION", ModemError, True),
        ("ERR_NOTSUPPORTED", ModemError, True),
        ("ERR_UNKNOWN", ModemError, False),  # how gammu reports every +CMS ERROR on send
        ("ERR_BUSY", ModemError, False),
    ],
)
def test_it_maps_gammu_errors_to_modem_errors(name: str, kind: type[ModemError], permanent: bool) -> None:
    error = map_gammu_error(name, "text", "SendSMS")
    assert type(error) is kind
    assert error.permanent is permanent
    assert name in str(error)


# --------------------------------------------------------------------------- dummy driver


def test_it_hands_stored_sms_to_the_handler_then_deletes_them(tmp_path: Path) -> None:
    root = dummy_dir(tmp_path)
    store_inbound(root, "ACK web1", first_slot=1)
    long_text = "db1 is down since 03:00, disk full. " * 6
    assert store_inbound(root, long_text, first_slot=2) == 2
    store_inbound(root, "Zürich ✓", first_slot=4)
    inbox = Inbox()

    async def scenario() -> None:
        modem = dummy(root, poll_interval=0)
        modem.set_inbound_handler(inbox.handler)
        await modem.open()
        try:
            assert inbox_files(root) == []  # deleted only after the handler returned
        finally:
            await modem.close()

    asyncio.run(scenario())
    got = sorted((m.text, m.parts, m.complete, m.sender) for m in inbox.messages)
    assert got == sorted(
        [
            ("ACK web1", 1, True, SENDER),
            (long_text, 2, True, SENDER),
            ("Zürich ✓", 1, True, SENDER),
        ]
    )
    assert all(m.sent_at == SENT_AT and m.received_at.tzinfo is not None for m in inbox.messages)
    assert sorted(len(m.storage) for m in inbox.messages) == [1, 1, 2]


def test_it_keeps_messages_when_the_handler_fails(tmp_path: Path) -> None:
    root = dummy_dir(tmp_path)
    store_inbound(root, "ACK web1", first_slot=1)
    inbox = Inbox(fail=True)

    async def scenario() -> None:
        modem = dummy(root, poll_interval=0)
        modem.set_inbound_handler(inbox.handler)
        await modem.open()
        try:
            assert inbox_files(root) == ["1"]
            inbox.fail = False
            assert await modem.poll_inbound() == 1
            assert inbox_files(root) == []
        finally:
            await modem.close()

    asyncio.run(scenario())
    assert [m.text for m in inbox.messages] == ["ACK web1"]


def test_it_leaves_messages_alone_without_a_handler(tmp_path: Path) -> None:
    root = dummy_dir(tmp_path)
    store_inbound(root, "ACK web1", first_slot=1)

    async def scenario() -> None:
        modem = dummy(root, poll_interval=0)
        await modem.open()
        await modem.close()

    asyncio.run(scenario())
    assert inbox_files(root) == ["1"]


def test_it_holds_an_incomplete_multipart_message_until_its_timeout(tmp_path: Path) -> None:
    root = dummy_dir(tmp_path)
    store_inbound(root, "part of a long one. " * 12, first_slot=1, parts=slice(0, 1))
    inbox = Inbox()

    async def scenario() -> None:
        modem = dummy(root, poll_interval=0, multipart_timeout=3600)
        modem.set_inbound_handler(inbox.handler)
        await modem.open()
        try:
            assert inbox.messages == [] and inbox_files(root) == ["1"]
            modem.multipart_timeout = 0
            assert await modem.poll_inbound() == 1
        finally:
            await modem.close()

    asyncio.run(scenario())
    (sms,) = inbox.messages
    assert (sms.parts, sms.complete) == (1, False)
    assert sms.text.startswith("part of a long one.")


def test_it_polls_for_new_messages_in_the_background(tmp_path: Path) -> None:
    root = dummy_dir(tmp_path)
    inbox = Inbox()

    async def scenario() -> None:
        inbox.arrived = asyncio.Event()
        modem = dummy(root, poll_interval=0.1)
        modem.set_inbound_handler(inbox.handler)
        await modem.open()
        try:
            store_inbound(root, "ACK web2", first_slot=1)
            await asyncio.wait_for(inbox.arrived.wait(), 15)
        finally:
            await modem.close()

    asyncio.run(scenario())
    assert [m.text for m in inbox.messages] == ["ACK web2"]


def test_it_sends_and_reports_status_on_the_dummy_driver(tmp_path: Path) -> None:
    async def scenario() -> None:
        modem = dummy(dummy_dir(tmp_path), poll_interval=0)
        await modem.open()
        try:
            assert len(await modem.send_sms(NUMBER, "Server A is DOWN")) == 1
            assert len(await modem.send_sms(NUMBER, "x" * 200)) == 2
            status = await modem.status()
        finally:
            await modem.close()
        assert status.backend == "gammu" and status.port == str(tmp_path / "phone")
        assert (status.manufacturer, status.model, status.imei) == ("Gammu", "Dummy", "999999999999999")
        assert (status.sim, status.registration, status.operator) == ("READY", "home", "GammuT3l")
        assert status.signal_dbm is None  # the dummy reports +42 "dBm": not a real value

    asyncio.run(scenario())


def test_it_reports_a_killed_worker_as_port_gone_and_reopens(tmp_path: Path) -> None:
    async def scenario() -> None:
        modem = dummy(dummy_dir(tmp_path), poll_interval=0)
        await modem.open()
        try:
            pid = modem.worker_pid
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            with pytest.raises(PortGone, match="SIGKILL"):
                await modem.send_sms(NUMBER, "x")
            assert worker_of(modem) is None
            with pytest.raises(PortGone):
                await modem.status()
            await modem.open()
            assert worker_of(modem) not in (None, pid)
            assert (await modem.status()).model == "Dummy"
        finally:
            await modem.close()
            await modem.close()  # idempotent

    asyncio.run(scenario())


def test_it_raises_port_gone_when_not_open(tmp_path: Path) -> None:
    async def scenario() -> None:
        modem = dummy(dummy_dir(tmp_path))
        with pytest.raises(PortGone):
            await modem.status()
        await modem.close()

    asyncio.run(scenario())


def test_it_raises_port_gone_for_a_missing_device(tmp_path: Path) -> None:
    async def scenario() -> None:
        modem = GammuModem(str(tmp_path / "ttyUSB9"), poll_interval=0)
        with pytest.raises(PortGone):
            await modem.open()
        assert modem.worker_pid is None  # a failed open leaves no worker behind

    asyncio.run(scenario())


# ------------------------------------------------------------------ gammu's AT driver on the simulator


@dataclass
class AtSession:
    runner: asyncio.Runner
    network: Network
    sim: Simulator
    modem: GammuModem
    inbox: Inbox


@pytest.fixture(scope="module")
def at_session() -> Iterator[AtSession]:
    """One gammu AT session for the module: gammu's Init alone takes ~4 s of fixed sleeps."""
    network = Network()
    sim = Simulator(network)
    inbox = Inbox()
    with asyncio.Runner() as runner, PtyModem(sim) as pty:
        modem = GammuModem(pty.device, poll_interval=0)
        modem.set_inbound_handler(inbox.handler)
        runner.run(modem.open())
        try:
            yield AtSession(runner, network, sim, modem, inbox)
        finally:
            runner.run(modem.close())


def test_it_inits_and_reports_status_through_gammus_at_driver(at_session: AtSession) -> None:
    status = at_session.runner.run(at_session.modem.status())
    assert (status.manufacturer, status.model, status.revision) == ("HBGW", "HBGW-SIM-1", "HBGW-SIM 1.0")
    assert (status.imei, status.sim, status.registration) == ("356938035643809", "READY", "home")
    assert (status.operator, status.smsc) == ("HBGW Sim", "+15550000000")
    assert status.signal_dbm == -73  # CSQ 20 -> -113 + 2*20
    used, total = at_session.sim.storage_fill("SM")  # gammu reads the SIM store
    assert (status.storage_used, status.storage_total) == (used, total) and total > 0
    # gammu insists on echo being accepted and probes test commands it then ignores
    assert "ATE1" in at_session.sim.commands and "AT+CPROT=?" in at_session.sim.commands


@pytest.mark.parametrize(
    ("text", "parts", "encoding"),
    [
        ("Server A is DOWN", 1, "gsm7"),
        ("Zürich ✓ web1 down", 1, "ucs2"),
        ("db1 DOWN since 03:00 UTC; disk /var full; last heartbeat 2h ago. " * 4, 2, "gsm7"),
    ],
)
def test_it_sends_through_gammus_at_driver_and_the_network_decodes_it(
    at_session: AtSession, text: str, parts: int, encoding: str
) -> None:
    network = at_session.network
    before = len(network.sent())
    refs = at_session.runner.run(at_session.modem.send_sms(NUMBER, text))
    sent = network.wait_for_sent(before + 1, timeout=10)[-1]
    assert (sent.number, sent.text, sent.parts, sent.encoding) == (NUMBER, text, parts, encoding)
    assert list(sent.refs) == refs and len(refs) == parts


def test_it_reads_injected_sms_through_gammus_at_driver(at_session: AtSession) -> None:
    long_text = "ACK web1 and silence the alarm until tomorrow morning please. " * 4
    at_session.network.inject(SENDER, "ACK web1")
    at_session.network.inject(SENDER, long_text)
    at_session.inbox.messages.clear()
    handled = at_session.runner.run(at_session.modem.poll_inbound())
    assert handled == 2
    got = sorted((m.sender, m.text, m.parts) for m in at_session.inbox.messages)
    assert got == sorted([(SENDER, long_text, 2), (SENDER, "ACK web1", 1)])
    assert all(m.sent_at is not None and m.sent_at.tzinfo is not None for m in at_session.inbox.messages)
    assert at_session.sim.stored("SM") == []  # deleted after the handler returned


def test_it_reports_a_network_refusal_as_a_retryable_error(at_session: AtSession) -> None:
    at_session.sim.fail_next_send(500)
    with pytest.raises(ModemError) as excinfo:
        at_session.runner.run(at_session.modem.send_sms(NUMBER, "refused"))
    # gammu reports every +CMS ERROR as ERR_UNKNOWN, so the code is lost: retry is the safe call
    assert excinfo.value.permanent is False
    assert len(at_session.runner.run(at_session.modem.send_sms(NUMBER, "accepted"))) == 1


def test_it_enters_the_pin_and_refuses_a_wrong_one() -> None:
    sim = Simulator(Network(), SimOptions(pin="1234"))

    async def scenario(device: str) -> None:
        wrong = GammuModem(device, pin="0000", poll_interval=0)
        with pytest.raises(SimError) as excinfo:
            await wrong.open()
        assert excinfo.value.permanent
        assert sim.pin_attempts_left == 2
        right = GammuModem(device, pin="1234", poll_interval=0)
        await right.open()
        try:
            assert (await right.status()).sim == "READY"
        finally:
            await right.close()

    with PtyModem(sim) as pty:
        asyncio.run(scenario(pty.device))


def test_it_reports_an_unplugged_modem_as_port_gone_and_reopens_after_replug(tmp_path: Path) -> None:
    sim = Simulator(Network())
    link = str(tmp_path / "ttyGSM")

    async def scenario(pty: PtyModem) -> None:
        modem = GammuModem(link, poll_interval=0)
        await modem.open()
        try:
            pty.unplug()
            with pytest.raises(PortGone):
                await modem.send_sms(NUMBER, "nobody home")
            pty.replug()
            await modem.open()
            assert len(await modem.send_sms(NUMBER, "back again")) == 1
        finally:
            await modem.close()

    with PtyModem(sim, link=link) as pty:
        asyncio.run(scenario(pty))
    assert [s.text for s in sim.network.sent()] == ["back again"]


def test_it_contains_a_gammu_segfault_on_broken_firmware_as_port_gone() -> None:
    """python-gammu-notes.md: when AT+CMGF=0 is refused gammu falls back to text mode and
    crashes on a PDU-format reply. The crash must take down only the worker."""
    network = Network()
    sim = Simulator(network, SimOptions(refuse_pdu_mode=True))
    network.inject(SENDER, "crash me")
    inbox = Inbox()

    async def scenario(device: str) -> None:
        modem = GammuModem(device, poll_interval=0)
        modem.set_inbound_handler(inbox.handler)
        with pytest.raises(PortGone, match="SIGSEGV"):
            await modem.open()
        assert modem.worker_pid is None
        await modem.close()

    with PtyModem(sim) as pty:
        asyncio.run(scenario(pty.device))
    assert inbox.messages == [] and len(sim.stored("SM")) == 1  # nothing lost
