"""The recovery ladder: ``RecoveryLadder`` (pure, tables), ``usb_device_for`` on fake sysfs trees,
and ``ModemKeeper`` + ``AtModem`` against the simulator over a pty with its three hang kinds:
one a radio cycle clears, one only a USB re-enumeration clears (the keeper's write to a fake
sysfs ``authorized`` becomes an unplug/replug of the pty), one that never clears."""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.config import ConfigError, parse
from modem.atmodem import AtModem
from modem.interface import InboundSms
from modem.keeper import ModemKeeper, RecoveryLadder, Step, usb_device_for
from modem.sim.control import ControlServer
from modem.simulator import Network, PtyModem, SimOptions, Simulator
from tests.support.aio import run

NUMBER = "+15551230001"
ALL = (Step.RESYNC, Step.RADIO_CYCLE, Step.REOPEN, Step.REENUMERATE, Step.POWER_CYCLE)
R, S, G = Step.RESYNC, Step.RADIO_CYCLE, Step.GAVE_UP

# ----------------------------------------------------------------------------- the pure ladder

# Scripts of (now, action, expected): "trouble" / "works" feed the ladder; "step" asks for the
# step due at ``now`` (and ends it at once); "due" asks when the next one is due.
LADDER_SCRIPTS = {
    "nothing without trouble": [(0, "step", None), (500, "due", None)],
    "first step after recover_after": [
        (0, "trouble", True),
        (119, "step", None),
        (50, "trouble", False),  # trouble goes on: the clock does not restart
        (120, "step", R),
        (121, "step", None),
        (239, "step", None),
        (240, "step", S),
    ],
    "late ticks take one step, never two": [
        (0, "trouble", True),
        (1000, "step", R),
        (1000, "step", None),
        (1000, "due", 1120),
    ],
    "climbs to gave up, then stays": [
        (0, "trouble", True),
        (120, "step", R),
        (240, "step", S),
        (360, "step", Step.REOPEN),
        (480, "step", Step.REENUMERATE),
        (600, "step", Step.POWER_CYCLE),
        (720, "step", G),
        (720, "due", None),
        (100_000, "step", None),
    ],
    "works again resets it": [
        (0, "trouble", True),
        (120, "step", R),
        (130, "works", R),
        (130, "due", None),
        (200, "trouble", True),
        (319, "step", None),
        (320, "step", R),
    ],
    "works before any step": [(0, "trouble", True), (60, "works", None), (120, "step", None)],
}


@pytest.mark.parametrize("script", LADDER_SCRIPTS.values(), ids=list(LADDER_SCRIPTS))
def test_it_decides_the_next_step(script: list[tuple[float, str, object]]) -> None:
    ladder = RecoveryLadder(ALL, recover_after=120, step_wait=120)
    for now, action, expected in script:
        if action == "trouble":
            assert ladder.trouble(now) is expected
        elif action == "works":
            assert ladder.recovered() is expected
        elif action == "due":
            assert ladder.due() == expected
        else:
            step = ladder.next_step(now)
            assert step is expected, (now, step)
            if step is not None:
                ladder.ended(now)


def test_it_waits_after_a_step_ends_not_after_it_began() -> None:
    ladder = RecoveryLadder((R, S), recover_after=10, step_wait=10)
    ladder.trouble(0)
    assert ladder.next_step(10) is R
    ladder.ended(25)  # a slow step (a resync waiting out its timeouts)
    assert ladder.next_step(34) is None
    assert ladder.next_step(35) is S


@pytest.mark.parametrize(
    ("steps", "step", "label"),
    [
        (ALL, R, "resync (step 1 of 5)"),
        (ALL, S, "radio cycle (step 2 of 5)"),
        (ALL[:3], Step.REOPEN, "port reopen (step 3 of 3)"),
        (ALL, G, "gave up after 5 steps"),
        ((R,), G, "gave up after 1 step"),
    ],
)
def test_it_labels_steps(steps: tuple[Step, ...], step: Step, label: str) -> None:
    assert RecoveryLadder(steps, recover_after=1, step_wait=1).label(step) == label


# ----------------------------------------------------------------------------- fake sysfs


USB_DEVICE = "devices/pci0000:00/0000:00:14.0/usb1/1-1"


