"""Proof that the SMS path works: the daily canary (an SMS to the gateway's own number, expected
back) and the prepaid balance. The pure rules first, then the canary through the real service,
store, dispatcher and inbox on clocks the test moves (tests/support/clockrig.py); the balance
over a real modem on the simulator is in test_ussd_balance.py."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.rules import smspath
from gateway.runtime.smspath import SmsPathWatch
from tests.support.clockrig import EMAIL, T0, Gateway

OWN = "+15550009999"
UTC = dt.UTC

# ------------------------------------------------------------------------------ pure rules


def test_the_day_s_slot_is_within_the_window_and_stable() -> None:
    day = dt.date(2027, 1, 15)
    at = smspath.slot(day, 8 * 60, 1800, UTC)
    start = dt.datetime(2027, 1, 15, 8, 0, tzinfo=UTC).timestamp()
    assert start <= at < start + 1800
    assert smspath.slot(day, 8 * 60, 1800, UTC) == at  # a restart does not move it
    others = {smspath.slot(day + dt.timedelta(days=i), 8 * 60, 1800, UTC) - 86400 * i for i in range(10)}
    assert len(others) > 5  # it moves from day to day
    assert smspath.slot(day, 8 * 60, 0, UTC) == start


def test_the_next_canary_is_today_unless_done_or_gone() -> None:
    today = dt.date(2027, 1, 15)
    slot = smspath.slot(today, 8 * 60, 1800, UTC)
    tomorrow = smspath.slot(today + dt.timedelta(days=1), 8 * 60, 1800, UTC)
    assert smspath.next_send(slot - 3600, 8 * 60, 1800, UTC, None) == slot
    assert smspath.next_send(slot - 3600, 8 * 60, 1800, UTC, "2027-01-15") == tomorrow  # sent today
    assert smspath.next_send(slot + 3600, 8 * 60, 1800, UTC, "2027-01-14") == slot  # past, not sent: now
    assert smspath.next_send(slot + 3600, 8 * 60, 1800, UTC, "2027-01-15") == tomorrow


@pytest.mark.parametrize(
    ("text", "token"),
    [
        (smspath.canary_text("a1b2c3"), "a1b2c3"),
        ("HBGW CANARY A1B2C3: ...", "a1b2c3"),
        ("hbgw canary zzzzzz", None),
        ("ACK web1", None),
        ("hbgw canary a1b2c", None),
    ],
)
def test_it_knows_a_canary_by_its_token(text: str, token: str | None) -> None:
    assert smspath.canary_token(text) == token


def test_a_canary_is_proven_lost_late_or_stray() -> None:
    c = smspath.sent(smspath.Canary(), "abc123", 1000.0, "2027-01-15", OWN)
    assert c.deadline(600) == 1600.0 and smspath.lost(c, 1599.0, 600) is None
    proven, what = smspath.returned(c, "abc123", 1042.0)
    assert (what, proven.round_trip, proven.token, proven.broken) == ("proven", 42.0, None, False)
    assert smspath.returned(proven, "abc123", 1050.0)[1] == "stray"  # twice
    lost = smspath.lost(c, 1600.0, 600)
    assert lost is not None and lost.broken and lost.token is None and lost.failed_sent_at == 1000.0
    late, what = smspath.returned(lost, "abc123", 90000.0)
    assert what == "late" and not late.broken and late.round_trip == 89000.0
    assert smspath.returned(c, "ffffff", 1010.0)[1] == "stray"  # one we never sent
    assert smspath.Canary.from_json("{not json") == smspath.Canary()


@pytest.mark.parametrize(
    ("answer", "pattern", "amount"),
    [
        ("Balance: 12.34 EUR. Valid until 2027-03-01.", smspath.DEFAULT_BALANCE_PATTERN, 12.34),
        ("Ihr Guthaben beträgt 5,20 EUR.", smspath.DEFAULT_BALANCE_PATTERN, 5.2),
        ("Your credit is $3. Bonus 100MB", r"credit is \$(\d+(?:\.\d+)?)", 3.0),
        ("Sorry, service unavailable", smspath.DEFAULT_BALANCE_PATTERN, None),
    ],
)
def test_it_reads_the_amount_in_a_balance_answer(answer: str, pattern: str, amount: float | None) -> None:
    assert smspath.balance_amount(answer, pattern) == amount


def test_a_low_balance_or_a_silent_ussd_is_a_trouble() -> None:
    ok = smspath.Balance(asked_at=1.0, answer="12.34", amount=12.34)
    assert smspath.balance_troubles(ok, 5.0, "*100#") == []
    assert smspath.balance_troubles(ok, 20.0, "*100#") == ["prepaid balance low: 12.34 (below 20.00); top up the SIM"]
    once = smspath.Balance(asked_at=1.0, error="no answer", failures=1)
    assert smspath.balance_troubles(once, 5.0, "*100#") == []  # one failure may be the network
    twice = smspath.Balance(asked_at=2.0, error="no answer", failures=2)
    assert smspath.balance_troubles(twice, 5.0, "*100#") == [
        "the prepaid balance check (*100#) stopped answering: no answer"
    ]


# ------------------------------------------------------------------------------ the canary, end to end


class NoModem:
    """The canary with ``own_number`` set needs nothing from the modem: any call is a bug."""

    async def own_number(self, *, wait: float) -> str | None:
        raise AssertionError("own_number set: the SIM must not be asked")

    async def ussd(self, code: str, *, wait: float, timeout: float = 30.0) -> str:
        raise AssertionError("no balance check configured")


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[Gateway]:
    modem = {"own_number": OWN, "canary_at": "08:00", "canary_window": "0s", "canary_timeout": "10m"}
    with Gateway(tmp_path / "data", modem=modem) as g:
        yield g


def step(g: Gateway, watch: SmsPathWatch) -> float:
    wake = asyncio.run_coroutine_threadsafe(watch.step(), g.loop).result(timeout=10)
    g.dispatch()
    return wake


def canaries(g: Gateway) -> list[str]:
    return [t for r, t in g.sms.sent if r == OWN]


def test_the_canary_goes_out_comes_back_and_proves_the_path(gw: Gateway) -> None:
    watch = SmsPathWatch(gw.service, NoModem(), gw.config, clock=gw.clocks)
    assert step(gw, watch) == T0 + 600  # 08:00 now: sent, looked at again at its deadline
    (text,) = canaries(gw)
    token = smspath.canary_token(text)
    assert token is not None
    gw.clocks.run(42)
    gw.receive(OWN, text)  # the network brings it back
    state = gw.service.smspath.state()
    assert (state.proven_at, state.round_trip, state.broken) == (T0 + 42, 42.0, False)
    assert gw.inbox() == []  # neither a command nor a stranger's message
    page = gw.service.views.modem_page().canary
    assert page is not None and page.proven_at == T0 + 42  # "SMS path: last proven 08:00 (42 s round trip)"
    tomorrow = smspath.slot(dt.date(2027, 1, 16), 8 * 60, 0, UTC)
    assert step(gw, watch) == tomorrow
    assert len(canaries(gw)) == 1  # once a day
    gw.receive(OWN, text)  # it comes back twice: ignored
    assert gw.service.smspath.state().proven_at == T0 + 42 and gw.inbox() == []


def test_a_canary_that_does_not_come_back_is_told_and_shown(gw: Gateway) -> None:
    watch = SmsPathWatch(gw.service, NoModem(), gw.config, clock=gw.clocks)
    step(gw, watch)
    (text,) = canaries(gw)
    gw.clocks.run(599)
    step(gw, watch)
    assert not gw.service.smspath.state().broken  # not yet
    gw.clocks.run(1)
    step(gw, watch)
    assert gw.service.smspath.state().broken
    (mail,) = [t for r, t in gw.email.sent if r == EMAIL]
    assert "the SMS path is broken: sent 08:00, not received within 10 min" in mail
    troubles = gw.service.views.health(1)["troubles"]
    assert "the SMS path is broken: the gateway's SMS to itself, sent 08:00, did not come back" in troubles
    # it arrives after all, hours later: the path works again, the owner hears that too
    gw.clocks.run(3 * 3600)
    gw.receive(OWN, text)
    gw.dispatch()
    assert not gw.service.smspath.state().broken
    assert any("works again" in t for r, t in gw.email.sent if r == EMAIL)
    assert not [t for t in gw.service.views.health(1)["troubles"] if "SMS path" in t]


def test_a_stranger_cannot_prove_the_path(gw: Gateway) -> None:
    watch = SmsPathWatch(gw.service, NoModem(), gw.config, clock=gw.clocks)
    step(gw, watch)
    (text,) = canaries(gw)
    gw.receive("+15557777777", text)  # someone forwards it
    assert gw.service.smspath.state().proven_at is None
    assert [m["text"] for m in gw.inbox()] == [text]  # a stranger's message, as any other


def test_no_canary_without_a_number(tmp_path: Path) -> None:
    with Gateway(tmp_path / "data") as g:
        assert g.config.modem.canary_at is None  # off unless own_number (or canary_at) is set
        watch = SmsPathWatch(g.service, NoModem(), g.config, clock=g.clocks)
        step(g, watch)
        assert g.sms.sent == []
