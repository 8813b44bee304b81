"""The alert lifecycle (gateway.rules.lifecycle), without SQLite: table tests for each decision
and hypothesis properties over random histories, applied by folding each Decision's check back in."""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from gateway.model import Check, Flip, PingKind, Schedule, Status
from gateway.rules import lifecycle
from gateway.rules import status as st
from gateway.rules.durations import humanize
from gateway.rules.lifecycle import POISON_RETRY, Decision, Note
from gateway.rules.settings import Settings
from tests.support.checks import make_check

T0 = 1_800_000_000.0  # 2027-01-15 08:00 UTC
SMS1, SMS2, MAIL = "+15551230000", "+15551239999", "o@example.test"
S = Settings(sms_to=(SMS1, SMS2), email_to=(MAIL,), repeat=900, coalesce=3.0, tz="UTC")
EVERYONE = [("sms", SMS1), ("sms", SMS2), ("email", MAIL)]
POISON_CRON = "61 * * * *"  # five fields, but croniter refuses minute 61 when evaluating


def at(hour: int, minute: int, day: int = 15) -> float:
    return dt.datetime(2027, 1, day, hour, minute, tzinfo=dt.UTC).timestamp()


def check(**kw: object) -> Check:
    """An up check pinged at T0 (period 15 min, grace 5 min: late at T0+900, down at T0+1200)."""
    up = dict(id=7, schedule=Schedule(900, 300), status=Status.UP, anchor=T0, last_ping=T0, next_deadline=T0 + 900)
    return make_check(**{**up, "created": T0 - 10**5, "n_pings": 5, **kw})


def down(**kw: object) -> Check:
    """A check down since T0-1800 (deadline), last alerted T0-900, next reminder due at T0."""
    base: dict[str, object] = dict(
        status=Status.DOWN,
        anchor=T0 - 3000,
        last_ping=T0 - 3000,
        next_deadline=None,
        down_since=T0 - 1800,
        last_alert=T0 - 900,
        alert_at=T0,
    )
    base.update(kw)
    return check(**base)


def who(d: Decision) -> list[tuple[str, str, str]]:
    return [(a.kind, a.channel, a.recipient) for a in d.alerts]


def after(d: Decision) -> Check:
    assert d.check is not None
    return d.check


# ------------------------------------------------------------------------------ deadlines


@pytest.mark.parametrize(
    "schedule", [Schedule(900, 300), Schedule(900, 300, cron="*/15 * * * *")], ids=["period", "cron"]
)
@pytest.mark.parametrize(
    ("status", "deadline", "now", "new_status", "new_deadline", "flipped"),
    [
        (Status.UP, T0 + 900, T0 + 899.5, Status.UP, T0 + 900, None),
        (Status.UP, T0 + 900, T0 + 900, Status.LATE, T0 + 1200, (Status.UP, Status.LATE)),
        (Status.LATE, T0 + 1200, T0 + 1199, Status.LATE, T0 + 1200, None),
        (Status.LATE, T0 + 1200, T0 + 1200, Status.DOWN, None, (Status.LATE, Status.DOWN)),
        (Status.UP, T0 + 900, T0 + 5000, Status.DOWN, None, (Status.UP, Status.DOWN)),
    ],
)
def test_it_goes_up_late_down_by_deadline(
    schedule: Schedule,
    status: Status,
    deadline: float,
    now: float,
    new_status: Status,
    new_deadline: float | None,
    flipped: tuple[Status, Status] | None,
) -> None:
    d = lifecycle.advance(check(schedule=schedule, status=status, next_deadline=deadline), now, S)
    assert (after(d).status, after(d).next_deadline) == (new_status, new_deadline)
    assert d.flip == (Flip(7, now, *flipped, "deadline") if flipped else None)
    assert {a.kind for a in d.alerts} == ({"down"} if new_status is Status.DOWN else set())


def test_it_decides_one_down_alert_per_channel_and_recipient() -> None:
    late = check(status=Status.LATE, next_deadline=T0 + 1200)
    d = lifecycle.advance(late, T0 + 1200, S)
    flip = Flip(7, T0 + 1200, Status.LATE, Status.DOWN, "deadline")
    key = lifecycle.flip_key(flip, late.n_pings)
    text = "DOWN web1: no heartbeat since 08:00 (20 min). Reply ACK web1 to silence."
    assert d.flip == flip
    assert who(d) == [("down", ch, r) for ch, r in EVERYONE]
    assert {a.text for a in d.alerts} == {text}
    assert [a.dedupe for a in d.alerts] == [f"{key}:{ch}:{r}" for ch, r in EVERYONE]
    assert {(a.check_id, a.check_name) for a in d.alerts} == {(7, "web1")}
    assert d.wait == 3.0
    c = after(d)
    assert (c.down_since, c.last_alert, c.alert_at, c.acked) == (T0 + 1200, T0 + 1200, T0 + 1200 + 900, False)
    assert (d.events, d.error) == ((), None)


