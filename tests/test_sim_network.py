"""The simulated network's services: the own number and SMS to it (the canary), delivery
reports, USSD and voice calls, over a real pty and through ``hbgw simulate-modem``'s control
socket."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import serial

from modem.pdu import StatusReport, decode_gsm7, decode_pdu, encode_submit, unpack_septets
from modem.simulator import Network, PtyModem, SimOptions, Simulator, SimulatorControlError
from tests.support.daemon import wait_for
from tests.support.sim import SimProcess
from tests.support.sim_client import AtClient

OWN = "+15550009999"
FRIEND = "+15551234567"
BALANCE = "Balance: 12.34 EUR. Valid until 2027-03-01."
FINAL = re.compile(rb"\r\n(OK|ERROR|\+CM[ES] ERROR: [^\r]*)\r\n")
FAST_CALLS = {"call_setup_seconds": 0.05, "ring_seconds": 0.1, "no_answer_seconds": 60.0}


@contextmanager
def modem(**options: object) -> Iterator[tuple[Network, Simulator, AtClient]]:
    network = Network()
    sim = Simulator(network, SimOptions(**options))  # type: ignore[arg-type]
    with PtyModem(sim) as transport:
        port = serial.Serial(transport.device, timeout=0.2)
        try:
            client = AtClient(port)
            client.raw("ATE0")
            client.command("AT+CMEE=1")
            yield network, sim, client
        finally:
            port.close()


def send(client: AtClient, number: str, text: str, *, report: bool = False) -> list[str]:
    """Submit every part in PDU mode; all the answers' lines."""
    lines: list[str] = []
    for part in encode_submit(number, text, status_report=report):
        client.write(f"AT+CMGS={part.tpdu_length}\r".encode())
        client.read_until(b"> ")
        client.write(part.hex.encode() + b"\x1a")
        lines += [line for line in client.read_until(FINAL).decode().split("\r\n") if line]
    return lines


def read_cds(client: AtClient) -> StatusReport:
    urc = client.read_until(re.compile(rb"\+CDS: \d+\r\n[0-9A-F]+\r\n")).decode()
    report = decode_pdu(urc.split("\r\n")[-2])
    assert isinstance(report, StatusReport)
    return report


# --------------------------------------------------------------------------- own number


@pytest.mark.parametrize(
    ("own", "answer"),
    [
        (OWN, ['+CNUM: "","+15550009999",145', "OK"]),
        ("5550009999", ['+CNUM: "","5550009999",129', "OK"]),
        (None, ["ERROR"]),
    ],
)
def test_it_tells_its_own_number_when_the_sim_knows_it(own: str | None, answer: list[str]) -> None:
    with modem(own_number=own) as (_, _, client):
        assert client.command("AT+CNUM") == answer


def test_it_brings_an_sms_to_the_own_number_back_after_the_answer() -> None:
    with modem() as (network, sim, client):
        text = "canary " * 30  # two parts: it comes back reassembled, once
        lines = send(client, OWN, text)
        assert lines[-2:] == ["+CMGS: 2", "OK"]
        client.read_until(b'\r\n+CMTI: "SM",1\r\n')
        client.read_until(b'\r\n+CMTI: "SM",2\r\n')
        assert [s.number for s in network.sent()] == [OWN]
        parts = [decode_pdu(s.pdu) for s in sim.stored()]
        assert [getattr(p, "sender", None) for p in parts] == [OWN, OWN]
        assert "".join(getattr(p, "text", "") for p in parts) == text


def test_it_brings_the_canary_back_late_or_loses_it() -> None:
    with modem(loopback_delay=0.2) as (network, sim, client):
        assert send(client, OWN, "late canary") == ["+CMGS: 1", "OK"]
        client.read_until(b'\r\n+CMTI: "SM",1\r\n')
        network.set_loopback(lost=True)
        assert send(client, OWN, "lost canary") == ["+CMGS: 2", "OK"]
        network.wait_for_sent(2, 5)
        assert client.nothing_within(0.5)
        assert len(sim.stored()) == 1


