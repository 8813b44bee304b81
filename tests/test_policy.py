"""The pure alert policy: which alerts a flip causes, reminder timing, quiet hours, merging."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from gateway.model import Check, Flip, Status
from gateway.rules import policy
from gateway.rules.settings import Settings, quiet_hours
from modem.pdu import is_gsm7
from tests.support.checks import make_check

T0 = 1_800_000_000.0  # 2027-01-15 08:00 UTC
S = Settings(sms_to=("+15551230000",), email_to=("o@example.test",), repeat=900, tz="UTC")


def check(**kw: object) -> Check:
    up = dict(id=7, status=Status.UP, anchor=T0 - 2000, last_ping=T0 - 1920, created=T0 - 10**5, n_pings=5)
    return make_check(**{**up, **kw})


def flip(old: Status, new: Status, reason: str = "deadline") -> Flip:
    return Flip(7, T0, old, new, reason)


def test_it_sends_down_by_sms_and_email_with_the_last_heartbeat() -> None:
    out = policy.alerts_for_flip(
        check(),
        check(status=Status.DOWN),
        flip(Status.LATE, Status.DOWN),
        key="flip1",
        down_since=T0,
        body=None,
        s=S,
        now=T0,
    )
    assert [(o.kind, o.channel, o.recipient) for o in out] == [
        ("down", "sms", "+15551230000"),
        ("down", "email", "o@example.test"),
    ]
    clock = dt.datetime.fromtimestamp(T0 - 1920, dt.UTC).strftime("%H:%M")
    assert out[0].text == f"DOWN web1: no heartbeat since {clock} (32 min). Reply ACK web1 to silence."
    assert len({o.dedupe for o in out}) == 2


def test_it_reports_a_failure_with_exit_status_and_body_excerpt() -> None:
    after = check(status=Status.DOWN, last_failed=True, last_exit_status=3)
    out = policy.alerts_for_flip(
        check(),
        after,
        flip(Status.UP, Status.DOWN, "fail"),
        key="flip1",
        down_since=T0,
        body="rsync:\xa0connection   refused\n",
        s=S,
        now=T0,
    )
    assert out[0].kind == "fail"
    assert "FAIL web1: exit status 3 at" in out[0].text and "rsync: connection refused" in out[0].text
    assert is_gsm7(out[0].text)


def test_it_says_up_with_the_downtime() -> None:
    out = policy.alerts_for_flip(
        check(status=Status.DOWN),
        check(),
        flip(Status.DOWN, Status.UP, "ping"),
        key="flip2",
        down_since=T0 - 47 * 60,
        body=None,
        s=S,
        now=T0,
    )
    assert {o.text for o in out} == {"UP web1 after 47 min"}


@pytest.mark.parametrize(
    ("sms", "email", "channels"),
    [(True, True, {"sms", "email"}), (False, True, {"email"}), (True, False, {"sms"}), (False, False, set())],
)
def test_it_follows_the_per_check_toggles(sms: bool, email: bool, channels: set[str]) -> None:
    after = check(status=Status.DOWN, sms_enabled=sms, email_enabled=email)
    out = policy.alerts_for_flip(
        check(), after, flip(Status.UP, Status.DOWN), key="flip1", down_since=T0, body=None, s=S, now=T0
    )
    assert {o.channel for o in out} == channels


def test_it_sends_nothing_for_late_paused_or_muted() -> None:
    assert (
        policy.alerts_for_flip(
            check(),
            check(status=Status.LATE),
            flip(Status.UP, Status.LATE),
            key="flip1",
            down_since=None,
            body=None,
            s=S,
            now=T0,
        )
        == []
    )
    assert (
        policy.alerts_for_flip(
            check(status=Status.DOWN),
            check(status=Status.PAUSED),
            flip(Status.DOWN, Status.PAUSED),
            key="flip1",
            down_since=T0,
            body=None,
            s=S,
            now=T0,
        )
        == []
    )
    muted = check(status=Status.DOWN, muted_until=T0 + 60)
    assert (
        policy.alerts_for_flip(
            check(), muted, flip(Status.UP, Status.DOWN), key="flip1", down_since=T0, body=None, s=S, now=T0
        )
        == []
    )


def test_it_stops_reminders_when_acked_recovered_or_silenced() -> None:
    down = check(status=Status.DOWN)
    assert policy.next_reminder(down, T0, S) == T0 + 900
    assert policy.next_reminder(dataclasses.replace(down, repeat=60), T0, S) == T0 + 60
    assert policy.next_reminder(dataclasses.replace(down, acked=True), T0, S) is None
    assert policy.next_reminder(check(), T0, S) is None
    assert policy.next_reminder(dataclasses.replace(down, sms_enabled=False, email_enabled=False), T0, S) is None
    assert policy.next_reminder(dataclasses.replace(down, muted_until=T0 + 7200), T0, S) == T0 + 7200


def test_it_holds_reminders_during_quiet_hours() -> None:
    quiet = dataclasses.replace(S, quiet_hours=quiet_hours("quiet_hours", "22:00-07:00"))
    night = dt.datetime(2027, 1, 15, 23, 50, tzinfo=dt.UTC).timestamp()
    due = policy.next_reminder(check(status=Status.DOWN), night, quiet)
    assert due == dt.datetime(2027, 1, 16, 7, 0, tzinfo=dt.UTC).timestamp()
    day = dt.datetime(2027, 1, 15, 12, 0, tzinfo=dt.UTC).timestamp()
    assert policy.next_reminder(check(status=Status.DOWN), day, quiet) == day + 900


@pytest.mark.parametrize("bad", ["22-07", "25:00-07:00", "22:00-07:60", "night"])
def test_it_rejects_malformed_quiet_hours(bad: str) -> None:
    with pytest.raises(ValueError):
        quiet_hours("quiet_hours", bad)


def pend(kind: str, name: str | None, text: str = "", at: float = T0) -> policy.Pending:
    return policy.Pending(kind, name, text or f"{kind.upper()} {name}: details", at)


def test_it_merges_many_silent_servers_into_one_line() -> None:
    rows = [pend("down", f"srv{i}", at=T0 + i * 0.1) for i in range(5)]
    text = policy.merge(rows, watched=6, s=S)
    clock = dt.datetime.fromtimestamp(T0, dt.UTC).strftime("%H:%M")
    assert text.startswith(f"5 of 6 servers silent since {clock}: network or power? srv0, srv1")
    assert len(text) <= policy.SMS_CHARS


def test_it_joins_a_few_alerts_in_short_form() -> None:
    rows = [pend("down", "web1"), pend("up", "db1", "UP db1 after 3 min")]
    assert policy.merge(rows, watched=6, s=S) == "DOWN web1. UP db1 after 3 min"
    assert policy.merge([pend("down", "web1", "the full text")], watched=1, s=S) == "the full text"


names = hs.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-._", min_size=1, max_size=40)
kinds = hs.sampled_from(["down", "up", "fail", "reminder", "note"])


@settings(max_examples=300, deadline=None)
@given(hs.lists(hs.tuples(kinds, names), min_size=1, max_size=40), hs.integers(1, 500))
def test_it_keeps_a_merged_sms_within_one_message(rows: list[tuple[str, str]], watched: int) -> None:
    pending = [pend(k, n, f"{k.upper()} {n} after 5 min" if k == "up" else "") for k, n in rows]
    text = policy.merge(pending, watched=watched, s=S)
    assert is_gsm7(text)
    if len(rows) > 1:
        assert len(text) <= policy.SMS_CHARS or len(pending[0].text) > policy.SMS_CHARS - 25


statuses = hs.sampled_from(list(Status))


@settings(max_examples=500, deadline=None)
@given(statuses, statuses, hs.booleans(), hs.booleans(), hs.one_of(hs.none(), hs.floats(-1e4, 1e4)))
def test_it_never_alerts_for_paused_and_only_on_down_or_recovery(
    old: Status, new: Status, sms: bool, email: bool, mute: float | None
) -> None:
    before = check(status=old)
    after = check(status=new, sms_enabled=sms, email_enabled=email, muted_until=None if mute is None else T0 + mute)
    out = policy.alerts_for_flip(before, after, flip(old, new), key="flip1", down_since=T0 - 60, body=None, s=S, now=T0)
    if Status.PAUSED in (old, new) or (after.muted_until is not None and after.muted_until > T0):
        assert out == []
    elif new is Status.DOWN and old is not Status.DOWN:
        assert {o.kind for o in out} <= {"down"} and len(out) == sms + email
    elif old is Status.DOWN and new in (Status.UP, Status.NEW):
        assert {o.kind for o in out} <= {"up"} and len(out) == sms + email
    else:
        assert out == []
    assert all(o.recipient.startswith("+") if o.channel == "sms" else "@" in o.recipient for o in out)


@settings(max_examples=500, deadline=None)
@given(
    hs.floats(0, 86400 * 30),
    hs.floats(1, 86400),
    hs.one_of(hs.none(), hs.floats(0, 86400 * 2)),
    hs.one_of(hs.none(), hs.tuples(hs.integers(0, 1439), hs.integers(0, 1439))),
)
def test_it_never_reminds_sooner_than_repeat_nor_in_quiet_hours(
    offset: float, repeat: float, mute: float | None, quiet: tuple[int, int] | None
) -> None:
    s = dataclasses.replace(S, repeat=repeat, quiet_hours=quiet, tz="Europe/Paris")
    last = T0 + offset
    c = check(status=Status.DOWN, muted_until=None if mute is None else last + mute)
    due = policy.next_reminder(c, last, s)
    assert due is not None and due >= last + repeat
    assert policy.quiet_until(due, s) is None
    if c.muted_until is not None:
        assert due >= c.muted_until


@pytest.mark.parametrize(
    ("watch", "reports", "now", "tell", "seen"),
    [
        (policy.StorageWatch(), None, 0.0, False, 0),  # the backend cannot tell
        (policy.StorageWatch(), 0, 0.0, False, 0),
        (policy.StorageWatch(), 2, 0.0, True, 2),
        (policy.StorageWatch(2, 0.0), 2, 10.0, False, 2),  # nothing new
        (policy.StorageWatch(2, 0.0), 5, 10.0, False, 5),  # new, but told today
        (policy.StorageWatch(2, 0.0), 3, policy.STORAGE_NOTE_GAP, True, 3),
        (policy.StorageWatch(5, 0.0), 1, policy.STORAGE_NOTE_GAP, True, 1),  # reopened, one new
        (policy.StorageWatch(5, 0.0), 0, policy.STORAGE_NOTE_GAP, False, 0),  # reopened, none yet
    ],
)
def test_it_tells_of_a_full_storage_once_a_day(
    watch: policy.StorageWatch, reports: int | None, now: float, tell: bool, seen: int
) -> None:
    after, told = policy.storage_full_note(watch, reports, now)
    assert (told, after.reports) == (tell, seen)
    assert after.last_note == (now if tell else watch.last_note)
