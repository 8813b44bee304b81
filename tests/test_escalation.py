"""The escalation ladder (gateway.rules.escalation, and the lifecycle that runs it): reading
``[contacts]`` and ``[[alerts.escalation]]``, then whole outages driven by hand with an
injected clock (DOWN, steps, acknowledgement, quiet hours, mutes, recovery), then hypothesis
properties over random histories. Pure: no database, no clock."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import tomllib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from gateway import config as cfgmod
from gateway.model import Check, PingKind, Schedule, Status
from gateway.rules import escalation, lifecycle
from gateway.rules.policy import Outgoing
from gateway.rules.settings import Settings, SettingsError
from tests.support.checks import make_check

T0 = 1_800_000_000.0  # 2027-01-15 08:00 UTC
OWNER, PARTNER = "+15551230000", "+15551239999"
OWNER_MAIL = "owner@example.test"
PEOPLE = escalation.contacts(
    {"owner": {"phone": OWNER, "email": OWNER_MAIL}, "partner": {"phone": PARTNER}, "boss": {"email": "b@example.test"}}
)
LADDER = escalation.steps(
    [
        {"after": "0m", "sms": ["owner"], "email": ["owner"]},
        {"after": "10m", "call": ["owner"]},
        {"after": "20m", "sms": ["partner"], "call": ["partner"]},
    ],
    PEOPLE,
)
S = Settings(sms_to=("+15550000001",), escalation=LADDER, repeat=3600, coalesce=0.0, tz="UTC")
DOWN_AT = T0 + 1200  # the check below goes down here (period 15 min, grace 5 min)


def up_check(**kw: Any) -> Check:
    base: dict[str, Any] = dict(
        id=7, schedule=Schedule(900, 300), status=Status.UP, anchor=T0, last_ping=T0, next_deadline=T0 + 900
    )
    return make_check(**{**base, "created": T0 - 10**5, "n_pings": 5, **kw})


class Outage:
    """A check folded through the lifecycle as the watchdog and the owner would drive it."""

    def __init__(self, s: Settings = S, **kw: Any) -> None:
        self.s = s
        self.check = up_check(**kw)
        self.sent: list[tuple[float, str, str, str]] = []  # (when, kind, channel, recipient)

    def _apply(self, d: lifecycle.Decision, now: float) -> None:
        assert d.check is not None
        self.check = d.check
        self.sent += [(now, a.kind, a.channel, a.recipient) for a in d.alerts]

    def run_until(self, end: float) -> None:
        """Let the watchdog do its work up to ``end``: at every deadline and alert time."""
        while True:
            times = [t for t in (self.check.next_deadline, self.check.alert_at) if t is not None]
            if not times or min(times) > end:
                return
            now = min(times)
            self._apply(lifecycle.advance(self.check, now, self.s), now)

    def ack(self, now: float, by: str = "+15551230000") -> None:
        after = self.check.evolve(acked=True, acked_by=by, acked_at=now)
        self._apply(lifecycle.change(self.check, after, now, "acked", self.s), now)

    def mute(self, now: float, until: float) -> None:
        self._apply(lifecycle.change(self.check, self.check.evolve(muted_until=until), now, "muted", self.s), now)

    def ping(self, now: float) -> None:
        self._apply(lifecycle.ping(self.check, PingKind.SUCCESS, None, now, self.s, None), now)

    def rows(self, since: float = 0.0) -> list[tuple[float, str, str, str]]:
        return [r for r in self.sent if r[0] >= since]


def who(rows: list[tuple[float, str, str, str]]) -> list[tuple[str, str]]:
    return [(channel, recipient) for _, _, channel, recipient in rows]


# ------------------------------------------------------------------------------ reading the file


def test_it_reads_contacts_and_steps_in_time_order() -> None:
    steps = escalation.steps([{"after": "20m", "sms": "partner"}, {"after": "0m", "sms": ["owner", "owner"]}], PEOPLE)
    assert [(s.after, [c.name for c in s.sms]) for s in steps] == [(0.0, ["owner"]), (1200.0, ["partner"])]
    assert [s.describe() for s in LADDER] == [
        "at DOWN: sms owner; email owner",
        "after 10m: call owner",
        "after 20m: sms partner; call partner",
    ]


@pytest.mark.parametrize(
    ("raw", "field", "message"),
    [
        ([{"after": "5m", "sms": ["owner"]}], "escalation", 'give it after = "0m"'),
        ([{"sms": ["owner"]}], "escalation[1].after", "missing"),
        ([{"after": "0m"}], "escalation[1]", "must text, call or mail someone"),
        ([{"after": "0m", "sms": ["nobody"]}], "escalation[1].sms", "unknown contact 'nobody'"),
        ([{"after": "0m", "call": ["boss"]}], "escalation[1].call", "has no phone"),
        ([{"after": "0m", "email": ["partner"]}], "escalation[1].email", "has no email"),
        ([{"after": "0m", "sms": ["owner"], "ring": 3}], "escalation[1].ring", "unknown key"),
        ([{"after": "0m", "sms": ["owner"], "quiet": "maybe"}], "escalation[1].quiet", '"wait"'),
        ([{"after": "0m", "sms": ["owner"]}, {"after": "0s", "sms": ["partner"]}], "escalation", "same time"),
        ([{"after": "soon", "sms": ["owner"]}], "escalation[1].after", "soon"),
        ("owner", "escalation", "expected [[alerts.escalation]] tables"),
    ],
)
def test_it_refuses_a_ladder_that_cannot_work(raw: Any, field: str, message: str) -> None:
    with pytest.raises(SettingsError) as e:
        escalation.steps(raw, PEOPLE)
    assert e.value.field == field and message in str(e.value)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"Owner Name": {"phone": OWNER}}, "a contact name is a letter"),
        ({"owner": OWNER}, "expected a table"),
        ({"owner": {}}, "needs a phone number, an email address, or both"),
        ({"owner": {"phone": "0151 1234"}}, "not an E.164 number"),
        ({"owner": {"email": "nope"}}, "not an email address"),
        ({"owner": {"phone": OWNER, "pager": "1"}}, "unknown key"),
    ],
)
def test_it_refuses_contacts_it_cannot_reach(table: dict[str, Any], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        escalation.contacts(table)


def test_the_config_file_names_the_step_at_fault() -> None:
    toml = """