def test_it_waits_the_configured_coalescing_time() -> None:
    s = dataclasses.replace(S, coalesce=12.5)
    assert lifecycle.advance(check(), T0 + 1200, s).wait == 12.5


def test_it_never_alerts_for_a_never_pinged_check() -> None:
    new = check(status=Status.NEW, anchor=None, last_ping=None, next_deadline=None)
    assert lifecycle.advance(new, T0 + 10**7, S) == Decision(new)


# ------------------------------------------------------------------------------ pings


@pytest.mark.parametrize(
    ("kind", "exit_status", "body", "text"),
    [
        (
            PingKind.FAIL,
            None,
            "disk full",
            "FAIL web1: failure reported at 08:10: disk full. Reply ACK web1 to silence.",
        ),
        (
            PingKind.FAIL,
            3,
            "rsync:\xa0connection   refused\n",
            "FAIL web1: exit status 3 at 08:10: rsync: connection refused. Reply ACK web1 to silence.",
        ),
        (PingKind.SUCCESS, 2, None, "FAIL web1: exit status 2 at 08:10. Reply ACK web1 to silence."),
        (
            PingKind.FAIL,
            1,
            "x" * 100,
            f"FAIL web1: exit status 1 at 08:10: {'x' * 57}.... Reply ACK web1 to silence.",
        ),
    ],
)
def test_it_sends_fail_with_exit_status_and_body_excerpt(
    kind: PingKind, exit_status: int | None, body: str | None, text: str
) -> None:
    now = T0 + 600
    d = lifecycle.ping(check(), kind, exit_status, now, S, body)
    assert d.flip == Flip(7, now, Status.UP, Status.DOWN, "fail")
    assert who(d) == [("fail", ch, r) for ch, r in EVERYONE]
    assert {a.text for a in d.alerts} == {text}
    c = after(d)
    assert (c.status, c.last_failed, c.last_exit_status) == (Status.DOWN, True, exit_status)
    assert (c.down_since, c.last_alert, c.alert_at, c.next_deadline) == (now, now, now + 900, None)
    assert d.wait == 3.0


@pytest.mark.parametrize(
    ("kind", "exit_status", "status", "deadline"),
    [
        (PingKind.SUCCESS, None, Status.UP, T0 + 600 + 900),
        (PingKind.SUCCESS, 0, Status.UP, T0 + 600 + 900),
        (PingKind.START, None, Status.UP, T0 + 600 + 300),
        (PingKind.LOG, None, Status.UP, T0 + 900),
        (PingKind.LOG, 1, Status.UP, T0 + 900),
    ],
)
def test_it_sends_nothing_for_a_ping_that_keeps_a_check_up(
    kind: PingKind, exit_status: int | None, status: Status, deadline: float
) -> None:
    d = lifecycle.ping(check(), kind, exit_status, T0 + 600, S, "fine")
    assert (d.flip, d.alerts) == (None, ())
    assert (after(d).status, after(d).next_deadline, after(d).n_pings) == (status, deadline, 6)


@pytest.mark.parametrize(
    "before",
    [
        down(acked=True, muted_until=T0 + 3600, down_since=T0 - 47 * 60, alert_at=None),
        down(last_failed=True, last_exit_status=4, down_since=T0 - 47 * 60, alert_at=T0 + 300),
        down(muted_until=T0 + 60, down_since=T0 - 47 * 60 - 59, alert_at=T0 + 60),
    ],
    ids=["acked-and-muted", "after-a-fail", "muted"],
)
def test_it_sends_one_up_with_the_downtime_and_clears_the_outage(before: Check) -> None:
    d = lifecycle.ping(before, PingKind.SUCCESS, None, T0, S, None)
    assert d.flip == Flip(7, T0, Status.DOWN, Status.UP, "ping")
    assert who(d) == [("up", ch, r) for ch, r in EVERYONE]
    assert {a.text for a in d.alerts} == {"UP web1 after 47 min"}
    c = after(d)
    assert (c.status, c.down_since, c.acked, c.muted_until, c.alert_at) == (Status.UP, None, False, None, None)
    assert (c.anchor, c.next_deadline, c.last_failed) == (T0, T0 + 900, False)


