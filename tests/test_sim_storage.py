"""The SIM's message storage never fills up with messages we cannot read (issue 12, defect 3),
and a storage near full is a trouble ``hbgw status`` and the overview show.

AtModem against the simulator over a real pty (and TCP), with the rig of test_at_modem. Each
test here failed on the code before the fix (checked against ``git show HEAD:modem/atmodem.py``):
undecodable messages were skipped and kept, 30 of them filled the SIM and the owner's STATUS
stayed with the network; a refused ``AT+CMGD`` was never tried again; the modem status had no
storage fill, so no trouble line.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.config import AlertsConfig, Config, ModemConfig
from gateway.readmodels import storage_troubles
from gateway.runtime.daemon import ModemParts
from gateway.runtime.demo import DemoPhone
from gateway.service import Service
from gateway.store import Store
from modem.driver import AtModem, ModemKeeper
from modem.simulator import Network, SimOptions
from tests.support.aio import eventually, run
from tests.test_at_modem import Inbox, Rig, make_rig, opened

__all__ = ["make_rig"]  # the pty/tcp rig fixture, shared with test_at_modem

OWNER = "+15550000001"
STRANGER = "+15559990000"
JUNK = bytes(range(40, 100))  # user data under DCS 0x24: compressed, which we do not decode


def fill_with_junk(net: Network, count: int) -> None:
    for i in range(count):
        net.inject_data(STRANGER, JUNK[i % 7 :], dcs=0x24)


@pytest.mark.parametrize("arrives", ["while offline", "while online"])
def test_it_reads_the_owner_command_after_junk_filled_the_sim(make_rig: Callable[..., Rig], arrives: str) -> None:
    offline = arrives == "while offline"

    def before_start(net: Network) -> None:
        if offline:
            fill_with_junk(net, 30)
            net.inject(OWNER, "STATUS")

    rig = make_rig(SimOptions(storage_size=30), before_start=before_start)
    if offline:
        assert rig.sim.storage_fill() == (30, 30)
        assert rig.net.undelivered() == 1  # the owner's STATUS is held by the network
    inbox = Inbox()

    async def main() -> None:
        async with opened(rig.modem(), inbox) as modem:
            if not offline:
                fill_with_junk(rig.net, 30)
                rig.net.inject(OWNER, "STATUS")
            await eventually(lambda: any(m.text == "STATUS" for m in inbox.messages), 15, "the owner's STATUS")
            await eventually(lambda: rig.sim.stored() == [], 10, "the junk deleted")
            status = await modem.status()
            assert (status.storage_used, status.storage_total) == (0, 30)

    run(main())
    assert rig.net.undelivered() == 0
    junk = [m for m in inbox.messages if m.sender == STRANGER]
    assert len(junk) == 30 and len(inbox.messages) == 31  # each handed over once, raw
    assert all(m.undecodable and m.text.startswith("[undecodable SMS, DCS 0x24: ") for m in junk)
    assert junk[0].text == "[undecodable SMS, DCS 0x24: " + JUNK[:24].hex().upper() + "...]"


def test_it_deletes_again_a_message_whose_deletion_was_refused(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    inbox = Inbox()

    async def main() -> None:
        async with opened(rig.modem(delete_retry_interval=0.2), inbox) as modem:
            rig.sim.fail_next_delete(500, count=3)
            rig.net.inject(OWNER, "STATUS")
            await inbox.wait(1)
            await modem.status()  # the first AT+CMGD was answered by now
            assert len(rig.sim.stored()) == 1
            await eventually(lambda: rig.sim.stored() == [], 5, "the deletion tried again")
            rig.net.inject(OWNER, "HELP")  # the freed slot again: a new message, not the old one
            await inbox.wait(2)
            await eventually(lambda: rig.sim.stored() == [], what="HELP deleted")

    run(main())
    assert [m.text for m in inbox.messages] == ["STATUS", "HELP"]  # never handed over twice


@pytest.mark.parametrize(
    ("used", "total", "troubles"),
    [
        (None, None, []),
        (0, 30, []),
        (26, 30, []),
        (27, 30, ["SIM message storage nearly full: 27 of 30"]),
        (30, 30, ["SIM message storage full: 30 of 30"]),
        (229, 255, []),
        (230, 255, ["SIM message storage nearly full: 230 of 255"]),
        (8, 10, ["SIM message storage nearly full: 8 of 10"]),
    ],
)
def test_it_tells_when_the_storage_is_nearly_full(used: int | None, total: int | None, troubles: list[str]) -> None:
    assert storage_troubles(used, total) == troubles


def test_status_and_overview_show_a_nearly_full_sim(make_rig: Callable[..., Rig], tmp_path: Path) -> None:
    """The modem as the daemon wires it (keeper, ModemParts.describe, the service): messages
    the handler cannot store stay on the SIM; near full, it is a trouble."""
    rig = make_rig(SimOptions(storage_size=30))
    inbox = Inbox()
    inbox.fail = True  # the database refuses: every message is kept on the SIM
    keeper = ModemKeeper(lambda: AtModem(rig.url, command_timeout=2.0), inbox, status_interval=0.1)
    parts = ModemParts(keeper, DemoPhone(rig.net, rig.sim), rig.transport, "at", rig.url)
    config = Config(
        data_dir=tmp_path, modem=ModemConfig(backend="at", device=rig.url), alerts=AlertsConfig(sms_to=(OWNER,))
    )

    async def main() -> tuple[dict[str, object], list[str]]:
        task = asyncio.create_task(keeper.run())
        try:
            for i in range(28):
                rig.net.inject(STRANGER, f"spam {i}")
            await eventually(lambda: inbox.calls == 28, 15, "28 handler calls")
            await eventually(lambda: parts.describe().storage_used == 28, 15, "the fill in the report")
        finally:
            await keeper.stop()
            await task
        with Store(config.db_path) as store:
            service = Service(store, config)
            service.modem_status_source = parts.describe
            return service.views.health(daemon_pid=os.getpid()), service.views.overview().troubles

    health, banner = run(main())
    line = "SIM message storage nearly full: 28 of 30"
    assert line in health["troubles"] and line in banner  # type: ignore[operator]
    assert health["ok"] is False  # hbgw status exits 3


def test_hbgw_status_in_another_process_sees_the_fill_the_daemon_logged(tmp_path: Path) -> None:
    """`hbgw status` runs in its own process: it has no modem, only the daemon's modem log."""
    config = Config(data_dir=tmp_path, modem=ModemConfig(backend="at"), alerts=AlertsConfig(sms_to=(OWNER,)))
    with Store(config.db_path) as store:
        daemon = Service(store, config)
        logged = daemon.record_modem_health(
            connected=True,
            signal_dbm=-71,
            registration="home",
            operator="Op",
            error=None,
            storage_used=29,
            storage_total=30,
        )
        asyncio.run(logged)
        status = Service(store, config).views.health(daemon_pid=os.getpid())  # no modem_status_source
    assert status["troubles"] == ["SIM message storage nearly full: 29 of 30"]
    assert status["ok"] is False