# --------------------------------------------------------------------------- delivery reports


@pytest.mark.parametrize(("outcome", "status"), [("delivered", 0x00), ("failed", 0x41)])
def test_it_reports_the_delivery_outcome_per_part(outcome: str, status: int) -> None:
    with modem() as (network, _, client):
        client.command("AT+CNMI=2,1,0,1,0")
        network.set_delivery(outcome)
        reports = []
        for part in encode_submit(FRIEND, "x" * 200, status_report=True):  # two parts, two reports
            client.write(f"AT+CMGS={part.tpdu_length}\r".encode())
            client.read_until(b"> ")
            client.write(part.hex.encode() + b"\x1a")
            reports.append(read_cds(client))
        assert [(r.message_ref, r.recipient, r.status) for r in reports] == [(1, FRIEND, status), (2, FRIEND, status)]


def test_it_reports_a_delayed_delivery_twice_temporary_then_delivered() -> None:
    with modem(delivery="delayed", report_delay=0.1) as (_, _, client):
        client.command("AT+CNMI=2,1,0,1,0")
        send(client, FRIEND, "later", report=True)
        first, final = read_cds(client), read_cds(client)
        assert (first.status, final.status) == (0x22, 0x00)
        assert first.message_ref == final.message_ref == 1


def test_it_sends_no_report_for_never_for_one_recipient_or_without_srr() -> None:
    with modem() as (network, _, client):
        client.command("AT+CNMI=2,1,0,1,0")
        network.set_delivery("never", "+1 555 123 4567")
        send(client, FRIEND, "silent", report=True)
        send(client, "+15557654321", "no report asked")
        assert client.nothing_within(0.3)
        send(client, "+15557654321", "asked", report=True)
        assert read_cds(client).recipient == "+15557654321"


def test_it_stores_reports_with_cdsi_and_shows_the_status_in_text_mode() -> None:
    with modem(report_delay=0.05) as (network, sim, client):
        client.command("AT+CNMI=2,1,0,2,0")
        network.set_delivery("failed", status=0x45)
        send(client, FRIEND, "stored", report=True)
        client.read_until(b'\r\n+CDSI: "SM",1\r\n')
        stored = decode_pdu(sim.stored()[0].pdu)
        assert isinstance(stored, StatusReport) and stored.status == 0x45
        network.set_delivery("delayed")
        client.command("AT+CMGF=1")
        client.command("AT+CNMI=2,1,0,1,0")
        client.command("AT+CSMP=49,167,0,0")
        client.write(f'AT+CMGS="{FRIEND}"\r'.encode())
        client.read_until(b"> ")
        client.write(b"text mode\x1a")
        client.read_until(b"+CMGS: 2\r\n\r\nOK\r\n")
        first = client.read_until(re.compile(rb"\+CDS: 6,2,[^\r]*\r\n")).decode()
        final = client.read_until(re.compile(rb"\+CDS: 6,2,[^\r]*\r\n")).decode()
        assert first.strip().endswith(",34") and final.strip().endswith(",0")
        assert f'"{FRIEND}",145' in final


# --------------------------------------------------------------------------- USSD


def test_it_answers_ussd_after_ok_as_text() -> None:
    with modem() as (_, _, client):
        assert client.command('AT+CUSD=1,"*100#",15') == ["OK"]
        urc = client.read_until(re.compile(rb"\+CUSD: [^\r]*\r\n")).decode()
        assert urc.strip() == f'+CUSD: 0,"{BALANCE}",15'
        assert client.command("AT+CUSD?") == ["+CUSD: 1", "OK"]


def test_it_answers_ussd_packed_the_huawei_way_to_a_packed_request() -> None:
    with modem(ussd_encoding="gsm7-hex") as (_, sim, client):
        assert client.command('AT+CUSD=1,"AA180C3602",15') == ["OK"]  # *100# packed
        urc = client.read_until(re.compile(rb'\+CUSD: 0,"[0-9A-F]+",15\r\n')).decode()
        hex_text = urc.split('"')[1]
        assert decode_gsm7(unpack_septets(bytes.fromhex(hex_text))) == BALANCE
        assert sim.ussd_requests == ["*100#"]


