"""Pure status and schedule logic: table tests plus hypothesis properties."""

from __future__ import annotations

import dataclasses
import datetime as dt
import zoneinfo
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from gateway.model import Check, PingKind, Schedule, Status
from gateway.rules import schedule as sched
from gateway.rules import status as st
from tests.support import checks

T0 = 1_800_000_000.0  # a fixed "now"; nothing here reads the clock


def make_check(**kw: object) -> Check:
    return checks.make_check(**{"created": T0, **kw})


def pinged(at: float, **kw: object) -> Check:
    return st.apply_ping(make_check(**kw), PingKind.SUCCESS, None, at)


@pytest.mark.parametrize(
    ("offset", "expected"),
    [
        (0, Status.UP),
        (899.9, Status.UP),
        (900, Status.LATE),
        (1799.9, Status.LATE),
        (1800, Status.DOWN),
        (10**6, Status.DOWN),
    ],
)
def test_it_goes_up_late_down_with_period_and_grace(offset: float, expected: Status) -> None:
    check = pinged(T0)
    assert st.evaluate(check, T0 + offset).status is expected


def test_it_stays_new_until_the_first_ping() -> None:
    check = make_check()
    assert st.evaluate(check, T0 + 10**7).status is Status.NEW
    assert st.evaluate(check, T0).next_change is None


def test_it_is_down_at_once_after_a_fail_ping_and_up_after_success() -> None:
    check = st.apply_ping(pinged(T0), PingKind.FAIL, None, T0 + 5)
    assert check.status is Status.DOWN and check.next_deadline is None
    assert st.apply_ping(check, PingKind.SUCCESS, None, T0 + 6).status is Status.UP


@pytest.mark.parametrize(("code", "expected"), [(0, Status.UP), (1, Status.DOWN), (255, Status.DOWN)])
def test_it_treats_a_nonzero_exit_status_as_failure(code: int, expected: Status) -> None:
    check = st.apply_ping(pinged(T0), PingKind.SUCCESS, code, T0 + 1)
    assert check.status is expected
    assert check.last_exit_status == code


def test_it_changes_nothing_but_the_log_for_a_log_ping() -> None:
    before = pinged(T0)
    after = st.apply_ping(before, PingKind.LOG, None, T0 + 100)
    assert (after.status, after.anchor, after.next_deadline) == (before.status, before.anchor, before.next_deadline)
    assert after.last_ping == T0 + 100 and after.n_pings == before.n_pings + 1


def test_it_goes_down_when_a_started_job_does_not_finish_within_grace() -> None:
    check = st.apply_ping(pinged(T0), PingKind.START, None, T0 + 10)
    ev = st.evaluate(check, T0 + 10)
    assert ev.down_at == T0 + 10 + 900  # start + grace, before period + grace
    assert st.evaluate(check, T0 + 10 + 900).status is Status.DOWN
    done = st.apply_ping(check, PingKind.SUCCESS, None, T0 + 20)
    assert done.last_start is None and done.next_deadline == T0 + 20 + 900


def test_it_keeps_paused_checks_paused_until_a_ping_resumes_them() -> None:
    paused = st.apply_pause(pinged(T0))
    assert st.evaluate(paused, T0 + 10**6).status is Status.PAUSED and paused.next_deadline is None
    assert st.apply_ping(paused, PingKind.SUCCESS, None, T0 + 10).status is Status.UP


def test_it_resumes_with_a_fresh_period_from_now() -> None:
    resumed = st.apply_resume(st.apply_pause(pinged(T0)), T0 + 5000)
    assert resumed.status is Status.UP and resumed.next_deadline == T0 + 5000 + 900
    assert st.apply_resume(st.apply_pause(make_check()), T0).status is Status.NEW


def test_it_gives_a_fresh_start_only_to_checks_that_were_running() -> None:
    up = pinged(T0)
    fresh = st.apply_fresh_start(up, T0 + 7200)
    assert fresh.status is Status.UP and fresh.anchor == T0 + 7200
    failed = st.apply_ping(up, PingKind.FAIL, None, T0 + 1)
    assert st.apply_fresh_start(failed, T0 + 7200) == failed
    assert st.apply_fresh_start(make_check(), T0) == make_check()


def test_it_expects_cron_pings_at_the_next_firing_in_local_time() -> None:
    paris = zoneinfo.ZoneInfo("Europe/Paris")
    s = Schedule(period=900, grace=300, cron="0 3 * * *", tz="Europe/Paris")
    anchor = dt.datetime(2026, 7, 1, 3, 0, 5, tzinfo=paris).timestamp()
    expected = dt.datetime(2026, 7, 2, 3, 0, tzinfo=paris).timestamp()
    assert sched.expected_after(s, anchor) == expected
    # across the DST change in autumn, 03:00 local time is still 03:00 local time
    anchor = dt.datetime(2026, 10, 24, 3, 0, 5, tzinfo=paris).timestamp()
    nxt = dt.datetime.fromtimestamp(sched.expected_after(s, anchor), paris)
    assert (nxt.day, nxt.hour, nxt.minute) == (25, 3, 0)


@pytest.mark.parametrize(
    ("schedule", "field"),
    [
        (Schedule(period=0, grace=1), "period"),
        (Schedule(period=60, grace=-1), "grace"),
        (Schedule(period=60, grace=1, cron="61 * * * *"), "cron"),
        (Schedule(period=60, grace=1, cron="* * * *"), "cron"),
        (Schedule(period=60, grace=1, cron="* * * * *", tz="Mars/Olympus"), "zone"),
    ],
)
def test_it_rejects_schedules_that_cannot_work(schedule: Schedule, field: str) -> None:
    with pytest.raises(sched.ScheduleError, match=field):
        sched.validate(schedule)