def fake_sysfs(root: Path, tty_name: str, *, usb: str = USB_DEVICE, fifo: bool = False) -> Path:
    """A sysfs tree as the kernel lays it out for a USB serial modem: root hub, device,
    interface, tty; ``class/tty/<name>/device`` links to the tty's device. Returns the USB
    device's directory."""
    hub = root / usb.rsplit("/", 1)[0]
    device = root / usb
    port = device / f"{device.name}:1.0" / "ttyUSB0"
    port.mkdir(parents=True, exist_ok=True)
    for d in (hub, device):
        (d / "idVendor").write_text("1e0e\n")
        if d != device or not fifo:
            (d / "authorized").write_text("1\n")
    (device / f"{device.name}:1.0" / "authorized").write_text("1\n")  # interfaces have one too
    if fifo:
        os.mkfifo(device / "authorized")
    link_tty(root, tty_name, port)
    return device


def link_tty(root: Path, tty_name: str, port: Path) -> None:
    entry = root / "class" / "tty" / tty_name
    entry.mkdir(parents=True, exist_ok=True)
    (entry / "device").symlink_to(os.path.relpath(port, entry))


@pytest.mark.parametrize(
    ("usb", "tty", "found"),
    [
        (USB_DEVICE, "/dev/ttyUSB2", True),
        (USB_DEVICE, "/dev/ttyUSB9", False),  # another tty: not in the tree
        ("devices/pci0000:00/usb1", "/dev/ttyUSB2", False),  # the root hub itself: never
    ],
)
def test_it_finds_the_usb_device_of_a_tty(tmp_path: Path, usb: str, tty: str, found: bool) -> None:
    device = fake_sysfs(tmp_path, "ttyUSB2", usb=usb)
    if usb.endswith("usb1"):
        # A port straight on a root hub: walking up reaches the hub, which is refused.
        (device / "idVendor").write_text("1d6b\n")
    assert usb_device_for(tty, tmp_path) == (device if found else None)


def test_it_follows_a_link_to_the_tty(tmp_path: Path) -> None:
    device = fake_sysfs(tmp_path / "sys", "ttyUSB2")
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "ttyUSB2").touch()
    (tmp_path / "dev" / "hbgw-modem").symlink_to("ttyUSB2")
    assert usb_device_for(str(tmp_path / "dev" / "hbgw-modem"), tmp_path / "sys") == device


# ----------------------------------------------------------------------------- keeper + simulator


class FakeUsb:
    """The fake sysfs tree of the simulator's pty, with ``authorized`` a FIFO we read: "0" is
    an unplug of the pty (the modem loses power), "1" a replug (a fresh power-up, a new pty
    behind the same link, entered into ``class/tty``), as the kernel would re-enumerate it."""

    def __init__(self, root: Path, transport: PtyModem) -> None:
        self.root = root
        self.transport = transport
        self.device = fake_sysfs(root, self._tty_name(), fifo=True)
        self.writes: list[str] = []
        # O_RDWR: the keeper's open() never blocks, and we never see EOF between its writes.
        self._fd = os.open(self.device / "authorized", os.O_RDWR)
        self._thread = threading.Thread(target=self._serve, name="fake-usb", daemon=True)
        self._thread.start()

    def _tty_name(self) -> str:
        return os.path.basename(os.path.realpath(self.transport.device))

    def _serve(self) -> None:
        while True:
            for word in os.read(self._fd, 64).decode().split():
                if word == "stop":
                    return
                self.writes.append(word)
                if word == "0":
                    self.transport.unplug()
                elif word == "1":
                    self.transport.replug()
                    port = self.device / f"{self.device.name}:1.0" / "ttyUSB0"
                    if not (self.root / "class" / "tty" / self._tty_name()).exists():
                        link_tty(self.root, self._tty_name(), port)

    def close(self) -> None:
        os.write(self._fd, b" stop ")
        self._thread.join(timeout=5)
        os.close(self._fd)


