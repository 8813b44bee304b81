"""Voice calls (and the own number): the pure readers of ``+CLCC``, ``+CEER`` and ``+CNUM`` and
the outcome table first, then AtModem calling through the simulator over a real pty, then the
keeper passing calls, USSD, the own number and delivery reports through."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest

from modem.interface import CallResult, DeliveryReport, mask_number
from modem.keeper import ModemKeeper
from modem.simulator import SimOptions, build_options
from modem.voice import (
    CallLine,
    cause_outcome,
    dial_error_outcome,
    dial_number,
    ended_outcome,
    our_call,
    parse_ceer,
    parse_clcc,
    parse_clcc_line,
    parse_cnum,
)
from tests.support import corpus
from tests.support.aio import eventually, run
from tests.test_at_modem import Inbox, Rig, opened

FRIEND = "+15551234567"
FAST: dict[str, Any] = {"call_setup_seconds": 0.05, "ring_seconds": 0.1, "no_answer_seconds": 60.0}

# ------------------------------------------------------------------------------ pure readers


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('+CLCC: 1,0,2,0,0,"+15551234567",145', CallLine(1, True, 2, True, "+15551234567")),
        ('+CLCC: 1,0,3,0,0,"5551234",129', CallLine(1, True, 3, True, "5551234")),
        ("+CLCC: 2,1,4,0,0", CallLine(2, False, 4, True, None)),  # incoming, no number
        ('+CLCC: 1,0,0,1,0,"",129', CallLine(1, True, 0, False, None)),  # a data call
        ('+CLCC:1,0,0,0,0,"+4915",145,"Alice",,0', CallLine(1, True, 0, True, "+4915")),
        ("+CLCC: 1,2,0,0,0", None),  # <dir> out of range
        ("+CLCC: 1,0,9,0,0", None),  # <stat> out of range
        ("+CLCC: 1,0", None),
        ("+CLCC: (0,1)", None),  # the test command's answer
        ("OK", None),
    ],
)
def test_it_reads_clcc_lines(line: str, expected: CallLine | None) -> None:
    assert parse_clcc_line(line) == expected


def test_it_picks_our_outgoing_voice_call_among_several() -> None:
    calls = parse_clcc(["+CLCC: 1,1,4,0,0", '+CLCC: 2,0,1,1,0,"1",129', '+CLCC: 3,0,3,0,0,"2",129', "junk"])
    assert our_call(calls) == CallLine(3, True, 3, True, "2")
    assert our_call([]) is None


@pytest.mark.parametrize(
    ("number", "dialled"),
    [
        ("+15551234567", "+15551234567"),
        ("0151 234-567", "0151234567"),
        ("(030) 1234567", "0301234567"),
        ("12", None),  # too short
        ("+1555;H", None),  # no command smuggled into ATD
        ("*100#", None),  # service codes are USSD, not calls
        ("+", None),
        ("1+555", None),
        ("", None),
        ("5" * 21, None),
    ],
)
def test_it_dials_only_phone_numbers(number: str, dialled: str | None) -> None:
    assert dial_number(number) == dialled


@pytest.mark.parametrize(
    ("lines", "cause"),
    [
        (["+CEER: Normal call clearing"], "Normal call clearing"),
        (['+CEER: "Unassigned (unallocated) number"'], "Unassigned (unallocated) number"),
        (["+CEER: 17"], "17"),
        (["+CEER: "], None),
        ([], None),
    ],
)
def test_it_reads_the_release_cause(lines: list[str], cause: str | None) -> None:
    assert parse_ceer(lines) == cause


@pytest.mark.parametrize(
    ("cause", "outcome"),
    [
        ("Unassigned (unallocated) number", "invalid"),
        ("Invalid number format (incomplete number)", "invalid"),
        ("Bearer capability not presently available", "no-voice"),
        ("Service or option not available, unspecified", "no-voice"),
        ("User busy", "busy"),
        ("Call rejected", "rejected"),
        ("No answer from user (user alerted)", "no-answer"),
        ("CC cause 1", "invalid"),
        ("58", "no-voice"),
        ("Normal call clearing", None),
        ("No network service", None),
        ("", None),
        (None, None),
    ],
)
def test_it_names_the_outcome_a_release_cause_means(cause: str | None, outcome: str | None) -> None:
    assert cause_outcome(cause) == outcome


@pytest.mark.parametrize(
    ("word", "alerted", "answered", "cause", "outcome"),
    [
        ("NO CARRIER", True, True, None, "answered"),  # the phone hung up first
        ("NO CARRIER", True, False, "Call rejected", "rejected"),
        ("NO CARRIER", True, False, None, "rejected"),
        ("NO CARRIER", True, False, "No answer from user (user alerted)", "no-answer"),
        ("BUSY", True, False, "User busy", "rejected"),  # how many networks show a decline
        ("BUSY", False, False, None, "busy"),
        ("NO ANSWER", True, False, None, "no-answer"),
        ("NO CARRIER", False, False, "Unassigned (unallocated) number", "invalid"),
        ("NO CARRIER", False, False, "Bearer capability not presently available", "no-voice"),
        ("NO CARRIER", False, False, "No network service", "failed"),
        ("NO CARRIER", False, False, None, "failed"),
        ("NO DIALTONE", False, False, None, "failed"),
    ],
)
def test_it_maps_how_a_call_ended_to_its_outcome(
    word: str, alerted: bool, answered: bool, cause: str | None, outcome: str
) -> None:
    assert ended_outcome(word, alerted=alerted, answered=answered, cause=cause) == outcome


@pytest.mark.parametrize(
    ("cme", "plain", "outcome"),
    [(4, False, "no-voice"), (None, True, "no-voice"), (3, False, "failed"), (30, False, "failed")],
)
def test_it_maps_a_refused_dial(cme: int | None, plain: bool, outcome: str) -> None:
    assert dial_error_outcome(cme=cme, plain_error=plain) == outcome


@pytest.mark.parametrize(
    ("lines", "number"),
    [
        (['+CNUM: "","+15550009999",145'], "+15550009999"),
        (['+CNUM: "Voice","15550009999",145'], "+15550009999"),  # type 145 without its "+"
        (['+CNUM: ,"5550009999",129'], "5550009999"),
        (['+CNUM: "","002B0031003500350035",145'], "+1555"),  # +CSCS="UCS2"
        (['+CNUM: "",""', "+CNUM: x"], None),
        ([], None),
    ],
)
def test_it_reads_the_own_number(lines: list[str], number: str | None) -> None:
    assert parse_cnum(lines) == number


def _cnum_rows(data: Any) -> list[Any]:
    rows = []
    for case in data["cases"]:
        reply = case.get("strings", {}).get("reply", "")
        if reply.startswith("+CNUM"):
            first = reply.split("\r\n")[0]
            number = first.split('"')[-2] if '"' in first else None
            rows.append(pytest.param(reply, number, id=case["test"]))
    return rows


@pytest.mark.parametrize(
    ("reply", "number"), corpus.params("modemmanager_modem_helpers_replies.json", _cnum_rows, argnames=2)
)
def test_it_reads_modemmanagers_cnum_replies(reply: str, number: str, corpus_dir: object) -> None:
    # ModemManager lists every number; we take the first (the voice line on multi-number SIMs).
    found = parse_cnum(reply.split("\r\n"))
    assert found is not None and found.lstrip("+") == number.lstrip("+")


# ------------------------------------------------------------------------------ calls over a real pty


def call_with(rig: Rig, number: str = FRIEND, ring_for: float = 5.0, **kw: Any) -> CallResult:
    kw.setdefault("call_poll_interval", 0.05)
    kw.setdefault("answered_hold", 0.05)

    async def main() -> CallResult:
        async with opened(rig.modem(**kw)) as modem:
            return await modem.call(number, ring_for)

    return run(main())


@pytest.mark.parametrize(
    ("phone", "ring_for", "outcome", "ended_as", "cause"),
    [
        ("answer", 5.0, "answered", "host", ""),
        ("no-answer", 0.3, "no-answer", "host", ""),
        ("busy", 5.0, "busy", "busy", "BUSY: User busy"),
        ("reject", 5.0, "rejected", "rejected", "NO CARRIER: Call rejected"),
        ("invalid", 5.0, "invalid", "invalid", "NO CARRIER: Unassigned (unallocated) number"),
        ("no-voice", 5.0, "no-voice", "no-voice", "NO CARRIER: Bearer capability not presently available"),
    ],
)
def test_it_tells_every_outcome_of_a_call(
    make_pty_rig: Callable[..., Rig], phone: str, ring_for: float, outcome: str, ended_as: str, cause: str
) -> None:
    rig = make_pty_rig(SimOptions(call_outcome=phone, **FAST))
    result = call_with(rig, ring_for=ring_for)
    assert result.outcome == outcome
    if cause:
        assert result.detail == cause
    (call,) = rig.net.calls()
    assert (call.number, call.ended, call.result) == (FRIEND, True, ended_as)
    assert call.answered is (outcome == "answered")
    if outcome in ("answered", "no-answer", "rejected"):
        assert result.ringing > 0
    assert "ATH" in rig.sim.commands or ended_as != "host"


@pytest.mark.parametrize(
    "options",
    [build_options("huawei-e3372", **FAST), build_options("generic", ["no-voice"], **FAST)],
    ids=["huawei-e3372", "no-voice-fault"],
)
def test_it_says_no_voice_for_a_modem_without_calls(make_pty_rig: Callable[..., Rig], options: SimOptions) -> None:
    rig = make_pty_rig(options)
    result = call_with(rig)
    assert result.outcome == "no-voice"
    assert "+CME ERROR 4" in result.detail
    assert rig.net.calls() == []


def test_it_never_dials_what_is_not_a_number(make_pty_rig: Callable[..., Rig]) -> None:
    rig = make_pty_rig(SimOptions(**FAST))
    result = call_with(rig, number="+1555;H")
    assert result.outcome == "invalid"
    assert not [c for c in rig.sim.commands if c.upper().startswith("ATD")]


def test_it_fails_a_call_the_modem_never_answers_and_works_on(make_pty_rig: Callable[..., Rig]) -> None:
    rig = make_pty_rig(SimOptions(**FAST))

    async def main() -> None:
        async with opened(rig.modem(dial_timeout=0.5, command_timeout=0.5)) as modem:
            rig.sim.hang(True)
            result = await modem.call(FRIEND, 5.0)
            assert result.outcome == "failed" and "ATD" in result.detail
            rig.sim.hang(False)
            await modem.ping()
            assert await modem.own_number() == "+15550009999"

    run(main())


def test_it_hands_over_sms_that_arrive_during_a_call_after_it(make_pty_rig: Callable[..., Rig]) -> None:
    rig = make_pty_rig(SimOptions(call_outcome="no-answer", **FAST))
    inbox = Inbox()
    calls_over_at_handover: list[bool] = []

    async def record(sms: Any) -> None:
        calls_over_at_handover.append(all(c.ended for c in rig.net.calls()))
        await inbox(sms)

    async def main() -> None:
        modem = rig.modem(call_poll_interval=0.05, answered_hold=0.05)
        modem.set_inbound_handler(record)
        async with opened(modem):
            call = asyncio.ensure_future(modem.call(FRIEND, 20.0))
            await eventually(lambda: len(rig.net.calls()) == 1, 5, "the call")
            rig.net.inject(FRIEND, "ACK")
            await eventually(lambda: len(rig.sim.stored()) == 1, 5, "the SMS stored")
            assert rig.sim.answer_call()
            assert (await call).outcome == "answered"
            (sms,) = await inbox.wait(1)
            assert sms.text == "ACK"

    run(main())
    assert calls_over_at_handover == [True]


def test_a_send_waits_for_the_call(make_pty_rig: Callable[..., Rig]) -> None:
    rig = make_pty_rig(SimOptions(call_outcome="no-answer", **FAST))
    call_over_when_sent: list[bool] = []
    rig.net.on_sent(lambda sms: call_over_when_sent.append(all(c.ended for c in rig.net.calls())))

    async def main() -> None:
        async with opened(rig.modem(call_poll_interval=0.05, answered_hold=0.05)) as modem:
            call = asyncio.ensure_future(modem.call(FRIEND, 20.0))
            await eventually(lambda: len(rig.net.calls()) == 1, 5, "the call")
            send = asyncio.ensure_future(modem.send_sms(FRIEND, "DOWN web1"))
            await eventually(lambda: rig.sim.answer_call(), 5, "a ringing call to answer")
            assert (await call).outcome == "answered"
            assert len(await send) == 1

    run(main())
    assert call_over_when_sent == [True]


# ------------------------------------------------------------------------------ the keeper passes it on


def test_the_keeper_passes_calls_ussd_own_number_and_reports_through(
    make_pty_rig: Callable[..., Rig], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    rig = make_pty_rig(SimOptions(**FAST))
    reports: list[DeliveryReport] = []

    async def on_report(report: DeliveryReport) -> None:
        reports.append(report)

    async def main() -> None:
        keeper = ModemKeeper(
            lambda: rig.modem(call_poll_interval=0.05, answered_hold=0.05),
            Inbox(),
            recover_after=None,
            report_handler=on_report,
        )
        task = asyncio.ensure_future(keeper.run())
        try:
            result = await keeper.call(FRIEND, 5.0, wait=10)
            assert result.outcome == "answered"
            assert (await keeper.ussd("*100#", wait=10)).startswith("Balance: 12.34 EUR")
            assert await keeper.own_number(wait=10) == "+15550009999"
            refs = await keeper.send_sms(FRIEND, "DOWN web1", wait=10, report=True)
            await eventually(lambda: len(reports) == 1, 5, "a delivery report")
            assert (reports[0].reference, reports[0].state) == (refs[0], "delivered")
        finally:
            await keeper.stop()
            await task

    run(main())
    # The driver never logs the full number (the simulator's own command log is not ours to check).
    driver = [r.getMessage() for r in caplog.records if not r.name.startswith("modem.sim")]
    assert any(mask_number(FRIEND) in m for m in driver)
    assert not any(FRIEND in m for m in driver)