def test_it_answers_ussd_in_ucs2_hex() -> None:
    with modem(ussd_encoding="ucs2-hex", ussd_answers={"*101#": "Guthaben: 5,00 €"}) as (_, _, client):
        client.command('AT+CUSD=1,"*101#",15')
        urc = client.read_until(re.compile(rb'\+CUSD: 0,"[0-9A-F]+",72\r\n')).decode()
        assert bytes.fromhex(urc.split('"')[1]).decode("utf-16-be") == "Guthaben: 5,00 €"


def test_it_answers_an_unknown_ussd_code_with_operation_not_supported() -> None:
    with modem() as (_, _, client):
        client.command('AT+CUSD=1,"*999#",15')
        client.read_until(b"\r\n+CUSD: 4\r\n")


def test_it_keeps_a_silent_ussd_session_open_until_cancelled() -> None:
    with modem(ussd_mode="silent") as (_, sim, client):
        assert client.command('AT+CUSD=1,"*100#",15') == ["OK"]
        assert client.command('AT+CUSD=1,"*100#",15') == ["+CME ERROR: 3"]
        assert client.command("AT+CUSD=2") == ["OK"]
        sim.set_ussd(mode="timeout", delay=0.05)
        assert client.command('AT+CUSD=1,"*100#",15') == ["OK"]
        client.read_until(b"\r\n+CUSD: 5\r\n")
        assert client.command("AT+CUSD=0") == ["OK"]
        assert client.command("AT+CUSD?") == ["+CUSD: 0", "OK"]


# --------------------------------------------------------------------------- voice calls


def clcc(client: AtClient) -> list[str]:
    return [line for line in client.command("AT+CLCC") if line.startswith("+CLCC:")]


def test_it_dials_rings_connects_and_hangs_up_an_answered_call() -> None:
    with modem(**FAST_CALLS) as (network, _, client):
        client.command("AT+COLP=1")
        assert client.command(f"ATD{FRIEND};") == ["OK"]
        client.read_until(f'\r\n+COLP: "{FRIEND}",145\r\n'.encode())
        assert clcc(client) == [f'+CLCC: 1,0,0,0,0,"{FRIEND}",145']
        assert client.command("ATH") == ["OK"]
        assert clcc(client) == []
        (call,) = network.wait_for_calls(1, 5, ended=True)
        assert (call.number, call.outcome, call.answered, call.result) == (FRIEND, "answer", True, "host")
        assert call.duration >= 0
        assert client.command("AT+CEER") == ["+CEER: Normal call clearing", "OK"]


@pytest.mark.parametrize(
    ("outcome", "urc", "alerted", "result"),
    [
        ("busy", "BUSY", False, "busy"),
        ("reject", "NO CARRIER", True, "rejected"),
        ("invalid", "NO CARRIER", False, "invalid"),
        ("no-voice", "NO CARRIER", False, "no-voice"),
    ],
)
def test_it_ends_an_unanswered_call_as_the_phone_decides(outcome: str, urc: str, alerted: bool, result: str) -> None:
    with modem(**FAST_CALLS) as (network, _, client):
        network.set_call_outcome(outcome, FRIEND)
        client.command("AT+CLCC=1")
        assert client.command(f"ATD{FRIEND};") == ["OK"]
        seen = client.read_until(f"\r\n{urc}\r\n".encode()).decode()
        assert ('+CLCC: 1,0,3,0,0,"' in seen) is alerted
        (call,) = network.wait_for_calls(1, 5, ended=True)
        assert (call.outcome, call.answered, call.result) == (outcome, False, result)
        assert clcc(client) == []