@dataclass
class Rig:
    net: Network
    sim: Simulator
    transport: PtyModem
    usb: FakeUsb
    tmp: Path
    opens: int = 0

    def keeper(self, **kw: object) -> ModemKeeper:
        def factory() -> AtModem:
            self.opens += 1
            # list_timeout: a listing caught by the hang holds the lock that long.
            return AtModem(
                self.transport.device, command_timeout=0.3, send_timeout=2.0, list_timeout=1.0, radio_timeout=0.5
            )

        async def inbox(sms: InboundSms) -> None:
            pass

        kw = {
            "status_interval": 0.1,
            "min_backoff": 0.05,
            "max_backoff": 0.2,
            "recover_after": 0.6,
            "step_wait": 0.6,
            "device": self.transport.device,
            "sysfs_root": str(self.tmp / "sys"),
            "reenumerate_settle": 0.05,
            **kw,
        }
        return ModemKeeper(factory, inbox, **kw)  # type: ignore[arg-type]


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    net = Network()
    sim = Simulator(net, SimOptions())
    transport = PtyModem(sim, link=str(tmp_path / "ttyHBGW")).start()
    usb = FakeUsb(tmp_path / "sys", transport)
    yield Rig(net, sim, transport, usb, tmp_path)
    usb.close()
    transport.stop()