def test_it_says_up_without_a_downtime_when_the_outage_start_is_unknown() -> None:
    d = lifecycle.ping(down(down_since=None), PingKind.SUCCESS, None, T0, S, None)
    assert {a.text for a in d.alerts} == {"UP web1"}


@pytest.mark.parametrize(
    ("sms", "email", "channels"),
    [
        (True, True, EVERYONE),
        (False, True, [("email", MAIL)]),
        (True, False, [("sms", SMS1), ("sms", SMS2)]),
        (False, False, []),
    ],
)
def test_it_follows_the_sms_and_email_toggles(sms: bool, email: bool, channels: list[tuple[str, str]]) -> None:
    d = lifecycle.advance(check(sms_enabled=sms, email_enabled=email), T0 + 1200, S)
    assert who(d) == [("down", ch, r) for ch, r in channels]
    assert after(d).alert_at == (T0 + 2100 if channels else None)
    up = lifecycle.ping(after(d), PingKind.SUCCESS, None, T0 + 1800, S, None)
    assert who(up) == [("up", ch, r) for ch, r in channels]


def test_it_sends_email_only_after_sms_is_switched_off_during_an_outage() -> None:
    d = lifecycle.change(down(), down(sms_enabled=False), T0 - 10, "sms off", S)
    assert d.events == (Note("sms off", None, 7),)
    assert (d.flip, d.alerts) == (None, ())
    r = lifecycle.advance(after(d), T0, S)
    assert who(r) == [("reminder", "email", MAIL)]


# ------------------------------------------------------------------------------ reminders

QUIET = dataclasses.replace(S, quiet_hours=(7 * 60 + 30, 9 * 60))  # 07:30-09:00: T0 (08:00) is inside
NOBODY = Settings(repeat=900)


@pytest.mark.parametrize(
    ("before", "s", "now", "channels", "alert_at", "last_alert"),
    [
        (down(), S, T0, EVERYONE, T0 + 900, T0),
        (down(), S, T0 - 1, [], T0, T0 - 900),
        (down(repeat=120, last_alert=T0 - 120), S, T0, EVERYONE, T0 + 120, T0),
        (down(acked=True), S, T0, [], None, T0 - 900),
        (down(muted_until=T0 + 3600), S, T0, [], T0 + 3600, T0 - 900),
        (down(muted_until=T0), S, T0, EVERYONE, T0 + 900, T0),
        (down(sms_enabled=False), S, T0, [("email", MAIL)], T0 + 900, T0),
        (down(sms_enabled=False, email_enabled=False), S, T0, [], None, T0 - 900),
        (down(), NOBODY, T0, [], None, T0 - 900),
        (down(), QUIET, T0, [], T0 + 3600, T0 - 900),
        (down(alert_at=T0 + 3600), QUIET, T0 + 3600, EVERYONE, T0 + 4500, T0 + 3600),
    ],
    ids=[
        "due",
        "not-yet",
        "per-check-repeat",
        "acked",
        "muted",
        "mute-just-ended",
        "sms-off",
        "both-off",
        "no-recipients",
        "quiet-hours",
        "quiet-hours-ended",
    ],
)
def test_it_sends_reminders_at_alert_at(
    before: Check,
    s: Settings,
    now: float,
    channels: list[tuple[str, str]],
    alert_at: float | None,
    last_alert: float,
) -> None:
    d = lifecycle.advance(before, now, s)
    assert who(d) == [("reminder", ch, r) for ch, r in channels]
    assert (after(d).alert_at, after(d).last_alert) == (alert_at, last_alert)
    assert (after(d).status, d.flip) == (Status.DOWN, None)


def test_it_words_a_reminder_with_the_outage_length_and_start() -> None:
    d = lifecycle.advance(down(), T0, S)
    text = "STILL DOWN web1 for 30 min (since 07:30). Reply ACK web1 to silence."
    assert {a.text for a in d.alerts} == {text}
    assert [a.dedupe for a in d.alerts] == [f"rem7@{int(T0)}:{ch}:{r}" for ch, r in EVERYONE]
    assert d.wait == 3.0


def test_it_sends_the_next_reminder_repeat_later() -> None:
    first = lifecycle.advance(down(), T0, S)
    assert lifecycle.advance(after(first), T0 + 899, S).alerts == ()
    second = lifecycle.advance(after(first), T0 + 900, S)
    assert who(second) == [("reminder", ch, r) for ch, r in EVERYONE]
    assert after(second).alert_at == T0 + 1800
    assert {a.dedupe for a in first.alerts}.isdisjoint(a.dedupe for a in second.alerts)


