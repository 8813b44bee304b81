"""The modem watch: the owner hears once when the modem has been unusable for
``[alerts] modem_alert_after`` and once when it works again; the modem log gets a row when the
health changes and once per ``MODEM_LOG_EVERY`` otherwise.

A real store and service; the clock is the test's, and the keeper is a small stand-in whose
health the test sets (the watch reads only ``health`` and ``health_changed``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.cli import _render_health
from gateway.config import AlertsConfig, Config, ModemConfig
from gateway.readmodels import MODEM_LOG_EVERY
from gateway.rules import policy
from gateway.runtime.modemwatch import WORKS_AGAIN, ModemWatch
from gateway.service import Service
from gateway.store import Store
from modem.driver import ModemHealth, ModemStatus

T0 = 1_800_000_000.0
OWNER = "owner@example.net"
AFTER = 600.0
GOOD = ModemStatus(backend="at", port="/dev/ttyUSB0", sim="READY", registration="home", operator="Op", signal_dbm=-71)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now

    def run(self, seconds: float) -> None:
        self.now += seconds


class Keeper:
    """ModemKeeper's health side: the test sets the snapshot; ``health_changed`` returns when it
    changes or after ``timeout``, as the keeper's does."""

    def __init__(self) -> None:
        self._health = ModemHealth(True, None, dt.datetime.now(dt.UTC), GOOD)
        self._changed = asyncio.Event()
        self.waits = 0  # how often the watch started waiting, i.e. finished a look

    @property
    def health(self) -> ModemHealth:
        return self._health

    def set(self, connected: bool, error: str | None = None, **status: Any) -> None:
        st = dataclasses.replace(GOOD, **status)
        self._health = ModemHealth(connected, error, dt.datetime.now(dt.UTC), st)
        self._changed.set()

    async def health_changed(self, timeout: float) -> None:
        self.waits += 1
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._changed.wait()
        self._changed.clear()


class Rig:
    def __init__(self, service: Service, clock: Clock) -> None:
        self.service, self.clock, self.keeper = service, clock, Keeper()
        self.watch = ModemWatch(service, self.keeper, alert_after=AFTER, clock=clock)

    def look(self, after: float = 0.0) -> None:
        self.clock.run(after)
        asyncio.run(self.watch.look())

    def notes(self) -> list[str]:
        rows = sorted(self.service.views.outbox(), key=lambda m: m.id)
        assert all((m.kind, m.channel, m.recipient) == ("modem", "email", OWNER) for m in rows)
        return [m.text for m in rows]

    def logged(self) -> list[tuple[float, bool, str | None]]:
        return [(r.at, r.connected, r.error) for r in self.service.store.modem_history(0)]


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    clock = Clock()
    config = Config(data_dir=tmp_path, alerts=AlertsConfig(email_to=(OWNER,), modem_alert_after=AFTER))
    with Store(config.db_path) as store:
        yield Rig(Service(store, config, clock=clock), clock)


def test_it_emails_the_owner_once_after_modem_alert_after_of_trouble(rig: Rig) -> None:
    rig.look()
    rig.keeper.set(False, "port vanished")
    rig.look(5)  # trouble starts here
    rig.look(AFTER - 1)
    assert rig.notes() == []
    rig.look(1)
    assert rig.notes() == [
        f"hbgw: cannot send SMS for {int(AFTER)} s: modem not connected; last error: port vanished."
        " Alerts go by email meanwhile; check the modem page."
    ]
    for _ in range(5):
        rig.look(AFTER)
    assert len(rig.notes()) == 1  # once per spell of trouble


@pytest.mark.parametrize(
    ("connected", "status", "trouble"),
    [
        (True, {"sim": "SIM PIN"}, "SIM problem (SIM PIN)"),
        (True, {"registration": "denied"}, "not registered on the network (denied)"),
        (True, {"registration": "searching"}, "not registered on the network (searching)"),
        (True, {"radio": "off"}, "the modem's radio is off"),
        (True, {"radio": "refused"}, "the modem's radio is off and it refused to switch it on"),
    ],
)
def test_it_counts_sim_and_network_problems_as_trouble(
    rig: Rig, connected: bool, status: dict[str, str], trouble: str
) -> None:
    rig.keeper.set(connected, **status)
    rig.look()
    rig.look(AFTER)
    assert [n.split(": ", 2)[2] for n in rig.notes()] == [
        f"{trouble}. Alerts go by email meanwhile; check the modem page."
    ]


def test_it_sends_one_works_again_note_after_recovery(rig: Rig) -> None:
    rig.keeper.set(False, "no answer")
    rig.look()
    rig.look(AFTER)
    rig.keeper.set(True)
    rig.look(30)  # working from here
    rig.look(AFTER - 1)
    assert rig.notes()[1:] == []  # not yet: it must work for modem_alert_after first
    rig.look(1)
    assert rig.notes()[1:] == [WORKS_AGAIN]
    # A second spell is a new alert (the last note is MODEM_NOTE_GAP old by then) ...
    rig.keeper.set(False)
    rig.look(1)
    rig.look(AFTER)
    # ... and a short heal inside it is the same spell: no note either way.
    rig.keeper.set(True)
    rig.look(1)
    rig.keeper.set(False)
    rig.look(1)
    rig.look(AFTER - 1)
    rig.keeper.set(True)
    rig.look(1)
    assert [n.split(" ", 2)[1] for n in rig.notes()] == ["cannot", "the", "cannot"]
    rig.look(AFTER)
    assert [n.split(" ", 2)[1] for n in rig.notes()] == ["cannot", "the", "cannot", "the"]


