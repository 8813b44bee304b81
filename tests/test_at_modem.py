"""AtModem and ModemKeeper against the simulator (modem/simulator.py), over a real pty and
over TCP on 127.0.0.1: init, PIN, sending, receiving, errors, hangs and unplugging."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

from modem.driver import (
    AtModem,
    InboundSms,
    ModemKeeper,
    SimAbsent,
    create_modem,
)
from modem.errors import CmsError, ModemTimeout, PortGone, SimError
from modem.pdu import MISSING_PART, encode_deliver
from modem.simulator import Network, PtyModem, SimOptions, Simulator, TcpModem
from tests.support.aio import eventually, run

T = TypeVar("T")
NUMBER = "+15551230001"


@dataclass
class Rig:
    net: Network
    sim: Simulator
    transport: PtyModem | TcpModem
    url: str

    def modem(self, **kw: object) -> AtModem:
        kw.setdefault("command_timeout", 2.0)
        kw.setdefault("send_timeout", 5.0)
        return AtModem(self.url, **kw)  # type: ignore[arg-type]

    def cpin_entries(self) -> list[str]:
        return [c for c in self.sim.commands if c.upper().startswith("AT+CPIN=")]


@pytest.fixture(params=["pty", "tcp"])
def make_rig(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., Rig]]:
    started: list[PtyModem | TcpModem] = []

    def make(options: SimOptions | None = None, *, before_start: Callable[[Network], None] | None = None) -> Rig:
        net = Network()
        sim = Simulator(net, options or SimOptions())
        if before_start is not None:
            before_start(net)
        transport: PtyModem | TcpModem
        if request.param == "pty":
            transport = PtyModem(sim, link=str(tmp_path / f"ttyHBGW{len(started)}")).start()
        else:
            transport = TcpModem(sim).start()
        started.append(transport)
        return Rig(net, sim, transport, transport.device)

    yield make
    for transport in started:
        transport.stop()


class Inbox:
    """An inbound handler that records messages and lets tests wait for them."""

    def __init__(self) -> None:
        self.messages: list[InboundSms] = []
        self.fail = False
        self.calls = 0

    async def __call__(self, sms: InboundSms) -> None:
        self.calls += 1
        if self.fail:
            raise RuntimeError("handler bug")
        self.messages.append(sms)

    async def wait(self, count: int, timeout: float = 5.0) -> list[InboundSms]:
        await eventually(lambda: len(self.messages) >= count, timeout, f"{count} inbound SMS")
        return self.messages


@contextlib.asynccontextmanager
async def opened(modem: AtModem, inbox: Inbox | None = None) -> AsyncIterator[AtModem]:
    if inbox is not None:
        modem.set_inbound_handler(inbox)
    await modem.open()
    try:
        yield modem
    finally:
        await modem.close()


# ------------------------------------------------------------------------------ init and status


def test_it_initialises_and_reports_status(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()

    async def main() -> None:
        async with opened(rig.modem()) as modem:
            status = await modem.status()
            assert status.backend == "at" and status.port == rig.url
            assert (status.manufacturer, status.model, status.revision) == (
                "HBGW",
                "HBGW-SIM-1",
                "HBGW-SIM 1.0",
            )
            assert status.imei == "356938035643809"
            assert (status.sim, status.registration, status.operator) == ("READY", "home", "HBGW Sim")
            assert status.signal_dbm == -113 + 2 * 20
            assert status.smsc == "+15550000000"

    run(main())
    commands = [c.split("=")[0] for c in rig.sim.commands]
    order = [
        "ATE0",
        "AT+CMEE",
        "AT+CPIN?",
        "AT+CREG?",
        "AT+CSQ",
        "AT+COPS?",
        "AT+CMGF",
        "AT+CSCA?",
        "AT+CNMI",
    ]
    assert [c for c in commands if c in order][: len(order)] == order


def test_it_sets_the_configured_smsc(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()

    async def main() -> None:
        async with opened(rig.modem(smsc="+15559990000")) as modem:
            assert (await modem.status()).smsc == "+15559990000"

    run(main())


def test_it_unlocks_the_sim_with_the_pin_once(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(SimOptions(pin="1234", busy_after_pin_seconds=0.3))

    async def main() -> None:
        async with opened(rig.modem(pin="1234")) as modem:
            assert (await modem.status()).sim == "READY"

    run(main())
    assert rig.cpin_entries() == ['AT+CPIN="1234"']


def test_it_retries_while_the_sim_is_busy(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(SimOptions(sim_busy_seconds=0.6))

    async def main() -> None:
        async with opened(rig.modem(sim_busy_timeout=5.0)) as modem:
            assert (await modem.status()).sim == "READY"

    run(main())
    assert rig.sim.commands.count("AT+CPIN?") >= 2


@pytest.mark.parametrize(
    ("options", "pin", "entries"),
    [
        (SimOptions(pin="1234"), "9999", 1),  # wrong PIN: sent exactly once
        (SimOptions(pin="1234"), None, 0),  # PIN needed, none configured
        (SimOptions(pin="1234", pin_attempts=0), "1234", 0),  # PUK: never sends the PIN
    ],
    ids=["wrong-pin", "no-pin", "puk"],
)
def test_it_raises_sim_error_without_retrying_the_pin(
    make_rig: Callable[..., Rig], options: SimOptions, pin: str | None, entries: int
) -> None:
    rig = make_rig(options)

    async def main() -> None:
        modem = rig.modem(pin=pin)
        with pytest.raises(SimError) as info:
            await modem.open()
        assert not isinstance(info.value, SimAbsent) and info.value.permanent
        assert "9999" not in str(info.value)
        await modem.close()

    run(main())
    assert len(rig.cpin_entries()) == entries
    if entries:
        assert rig.sim.pin_attempts_left == options.pin_attempts - 1


def test_it_raises_port_gone_for_a_missing_device(tmp_path: Path) -> None:
    async def main() -> None:
        with pytest.raises(PortGone):
            await AtModem(str(tmp_path / "ttyNONE")).open()

    run(main())


# ------------------------------------------------------------------------------ sending


@pytest.mark.parametrize(
    ("text", "parts", "encoding"),
    [
        ("web1 is DOWN since 14:02 (no ping for 20 min)", 1, "gsm7"),
        ("Servers silent: " + ", ".join(f"web{i}" for i in range(60)) + " {check power}", 3, "gsm7"),
        ("Serveur «web1» en panne ⚠️ 😀 \u2013 vérifier l'alimentation", 1, "ucs2"),
        ("Ошибка: " + "сервер недоступен; " * 5, 2, "ucs2"),
    ],
    ids=["single", "multipart", "unicode", "unicode-multipart"],
)
def test_it_sends_sms(make_rig: Callable[..., Rig], text: str, parts: int, encoding: str) -> None:
    rig = make_rig()

    async def main() -> list[int]:
        async with opened(rig.modem()) as modem:
            return await modem.send_sms(NUMBER, text)

    refs = run(main())
    sent = rig.net.wait_for_sent(1, 5)
    assert [(s.number, s.text, s.parts, s.encoding) for s in sent] == [(NUMBER, text, parts, encoding)]
    assert refs == list(sent[0].refs)


def test_it_uses_a_new_concat_reference_per_message(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    long_text = "x" * 200

    async def main() -> None:
        async with opened(rig.modem()) as modem:
            await modem.send_sms(NUMBER, long_text)
            await modem.send_sms(NUMBER, long_text)

    run(main())
    sent = rig.net.wait_for_sent(2, 5)
    assert [s.text for s in sent] == [long_text, long_text]  # not merged into one message


@pytest.mark.parametrize(("code", "permanent"), [(500, False), (330, True), (332, False), (1, True), (28, True)])
def test_it_maps_send_failures(make_rig: Callable[..., Rig], code: int, permanent: bool) -> None:
    rig = make_rig()

    async def main() -> None:
        async with opened(rig.modem()) as modem:
            rig.sim.fail_next_send(code)
            with pytest.raises(CmsError) as info:
                await modem.send_sms(NUMBER, "test")
            assert (info.value.code, info.value.permanent) == (code, permanent)
            assert NUMBER not in str(info.value)
            await modem.send_sms(NUMBER, "second try")

    run(main())
    assert [s.text for s in rig.net.sent()] == ["second try"]


LONG = "Servers silent: " + ", ".join(f"web{i}" for i in range(60)) + " {check power}"  # 3 parts


def test_it_sends_a_refused_later_part_again_so_the_phone_can_join_it(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()

    async def main() -> list[int]:
        async with opened(rig.modem(part_retry_delay=0.01)) as modem:
            rig.sim.fail_next_send(500, count=2, after=1)  # part 2 refused twice, then accepted
            return await modem.send_sms(NUMBER, LONG)

    refs = run(main())
    sent = rig.net.wait_for_sent(1, 5)
    assert [(s.text, s.parts) for s in sent] == [(LONG, 3)]  # one whole message, no fragment
    assert refs == list(sent[0].refs) and len(refs) == 3


@pytest.mark.parametrize(("code", "count"), [(28, 1), (500, 3)], ids=["permanent", "persistent"])
def test_it_gives_up_on_a_later_part_that_cannot_go(make_rig: Callable[..., Rig], code: int, count: int) -> None:
    rig = make_rig()

    async def main() -> None:
        async with opened(rig.modem(part_retry_delay=0.01)) as modem:
            rig.sim.fail_next_send(code, count=count, after=1)
            with pytest.raises(CmsError) as info:
                await modem.send_sms(NUMBER, LONG)
            assert info.value.code == code
            await modem.send_sms(NUMBER, "after that")  # the modem is still usable

    run(main())
    assert [s.text for s in rig.net.sent()] == ["after that"]  # part 1 alone never completes


def test_it_times_out_on_a_hung_modem_and_recovers(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()

    async def main() -> None:
        async with opened(rig.modem(command_timeout=0.5, send_timeout=1.0)) as modem:
            rig.sim.hang()
            with pytest.raises(ModemTimeout):
                await modem.send_sms(NUMBER, "lost")
            rig.sim.hang(False)
            await modem.send_sms(NUMBER, "after the hang")

    run(main())
    assert [s.text for s in rig.net.sent()] == ["after the hang"]


def test_it_raises_port_gone_when_unplugged_mid_send(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()

    async def main() -> None:
        async with opened(rig.modem()) as modem:
            rig.sim.set_latency(3.0, "+CMGS")
            send = asyncio.ensure_future(modem.send_sms(NUMBER, "in flight"))
            await eventually(lambda: any(c.startswith("AT+CMGS") for c in rig.sim.commands), what="AT+CMGS")
            rig.transport.unplug()
            with pytest.raises(PortGone):
                await send
            await asyncio.wait_for(modem.wait_gone(), 2)
            with pytest.raises(PortGone):
                await modem.send_sms(NUMBER, "after")

    run(main())


# ------------------------------------------------------------------------------ receiving


def test_it_receives_via_cmti_and_deletes_after_handing_over(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    inbox = Inbox()

    async def main() -> None:
        async with opened(rig.modem(), inbox):
            rig.net.inject("+15557654321", "ACK web1")
            (sms,) = await inbox.wait(1)
            assert (sms.sender, sms.text, sms.parts, sms.complete) == ("+15557654321", "ACK web1", 1, True)
            assert sms.sent_at is not None and sms.sent_at.tzinfo is not None
            assert len(sms.storage) == 1
            await eventually(lambda: rig.sim.stored() == [], what="storage emptied")

    run(main())


def test_it_reads_messages_stored_while_offline(make_rig: Callable[..., Rig]) -> None:
    def stored_before(net: Network) -> None:
        net.inject("+15550000001", "STATUS")
        net.inject("+15550000002", "HELP")

    rig = make_rig(before_start=stored_before)
    assert len(rig.sim.stored()) == 2
    inbox = Inbox()

    async def main() -> None:
        async with opened(rig.modem(), inbox):
            messages = await inbox.wait(2)
            assert sorted(m.text for m in messages) == ["HELP", "STATUS"]
            await eventually(lambda: rig.sim.stored() == [], what="storage emptied")
            assert len(inbox.messages) == 2  # the +CMTI replayed at connect did not duplicate

    run(main())
    assert "AT+CMGL=4" in rig.sim.commands


def test_it_reassembles_multipart_inbound(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    inbox = Inbox()
    text = "PAUSE web1 " + "please, " * 40 + "Grüße ✓"

    async def main() -> None:
        async with opened(rig.modem(), inbox):
            rig.net.inject("+15557654321", text)
            (sms,) = await inbox.wait(1)
            assert (sms.text, sms.complete) == (text, True)
            assert sms.parts == len(sms.storage) >= 2
            await eventually(lambda: rig.sim.stored() == [], what="storage emptied")

    run(main())


def test_it_hands_over_an_incomplete_multipart_after_the_timeout(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    inbox = Inbox()
    import datetime as dt

    pdus = encode_deliver(
        "+15557654321", "part " * 60, timestamp=dt.datetime.now(dt.UTC).replace(microsecond=0), concat_ref=9
    )
    assert len(pdus) >= 2

    async def main() -> None:
        async with opened(rig.modem(multipart_timeout=0.3), inbox):
            rig.net.inject_pdu(pdus[0])
            (sms,) = await inbox.wait(1)
            assert sms.complete is False and sms.parts == 1
            assert sms.text.startswith("part part") and sms.text.endswith(MISSING_PART)
            await eventually(lambda: rig.sim.stored() == [], what="storage emptied")

    run(main())


def test_it_hands_over_a_damaged_message_as_far_as_it_goes_and_deletes_it(make_rig: Callable[..., Rig]) -> None:
    """Kept, a message we cannot fully decode took a SIM slot for good (issue 12, defect 3).
    User data cut short is read as far as it goes and flagged damaged (issue 17); a slot with
    no sender to give is deleted; both leave the SIM. Fails on the code before the fixes,
    which skipped and kept them."""
    rig = make_rig()
    inbox = Inbox()
    cut_short = "07915155000000F0040B915155674523F100006211425110210005E8329B"  # TP-UDL 5, 3 septets
    garbage = "07915155000000F0"  # not even a first octet after the SMSC: no sender to give

    async def main() -> None:
        async with opened(rig.modem(), inbox):
            rig.net.inject_pdu(cut_short)
            rig.net.inject_pdu(garbage)
            rig.net.inject("+15557654321", "after the poison")
            damaged, good = await inbox.wait(2)
            assert (damaged.sender, damaged.text, damaged.damaged, damaged.undecodable) == (
                "+15557654321",
                "hel",
                True,
                False,
            )
            assert damaged.sent_at is not None and damaged.sent_at.year == 2026
            assert (good.text, good.damaged, good.undecodable) == ("after the poison", False, False)
            await eventually(lambda: rig.sim.stored() == [], what="all three deleted")

    run(main())
    assert len(inbox.messages) == 2  # the unreadable one was deleted, not handed over


def test_it_keeps_messages_whose_handler_failed(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    inbox = Inbox()
    inbox.fail = True

    async def main() -> None:
        async with opened(rig.modem(), inbox) as modem:
            rig.net.inject("+15557654321", "keep me")
            await eventually(lambda: inbox.calls == 1, what="the handler call")
            await modem.status()  # goes through the same lock as a deletion would
            assert len(rig.sim.stored()) == 1
            rig.net.inject("+15557654321", "another one")  # a new +CMTI, a new listing...
            await eventually(lambda: inbox.calls == 2, what="the second handler call")
            await modem.status()

    run(main())
    assert len(rig.sim.stored()) == 2  # both kept; the first was not handed over twice


def test_it_interleaves_sending_and_receiving(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    inbox = Inbox()

    async def main() -> None:
        async with opened(rig.modem(), inbox) as modem:

            async def inject() -> None:
                for i in range(5):
                    rig.net.inject(f"+1555000010{i}", f"msg {i}")
                    await asyncio.sleep(0.01)

            sends = [modem.send_sms(NUMBER, f"alert {i}") for i in range(5)]
            await asyncio.gather(inject(), *sends)
            await inbox.wait(5)
            await eventually(lambda: rig.sim.stored() == [], what="storage emptied")

    run(main())
    assert sorted(s.text for s in rig.net.sent()) == [f"alert {i}" for i in range(5)]


# ------------------------------------------------------------------------------ ModemKeeper


def keeper_for(rig: Rig, inbox: Inbox, **kw: object) -> ModemKeeper:
    def factory() -> AtModem:
        return rig.modem(command_timeout=1.0)

    kw.setdefault("min_backoff", 0.05)
    kw.setdefault("max_backoff", 0.2)
    return ModemKeeper(factory, inbox, **kw)  # type: ignore[arg-type]


def test_it_reconnects_after_the_port_comes_back(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    inbox = Inbox()
    keeper = keeper_for(rig, inbox)

    async def main() -> None:
        task = asyncio.create_task(keeper.run())
        try:
            assert await keeper.send_sms(NUMBER, "before", wait=5)
            assert keeper.health.connected and keeper.health.status is not None
            rig.transport.unplug()
            await eventually(lambda: not keeper.health.connected, what="keeper noticing the unplug")
            assert keeper.health.last_error
            with pytest.raises(PortGone):
                await keeper.send_sms(NUMBER, "nowhere", wait=0.1)
            rig.transport.replug()
            assert await keeper.send_sms(NUMBER, "after", wait=10)
            assert keeper.health.connected
            rig.net.inject("+15557654321", "reply")
            await inbox.wait(1)
        finally:
            await keeper.stop()
            await task

    run(main())
    assert [s.text for s in rig.net.sent()] == ["before", "after"]


def test_it_stops_reopening_after_a_wrong_pin(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(SimOptions(pin="1234"))
    inbox = Inbox()

    def factory() -> AtModem:
        return rig.modem(pin="0000", command_timeout=1.0)

    keeper = ModemKeeper(factory, inbox, min_backoff=0.01, max_backoff=0.01)

    async def main() -> None:
        task = asyncio.create_task(keeper.run())
        try:
            await eventually(lambda: not keeper.health.retrying, what="the keeper giving up")
            assert "SimError" in (keeper.health.last_error or "")
            with pytest.raises(PortGone):
                await keeper.send_sms(NUMBER, "x", wait=0.2)
        finally:
            await keeper.stop()
            await task

    run(main())
    assert rig.cpin_entries() == ['AT+CPIN="0000"']
    assert rig.sim.pin_attempts_left == 2


def test_it_backs_off_while_the_device_is_absent(tmp_path: Path) -> None:
    attempts: list[float] = []

    def factory() -> AtModem:
        attempts.append(asyncio.get_running_loop().time())
        return AtModem(str(tmp_path / "ttyABSENT"))

    keeper = ModemKeeper(factory, Inbox(), min_backoff=0.05, max_backoff=0.2)

    async def main() -> None:
        task = asyncio.create_task(keeper.run())
        await eventually(lambda: len(attempts) >= 5, what="five attempts")
        await keeper.stop()
        await task

    run(main())
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert gaps[0] >= 0.04 and gaps[2] >= 0.15  # doubling, capped


def test_it_reports_a_modem_that_cannot_be_created() -> None:
    keeper = ModemKeeper(lambda: AtModem("/dev/ttyUSB0", pin="12"), Inbox())

    async def main() -> None:
        task = asyncio.create_task(keeper.run())
        await eventually(lambda: not keeper.health.retrying, what="the keeper giving up")
        assert "ValueError" in (keeper.health.last_error or "")
        await keeper.stop()
        await task

    run(main())


# ------------------------------------------------------------------------------ create_modem


def test_it_creates_backends_by_name() -> None:
    modem = create_modem("at", "socket://127.0.0.1:9", pin="1234", smsc="+15550000000")
    assert isinstance(modem, AtModem) and modem.backend == "at"
    assert "1234" not in repr(modem)
    for bad in ({"pin": "12"}, {"pin": '12"4'}, {"smsc": "+49 171"}):
        with pytest.raises(ValueError) as info:
            create_modem("at", "/dev/ttyUSB0", **bad)  # type: ignore[arg-type]
        assert "12" not in str(info.value)
    gammu = create_modem("gammu", "/dev/ttyUSB0", pin="1234")
    assert gammu.backend == "gammu" and "1234" not in repr(gammu)
    with pytest.raises(ValueError):
        create_modem("carrier-pigeon", "/dev/null")


# ------------------------------------------------------------------------------ secrets stay out of logs


def test_it_never_logs_pins_texts_pdus_or_numbers(
    make_rig: Callable[..., Rig], caplog: pytest.LogCaptureFixture
) -> None:
    rig = make_rig(SimOptions(pin="4711"))
    inbox = Inbox()
    secret_text = "Secret body 42"

    async def main() -> None:
        async with opened(rig.modem(pin="4711"), inbox) as modem:
            await modem.send_sms("+15559876543", secret_text)
            rig.sim.fail_next_send(1)
            with pytest.raises(CmsError):
                await modem.send_sms("+15559876543", secret_text)
            rig.net.inject("+15558765432", "inbound secret")
            await inbox.wait(1)

    with caplog.at_level("DEBUG", logger="modem"):
        run(main())
    ours = [r for r in caplog.records if r.name.startswith("modem.") and not r.name.startswith("modem.sim")]
    assert ours  # something was logged
    text = "\n".join(r.getMessage() for r in ours)
    pdus = rig.net.sent()[0].pdus
    for secret in ("4711", secret_text, "inbound secret", "5559876543", "5558765432", *pdus):
        assert secret not in text


# ------------------------------------------------------------------------------ vendor chatter

VENDOR_CHATTER = (
    "^RSSI: 17",
    "^BOOT:20952066,0,0,0,72",
    "^MODE:5,4",
    "^SRVST:2",
    '^HCSQ:"LTE",45,38,120,22',
    '+QIND: "FOTA","END",0',
    "*ATREADY: 1",
    "RDY",
    "+CPIN: READY",
    "SMS DONE",
    "PB DONE",
)


@pytest.mark.parametrize("mid_reply", [True, False], ids=["inside-a-reply", "between-commands"])
def test_it_keeps_every_reply_through_vendor_chatter(make_rig: Callable[..., Rig], mid_reply: bool) -> None:
    rig = make_rig(SimOptions(registration=0, eps_registration=1, act=7))

    async def main() -> None:
        async with opened(rig.modem()) as modem:
            before = await modem.status()
            for line in VENDOR_CHATTER:
                rig.sim.urc(line, mid_reply=mid_reply)
            after = await modem.status()
            assert after == before
            assert (after.manufacturer, after.registration, after.access_technology) == ("HBGW", "home", "LTE")
            await modem.send_sms(NUMBER, "server web1 is down")

    run(main())
    assert len(rig.net.sent()) == 1