def test_it_sends_no_reminder_after_an_ack() -> None:
    d = lifecycle.change(down(), down(acked=True), T0 - 60, "acked", S)
    assert d == Decision(down(acked=True, alert_at=None), events=(Note("acked", None, 7),))
    assert lifecycle.advance(after(d), T0 + 10 * 900, S).alerts == ()


def test_it_pushes_the_reminder_to_the_end_of_a_mute() -> None:
    d = lifecycle.change(down(), down(muted_until=T0 + 5000), T0 - 60, "muted", S)
    assert after(d).alert_at == T0 + 5000
    assert d.events == (Note("muted", None, 7),)
    assert lifecycle.advance(after(d), T0 + 4999, S).alerts == ()
    assert who(lifecycle.advance(after(d), T0 + 5000, S)) == [("reminder", ch, r) for ch, r in EVERYONE]


def test_it_still_sends_the_first_down_in_quiet_hours_but_holds_the_reminder() -> None:
    d = lifecycle.advance(check(anchor=T0 - 1200, next_deadline=T0 - 300), T0, QUIET)
    assert who(d) == [("down", ch, r) for ch, r in EVERYONE]
    assert after(d).alert_at == at(9, 0)


# ------------------------------------------------------------------------------ pause, owner changes


@pytest.mark.parametrize("now", [T0, T0 + 900, T0 + 1200, T0 + 10**6])
def test_it_never_alerts_for_a_paused_check(now: float) -> None:
    paused = st.apply_pause(check())
    assert lifecycle.advance(paused, now, S) == Decision(paused)
    stale = dataclasses.replace(paused, next_deadline=T0, alert_at=T0)
    d = lifecycle.advance(stale, now, S)
    assert (d.alerts, d.flip, after(d).next_deadline, after(d).alert_at) == ((), None, None, None)


def test_it_ends_the_outage_silently_when_a_down_check_is_paused_and_resumed() -> None:
    paused = lifecycle.change(down(), st.apply_pause(down()), T0, "paused", S)
    assert paused.flip == Flip(7, T0, Status.DOWN, Status.PAUSED, "paused")
    assert (paused.alerts, paused.events) == ((), (Note("paused", None, 7),))
    assert (after(paused).down_since, after(paused).alert_at) == (None, None)
    resumed = lifecycle.change(after(paused), st.apply_resume(after(paused), T0 + 60), T0 + 60, "resumed", S)
    assert resumed.flip == Flip(7, T0 + 60, Status.PAUSED, Status.UP, "resumed")
    assert (resumed.alerts, after(resumed).next_deadline) == ((), T0 + 960)


def test_it_tells_a_whole_outage_that_began_with_a_fail_to_a_paused_check() -> None:
    failed = lifecycle.ping(st.apply_pause(check()), PingKind.FAIL, 2, T0, S, "boom")
    reminded = lifecycle.advance(after(failed), T0 + 900, S)
    back = lifecycle.ping(after(reminded), PingKind.SUCCESS, None, T0 + 1000, S, None)
    told = [a.kind for d in (failed, reminded, back) for a in d.alerts if a.channel == "email"]
    assert told in (["fail", "reminder", "up"], [])  # all of the outage, or none of it


@pytest.mark.parametrize("event", ["acked", "muted", "sms off", None])
def test_it_writes_nothing_for_an_unchanged_check(event: str | None) -> None:
    for before in (check(), down(), st.apply_pause(check())):
        assert lifecycle.change(before, before, T0, event, S) == Decision(before)


@pytest.mark.parametrize(
    ("event", "edit"),
    [
        ("muted", {"muted_until": T0 + 600}),
        ("unmuted", {"muted_until": None}),
        ("sms off", {"sms_enabled": False}),
        ("email off", {"email_enabled": False}),
        ("ping URL replaced", {"token": "u" * 24}),
    ],
)
def test_it_records_exactly_one_event_of_the_given_kind(event: str, edit: dict[str, object]) -> None:
    before = down(muted_until=T0 + 60) if event == "unmuted" else down()
    d = lifecycle.change(before, dataclasses.replace(before, **edit), T0 - 10, event, S)  # type: ignore[arg-type]
    assert d.events == (Note(event, None, 7),)
    assert (d.flip, d.alerts) == (None, ())
    assert lifecycle.change(before, dataclasses.replace(before, **edit), T0 - 10, None, S).events == ()  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ advance: times, poison