# ------------------------------------------------------------------------------- properties

RANK = {Status.NEW: 0, Status.UP: 0, Status.LATE: 1, Status.DOWN: 2}

periods = hs.floats(min_value=1, max_value=86400 * 7, allow_nan=False)
graces = hs.floats(min_value=0, max_value=86400 * 7, allow_nan=False)
offsets = hs.floats(min_value=0, max_value=86400 * 30, allow_nan=False)
crons = hs.sampled_from(["*/5 * * * *", "0 * * * *", "30 2 * * *", "0 9 * * 1-5", "15 */6 * * *"])
zones = hs.sampled_from(["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"])


@hs.composite
def schedules(draw: hs.DrawFn) -> Schedule:
    if draw(hs.booleans()):
        return Schedule(period=draw(periods), grace=draw(graces))
    return Schedule(period=900, grace=draw(graces), cron=draw(crons), tz=draw(zones))


@settings(max_examples=300, deadline=None)
@given(schedules(), offsets, offsets)
def test_it_never_gets_better_with_time_alone(schedule: Schedule, a: float, b: float) -> None:
    check = pinged(T0, schedule=schedule)
    t1, t2 = sorted((a, b))
    assert RANK[st.evaluate(check, T0 + t1).status] <= RANK[st.evaluate(check, T0 + t2).status]


@settings(max_examples=300, deadline=None)
@given(schedules(), offsets)
def test_it_changes_status_exactly_at_next_change(schedule: Schedule, offset: float) -> None:
    check = pinged(T0, schedule=schedule)
    now = T0 + offset
    ev = st.evaluate(check, now)
    if ev.next_change is None:
        assert ev.status is Status.DOWN
        return
    assert ev.next_change > now
    assert st.evaluate(check, ev.next_change).status is not ev.status
    before = max(now, ev.next_change - 1e-3)
    assert st.evaluate(check, before).status is ev.status


@settings(max_examples=200, deadline=None)
@given(schedules(), offsets)
def test_it_is_never_down_before_expected_time_plus_grace(schedule: Schedule, offset: float) -> None:
    check = pinged(T0, schedule=schedule)
    late_at = sched.expected_after(schedule, T0)
    assert late_at > T0
    now = T0 + offset
    if now < late_at + schedule.grace:
        assert st.evaluate(check, now).status is not Status.DOWN
    else:
        assert st.evaluate(check, now).status is Status.DOWN


kinds = hs.sampled_from(list(PingKind))
events = hs.lists(
    hs.tuples(
        hs.sampled_from(["ping", "pause", "resume"]),
        kinds,
        hs.one_of(hs.none(), hs.integers(0, 255)),
        hs.floats(min_value=0, max_value=5000, allow_nan=False),
    ),
    max_size=20,
)


@settings(max_examples=300, deadline=None)
@given(schedules(), events)
def test_it_keeps_stored_facts_consistent_after_any_sequence(schedule: Schedule, seq: list[Any]) -> None:
    check, now = make_check(schedule=schedule), T0
    for what, kind, code, gap in seq:
        now += gap
        was_paused = check.status is Status.PAUSED
        if what == "ping":
            check = st.apply_ping(check, kind, code, now)
        elif what == "pause":
            check = st.apply_pause(check)
        else:
            check = st.apply_resume(check, now)
        # After a transition that sets the facts (a ping other than /log, a resume of a paused
        # check) the stored status and deadline are what evaluate() says at that moment.
        # A /log ping and a no-op resume change nothing: deadline flips are the watchdog's.
        sets_facts = (what == "ping" and kind is not PingKind.LOG) or (what == "resume" and was_paused)
        if sets_facts:
            ev = st.evaluate(check, now)
            assert check.status is ev.status
            assert check.next_deadline == ev.next_change
            if check.next_deadline is not None:
                assert check.next_deadline > now
        if check.status is Status.PAUSED:
            assert check.next_deadline is None
    assert dataclasses.replace(check) == check


@pytest.mark.parametrize(
    ("cron", "anchor", "want"),
    [
        # Europe/Paris, 2026-10-25: 03:00 CEST becomes 02:00 CET; 02:00-02:59 happens twice.
        ("*/10 * * * *", (2026, 10, 25, 2, 55, 0), (2026, 10, 25, 2, 0, 1)),  # into the second pass
        ("*/10 * * * *", (2026, 10, 25, 2, 15, 1), (2026, 10, 25, 2, 20, 1)),  # within it
        ("30 2 * * *", (2026, 10, 25, 2, 40, 1), (2026, 10, 26, 2, 30, 0)),  # a daily job: tomorrow
        ("0 3 * * *", (2026, 10, 24, 3, 0, 0), (2026, 10, 25, 3, 0, 0)),
        # 2026-03-29: 02:00 CET becomes 03:00 CEST; 02:30 does not exist that day
        ("30 2 * * *", (2026, 3, 28, 2, 30, 0), (2026, 3, 29, 3, 30, 0)),
        ("0 12 * * *", (2026, 3, 28, 12, 0, 0), (2026, 3, 29, 12, 0, 0)),
    ],
)
def test_cron_firings_follow_the_local_clock_across_dst_changes(
    cron: str, anchor: tuple[int, ...], want: tuple[int, ...]
) -> None:
    paris = zoneinfo.ZoneInfo("Europe/Paris")

    def at(y: int, mo: int, d: int, h: int, mi: int, fold: int) -> float:
        return dt.datetime(y, mo, d, h, mi, tzinfo=paris, fold=fold).timestamp()

    s = Schedule(period=900, grace=300, cron=cron, tz="Europe/Paris")
    assert sched.expected_after(s, at(*anchor)) == at(*want)