[contacts]
owner = { phone = "+15551230000" }
[[alerts.escalation]]
after = "0m"
sms = ["owner"]
[[alerts.escalation]]
after = "10m"
call = ["partner"]
"""
    with pytest.raises(cfgmod.ConfigError) as e:
        cfgmod.parse(tomllib.loads(toml), "hbgw.toml")
    assert str(e.value) == (
        "hbgw.toml: [alerts] escalation: [2].call: unknown contact 'partner' (add it under [contacts])"
    )
    good = cfgmod.parse(tomllib.loads(toml.replace('call = ["partner"]', 'call = ["owner"]')), "hbgw.toml")
    assert [s.describe() for s in good.alerts.escalation] == ["at DOWN: sms owner", "after 10m: call owner"]


# ------------------------------------------------------------------------------ an outage, by hand


def test_each_step_runs_at_its_time_while_nobody_acknowledges() -> None:
    o = Outage()
    o.run_until(DOWN_AT)
    assert o.check.status is Status.DOWN and o.check.ladder_step == 1
    assert o.rows() == [
        (DOWN_AT, "down", "sms", OWNER),  # not [alerts] sms_to: the ladder says who
        (DOWN_AT, "down", "email", OWNER_MAIL),
    ]
    assert o.check.alert_at == DOWN_AT + 600
    o.run_until(DOWN_AT + 599)
    assert len(o.rows()) == 2  # never early
    o.run_until(DOWN_AT + 600)
    assert o.rows(DOWN_AT + 1) == [(DOWN_AT + 600, "call", "call", OWNER)]
    o.run_until(DOWN_AT + 1200)
    assert o.rows(DOWN_AT + 601) == [
        (DOWN_AT + 1200, "escalation", "sms", PARTNER),
        (DOWN_AT + 1200, "call", "call", PARTNER),
    ]
    assert o.check.ladder_step == 3
    # the ladder is done; reminders go on, to everyone it reached
    o.run_until(DOWN_AT + 1200 + 3600)
    assert who(o.rows(DOWN_AT + 1201)) == [("sms", OWNER), ("sms", PARTNER), ("email", OWNER_MAIL)]
    o.ping(DOWN_AT + 5000)
    assert [(k, r) for _, k, _, r in o.rows(DOWN_AT + 5000)] == [("up", OWNER), ("up", PARTNER), ("up", OWNER_MAIL)]
    assert o.check.ladder_step == 0 and o.check.alert_at is None


@pytest.mark.parametrize("acked_after", [0, 300, 900])
def test_an_acknowledgement_stops_the_ladder_for_this_outage_only(acked_after: int) -> None:
    o = Outage()
    o.run_until(DOWN_AT)
    o.run_until(DOWN_AT + acked_after)
    taken = o.check.ladder_step
    o.ack(DOWN_AT + acked_after)
    assert o.check.alert_at is None and (o.check.acked_by, o.check.acked_at) == (OWNER, DOWN_AT + acked_after)
    o.run_until(DOWN_AT + 86400)
    assert o.check.ladder_step == taken and not o.rows(DOWN_AT + acked_after + 1)
    # the next outage climbs from the first step again, unacknowledged
    o.ping(DOWN_AT + 86400)
    assert o.check.acked_by is None
    o.run_until(DOWN_AT + 86400 + 1200 + 600)
    assert [k for _, k, _, _ in o.rows(DOWN_AT + 86401)] == ["down", "down", "call"]


def test_without_a_ladder_the_alerts_are_todays() -> None:
    o = Outage(dataclasses.replace(S, escalation=()))
    o.run_until(DOWN_AT + 3600)
    assert who(o.rows()) == [("sms", "+15550000001"), ("sms", "+15550000001")]  # DOWN, one reminder
    assert o.check.ladder_step == 0


def test_quiet_hours_hold_later_steps_but_never_the_first() -> None:
    # quiet 08:00-12:00 UTC: the outage begins at 08:20, inside them
    quiet = dataclasses.replace(S, quiet_hours=(8 * 60, 12 * 60))
    o = Outage(quiet)
    o.run_until(DOWN_AT + 2 * 3600)
    assert [k for _, k, _, _ in o.rows()] == ["down", "down"]  # the first step went at once
    noon = dt.datetime(2027, 1, 15, 12, 0, tzinfo=dt.UTC).timestamp()
    assert o.check.alert_at == noon
    o.run_until(noon)
    assert o.rows(noon) == [  # the held reminder and both held steps, when quiet hours end
        (noon, "reminder", "sms", OWNER),
        (noon, "reminder", "email", OWNER_MAIL),
        (noon, "call", "call", OWNER),
        (noon, "escalation", "sms", PARTNER),
        (noon, "call", "call", PARTNER),
    ]


def test_a_step_that_says_send_rings_through_quiet_hours() -> None:
    ladder = escalation.steps(
        [{"after": "0m", "sms": ["owner"]}, {"after": "10m", "call": ["owner"], "quiet": "send"}], PEOPLE
    )
    o = Outage(dataclasses.replace(S, escalation=ladder, quiet_hours=(8 * 60, 12 * 60)))
    o.run_until(DOWN_AT + 600)
    assert o.rows(DOWN_AT + 1) == [(DOWN_AT + 600, "call", "call", OWNER)]


def test_a_mute_holds_every_step_until_it_ends() -> None:
    o = Outage()
    o.mute(T0 + 100, until=DOWN_AT + 1800)
    o.run_until(DOWN_AT + 1799)
    assert o.rows() == [] and o.check.status is Status.DOWN and o.check.ladder_step == 0
    o.run_until(DOWN_AT + 1800)
    # the mute ended: every step whose time has come, at once
    assert [(c, r) for _, _, c, r in o.rows()] == [
        ("sms", OWNER),
        ("email", OWNER_MAIL),
        ("call", OWNER),
        ("sms", PARTNER),
        ("call", PARTNER),
    ]


def test_the_sms_toggle_silences_texts_and_calls_the_email_toggle_mail() -> None:
    o = Outage(sms_enabled=False)
    o.run_until(DOWN_AT + 1200)
    assert who(o.rows()) == [("email", OWNER_MAIL)]
    assert o.check.ladder_step == 3  # the steps were taken, with nobody to reach by phone


# ------------------------------------------------------------------------------ properties

EVENTS = hs.lists(
    hs.tuples(hs.sampled_from(["tick", "ack", "ping", "mute"]), hs.integers(1, 3 * 3600)), min_size=1, max_size=12
)


@settings(max_examples=200, deadline=None)
@given(events=EVENTS, quiet=hs.booleans())
def test_steps_run_in_order_once_each_never_early_and_never_after_an_ack(
    events: list[tuple[str, int]], quiet: bool
) -> None:
    s = dataclasses.replace(S, quiet_hours=(9 * 60, 10 * 60)) if quiet else S
    o = Outage(s)
    now = T0
    outage_start: float | None = None
    acked_at: float | None = None
    for kind, gap in events:
        now += gap
        o.run_until(now)
        if o.check.status is Status.DOWN and outage_start is None:
            outage_start = o.check.down_since
        if kind == "ack" and o.check.status is Status.DOWN:
            o.ack(now)
            acked_at = now
        elif kind == "ping":
            o.ping(now)
            if outage_start is not None:
                _check_outage(o.rows(outage_start), outage_start, acked_at, now)
            outage_start, acked_at = None, None
        elif kind == "mute":
            o.mute(now, now + 600)
    if outage_start is not None:
        _check_outage(o.rows(outage_start), outage_start, acked_at, now)


def _check_outage(rows: list[tuple[float, str, str, str]], start: float, acked_at: float | None, end: float) -> None:
    calls = [(t, r) for t, k, _, r in rows if k == "call" and t <= end]
    # each call step at most once per outage, never before its time, never after the ack
    assert [r for _, r in calls] in ([], [OWNER], [OWNER, PARTNER])
    for (t, _), step in zip(calls, (LADDER[1], LADDER[2]), strict=False):
        assert t >= start + step.after
        assert acked_at is None or t <= acked_at
    escalated = [t for t, k, _, _ in rows if k == "escalation" and t <= end]
    assert len(escalated) <= 1


def test_outgoing_rows_are_keyed_per_outage_step_and_recipient() -> None:
    o = Outage()
    d = lifecycle.advance(o.check, DOWN_AT, S)
    assert d.check is not None
    later = lifecycle.advance(d.check, DOWN_AT + 600, S)
    keys = [a.dedupe for a in (*d.alerts, *later.alerts)]
    assert len(keys) == len(set(keys))
    assert all(isinstance(a, Outgoing) for a in later.alerts) and later.alerts[0].dedupe.endswith(f":call:{OWNER}")


# ------------------------------------------------------------------------------ per-check ladders

CRITICAL = escalation.named_ladders(
    {"critical": [{"after": "0m", "sms": ["owner"], "call": ["owner", "partner"]}]}, PEOPLE
)


def test_a_check_follows_its_own_ladder_or_none() -> None:
    s = dataclasses.replace(S, ladders=CRITICAL)
    critical = Outage(s, ladder="critical")
    critical.run_until(DOWN_AT)
    assert [(k, c, r) for _, k, c, r in critical.rows()] == [
        ("down", "sms", OWNER),
        ("call", "call", OWNER),
        ("call", "call", PARTNER),
    ]
    assert critical.check.alert_at is None or critical.check.alert_at >= DOWN_AT + 3600  # no more steps
    plain = Outage(s, ladder="none")  # today's behaviour: sms_to, reminders every repeat
    plain.run_until(DOWN_AT)
    assert who(plain.rows()) == [("sms", "+15550000001")]
    default = Outage(s, ladder=None)
    default.run_until(DOWN_AT)
    assert who(default.rows()) == [("sms", OWNER), ("email", OWNER_MAIL)]
    gone = Outage(s, ladder="removed-from-the-config")  # falls back to the default ladder
    gone.run_until(DOWN_AT)
    assert who(gone.rows()) == who(default.rows())


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"none": [{"after": "0m", "sms": ["owner"]}]}, 'not "none"'),
        ({"Bad Name": [{"after": "0m", "sms": ["owner"]}]}, "a ladder name"),
        ({"night": [{"after": "5m", "sms": ["owner"]}]}, 'give it after = "0m"'),
        ({"night": [{"after": "0m", "call": ["boss"]}]}, "has no phone"),
        ([], "expected [[alerts.ladders.NAME]] tables"),
    ],
)
def test_it_refuses_a_named_ladder_that_cannot_work(raw: Any, message: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(message)):
        escalation.named_ladders(raw, PEOPLE)