def test_it_gives_up_on_a_phone_nobody_answers_or_lets_the_host_hang_up() -> None:
    with modem(call_outcome="no-answer", **FAST_CALLS) as (network, sim, client):
        client.command("ATD5551234;")
        wait_for(lambda: clcc(client) == ['+CLCC: 1,0,3,0,0,"5551234",129'])
        assert client.command("AT+CHUP") == ["OK"]
        sim.set_call_timing(no_answer=0.1)
        client.command("ATD5551234;")
        client.read_until(b"\r\nNO ANSWER\r\n")
        assert [(c.result, c.ended) for c in network.calls()] == [("host", True), ("no-answer", True)]


def test_it_lets_the_demo_phone_answer_and_hang_up_while_sms_arrive() -> None:
    with modem(call_outcome="no-answer", **FAST_CALLS) as (network, sim, client):
        assert not sim.answer_call()
        client.command(f"ATD{FRIEND};")
        network.inject(FRIEND, "ACK during the call")
        client.read_until(b'\r\n+CMTI: "SM",1\r\n')
        assert sim.answer_call()
        wait_for(lambda: clcc(client) == [f'+CLCC: 1,0,0,0,0,"{FRIEND}",145'])
        assert sim.hangup_call()
        client.read_until(b"\r\nNO CARRIER\r\n")
        (call,) = network.calls()
        assert (call.answered, call.result) == (True, "remote")


@pytest.mark.parametrize(
    ("options", "dial", "answer"),
    [
        ({"voice": False}, f"ATD{FRIEND};", ["+CME ERROR: 4"]),
        ({"registration": 0}, f"ATD{FRIEND};", ["NO CARRIER"]),
        ({}, f"ATD{FRIEND}", ["NO CARRIER"]),  # a data call
        ({}, "ATD>1;", ["ERROR"]),
    ],
)
def test_it_refuses_calls_it_cannot_make(options: dict[str, object], dial: str, answer: list[str]) -> None:
    with modem(**options) as (network, _, client):
        client.write(dial.encode() + b"\r")
        reply = client.read_until(re.compile(rb"\r\n(OK|ERROR|NO CARRIER|\+CME ERROR: \d+)\r\n")).decode()
        assert [line for line in reply.split("\r\n") if line] == answer
        assert network.calls() == []


# --------------------------------------------------------------------------- control socket


def test_it_drives_canary_reports_ussd_and_calls_through_the_control_socket(tmp_path: Path) -> None:
    link = tmp_path / "ttyUSB0"
    with SimProcess(link) as control:
        port = serial.Serial(str(link), timeout=0.2)
        try:
            client = AtClient(port)
            client.raw("ATE0")
            client.command("AT+CNMI=2,1,0,1,0")
            control.set_loopback(delay=0.05)
            control.set_delivery("failed", FRIEND, status=0x41)
            send(client, OWN, "canary", report=True)
            assert read_cds(client).status == 0x00
            client.read_until(b'\r\n+CMTI: "SM",1\r\n')
            send(client, FRIEND, "alert", report=True)
            assert read_cds(client).status == 0x41

            control.set_ussd(answers={"*100#": "Balance: 1.00 EUR"}, encoding="text", delay=0.05)
            client.command('AT+CUSD=1,"*100#",15')
            client.read_until(b'\r\n+CUSD: 0,"Balance: 1.00 EUR",15\r\n')

            control.set_call_outcome("no-answer")
            control.set_call_timing(setup=0.05, ring=0.05)
            with pytest.raises(SimulatorControlError, match="no ringing call"):
                control.reject_call()
            client.command(f"ATD{FRIEND};")
            assert control.wait_calls(1)[0]["number"] == FRIEND
            wait_for(lambda: clcc(client) == [f'+CLCC: 1,0,3,0,0,"{FRIEND}",145'])
            control.reject_call()
            client.read_until(b"\r\nNO CARRIER\r\n")
            (call,) = control.wait_calls(1, ended=True)
            assert (call["result"], call["answered"]) == ("rejected", False)
            assert control.status()["calls"] == 1
            control.clear_calls()
            assert control.calls() == []
        finally:
            port.close()
