"""A wall clock that jumps (NTP setting a Raspberry Pi that booted at its shutdown time, someone
running ``date``) never turns into false DOWN alerts or late deadlines.

The watchdog runs for real (asyncio task, real SQLite store); only the two clocks it reads are
in the test's hands, since the machine's own clock cannot be stepped under a test suite.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from gateway.model import PingKind, PingMeta, Status
from gateway.runtime.watchdog import CLOCK_STEP, ClockWatch, Watchdog, boot_clock
from gateway.service import PingOutcome, Service
from gateway.store import Store
from tests.support import clockrig
from tests.support.clockrig import OWNER, T0, Clocks

# ------------------------------------------------------------------------------ ClockWatch (pure)


@pytest.mark.parametrize(
    ("looks", "steps"),
    [
        ([(T0, 10.0)], [0.0]),  # the first look has nothing to compare with
        ([(T0, 10.0), (T0 + 30, 40.0)], [0.0, 0.0]),  # both moved 30 s
        ([(T0, 10.0), (T0 + 30.015, 40.0)], [0.0, 0.0]),  # NTP slewing: 0.5 ms/s at most
        ([(T0, 10.0), (T0 + 3630, 40.0)], [0.0, 3600.0]),  # stepped forward an hour
        ([(T0, 10.0), (T0 - 3570, 40.0)], [0.0, -3600.0]),  # stepped back an hour
        ([(T0, 10.0), (T0 + 86400, 86410.0)], [0.0, 0.0]),  # a day suspended: boot clock counts it
        ([(T0, 10.0), (T0 + 3630, 40.0), (T0 + 3660, 70.0)], [0.0, 3600.0, 0.0]),  # reported once
        ([(T0, 10.0), (T0 + 30 + CLOCK_STEP, 40.0)], [0.0, CLOCK_STEP]),  # at the threshold
    ],
)
def test_clock_watch_reports_steps_once_and_nothing_else(looks: list[tuple[float, float]], steps: list[float]) -> None:
    watch = ClockWatch()
    assert [pytest.approx(watch.step(wall, boot)) for wall, boot in looks] == steps


def test_clock_watch_reports_a_step_again_after_undo() -> None:
    watch = ClockWatch()
    watch.step(T0, 10.0)
    assert watch.step(T0 + 3601, 11.0) == pytest.approx(3600.0)
    watch.undo(3600.0)
    assert watch.step(T0 + 3602, 12.0) == pytest.approx(3600.0)
    assert watch.step(T0 + 3603, 13.0) == 0.0


def test_the_boot_clock_moves_with_real_time() -> None:
    a = boot_clock()
    assert a > 0 and 0 <= boot_clock() - a < 5


# ------------------------------------------------------------------------- store and service


@pytest.fixture
def clocks() -> Clocks:
    return Clocks()


@pytest.fixture
def service(tmp_path: Path, clocks: Clocks) -> Iterator[Service]:
    config = clockrig.config(tmp_path, alerts={"email_to": []})
    store = Store(config.db_path).open()
    try:
        yield Service(store, config, clock=clocks)
    finally:
        store.close()


def ping(service: Service, name: str) -> None:
    token = service.get_check(name).token
    assert service.record_ping(token, PingKind.SUCCESS, None, PingMeta()) is PingOutcome.OK


def notes(service: Service) -> list[str]:
    return [e.detail or "" for e in clockrig.events(service) if e.kind == "note"]


def alerts(service: Service) -> list[str]:
    return [m["text"] for m in clockrig.outbox(service) if m["to"] == OWNER]


def test_a_forward_step_gives_a_fresh_period_instead_of_a_false_down(service: Service, clocks: Clocks) -> None:
    for name in ("web1", "web2", "gone", "held"):
        service.add_check(name, period=60, grace=60)
        ping(service, name)
    service.pause("held")
    clocks.run(150)  # "gone" missed its deadline before the step: it is down for real
    ping(service, "web1")
    ping(service, "web2")
    expected = clocks.wall
    clocks.step(4 * 3600)
    reset = service.clock_stepped(expected, clocks.wall)
    assert sorted(c.name for c in reset) == ["web1", "web2"]
    for name in ("web1", "web2"):
        check = service.get_check(name)
        assert (check.anchor, check.next_deadline) == (clocks.wall, clocks.wall + 60)
        assert service.status_of(check) is Status.UP
    assert service.get_check("gone").anchor == T0  # left for the watchdog to flip
    assert service.status_of(service.get_check("held")) is Status.PAUSED
    # What the watchdog does next flips only the check that really missed its deadline.
    assert {f.check_id for f in service.advance()} == {service.get_check("gone").id}
    assert len(notes(service)) == 1 and "clock jumped forward" in notes(service)[0]
    assert "2 check(s)" in notes(service)[0]
    texts = alerts(service)
    assert "clock jumped" in texts[0] and "2 server(s)" in texts[0]
    assert [t.split(":")[0] for t in texts if "DOWN" in t] == ["DOWN gone"]


def test_a_step_back_re_anchors_checks_stamped_in_the_future(service: Service, clocks: Clocks) -> None:
    service.add_check("web1", period=60, grace=60)
    service.add_check("old", period=60, grace=60)
    ping(service, "old")
    clocks.run(30)
    ping(service, "web1")  # stamped by a clock that was 20 s fast
    expected = clocks.wall
    clocks.step(-20)
    reset = service.clock_stepped(expected, clocks.wall)
    assert [c.name for c in reset] == ["web1"]  # "old" was stamped before the corrected now
    web1 = service.get_check("web1")
    # Without this its deadlines would be 20 s late (an hour late after an hour's step).
    assert (web1.anchor, web1.next_deadline) == (clocks.wall, clocks.wall + 60)
    assert service.get_check("old").anchor == T0 and "went back" in notes(service)[0]
    assert alerts(service) == []  # nothing the owner must act on


def test_a_step_back_keeps_reminders_for_a_down_check_on_schedule(service: Service, clocks: Clocks) -> None:
    service.add_check("web1", period=60, grace=60)
    ping(service, "web1")
    clocks.run(150)
    service.advance()
    down = service.get_check("web1")
    assert down.status is Status.DOWN and down.alert_at == clocks.wall + 900  # [alerts] repeat
    expected = clocks.wall
    clocks.step(-3600)
    service.clock_stepped(expected, clocks.wall)
    after = service.get_check("web1")
    assert after.status is Status.DOWN and after.down_since == down.down_since
    assert (after.last_alert, after.alert_at) == (clocks.wall, clocks.wall + 900)  # not 1 h 15 min


# ----------------------------------------------------------------------------- the watchdog


class Looks:
    """The watchdog's boot clock, counting how often the watchdog looked at the clocks."""

    def __init__(self, clocks: Clocks) -> None:
        self.clocks, self.count = clocks, 0

    def __call__(self) -> float:
        self.count += 1
        return self.clocks.boot

    async def more(self, n: int) -> None:
        target = self.count + n
        await _until(lambda: self.count >= target)