@pytest.mark.parametrize(
    ("before", "now", "deadline", "alert_at"),
    [
        (check(next_deadline=T0 - 5000, anchor=T0 - 10**6, status=Status.DOWN, alert_at=T0 - 4000), T0, None, T0 + 900),
        (down(alert_at=T0 - 10**5, last_alert=T0 - 10**5), T0, None, T0 + 900),
        (down(repeat=-5.0), T0, None, T0 + 1),  # a damaged per-check repeat: still not due again
        (check(status=Status.NEW, anchor=None, next_deadline=T0 - 1), T0, None, None),
        (check(next_deadline=T0 - 1), T0 - 1, T0 + 900, None),
    ],
)
def test_it_never_leaves_a_time_at_or_before_now(
    before: Check, now: float, deadline: float | None, alert_at: float | None
) -> None:
    c = after(lifecycle.advance(before, now, S))
    assert (c.next_deadline, c.alert_at) == (deadline, alert_at)


@pytest.mark.parametrize(
    ("before", "error"),
    [
        (check(schedule=Schedule(900, 300, cron=POISON_CRON), next_deadline=T0), "CroniterBadCronError: "),
        (
            down(schedule=Schedule(900, 300, cron=POISON_CRON), alert_at=T0, next_deadline=T0),
            "CroniterBadCronError: ",
        ),
        (
            check(schedule=Schedule(900, 300, cron="*/15 * * * *", tz="Mars/Olympus")),
            "ScheduleError: unknown time zone 'Mars/Olympus'",
        ),
    ],
    ids=["bad-cron", "bad-cron-down", "bad-zone"],
)
def test_it_pushes_a_poison_check_an_hour_out(before: Check, error: str) -> None:
    d = lifecycle.advance(before, T0, S)
    retry = T0 + POISON_RETRY
    assert after(d) == dataclasses.replace(
        before, next_deadline=retry, alert_at=retry if before.alert_at is not None else None
    )
    assert (d.flip, d.alerts, d.events) == (None, (), ())
    assert d.error is not None and d.error.startswith(error)


# ------------------------------------------------------------------------------ fresh start, clock steps

OFFLINE = T0 - 3600  # the gateway stopped at 07:00 and starts again at T0 (08:00)
# period 900 + grace 300: down 1200 s after the anchor
WENT_DOWN_BEFORE = check(id=1, name="a", anchor=T0 - 7200, next_deadline=T0 - 6300)  # down at 06:20
DOWN_IN_GAP = check(id=2, name="b", anchor=T0 - 3000, next_deadline=T0 - 2100)  # down at 07:30
LATE_IN_GAP = check(id=3, name="c", status=Status.LATE, anchor=T0 - 4600, next_deadline=T0 - 3400)
FAILED = check(id=4, name="d", status=Status.DOWN, last_failed=True, next_deadline=T0 - 10)
PAUSED = st.apply_pause(check(id=5, name="e", next_deadline=T0 - 10))
DUE = [WENT_DOWN_BEFORE, DOWN_IN_GAP, LATE_IN_GAP, FAILED, PAUSED]


@pytest.mark.parametrize(
    ("clock_step", "detail", "text", "key"),
    [
        (
            False,
            "gateway was offline from 2027-01-15T07:00:00Z to 2027-01-15T08:00:00Z; 2 check(s) given a fresh period",
            "hbgw was offline from 07:00 to 08:00; 2 server(s) given a fresh period, no alerts for that time.",
            f"offline@{int(T0)}",
        ),
        (
            True,
            "the clock jumped forward from 2027-01-15T07:00:00Z to 2027-01-15T08:00:00Z;"
            " 2 check(s) given a fresh period",
            "hbgw's clock jumped from 07:00 to 08:00; 2 server(s) given a fresh period,"
            " no alerts for the skipped time.",
            f"clock@{int(T0)}",
        ),
    ],
    ids=["offline", "clock-step"],
)
def test_it_gives_a_fresh_period_only_to_checks_down_in_the_gap(
    clock_step: bool, detail: str, text: str, key: str
) -> None:
    out = lifecycle.fresh_start(DUE, T0, OFFLINE, S, clock_step=clock_step)
    fresh = [after(d) for d in out[:-1]]
    assert [(c.id, c.status, c.anchor, c.next_deadline) for c in fresh] == [
        (2, Status.UP, T0, T0 + 900),
        (3, Status.UP, T0, T0 + 900),
    ]
    assert [(d.flip, d.alerts, d.events) for d in out[:-1]] == [(None, (), ())] * 2
    note = out[-1]
    assert (note.check, note.flip, note.events) == (None, None, (Note("note", detail),))
    assert [(a.kind, a.channel, a.recipient, a.text, a.check_id, a.dedupe) for a in note.alerts] == [
        ("note", ch, r, text, None, f"{key}:{ch}:{r}") for ch, r in EVERYONE
    ]


