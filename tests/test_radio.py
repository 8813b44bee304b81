"""Radio state and network registration (issue 17): ``AT+CFUN`` at init, registration in
every published ``+CREG`` / ``+CGREG`` / ``+CEREG`` / ``+C5GREG`` form combined into one
status (SMS only, denied, access technology), and the empty-store answers of ``AT+CMGL``.

Pure parser and router tables first (our own, then ModemManager's corpus replies), then the
AtModem against the simulator over a real pty."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from modem.at import (
    AtFramer,
    AtRouter,
    Registration,
    Reply,
    Urc,
    access_technology,
    combine_registrations,
    parse_registration,
)
from modem.errors import CmsError
from modem.pdu import encode_submit
from modem.simulator import Network, PtyModem, SimOptions, Simulator
from tests.support import corpus
from tests.support.aio import eventually, run
from tests.support.daemon import hbgw
from tests.test_at_modem import NUMBER, Inbox, Rig, opened

# ------------------------------------------------------------------------------ parser tables


@pytest.mark.parametrize(
    ("line", "hint", "expected"),
    [
        # (kind, stat, solicited, lac, ci, act)
        ("+CREG: 1,0,1", True, ("CREG", 0, True, None, None, 1)),  # n,stat,AcT (issue 17)
        ("+CREG: 2,1,7", None, ("CREG", 1, True, None, None, 7)),
        ("+CREG: 0,5", True, ("CREG", 5, True, None, None, None)),
        ("+CREG: 5", True, ("CREG", 5, False, None, None, None)),
        ('+CREG: 1,"8BE3","00002BAF"', True, ("CREG", 1, False, 0x8BE3, 0x2BAF, None)),
        ('+CREG: 2,1,"8BE3","00002BAF",0', True, ("CREG", 1, True, 0x8BE3, 0x2BAF, 0)),
        ('+CREG: 1,"8BE3","00002BAF",2', True, ("CREG", 1, False, 0x8BE3, 0x2BAF, 2)),
        ('+CGREG: 2,5,"0502","0404736D",6,"00"', True, ("CGREG", 5, True, 0x502, 0x404736D, 6)),
        ('+CGREG: 5,"0502","0404736D",4,"00"', True, ("CGREG", 5, False, 0x502, 0x404736D, 4)),
        ('+CEREG: 2,6,"8B37","0A265185",7', True, ("CEREG", 6, True, 0x8B37, 0xA265185, 7)),
        ('+CEREG: 7,"8B37","0A265185",7', True, ("CEREG", 7, False, 0x8B37, 0xA265185, 7)),
        ('+CEREG: 3,3,"","",7,0,15', True, ("CEREG", 3, True, None, None, 7)),  # with reject cause
        (  # PSM timers after the AcT (CEREG=4)
            '+CEREG: 4,1,"1A2B","01A2D001",9,,,"00100100","01000111"',
            True,
            ("CEREG", 1, True, 0x1A2B, 0x1A2D001, 9),
        ),
        ('+C5GREG: 2,1,"00A1B2","0123456789",11,6,"01.000001"', True, ("C5GREG", 1, True, 0xA1B2, 0x123456789, 11)),
        ('+C5GREG: 1,"00A1B2","0123456789",12', True, ("C5GREG", 1, False, 0xA1B2, 0x123456789, 12)),
    ],
)
def test_it_parses_every_registration_form(
    line: str, hint: bool | None, expected: tuple[str, int, bool, int | None, int | None, int | None]
) -> None:
    reg = parse_registration(line, solicited=hint)
    assert reg is not None
    assert (reg.kind, reg.stat, reg.solicited, reg.lac, reg.ci, reg.act) == expected


@pytest.mark.parametrize("line", ["+CREG: ", '+CREG: "1"', "+CREG: x,y,z", "+CSQ: 1,2"])
def test_it_rejects_what_is_no_registration(line: str) -> None:
    assert parse_registration(line) is None


_MM_ACT = {"GSM": "GSM", "EDGE": "GSM", "UMTS": "UMTS", "LTE": "LTE", "5GNR": "NR", "UNKNOWN": None}


def _mm_cases(data: object) -> Iterator[object]:
    assert isinstance(data, dict)
    for case in data["cases"]:
        if case["test"].startswith(("test_creg", "test_cgreg", "test_cereg", "test_c5greg")):
            yield pytest.param(case, id=case["test"])


@pytest.mark.parametrize("case", corpus.params("modemmanager_modem_helpers_replies.json", _mm_cases))  # type: ignore[arg-type]
def test_it_reads_the_access_technology_modemmanager_reads(case: dict[str, object]) -> None:
    reply = str(case["strings"]["reply"])  # type: ignore[index]
    expected = str(case["expected_c"][0])  # type: ignore[index]
    m = re.search(r"MM_MODEM_ACCESS_TECHNOLOGY_(\w+)", expected)
    assert m
    line = next(part for part in reply.splitlines() if part.strip())
    reg = parse_registration(line, solicited=", TRUE, reply" in str(case["call_c"][0]))  # type: ignore[index]
    assert reg is not None
    assert access_technology(reg.act) == _MM_ACT[m.group(1)]


def _reg(kind: str, stat: int, act: int | None = None) -> Registration:
    return Registration(kind, stat, True, act=act)


@pytest.mark.parametrize(
    ("regs", "state", "sms_only", "technology", "note"),
    [
        ([], "unknown", False, None, None),
        ([_reg("CREG", 1, 0)], "home", False, "GSM", None),
        # BG96 in Japan (TinyGSM PR#467): CREG searching, CEREG registered.
        ([_reg("CREG", 2), _reg("CGREG", 2), _reg("CEREG", 1, 7)], "home", False, "LTE", None),
        ([_reg("CREG", 0), _reg("CEREG", 6, 7)], "home", True, "LTE", "SMS only"),
        ([_reg("CREG", 0), _reg("CEREG", 7, 7)], "roaming", True, "LTE", "SMS only"),
        ([_reg("CREG", 1, 2), _reg("CEREG", 6, 7)], "home", False, "UMTS", None),  # CS carries SMS
        ([_reg("CREG", 0), _reg("CEREG", 3, 7)], "denied", False, "LTE", "denied"),
        ([_reg("CREG", 2), _reg("CEREG", 0)], "searching", False, None, None),
        ([_reg("CREG", 0), _reg("C5GREG", 5, 11)], "roaming", False, "NR", None),
    ],
)
def test_it_combines_the_registration_domains(
    regs: list[Registration], state: str, sms_only: bool, technology: str | None, note: str | None
) -> None:
    summary = combine_registrations(regs)
    assert (summary.state, summary.sms_only, summary.technology) == (state, sms_only, technology)
    if note is None:
        assert summary.note is None
    else:
        assert summary.note is not None and note in summary.note


def _route(raw: bytes, command: str) -> tuple[list[Reply], list[Urc]]:
    framer, router = AtFramer(), AtRouter()
    m = re.match(r"AT(\+\w+)", command)
    assert m
    router.begin(command, (m.group(1) + ":",))
    replies: list[Reply] = []
    urcs: list[Urc] = []
    for event in framer.feed(raw):
        for out in router.feed(event):
            if isinstance(out, Reply):
                replies.append(out)
            elif isinstance(out, Urc):
                urcs.append(out)
    return replies, urcs


@pytest.mark.parametrize(
    ("command", "answer", "urc"),
    [
        ("AT+CREG?", "+CREG: 1,0,1", '+CREG: 1,"8BE3","00002BAF"'),
        ("AT+CREG?", '+CREG: 2,1,"8BE3","00002BAF",7', "+CREG: 5"),
        ("AT+CGREG?", '+CGREG: 2,1,"8BE3","00002B5D",3,"00"', '+CGREG: 1,"8BE3","00002B5D",3,"00"'),
        ("AT+CEREG?", "+CEREG: 1,6", '+CEREG: 6,"8B37","0A265185",7'),
        ("AT+CEREG?", '+CEREG: 2,6,"8B37","0A265185",7', "+CEREG: 1"),
        ("AT+C5GREG?", '+C5GREG: 2,1,"00A1B2","0123456789",11', '+C5GREG: 1,"00A1B2","0123456789",11'),
    ],
)
def test_it_takes_the_answer_as_the_answer_and_the_report_as_a_urc(command: str, answer: str, urc: str) -> None:
    for raw in (
        f"\r\n{urc}\r\n\r\n{answer}\r\n\r\nOK\r\n",
        f"\r\n{answer}\r\n\r\n{urc}\r\n\r\nOK\r\n",
    ):
        replies, urcs = _route(raw.encode(), command)
        assert [r.lines for r in replies] == [[answer]]
        assert [u.line for u in urcs] == [urc]


# ------------------------------------------------------------------------------ over a real pty


@pytest.mark.parametrize("boot", [0, 4])
def test_it_switches_a_radio_that_boots_off_on(make_pty_rig: Callable[..., Rig], boot: int) -> None:
    rig = make_pty_rig(SimOptions(radio_at_boot=boot))

    async def main() -> None:
        async with opened(rig.modem()) as modem:
            status = await modem.status()
            assert (status.radio, status.registration) == ("on", "home")
            await modem.send_sms(NUMBER, "server web1 is down")

    run(main())
    assert "AT+CFUN=1" in rig.sim.commands
    assert [s.text for s in rig.net.sent()] == ["server web1 is down"]


def test_it_leaves_a_radio_that_is_on_alone(make_pty_rig: Callable[..., Rig]) -> None:
    rig = make_pty_rig(SimOptions())

    async def main() -> None:
        async with opened(rig.modem()) as modem:
            assert (await modem.status()).radio == "on"

    run(main())
    assert "AT+CFUN?" in rig.sim.commands
    assert not [c for c in rig.sim.commands if c.startswith("AT+CFUN=")]


def test_it_reports_a_radio_the_modem_will_not_switch_on(
    make_pty_rig: Callable[..., Rig], caplog: pytest.LogCaptureFixture
) -> None:
    rig = make_pty_rig(SimOptions(radio_at_boot=4, refuse_radio_on=True))

    async def main() -> None:
        async with opened(rig.modem()) as modem:
            status = await modem.status()
            assert (status.radio, status.registration) == ("refused", "unregistered")
            with pytest.raises(CmsError) as info:
                await modem.send_sms(NUMBER, "server web1 is down")
            assert info.value.code == 331 and not info.value.permanent

    with caplog.at_level(logging.WARNING):
        run(main())
    assert any("refused to switch its radio on" in r.getMessage() for r in caplog.records)
    assert rig.net.sent() == []


def test_the_simulator_refuses_sms_while_its_radio_is_off() -> None:
    sim = Simulator(Network(), SimOptions(radio_at_boot=0))
    # Straight into the machine (no transport draining it): the driver would switch it on.
    (part,) = encode_submit(NUMBER, "server web1 is down")
    for command in ("ATE0\r", "AT+CFUN?\r", "AT+CEREG?\r", f"AT+CMGS={part.tpdu_length}\r", part.hex + "\x1a"):
        sim.feed(command.encode())
    sim.feed(b"AT+CFUN=1\r")
    sim.feed(b"AT+CFUN?\r")
    text = sim.read_output()[0].decode("latin-1")
    lines = [line for line in text.split("\r\n") if line and line != "OK"]
    assert lines[1:] == ["+CFUN: 0", "+CEREG: 0,0", "> ", "+CMS ERROR: 331", "+CFUN: 1"]


@pytest.mark.parametrize(
    ("options", "registration", "sms_only", "technology", "note"),
    [
        (SimOptions(short_creg=True, act=0), "home", False, "GSM", None),  # "+CREG: 0,1,0"
        (SimOptions(registration=0, eps_registration=6, act=7), "home", True, "LTE", "SMS only"),
        (SimOptions(registration=2, eps_registration=1, act=7), "home", False, "LTE", None),
        (SimOptions(registration=3, eps_registration=3, act=7), "denied", False, None, "denied"),
        (SimOptions(registration=0, eps_registration=1, act=11, has_c5greg=True), "home", False, "NR", None),
    ],
    ids=["short-creg", "sms-only", "lte-only", "denied", "nr"],
)
def test_it_reports_registration_from_every_domain(
    make_pty_rig: Callable[..., Rig],
    options: SimOptions,
    registration: str,
    sms_only: bool,
    technology: str | None,
    note: str | None,
) -> None:
    rig = make_pty_rig(options)

    async def main() -> None:
        async with opened(rig.modem()) as modem:
            status = await modem.status()
            assert (status.registration, status.sms_only, status.access_technology) == (
                registration,
                sms_only,
                technology,
            )
            if note is None:
                assert status.registration_note is None
            else:
                assert status.registration_note is not None and note in status.registration_note
            if registration == "home":
                await modem.send_sms(NUMBER, "server web1 is down")

    run(main())
    assert {"AT+CREG?", "AT+CGREG?", "AT+CEREG?", "AT+C5GREG?"} <= set(rig.sim.commands)
    if registration == "home":
        assert len(rig.net.sent()) == 1


@pytest.mark.parametrize("answer", ["cms", "cme"])
def test_it_takes_an_empty_store_error_for_no_messages(
    make_pty_rig: Callable[..., Rig], caplog: pytest.LogCaptureFixture, answer: str
) -> None:
    rig = make_pty_rig(SimOptions(empty_list_error=answer))
    inbox = Inbox()

    async def main() -> None:
        async with opened(rig.modem(), inbox):
            await eventually(lambda: "AT+CMGL=4" in rig.sim.commands, what="the startup listing")
            rig.net.inject("+15557654321", "ACK web1")
            (sms,) = await inbox.wait(1)  # one job at a time: the listing was handled before
            assert sms.text == "ACK web1"

    with caplog.at_level(logging.INFO):
        run(main())
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize(
    ("options", "verdict"),
    [
        ({}, "yes"),
        (
            {"radio_at_boot": 4, "refuse_radio_on": True},
            "no, because the modem's radio is off and it refused to switch it on",
        ),
    ],
    ids=["radio on", "radio refused"],
)
def test_modem_probe_says_whether_this_modem_can_send_alerts(
    tmp_path: Path, options: dict[str, Any], verdict: str
) -> None:
    """`hbgw modem probe` against a simulated modem on a real pty, the way a user tries a
    stick before trusting it."""
    transport = PtyModem(Simulator(Network(), SimOptions(**options))).start()
    try:
        r = hbgw("modem", "probe", "--device", transport.device, "--json", data_dir=tmp_path, check=False)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["verdict"] == verdict
        text = hbgw("modem", "probe", "--device", transport.device, data_dir=tmp_path).stdout
        assert text.splitlines()[-1] == f"this modem can send alerts here: {verdict}"
    finally:
        transport.stop()


def test_the_sms_channel_tells_the_owner_what_a_modem_error_means(make_pty_rig: Callable[..., Rig]) -> None:
    """The outbox's error and the "SMS is failing" email carry the code's meaning from the
    table of field codes (modem.errors), not only the bare code."""
    from gateway.runtime.channels import ChannelError, SmsChannel
    from tests.test_at_modem import keeper_for

    rig = make_pty_rig(SimOptions())
    keeper = keeper_for(rig, Inbox())
    channel = SmsChannel(keeper, wait=5)

    async def main() -> None:
        task = asyncio.create_task(keeper.run())
        try:
            rig.sim.fail_next_send(330)
            with pytest.raises(ChannelError) as e:
                await channel.send(NUMBER, "alert")
            assert "330" in str(e.value) and "SMS centre unknown: set [modem] smsc" in str(e.value)
            assert await channel.send(NUMBER, "alert")  # and the next one goes
        finally:
            await keeper.stop()
            await task

    run(main())