def test_it_sends_one_note_for_a_flapping_modem_however_often_it_flaps(rig: Rig) -> None:
    """Seen in a fault run: a modem dropping out every few seconds with a short modem_alert_after
    sent 9 notes in 2 minutes. A spell is one note when it breaks, one when it is back for good."""
    rig.keeper.set(False, "no answer")
    rig.look()
    for _ in range(12):  # two hours: broken for longer than modem_alert_after, then 30 s working
        rig.keeper.set(False, "no answer")
        rig.look(1)
        rig.look(AFTER + 100)
        rig.keeper.set(True)
        rig.look(30)
    assert [n.split(" ", 2)[1] for n in rig.notes()] == ["cannot"]
    rig.keeper.set(True)
    rig.look(1)
    rig.look(AFTER)
    assert [n.split(" ", 2)[1] for n in rig.notes()] == ["cannot", "the"]


def test_it_logs_modem_health_on_change_and_once_per_log_every(rig: Rig) -> None:
    every = MODEM_LOG_EVERY
    rig.look()
    rig.look(every - 1)
    rig.look(1)  # unchanged for MODEM_LOG_EVERY
    rig.keeper.set(False, "port vanished")
    rig.look(5)  # changed: logged at once
    rig.look(every - 1)
    rig.look(1)
    rig.keeper.set(True)
    rig.look(1)
    rig.keeper.set(True, signal_dbm=-90)  # the signal alone is no change worth a row
    rig.look(1)
    assert rig.logged() == [
        (T0, True, None),
        (T0 + every, True, None),
        (T0 + every + 5, False, "port vanished"),
        (T0 + 2 * every + 5, False, "port vanished"),
        (T0 + 2 * every + 6, True, None),
    ]


def test_it_watches_until_cancelled_and_looks_again_when_the_health_changes(rig: Rig) -> None:
    async def scenario() -> None:
        task = asyncio.create_task(rig.watch.run())
        try:
            await _until(lambda: rig.keeper.waits == 1)  # the first look; the next is 150 s away
            rig.clock.run(1)
            rig.keeper.set(False, "port vanished")
            await _until(lambda: rig.keeper.waits == 2)
            assert [c for _, c, _ in rig.logged()] == [True, False]
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert task.cancelled()

    asyncio.run(scenario())


async def _until(what: Callable[[], object], timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not what():
        assert loop.time() < end, "timed out"
        await asyncio.sleep(0.005)


def test_it_tells_the_owner_once_a_day_that_the_storage_was_full(rig: Rig) -> None:
    rig.keeper.set(True, storage_full_reports=0)
    rig.look()
    assert rig.notes() == []
    rig.keeper.set(True, storage_full_reports=1)  # the modem said "full" (and cleared it)
    rig.look(10)
    assert rig.notes() == [policy.STORAGE_FULL_TEXT]
    rig.keeper.set(True, storage_full_reports=3)  # it fills again the same day: no second note
    rig.look(3600)
    rig.keeper.set(True, storage_full_reports=0)  # reopened: counts from zero
    rig.look(10)
    assert rig.notes() == [policy.STORAGE_FULL_TEXT]
    rig.keeper.set(True, storage_full_reports=1)  # a day later it fills again: told again
    rig.look(policy.STORAGE_NOTE_GAP)
    assert rig.notes() == [policy.STORAGE_FULL_TEXT] * 2


def test_a_backend_that_cannot_tell_never_triggers_a_storage_note(rig: Rig) -> None:
    rig.keeper.set(True, storage_full_reports=None)
    rig.look()
    rig.look(policy.STORAGE_NOTE_GAP)
    assert rig.notes() == []


def test_hbgw_status_shows_the_recovery_step_the_daemon_logged(rig: Rig) -> None:
    rig.look()
    rig.keeper._health = dataclasses.replace(rig.keeper.health, recovery="radio cycle (step 2 of 5)")
    rig.look(5)  # a new step is a change: logged at once
    assert [r.recovery for r in rig.service.store.modem_history(0)] == [None, "radio cycle (step 2 of 5)"]
    # `hbgw status` is another process: it reads the log, not the keeper
    other = Service(rig.service.store, dataclasses.replace(rig.service.config, modem=ModemConfig(backend="at")))
    other.clock = rig.clock
    health = other.views.health(daemon_pid=1)
    assert health["modem"]["recovery"] == "radio cycle (step 2 of 5)"
    assert "the modem is being recovered: radio cycle (step 2 of 5)" in health["troubles"]
    assert "; recovery: radio cycle (step 2 of 5)" in _render_health(health)
    rig.keeper._health = dataclasses.replace(rig.keeper.health, recovery=None)
    rig.look(5)
    assert other.views.health(daemon_pid=1)["modem"]["recovery"] is None
