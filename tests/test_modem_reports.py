"""What the modem tells on its own, and what init asks of it (issue 17): unsolicited
registration reports (losing the network is seen when it happens), storage-full reports (read
and cleared at once, counted for the owner), Huawei's ``^CURC`` chatter switched off, the wait
for the network after the radio was switched on, and the modem's own memory preferred to the
SIM's few slots.

The pure recogniser first, then the AtModem against the simulator over a real pty."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest

from modem.at import Urc, storage_full_report
from modem.keeper import ModemKeeper
from modem.simulator import SimOptions
from tests.support.aio import eventually, run
from tests.test_at_modem import NUMBER, Inbox, Rig, opened

# ------------------------------------------------------------------------------ recogniser


@pytest.mark.parametrize(
    ("name", "line", "full"),
    [
        ("^SMMEMFULL", '^SMMEMFULL: "SM"', True),  # Huawei
        ("^SMMEMFULL", '^SMMEMFULL: "ME"', True),
        ("+QIND", '+QIND: "smsfull","SM"', True),  # Quectel
        ("+QIND", "+QIND: SMS DONE", False),
        ("+QIND", '+QIND: "csq",20,99', False),
        ("+CIEV", '+CIEV: "SMSFULL",1', True),  # 27.007 indicator, by name
        ("+CIEV", "+CIEV: smsfull,2", True),
        ("+CIEV", '+CIEV: "SMSFULL",0', False),  # room again
        ("+CIEV", "+CIEV: 7,1", False),  # an indicator index: meaningless without AT+CIND=?
        ("+CIEV", '+CIEV: "signal",3', False),
        ("+CMTI", '+CMTI: "SM",3', False),
    ],
)
def test_it_recognises_every_storage_full_report(name: str, line: str, full: bool) -> None:
    assert storage_full_report(Urc(name, line)) is full


# ------------------------------------------------------------------------------ over a real pty


def test_it_asks_for_registration_reports_and_sees_the_network_go_and_come_back(
    make_pty_rig: Callable[..., Rig],
) -> None:
    rig = make_pty_rig(SimOptions())

    async def main() -> None:
        async with opened(rig.modem()) as modem:
            news = asyncio.ensure_future(modem.wait_news())
            await asyncio.sleep(0)
            assert not news.done()
            rig.sim.set_registration(2)  # every domain loses it, each in its own report
            async with asyncio.timeout(5):
                await news
            assert (await modem.status()).registration == "searching"
            rig.sim.set_registration(1)  # back: news again
            async with asyncio.timeout(5):
                await modem.wait_news()

    run(main())
    for cmd in ("AT+CREG=2", "AT+CGREG=2", "AT+CEREG=2"):
        assert cmd in rig.sim.commands


def test_a_report_that_changes_nothing_wakes_nobody(make_pty_rig: Callable[..., Rig]) -> None:
    rig = make_pty_rig(SimOptions())

    async def main() -> None:
        async with opened(rig.modem()) as modem:
            news = asyncio.ensure_future(modem.wait_news())
            rig.sim.urc('+CREG: 2,"1A2B","01C3D4E5",7')  # CS searching, while LTE stays registered
            rig.sim.urc('+CEREG: 1,"1A2B","01C3D4E5",7')
            await modem.ping()  # the reports arrived before this answer
            await asyncio.sleep(0)
            assert not news.done()
            news.cancel()

    run(main())


def test_the_keeper_looks_at_once_when_the_modem_reports_a_loss(make_pty_rig: Callable[..., Rig]) -> None:
    rig = make_pty_rig(SimOptions())

    async def main() -> None:
        # A refresh interval far beyond the test: only the report can make it look.
        keeper = ModemKeeper(lambda: rig.modem(), Inbox(), status_interval=3600.0, recover_after=None)
        task = asyncio.create_task(keeper.run())
        try:
            await eventually(lambda: keeper.health.connected and keeper.health.status is not None, 10.0, "connected")
            rig.sim.set_registration(3)
            await eventually(
                lambda: keeper.health.status is not None and keeper.health.status.registration == "denied",
                10.0,
                "the keeper's fresh look",
            )
        finally:
            await keeper.stop()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    run(main())


def test_a_full_storage_is_read_cleared_and_counted(make_pty_rig: Callable[..., Rig]) -> None:
    rig = make_pty_rig(SimOptions(cnmi=(2, 1, 0, 1, 0)))
    inbox = Inbox()

    async def main() -> None:
        async with opened(rig.modem(), inbox) as modem:
            assert (await modem.status()).storage_full_reports == 0
            with rig.sim._lock:  # the +CMTI is lost (it happens): only the report says so
                rig.sim._cnmi[1] = 0
            rig.net.inject("+15557654321", "ACK web1")
            await eventually(lambda: rig.sim.storage_fill()[0] == 1, what="the message in storage")
            rig.sim.urc('^SMMEMFULL: "ME"')
            messages = await inbox.wait(1)
            assert [m.text for m in messages] == ["ACK web1"]
            await eventually(lambda: rig.sim.storage_fill()[0] == 0, what="the storage cleared")
            assert (await modem.status()).storage_full_reports == 1

    run(main())


def test_it_switches_huawei_chatter_off_and_leaves_other_modems_alone(make_pty_rig: Callable[..., Rig]) -> None:
    huawei = make_pty_rig(SimOptions(manufacturer="huawei"))
    other = make_pty_rig(SimOptions(manufacturer="Quectel"))

    async def main() -> None:
        for rig in (huawei, other):
            async with opened(rig.modem()) as modem:
                await modem.send_sms(NUMBER, "server web1 is down")

    run(main())
    assert "AT^CURC=0" in huawei.sim.commands
    assert not [c for c in other.sim.commands if "CURC" in c]


def test_after_switching_the_radio_on_init_waits_for_the_network(make_pty_rig: Callable[..., Rig]) -> None:
    rig = make_pty_rig(SimOptions(radio_at_boot=4, registration=2))

    def register_later() -> None:  # the network is found a moment after AT+CFUN=1
        while "AT+CFUN=1" not in rig.sim.commands:
            if stop.wait(0.02):
                return
        stop.wait(0.5)
        rig.sim.set_registration(1)

    stop = threading.Event()
    helper = threading.Thread(target=register_later)
    helper.start()

    async def main() -> None:
        async with opened(rig.modem(registration_wait=20.0)) as modem:
            assert (await modem.status()).registration == "home"  # open() waited for it
            await modem.send_sms(NUMBER, "server web1 is down")

    try:
        run(main())
    finally:
        stop.set()
        helper.join()
    polls = [c for c in rig.sim.commands if c == "AT+CREG?"]
    assert len(polls) >= 2  # asked again while it searched
    assert [s.text for s in rig.net.sent()] == ["server web1 is down"]


def test_the_wait_for_the_network_is_bounded(make_pty_rig: Callable[..., Rig]) -> None:
    rig = make_pty_rig(SimOptions(radio_at_boot=4, registration=2))

    async def main() -> None:
        async with opened(rig.modem(registration_wait=1.5)) as modem:
            assert (await modem.status()).registration == "searching"  # open() did return

    run(main())


def test_it_keeps_messages_in_the_modems_memory_when_it_offers_it(make_pty_rig: Callable[..., Rig]) -> None:
    rig = make_pty_rig(SimOptions())
    inbox = Inbox()

    async def main() -> None:
        async with opened(rig.modem(), inbox):
            rig.net.inject("+15557654321", "STATUS")
            await inbox.wait(1)

    run(main())
    assert 'AT+CPMS="ME","ME","ME"' in rig.sim.commands
    assert any(c.startswith("AT+CMGD=") for c in rig.sim.commands)
    assert rig.sim.stored("ME") == [] and rig.sim.stored("SM") == []


def test_it_empties_the_sim_store_before_moving_to_the_modems_memory(make_pty_rig: Callable[..., Rig]) -> None:
    rig = make_pty_rig(SimOptions())
    rig.net.inject("+15557654321", "sent while the gateway was down")  # lands on the SIM ("SM")
    assert len(rig.sim.stored("SM")) == 1
    inbox = Inbox()

    async def main() -> None:
        async with opened(rig.modem(), inbox):
            await inbox.wait(1)
            await eventually(lambda: 'AT+CPMS="ME","ME","ME"' in rig.sim.commands, what="the move to ME")
            rig.net.inject("+15557654321", "STATUS")
            await inbox.wait(2)

    run(main())
    assert [m.text for m in inbox.messages] == ["sent while the gateway was down", "STATUS"]
    assert rig.sim.stored("SM") == [] and rig.sim.stored("ME") == []
    moved = list(rig.sim.commands).index('AT+CPMS="ME","ME","ME"')
    assert any(c.startswith("AT+CMGD=") for c in list(rig.sim.commands)[:moved])  # deleted first


def test_it_stays_on_the_sim_where_the_modem_has_no_memory_of_its_own(make_pty_rig: Callable[..., Rig]) -> None:
    rig = make_pty_rig(SimOptions(storages=("SM",)))  # AT+CPMS=? offers the SIM only
    inbox = Inbox()

    async def main() -> None:
        async with opened(rig.modem(), inbox):
            rig.net.inject("+15557654321", "STATUS")
            await inbox.wait(1)

    run(main())
    assert not [c for c in rig.sim.commands if c.startswith('AT+CPMS="')]
