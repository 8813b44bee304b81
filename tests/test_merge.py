"""Merged alerts tell the truth now, and attempts belong to each alert (issue 12, defects 1-2).

The merge is pure (``policy.merge`` with the checks' current statuses): tables and hypothesis
properties. Attempts across merges run through the real Dispatcher on the in-process rig
(tests/support/clockrig.py) with a recording channel that fails on demand.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from gateway.model import PingKind, Status
from gateway.rules import policy
from gateway.rules.settings import Settings
from gateway.runtime.channels import ChannelError
from tests.support.clockrig import Gateway

S = Settings(tz="UTC")
T = dt.datetime(2027, 1, 15, 14, 13, 5, tzinfo=dt.UTC).timestamp()  # "14:13"
UP, DOWN, PAUSED = Status.UP, Status.DOWN, Status.PAUSED

TEXTS = {
    "down": "DOWN {}: no heartbeat since 14:12 (1 min). Reply ACK {} to silence.",
    "fail": "FAIL {}: exit status 1 at 14:13. Reply ACK {} to silence.",
    "reminder": "STILL DOWN {} for 1 h (since 13:13). Reply ACK {} to silence.",
    "up": "UP {} after 4 s",
}


def row(kind: str, name: str, at: float = 0.0, *, sent: bool = False) -> policy.Pending:
    text = TEXTS[kind].format(name, name)
    return policy.Pending(kind, name, text, T + at, sent=True) if sent else policy.Pending(kind, name, text, T + at)


# ------------------------------------------------------------------------------ tables

CASES = [
    pytest.param(  # the example: one server flapping while the modem was slow, up now
        [("down", "web1", 0, False), ("up", "web1", 1, False), ("down", "web1", 2, False), ("up", "web1", 4, False)],
        {"web1": UP},
        "(web1 down 14:13, back 14:13)",
        id="flap-up-now",
    ),
    pytest.param(  # the same rows, but down again now: one DOWN, its own full text
        [("down", "web1", 0, False), ("up", "web1", 1, False), ("down", "web1", 2, False)],
        {"web1": DOWN},
        TEXTS["down"].format("web1", "web1"),
        id="flap-down-now",
    ),
    pytest.param(  # distinct servers in the silent line, not rows; one that came back is folded
        [("down", n, i, False) for i, n in enumerate(["a", "b", "c", "a", "b", "d"])] + [("up", "d", 70, False)],
        {"a": DOWN, "b": DOWN, "c": DOWN, "d": UP},
        "3 of 5 servers silent since 14:13: network or power? a, b, c. (d down 14:13, back 14:14)",
        id="silent-distinct",
    ),
    pytest.param(  # below silent_summary_min once the recovered server is not counted
        [("down", "a", 0, False), ("down", "b", 1, False), ("down", "c", 2, False), ("up", "c", 3, False)],
        {"a": DOWN, "b": DOWN, "c": UP},
        "DOWN a. DOWN b. (c down 14:13, back 14:13)",
        id="recovered-not-silent",
    ),
    pytest.param(  # the DOWN went out already: only the recovery is news
        [("down", "web1", 0, True), ("reminder", "web1", 60, False), ("up", "web1", 90, False)],
        {"web1": UP},
        TEXTS["up"].format("web1"),
        id="sent-not-repeated",
    ),
    pytest.param(  # a reminder for a server up now whose UP went out: nothing to say
        [("up", "web1", 0, True), ("reminder", "web1", 0, False)],
        {"web1": UP},
        "",
        id="stale-reminder-dropped",
    ),
    pytest.param(  # back and down again before the UP left: the owner still knows it as down
        [("up", "web1", 0, False), ("down", "db1", 1, False)],
        {"web1": DOWN, "db1": DOWN},
        TEXTS["down"].format("db1", "db1"),
        id="up-of-a-down-server-dropped",
    ),
    pytest.param(  # paused since: not "up", and never silent
        [("fail", "job", 0, False), ("down", "web1", 1, False), ("down", "web2", 2, False), ("down", "web3", 3, False)],
        {"job": PAUSED, "web1": DOWN, "web2": DOWN, "web3": DOWN},
        "3 of 5 servers silent since 14:13: network or power? web1, web2, web3. (job failed 14:13, paused now)",
        id="failed-then-paused",
    ),
]


@pytest.mark.parametrize(("rows", "now", "text"), CASES)
def test_it_describes_the_servers_as_they_are_now(
    rows: list[tuple[str, str, float, bool]], now: dict[str, Status], text: str
) -> None:
    pending = [row(kind, name, at, sent=sent) for kind, name, at, sent in rows]
    assert policy.merge(pending, watched=5, s=S, statuses=now) == text


def test_it_names_each_server_once_without_statuses() -> None:
    # Without the current statuses each server is as its latest row says (the old call form)
    rows = [row("down", "web1", i) for i in range(4)] + [row("up", "web1", 4)]
    assert policy.merge(rows, watched=4, s=S) == "(web1 down 14:13, back 14:13)"


def test_it_counts_servers_not_alert_rows_in_a_large_merge() -> None:
    # "190 of 200 servers silent" for 140 servers merged with 199 UP alerts, from the issue
    downs = [row("down", f"s{i}", i * 0.01) for i in range(140)]
    ups = [row("up", f"s{i}", 10) for i in range(199)]
    now = {f"s{i}": (UP if i < 199 else DOWN) for i in range(200)}
    text = policy.merge(downs + ups, watched=200, s=S, statuses=now)
    assert "silent" not in text and len(text) <= policy.SMS_CHARS
    assert text.startswith("(s0 down 14:13, back 14:13). ") and text.endswith(" more, send STATUS")


# ------------------------------------------------------------------------------ properties

NAMES = ["alpha", "bravo", "charlie", "delta", "echo", "golf"]  # none inside another
rows_st = hs.lists(
    hs.tuples(hs.sampled_from(sorted(TEXTS)), hs.sampled_from(NAMES), hs.integers(0, 600), hs.booleans()),
    min_size=1,
    max_size=30,
)
status_st = hs.dictionaries(hs.sampled_from(NAMES), hs.sampled_from(list(Status)))


def listings(text: str, name: str) -> int:
    """How often the message names the server, not counting its "Reply ACK <name>" hint."""
    return len(re.findall(rf"\b{name}\b", text)) - len(re.findall(rf"ACK {name}\b", text))


def silent_names(text: str) -> list[str]:
    m = re.search(r"network or power\? ([^.]*)", text)
    return m.group(1).split(", ") if m else []


@settings(max_examples=500, deadline=None)
@given(rows_st, status_st, hs.integers(1, 50))
def test_it_never_repeats_a_server_calls_an_up_one_silent_or_resends(
    spec: list[tuple[str, str, int, bool]], now: dict[str, Status], watched: int
) -> None:
    rows = [row(kind, name, at, sent=sent) for kind, name, at, sent in spec]
    text = policy.merge(rows, watched=watched, s=S, statuses=now)
    assert len(text) <= policy.SMS_CHARS
    assert text == policy.merge([r for r in rows if not r.sent], watched=watched, s=S, statuses=now)
    for name in NAMES:
        assert listings(text, name) <= 1, text
        if not any(r.check_name == name and not r.sent for r in rows):
            assert listings(text, name) == 0, text  # nothing but rows already delivered
        if name in now and now[name] is not Status.DOWN:
            assert name not in silent_names(text), text
            assert not re.search(rf"(DOWN|FAIL) {name}\b", text), text
    m = re.match(r"(\d+) of (\d+) servers silent", text)
    if m:
        assert int(m.group(1)) == len(silent_names(text)) or "+" in text


# ------------------------------------------------------------------------------ through the dispatcher


def test_it_counts_attempts_per_alert_across_merges(tmp_path: Path) -> None:
    with Gateway(tmp_path, alerts={"fallback_after": 3, "repeat": "1h"}) as g:
        g.sms.fail_next(ChannelError("+CMS ERROR: 500"), count=3)
        g.add("first", period=1, grace=0)
        g.add("second", period=16, grace=0)
        g.ping("first", "second")
        g.tick(1)  # first down: attempt 1 fails, retry in 5 s
        g.tick(5)  # attempt 2 fails, retry in 10 s
        g.tick(10)  # second goes down and is merged into first's attempt 3, which fails
        sms = {m["check"]: (m["state"], m["attempts"]) for m in g.outbox() if m["channel"] == "sms"}
        assert sms == {"first": ("failed", 3), "second": ("pending", 1)}  # second has its own count
        assert g.sms.sent == []
        g.tick(4)
        assert g.sms.sent == []  # second's backoff is its own 5 s, not first's
        g.tick(1)
        assert [t.split(":")[0] for t in g.sms.texts()] == ["DOWN second"]
        sms = {m["check"]: (m["state"], m["attempts"]) for m in g.outbox() if m["channel"] == "sms"}
        assert sms == {"first": ("failed", 3), "second": ("sent", 2)}


def test_it_sends_a_flapping_server_as_it_is_when_the_message_leaves(tmp_path: Path) -> None:
    with Gateway(tmp_path, alerts={"coalesce": "1m", "repeat": "1h"}) as g:
        g.add("web1", period=3600, grace=60)
        g.add("db1", period=3600, grace=60)
        g.ping("web1", "db1")
        for kind in (PingKind.FAIL, PingKind.SUCCESS, PingKind.FAIL, PingKind.SUCCESS):
            g.ping("web1", kind=kind)
            g.tick(1)
        g.ping("db1", kind=PingKind.FAIL)
        g.tick(1)
        assert g.sms.sent == []  # all still in the coalescing window
        g.tick(60)
        assert g.sms.texts() == ["(web1 failed 08:00, back 08:00). FAIL db1"]
        assert all(m["state"] == "sent" for m in g.outbox())
