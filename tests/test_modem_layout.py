"""The modem package after its split: the old import paths still work, the gammu backend no
longer pulls in the AT driver, and multipart bookkeeping lives in the Reassembler alone (a
set it pushes out leaves nothing behind in AtModem)."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import TypeVar

import pytest

from modem import atmodem, driver, interface, keeper, simulator
from modem.driver import AtModem, InboundSms
from modem.pdu import MISSING_PART, Deliver, Reassembler, decode_pdu, encode_deliver
from modem.sim import cli, control, device, machine, network, records, transports
from modem.simulator import Network, PtyModem, SimOptions, Simulator
from tests.support.aio import eventually, run

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")
MAX_PENDING = 1024  # AtModem's Reassembler bound
LONG = "part " * 60  # two parts


def first_parts(count: int) -> list[str]:
    """Part 1 of ``count`` two-part messages, each from its own sender (so each is its own set)."""
    when = dt.datetime.now(dt.UTC).replace(microsecond=0)
    return [encode_deliver(f"+1555000{i:04d}", LONG, timestamp=when, concat_ref=7)[0] for i in range(count)]


@pytest.fixture
def full_sim(tmp_path: Path) -> Iterator[tuple[Simulator, PtyModem]]:
    """A simulated modem whose storage holds one more unfinished multipart set than AtModem
    buffers, stored while no host listened (no +CMTI: AtModem finds them by listing)."""
    options = SimOptions(storage_size=MAX_PENDING + 10, cnmi=(0, 0, 0, 0, 0))
    sim = Simulator(Network(), options)
    for pdu in first_parts(MAX_PENDING + 1):
        sim.network.inject_pdu(pdu)
    assert len(sim.stored()) == MAX_PENDING + 1
    with PtyModem(sim, link=str(tmp_path / "ttyHBGW")) as transport:
        yield sim, transport


def test_it_deletes_the_set_the_reassembler_pushed_out(full_sim: tuple[Simulator, PtyModem]) -> None:
    sim, transport = full_sim
    first = sim.stored()[0]
    received: list[InboundSms] = []

    async def handler(sms: InboundSms) -> None:
        received.append(sms)

    async def main() -> None:
        modem = AtModem(transport.device, command_timeout=2.0, list_timeout=30.0)
        modem.set_inbound_handler(handler)
        await modem.open()
        try:
            await eventually(lambda: len(received) >= 1, 10, "the pushed-out set")
            (sms,) = received
            assert sms.complete is False and sms.parts == 1
            assert sms.sender == "+15550000000"  # the oldest set is the one pushed out
            assert sms.text.startswith("part part") and sms.text.endswith(MISSING_PART)
            assert sms.storage == (first.index,)
            await eventually(
                lambda: first.index not in {s.index for s in sim.stored()}, 10, "the pushed-out part deleted"
            )
            assert len(sim.stored()) == MAX_PENDING  # the other sets still wait for their parts
        finally:
            await modem.close()

    run(main(), 60)


# ------------------------------------------------------------------------------ the Reassembler alone


def deliver(pdu: str) -> Deliver:
    msg = decode_pdu(pdu, smsc=True)
    assert isinstance(msg, Deliver)
    return msg


@pytest.mark.parametrize("how", ["pushed-out", "timed-out"])
def test_it_forgets_the_storage_of_a_set_it_gives_up_on(how: str) -> None:
    old, new = (deliver(pdu) for pdu in first_parts(2))
    reassembler = Reassembler(timeout=60.0, max_pending=1)
    assert reassembler.put(old, now=0.0, storage=[3]) is None
    assert reassembler.put(old, now=1.0, storage=[4]) is None  # a duplicate, stored twice
    if how == "pushed-out":
        assert reassembler.put(new, now=2.0, storage=[5]) is None
        now = 2.0
    else:
        now = 61.0
    assert reassembler.holds(3) and reassembler.holds(4)  # until handed back
    (gone,) = reassembler.take_expired(now)
    assert (gone.message.sender, gone.parts, gone.complete, gone.storage) == (old.sender, 1, False, (3, 4))
    assert gone.message.text.endswith(MISSING_PART)
    assert not reassembler.holds(3) and not reassembler.holds(4)
    assert reassembler.holds(5) is (how == "pushed-out")


def test_it_hands_a_complete_set_back_with_every_slot() -> None:
    when = dt.datetime.now(dt.UTC).replace(microsecond=0)
    first, second = (deliver(p) for p in encode_deliver("+15557654321", LONG, timestamp=when, concat_ref=9))
    reassembler = Reassembler()
    assert reassembler.put(second, now=0.0, storage=[8]) is None
    whole = reassembler.put(first, now=1.0, storage=[2])
    assert whole is not None
    assert (whole.message.text, whole.parts, whole.complete, whole.storage) == (LONG, 2, True, (2, 8))
    assert not reassembler.holds(2) and not reassembler.holds(8) and len(reassembler) == 0


# ------------------------------------------------------------------------------ import paths


@pytest.mark.parametrize(
    ("facade", "name", "home"),
    [
        (driver, "AtModem", atmodem),
        (driver, "PART_TRIES", atmodem),
        (driver, "mask_number", interface),
        (driver, "Modem", interface),
        (driver, "ModemStatus", interface),
        (driver, "InboundSms", interface),
        (driver, "InboundHandler", interface),
        (driver, "SimAbsent", interface),
        (driver, "ModemKeeper", keeper),
        (driver, "ModemHealth", keeper),
        (simulator, "SimOptions", records),
        (simulator, "SentSms", records),
        (simulator, "StoredSms", records),
        (simulator, "Network", network),
        (simulator, "mask_number", interface),
        (simulator, "Simulator", device),
        (simulator, "split_args", machine),
        (simulator, "CTRL_Z", machine),
        (simulator, "ESC", machine),
        (simulator, "PtyModem", transports),
        (simulator, "TcpModem", transports),
        (simulator, "ControlServer", control),
        (simulator, "SimulatorControl", control),
        (simulator, "SimulatorControlError", control),
        (simulator, "add_cli_arguments", cli),
        (simulator, "cli_main", cli),
    ],
)
def test_it_keeps_the_old_import_paths(facade: ModuleType, name: str, home: ModuleType) -> None:
    assert getattr(facade, name) is getattr(home, name)
    assert name in facade.__all__


def test_it_loads_the_gammu_backend_without_the_at_driver() -> None:
    code = (
        "import sys, modem.gammu; "
        "loaded = {'modem.driver', 'modem.atmodem', 'modem.keeper', 'modem.at'} & set(sys.modules); "
        "assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)