def test_it_says_nothing_when_no_check_was_down_in_the_gap() -> None:
    assert lifecycle.fresh_start([WENT_DOWN_BEFORE, FAILED, PAUSED], T0, OFFLINE, S) == []


def test_it_gives_every_due_check_a_fresh_period_when_the_outage_start_is_unknown() -> None:
    out = lifecycle.fresh_start(DUE, T0, None, S)
    assert [after(d).id for d in out[:-1]] == [1, 2, 3]
    assert out[-1].events == (
        Note("note", "gateway was offline from ? to 2027-01-15T08:00:00Z; 3 check(s) given a fresh period"),
    )
    assert {a.text for a in out[-1].alerts} == {
        "hbgw was offline from ? to 08:00; 3 server(s) given a fresh period, no alerts for that time."
    }


def test_it_gives_a_fresh_period_around_a_poison_check() -> None:
    poison = check(id=9, name="p", schedule=Schedule(900, 300, cron=POISON_CRON), next_deadline=T0 - 600)
    out = lifecycle.fresh_start([poison, DOWN_IN_GAP], T0, OFFLINE, S)
    assert [after(d).id for d in out if d.check is not None and d.error is None] == [2]


def test_it_reanchors_checks_stamped_in_the_future_when_the_clock_goes_back() -> None:
    ahead = check(id=1, name="a", anchor=T0 + 1800, last_ping=T0 + 1800, next_deadline=T0 + 2700)
    alerted = down(id=2, name="b", down_since=T0 + 600, last_alert=T0 + 1200, alert_at=T0 + 2100)
    acked = down(id=3, name="c", acked=True, last_alert=T0 + 1200, alert_at=None)
    out = lifecycle.clock_back([ahead, alerted, acked], T0, T0 + 3600, S)
    assert [(after(d).id, after(d).anchor, after(d).next_deadline) for d in out[:-1]] == [
        (1, T0, T0 + 900),
        (2, T0 - 3000, None),
        (3, T0 - 3000, None),
    ]
    assert [(after(d).last_alert, after(d).alert_at) for d in out[1:-1]] == [(T0, T0 + 900), (T0, None)]
    assert all((d.flip, d.alerts) == (None, ()) for d in out)
    assert out[-1] == Decision(
        None,
        events=(
            Note(
                "note",
                "the clock went back from 2027-01-15T09:00:00Z to 2027-01-15T08:00:00Z;"
                " 1 check(s) given a fresh period",
            ),
        ),
    )


def test_it_reanchors_around_a_poison_check() -> None:
    poison = check(id=9, name="p", schedule=Schedule(900, 300, cron=POISON_CRON), anchor=T0 + 60)
    ahead = check(id=1, name="a", anchor=T0 + 1800, next_deadline=T0 + 2700)
    out = lifecycle.clock_back([poison, ahead], T0, T0 + 3600, S)
    assert [after(d).anchor for d in out if d.check is not None and d.check.id == 1] == [T0]


# ------------------------------------------------------------------------------ flip keys


def test_it_keys_the_same_flip_decided_twice_alike() -> None:
    first = lifecycle.ping(check(), PingKind.FAIL, 1, T0 + 5, S, "x")
    again = lifecycle.ping(check(), PingKind.FAIL, 1, T0 + 5, S, "x")
    assert first == again
    assert [a.dedupe for a in first.alerts] == [a.dedupe for a in again.alerts]
    assert len({a.dedupe for a in first.alerts}) == 3


def test_it_keys_every_flip_of_a_life_apart() -> None:
    late = lifecycle.advance(check(), T0 + 900, S)
    dead = lifecycle.advance(after(late), T0 + 1200, S)
    back = lifecycle.ping(after(dead), PingKind.SUCCESS, None, T0 + 1300, S, None)
    dead2 = lifecycle.ping(after(back), PingKind.FAIL, None, T0 + 1300.5, S, None)
    flips = [(d.flip, after(d).n_pings) for d in (late, dead, back, dead2) if d.flip is not None]
    assert len(flips) == 4
    assert len({lifecycle.flip_key(f, n) for f, n in flips}) == 4
    keys = [a.dedupe for d in (dead, back, dead2) for a in d.alerts]
    assert len(keys) == len(set(keys)) == 9