async def _watch(service: Service, clocks: Clocks, scenario: Callable[[Looks], Awaitable[None]]) -> None:
    looks = Looks(clocks)
    dog = Watchdog(service, recheck=0.01, clock=clocks, boot=looks)
    task = asyncio.create_task(dog.run())
    try:
        await scenario(looks)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _until(what: Callable[[], object], timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not what():
        assert loop.time() < end, "timed out"
        await asyncio.sleep(0.005)


def test_the_watchdog_hands_a_step_over_before_it_flips_anything(service: Service, clocks: Clocks) -> None:
    service.add_check("web1", period=60, grace=60)
    ping(service, "web1")

    async def scenario(looks: Looks) -> None:
        await looks.more(2)  # the watchdog has seen the clocks move together
        clocks.step(6 * 3600)  # NTP sets the clock of a Pi that booted at its shutdown time
        await _until(lambda: notes(service))
        await looks.more(3)
        assert service.get_check("web1").status is Status.UP
        assert service.get_check("web1").anchor == clocks.wall
        # Time then passes for real: the watchdog still flips on time, step or no step.
        clocks.run(61)
        await _until(lambda: service.get_check("web1").status is Status.LATE)
        clocks.run(60)
        await _until(lambda: service.get_check("web1").status is Status.DOWN)

    asyncio.run(_watch(service, clocks, scenario))
    kinds = [(e.kind, e.old_status, e.new_status) for e in clockrig.events(service, "web1")]
    assert [k for k in kinds if k[0] == "flip"] == [
        ("flip", "new", "up"),
        ("flip", "up", "late"),
        ("flip", "late", "down"),
    ]
    texts = alerts(service)
    assert "clock jumped" in texts[0] and "DOWN" in texts[-1] and len(texts) == 2