async def until(keeper: ModemKeeper, check: Callable[[], bool], timeout: float, what: str) -> None:
    """Wait on the keeper's health changes until ``check()`` holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}; events: {steps_of(keeper)}")
        await keeper.health_changed(0.05)


def steps_of(keeper: ModemKeeper) -> list[str]:
    return [e.step for e in keeper.recovery_events]


async def radio_spell(keeper: ModemKeeper, rig: Rig, spell: int) -> None:
    rig.sim.hang(clears="radio")
    done = lambda: steps_of(keeper).count("recovered") == spell  # noqa: E731
    await until(keeper, done, 10, f"recovery {spell}")
    # The resync answered, yet the modem stayed off the network: the radio cycle cured it.
    assert steps_of(keeper)[-3:] == ["resync", "radio cycle", "recovered"]
    assert [e.label for e in keeper.recovery_events[-3:-1]] == ["resync (step 1 of 4)", "radio cycle (step 2 of 4)"]
    assert keeper.recovery_events[-3].detail == "the modem answered"
    assert keeper.recovery_events[-1].detail == "after step radio cycle"
    assert not rig.sim.hung and keeper.health.recovery is None
    assert keeper.health.status is not None and keeper.health.status.registration == "home"


def test_it_clears_a_radio_hang_at_the_radio_cycle_and_starts_over_next_time(rig: Rig) -> None:
    keeper = rig.keeper()

    async def main() -> None:
        task = asyncio.create_task(keeper.run())
        try:
            await until(keeper, lambda: keeper.health.status is not None, 5, "connected")
            for spell in (1, 2):
                await radio_spell(keeper, rig, spell)
            cfun = [c for c in rig.sim.commands if c.startswith("AT+CFUN=")]
            assert cfun == ["AT+CFUN=4", "AT+CFUN=1"] * 2
            assert rig.opens == 1 and rig.usb.writes == []  # no reopen, no re-enumeration
        finally:
            await keeper.stop()
            await task

    run(main(), timeout=30)


def test_it_clears_a_usb_hang_by_re_enumeration_and_sends_what_waited(rig: Rig) -> None:
    keeper = rig.keeper()

    async def main() -> None:
        task = asyncio.create_task(keeper.run())
        try:
            await until(keeper, lambda: keeper.health.status is not None, 5, "connected")
            rig.sim.hang(clears="usb")
            reopened = lambda: not keeper.health.connected and "port reopen" in steps_of(keeper)  # noqa: E731
            await until(keeper, reopened, 15, "the port reopen")
            assert keeper.health.recovery == "port reopen (step 3 of 4)"
            assert rig.sim.hung and rig.usb.writes == []  # reopening did not cure it
            send = asyncio.create_task(keeper.send_sms(NUMBER, "queued in the outage", wait=20))
            await until(keeper, lambda: steps_of(keeper)[-1:] == ["recovered"], 20, "recovery")
            refs = await asyncio.wait_for(send, 10)
            assert refs and [s.text for s in rig.net.sent()] == ["queued in the outage"]
            assert steps_of(keeper) == ["resync", "radio cycle", "port reopen", "USB re-enumeration", "recovered"]
            assert rig.usb.writes == ["0", "1"]
            assert [e.label for e in keeper.recovery_events[:-1]] == [
                "resync (step 1 of 4)",
                "radio cycle (step 2 of 4)",
                "port reopen (step 3 of 4)",
                "USB re-enumeration (step 4 of 4)",
            ]
            assert keeper.health.connected and keeper.health.recovery is None
        finally:
            await keeper.stop()
            await task

    run(main(), timeout=45)


def test_it_gives_up_on_a_hang_that_never_clears_without_climbing_faster_than_its_wait(rig: Rig) -> None:
    marker = rig.tmp / "power-cycled"
    command = [sys.executable, "-c", "import sys; open(sys.argv[1], 'a').write('cycled')", str(marker)]
    keeper = rig.keeper(power_cycle_command=command)

    async def main() -> None:
        task = asyncio.create_task(keeper.run())
        try:
            await until(keeper, lambda: keeper.health.status is not None, 5, "connected")
            rig.sim.hang(clears="never")
            await until(keeper, lambda: keeper.health.recovery == "gave up after 5 steps", 25, "giving up")
            events = keeper.recovery_events
            assert [e.step for e in events] == [
                "resync",
                "radio cycle",
                "port reopen",
                "USB re-enumeration",
                "power-cycle command",
                "gave up",
            ]
            gaps = [(b.at - a.at).total_seconds() for a, b in itertools.pairwise(events)]
            assert min(gaps) >= 0.6 - 0.02, gaps  # each step waited step_wait after the last
            assert marker.read_text() == "cycled" and "exited with status 0" in events[4].detail
            assert rig.usb.writes == ["0", "1"]
            # Given up: it goes on reopening at the backoff, with no further step.
            opens = rig.opens
            await until(keeper, lambda: rig.opens >= opens + 3, 15, "three more reopen attempts")
            assert steps_of(keeper)[-1] == "gave up" and len(keeper.recovery_events) == 6
            # Until the modem works again: then the ladder resets.
            rig.sim.hang(False)
            await until(keeper, lambda: steps_of(keeper)[-1] == "recovered", 15, "recovery")
            assert keeper.recovery_events[-1].detail == "after giving up"
            assert keeper.health.connected and keeper.health.recovery is None
        finally:
            await keeper.stop()
            await task

    run(main(), timeout=60)


# ----------------------------------------------------------------------------- [modem] keys


def test_it_reads_the_recovery_keys() -> None:
    modem = parse(
        {"modem": {"recover_after": "30s", "sysfs_root": "/tmp/sys", "power_cycle_command": ["uhubctl", "-a", "cycle"]}}
    ).modem
    assert (modem.recover_after, modem.sysfs_root, modem.power_cycle_command) == (
        30.0,
        "/tmp/sys",
        ("uhubctl", "-a", "cycle"),
    )
    default = parse({}).modem
    assert (default.recover_after, default.sysfs_root, default.power_cycle_command) == (120.0, "/sys", ())


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"recover_after": "0s"}, "[modem] recover_after: must be at least 1s"),
        ({"sysfs_root": "sys"}, "[modem] sysfs_root: must be an absolute path"),
        ({"power_cycle_command": "uhubctl -a cycle"}, "[modem] power_cycle_command: expected a list"),
        ({"power_cycle_command": [" "]}, "[modem] power_cycle_command: the first element"),
    ],
)
def test_it_refuses_bad_recovery_keys(table: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse({"modem": table}, "hbgw.toml")


# ----------------------------------------------------------------------------- control socket


def test_it_sets_the_hang_kind_through_the_control_socket(rig: Rig) -> None:
    server = ControlServer(rig.sim, rig.transport)
    assert server.handle_line(b'{"cmd": "hang", "clears": "radio"}') == {"ok": True}
    status = server.handle_line(b'{"cmd": "status"}')
    assert (status["hung"], status["hang_clears"]) == (True, "radio")
    assert server.handle_line(b'{"cmd": "hang", "on": false}') == {"ok": True}
    assert server.handle_line(b'{"cmd": "status"}')["hang_clears"] is None
    refused = server.handle_line(b'{"cmd": "hang", "clears": "sometimes"}')
    assert not refused["ok"] and "clears must be one of" in refused["error"]