flips = hs.builds(
    Flip,
    check_id=hs.integers(1, 5),
    at=hs.sampled_from([T0, T0 + 0.5, T0 + 1, T0 + 1e-6]),
    old=hs.sampled_from(list(Status)),
    new=hs.sampled_from(list(Status)),
    reason=hs.sampled_from(["deadline", "ping", "fail", "paused"]),
)


@settings(deadline=None, max_examples=500)
@given(flips, flips, hs.integers(0, 2), hs.integers(0, 2))
def test_it_keys_distinct_flips_apart(a: Flip, b: Flip, pings_a: int, pings_b: int) -> None:
    same = (a.check_id, a.at, a.old, a.new, pings_a) == (b.check_id, b.at, b.old, b.new, pings_b)
    assert (lifecycle.flip_key(a, pings_a) == lifecycle.flip_key(b, pings_b)) == same


def test_it_keys_apart_a_fail_recover_fail_at_one_timestamp() -> None:
    first = lifecycle.ping(check(), PingKind.FAIL, 1, T0, S, None)
    back = lifecycle.ping(after(first), PingKind.SUCCESS, None, T0, S, None)
    again = lifecycle.ping(after(back), PingKind.FAIL, 1, T0, S, None)
    assert first.flip is not None and again.flip is not None
    assert (first.flip.old, first.flip.new) == (again.flip.old, again.flip.new)
    keys = [a.dedupe for d in (first, again) for a in d.alerts]
    assert len(keys) == len(set(keys)) == 6


# ------------------------------------------------------------------------------ properties


@dataclass(frozen=True)
class Act:
    """One thing that happens to a check: a ping, a watchdog pass, or an owner's action."""

    name: str  # ping | advance | ack | mute | unmute | pause | resume | sms | email
    kind: PingKind = PingKind.SUCCESS
    exit_status: int | None = None
    seconds: float = 0.0
    on: bool = True


def decide(c: Check, act: Act, now: float, s: Settings) -> Decision:
    """What the service would ask the lifecycle for ``act`` (gateway/service.py)."""
    if act.name == "ping":
        return lifecycle.ping(c, act.kind, act.exit_status, now, s, "job output")
    if act.name == "advance":
        return lifecycle.advance(c, now, s)
    if act.name == "ack":
        return lifecycle.change(
            c, dataclasses.replace(c, acked=True) if c.status is Status.DOWN else c, now, "acked", s
        )
    if act.name == "mute":
        return lifecycle.change(c, dataclasses.replace(c, muted_until=now + act.seconds), now, "muted", s)
    if act.name == "unmute":
        return lifecycle.change(c, dataclasses.replace(c, muted_until=None), now, "unmuted", s)
    if act.name == "pause":
        return lifecycle.change(c, st.apply_pause(c), now, "paused", s)
    if act.name == "resume":
        return lifecycle.change(c, st.apply_resume(c, now), now, "resumed", s)
    if act.name == "sms":
        edited = dataclasses.replace(c, sms_enabled=act.on)
    else:
        edited = dataclasses.replace(c, email_enabled=act.on)
    return lifecycle.change(c, edited, now, f"{act.name} {'on' if act.on else 'off'}", s)


acts = hs.one_of(
    hs.builds(
        Act,
        name=hs.just("ping"),
        kind=hs.sampled_from(list(PingKind)),
        exit_status=hs.one_of(hs.none(), hs.just(0), hs.integers(1, 255)),
    ),
    hs.builds(Act, name=hs.just("advance")),
    hs.builds(Act, name=hs.sampled_from(["ack", "unmute", "pause", "resume"])),
    hs.builds(Act, name=hs.just("mute"), seconds=hs.sampled_from([60.0, 900.0, 3600.0, 86400.0])),
    hs.builds(Act, name=hs.sampled_from(["sms", "email"]), on=hs.booleans()),
)
gaps = hs.one_of(
    hs.sampled_from([0.0, 1.0, 60.0, 300.0, 900.0, 1200.0, 3600.0, 86400.0]),
    hs.floats(0, 7200, allow_nan=False),
)
starts = hs.builds(
    check,
    schedule=hs.sampled_from([Schedule(900, 300), Schedule(60, 0), Schedule(900, 300, cron="*/15 * * * *")]),
    repeat=hs.sampled_from([None, 120.0]),
    status=hs.sampled_from([Status.UP, Status.NEW]),
).map(lambda c: c if c.status is Status.UP else dataclasses.replace(c, anchor=None, last_ping=None, next_deadline=None))
settings_variants = hs.sampled_from(
    [
        S,
        dataclasses.replace(S, quiet_hours=(8 * 60 + 20, 10 * 60), repeat=600),
        Settings(sms_to=(SMS1,), repeat=60),
        NOBODY,
    ]
)
histories = hs.lists(hs.tuples(gaps, acts), max_size=40)


@settings(deadline=None, max_examples=400)
@given(starts, histories, settings_variants)
def test_it_keeps_the_alert_invariants_over_any_history(
    start: Check, steps: list[tuple[float, Act]], s: Settings
) -> None:
    c, now = start, T0
    alerted: set[tuple[str, str]] | None = None  # DOWN/FAIL recipients of the current outage; None: not down
    down_at: float | None = None
    reminded = 0.0  # when the outage began or was last reminded of
    repeat = start.repeat or s.repeat
    for gap, act in steps:
        now += gap
        d = decide(c, act, now, s)
        assert decide(c, act, now, s) == d  # (5) deterministic
        new = after(d)
        if d.flip is None:
            assert new.status is c.status
        else:
            assert (d.flip.old, d.flip.new, d.flip.at) == (c.status, new.status, now)

        downs = [a for a in d.alerts if a.kind in ("down", "fail")]
        ups = [a for a in d.alerts if a.kind == "up"]
        reminders = [a for a in d.alerts if a.kind == "reminder"]
        assert len(downs) + len(ups) + len(reminders) == len(d.alerts)
        # (2) an UP ends an outage that a DOWN/FAIL flip began, and says how long it lasted
        if ups:
            assert d.flip is not None and d.flip.old is Status.DOWN and down_at is not None
            assert {a.text for a in ups} == {f"UP web1 after {humanize(now - down_at)}"}
        if d.flip is not None and d.flip.old is Status.DOWN:
            alerted, down_at = None, None
        # (1) at most one DOWN/FAIL per recipient per outage, only when the outage begins
        if downs:
            assert d.flip is not None and d.flip.new is Status.DOWN
        if d.flip is not None and d.flip.new is Status.DOWN:
            alerted, down_at, reminded = set(), now, now
        for a in downs:
            assert alerted is not None and (a.channel, a.recipient) not in alerted
            alerted.add((a.channel, a.recipient))
        # (3) no reminder for an acked, paused or muted check, nor on a channel switched off;
        # reminders of one outage come at least ``repeat`` apart
        if reminders:
            assert now - reminded >= repeat
            reminded = now
        for a in reminders:
            for x in (c, new):
                assert x.status is Status.DOWN and not x.acked
                assert x.muted_until is None or x.muted_until <= now
                assert x.sms_enabled if a.channel == "sms" else x.email_enabled
        # (4) a reminder is only ever scheduled for a down check; the outage's start and an ack
        # are kept only while it lasts
        assert new.alert_at is None or new.status is Status.DOWN
        assert (new.down_since is not None) == (new.status is Status.DOWN)
        assert not new.acked or new.status is Status.DOWN
        if act.name == "advance":
            assert new.next_deadline is None or new.next_deadline > now
            assert new.alert_at is None or new.alert_at > now
        c = new


times = hs.one_of(hs.none(), hs.floats(T0 - 10**5, T0 + 10**5, allow_nan=False))
stored = hs.builds(
    check,
    schedule=hs.sampled_from([Schedule(900, 300), Schedule(1, 0), Schedule(900, 0, cron="0 * * * *")]),
    status=hs.sampled_from(list(Status)),
    anchor=times,
    last_start=times,
    last_failed=hs.booleans(),
    next_deadline=times,
    sms_enabled=hs.booleans(),
    email_enabled=hs.booleans(),
    repeat=hs.sampled_from([None, 1.0, 120.0]),
    muted_until=times,
    acked=hs.booleans(),
    down_since=times,
    last_alert=times,
    alert_at=times,
)


@settings(deadline=None, max_examples=500)
@given(stored, hs.floats(T0 - 10**5, T0 + 10**5, allow_nan=False), settings_variants)
def test_it_never_leaves_any_stored_check_due_again(before: Check, now: float, s: Settings) -> None:
    d = lifecycle.advance(before, now, s)
    assert d == lifecycle.advance(before, now, s)
    c = after(d)
    assert c.next_deadline is None or c.next_deadline > now
    assert c.alert_at is None or c.alert_at > now
    assert c.alert_at is None or c.status is Status.DOWN or d.error is not None
    assert d.error is None
