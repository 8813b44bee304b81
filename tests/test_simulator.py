"""The simulated modem, driven by a real pyserial client over a real pty and real TCP."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import serial

from modem.pdu import StatusReport, decode_pdu, encode_submit
from modem.simulator import (
    ControlServer,
    Network,
    PtyModem,
    SimOptions,
    Simulator,
    SimulatorControl,
    SimulatorControlError,
    TcpModem,
)
from tests.support import corpus
from tests.support.sim_client import AtClient

ROOT = Path(__file__).resolve().parents[1]
NUMBER = "+15551234567"


@contextmanager
def serve(sim: Simulator, kind: str = "pty", link: str | None = None) -> Iterator[PtyModem | TcpModem]:
    transport: PtyModem | TcpModem = PtyModem(sim, link=link) if kind == "pty" else TcpModem(sim)
    with transport:
        yield transport


def open_port(transport: PtyModem | TcpModem) -> serial.SerialBase:
    if isinstance(transport, PtyModem):
        return serial.Serial(transport.device, timeout=0.2)
    return serial.serial_for_url(transport.device, timeout=0.2)


@contextmanager
def client_for(transport: PtyModem | TcpModem) -> Iterator[AtClient]:
    port = open_port(transport)
    try:
        yield AtClient(port)
    finally:
        port.close()


@contextmanager
def modem(options: SimOptions | None = None, kind: str = "pty") -> Iterator[tuple[Network, Simulator, AtClient]]:
    network = Network()
    sim = Simulator(network, options)
    with serve(sim, kind) as transport, client_for(transport) as client:
        yield network, sim, client


def send_pdu(client: AtClient, pdu_hex: str, length: int) -> list[str]:
    client.write(f"AT+CMGS={length}\r".encode())
    client.read_until(b"> ")
    client.write(pdu_hex.encode() + b"\x1a")
    return [line for line in client.read_until(FINAL_RE).decode().split("\r\n") if line]


FINAL_RE = re.compile(rb"\r\n(OK|ERROR|\+CM[ES] ERROR: [^\r]*)\r\n")


def wait_until(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.02)


# --------------------------------------------------------------------------- basics


@pytest.mark.parametrize("kind", ["pty", "tcp"])
def test_it_echoes_until_ate0(kind: str) -> None:
    with modem(kind=kind) as (_, _, client):
        assert client.raw("AT") == b"AT\r\r\nOK\r\n"
        assert client.raw("ATE0") == b"ATE0\r\r\nOK\r\n"
        assert client.raw("AT") == b"\r\nOK\r\n"
        assert client.raw("ATE1") == b"\r\nOK\r\n"
        assert client.raw("AT+CSQ") == b"AT+CSQ\r\r\n+CSQ: 20,99\r\n\r\nOK\r\n"
        client.raw("ATE0")
        client.raw("AT+CMEE=1")
        assert client.raw("ATZ") == b"\r\nOK\r\n"  # ATZ restores the power-up defaults
        assert client.raw("AT") == b"AT\r\r\nOK\r\n"


def fakemodem_models(corpus_dir: Path) -> list[tuple[str, dict[str, Any]]]:
    data = json.loads((corpus_dir / "python_gsmmodem_fakemodems.json").read_text())
    return sorted(data["models"].items())


def single_line(responses: dict[str, list[str]], command: str) -> str | None:
    reply = responses.get(command + "\r")
    if reply and len(reply) == 2 and reply[1] == "OK\r\n":
        return reply[0].removesuffix("\r\n")
    return None


def test_it_answers_identity_like_the_vendor_tables(corpus_dir: Path) -> None:
    """Configured with each vendor's identity, the simulator answers those commands
    line-for-line like python-gsmmodem's per-model tables (the fake there drops the
    CRLF that real modems put before each line; we keep it, see test_it_echoes_until_ate0)."""
    checked = 0
    for name, model in fakemodem_models(corpus_dir):
        responses = model["responses"]
        options = SimOptions(
            manufacturer=single_line(responses, "AT+CGMI") or "x",
            model=single_line(responses, "AT+CGMM") or "x",
            revision=single_line(responses, "AT+CGMR") or "x",
            imei=single_line(responses, "AT+CGSN") or "x",
            imsi=single_line(responses, "AT+CIMI") or "x",
        )
        with modem(options) as (_, _, client):
            client.raw("ATE0")
            for command in ("AT+CGMI", "AT+CGMM", "AT+CGMR", "AT+CGSN", "AT+CIMI", "AT+CPIN?"):
                expected = responses.get(command + "\r")
                if single_line(responses, command) is None:
                    continue  # multi-line or quirky (Wavecom's CPIN? without OK): not emulated
                assert client.command(command) == [line.strip("\r\n") for line in expected], (name, command)
                checked += 1
    assert checked >= 30


def test_it_answers_pin_locked_like_the_vendor_tables(corpus_dir: Path) -> None:
    for name, model in fakemodem_models(corpus_dir):
        locked = model["responses_when_pin_locked"]["AT+CPIN?\r"]
        if locked[-1] != "OK\r\n":
            continue
        with modem(SimOptions(pin="1234")) as (_, _, client):
            client.raw("ATE0")
            client.raw("AT+CMEE=1")
            assert client.command("AT+CPIN?") == [line.strip() for line in locked], name
            # python-gsmmodem's fake answers PIN-gated commands with this error:
            assert client.command("AT+CIMI") == [model["pinRequiredErrorResponse"][0].strip()], name
            for command in model["commandsNoPinRequired"]:
                assert client.command(command.strip())[-1] == "OK", (name, command)


def test_it_reports_sim_busy_after_power_up_then_ready() -> None:
    with modem(SimOptions(sim_busy_seconds=0.5)) as (_, sim, client):
        client.raw("ATE0")
        client.raw("AT+CMEE=1")
        assert client.command("AT+CPIN?") == ["+CME ERROR: 14"]
        assert client.command("AT+CMGL=4") == ["+CMS ERROR: 314"]
        assert client.command("AT+CGMM") == ["HBGW-SIM-1", "OK"]  # identity works meanwhile
        wait_until(lambda: sim.sim_state == "READY")
        assert client.command("AT+CPIN?") == ["+CPIN: READY", "OK"]


def test_it_stays_busy_for_a_while_after_the_pin_like_the_issue_trace() -> None:
    trace = corpus.load("python_gsmmodem_transcripts.json")  # None without ../shared/corpus
    if trace is not None:
        case = next(c for c in trace["cases"] if c["id"] == "init-trace-issue11")
        assert any("+CME ERROR: 14" in step for step in case["response"])
    with modem(SimOptions(pin="1234", busy_after_pin_seconds=30)) as (_, _, client):
        client.raw("AT+CMEE=1")
        assert client.command('AT+CPIN="1234"') == ["OK"]
        assert client.command("AT+CSCA?") == ["+CME ERROR: 14"]


def test_it_counts_pin_attempts_down_then_wants_the_puk() -> None:
    with modem(SimOptions(pin="1234")) as (_, sim, client):
        client.raw("ATE0")
        assert client.command('AT+CPIN="0000"') == ["ERROR"]  # CMEE=0 hides the code
        client.raw("AT+CMEE=2")
        assert client.command('AT+CPIN="0000"') == ["+CME ERROR: incorrect password"]
        client.raw("AT+CMEE=1")
        assert sim.pin_attempts_left == 1
        assert client.command("AT+CPINR") == ["+CPINR: SIM PIN,1,3", "+CPINR: SIM PUK,10,10", "OK"]
        assert client.command('AT+CPIN="0000"') == ["+CME ERROR: 16"]
        assert client.command("AT+CPIN?") == ["+CPIN: SIM PUK", "OK"]
        assert client.command('AT+CPIN="1234"') == ["+CME ERROR: 12"]
        assert client.command('AT+CPIN="12345678","4321"') == ["OK"]
        assert client.command("AT+CPIN?") == ["+CPIN: READY", "OK"]
        assert client.command('AT+CPIN="4321"') == ["+CME ERROR: 3"]  # already unlocked


def test_it_answers_network_queries() -> None:
    with modem() as (_, sim, client):
        client.raw("ATE0")
        assert client.command("AT+CREG?") == ["+CREG: 0,1", "OK"]
        client.command("AT+CREG=2")
        assert client.command("AT+CREG?") == ['+CREG: 2,1,"1A2B","00003C4D"', "OK"]
        assert client.command("AT+COPS?") == ['+COPS: 0,0,"HBGW Sim",0', "OK"]
        client.command("AT+COPS=3,2")
        assert client.command("AT+COPS?") == ['+COPS: 0,2,"00101",0', "OK"]
        assert client.command("AT+CSCA?") == ['+CSCA: "+15550000000",145', "OK"]
        assert client.command('AT+CSCA="+15559999999",145') == ["OK"]
        assert client.command("AT+CSCA?") == ['+CSCA: "+15559999999",145', "OK"]
        sim.set_signal(7)
        sim.set_registration(5)  # roaming: +CREG URC because CREG=2
        client.read_until(b'\r\n+CREG: 5,"1A2B","00003C4D"\r\n')  # the URC has no <n>
        assert client.command("AT+CSQ") == ["+CSQ: 7,99", "OK"]


def test_it_answers_unknown_commands_error_and_test_commands_sensibly() -> None:
    with modem() as (_, _, client):
        client.raw("ATE0")
        assert client.command("AT+FOO") == ["ERROR"]
        assert client.command("AT+CPROT=?") == ["ERROR"]
        assert client.command("AT+CMGF=?") == ["+CMGF: (0,1)", "OK"]
        assert client.command("AT+CSCS=?") == ['+CSCS: ("GSM","IRA","8859-1","UCS2")', "OK"]
        assert client.command("AT+CPMS=?") == ['+CPMS: ("SM","ME"),("SM","ME"),("SM","ME")', "OK"]
        assert client.command("AT+CMEE=1;+CMEE?") == ["+CMEE: 1", "OK"]
        assert client.command("ATE0V1Q0") == ["OK"]
        assert client.command("AT+CMGF=7") == ["ERROR"]


# --------------------------------------------------------------------------- sending


def test_it_sends_pdu_mode_sms_after_the_prompt_with_incrementing_refs() -> None:
    with modem() as (network, _, client):
        client.raw("ATE0")
        client.command("AT+CMGF=0")
        part = encode_submit(NUMBER, "Server A is DOWN")[0]
        client.write(f"AT+CMGS={part.tpdu_length}\r".encode())
        assert client.read_until(b"> ", timeout=2) == b"\r\n> "  # no newline after the prompt
        client.write(part.hex.encode() + b"\x1a")
        assert client.read_until(FINAL_RE) == b"\r\n+CMGS: 1\r\n\r\nOK\r\n"
        assert send_pdu(client, part.hex, part.tpdu_length) == ["+CMGS: 2", "OK"]
        sent = network.wait_for_sent(2, timeout=5)
        assert [(s.number, s.text, s.parts, s.refs) for s in sent] == [
            (NUMBER, "Server A is DOWN", 1, (1,)),
            (NUMBER, "Server A is DOWN", 1, (2,)),
        ]
        assert sent[0].at.tzinfo is not None


def test_it_records_gammu_style_pdus_with_an_smsc_field() -> None:
    # The PDU python-gammu put on the wire (python-gammu-notes.md), SMSC field included.
    pdu = "07915155000000F011000B915155214365F70000FF10D3B2DC5E968382A0F41C447C5E9D"
    with modem() as (network, _, client):
        client.raw("ATE0")
        assert send_pdu(client, pdu, 28) == ["+CMGS: 1", "OK"]
        assert network.sent()[0].text == "Server A is DOWN"


@pytest.mark.parametrize(
    ("text", "parts", "encoding"),
    [("Disk full on db1. " * 20, 3, "gsm7"), ("Zürich ✓ " * 20, 3, "ucs2")],
)
def test_it_reassembles_multipart_sends(text: str, parts: int, encoding: str) -> None:
    with modem() as (network, _, client):
        client.raw("ATE0")
        pdus = encode_submit(NUMBER, text, concat_ref=42)
        assert len(pdus) == parts
        for i, part in enumerate(pdus):
            assert send_pdu(client, part.hex, part.tpdu_length)[0] == f"+CMGS: {i + 1}"
            if i < parts - 1:
                assert network.sent() == []  # nothing recorded before the last part
        (sms,) = network.wait_for_sent(1, timeout=5)
        assert (sms.text, sms.parts, sms.refs, sms.encoding) == (text, parts, (1, 2, 3), encoding)


def test_it_sends_text_mode_sms_with_multiline_body() -> None:
    with modem() as (network, _, client):
        client.raw("ATE0")
        client.command("AT+CMGF=1")
        client.write(f'AT+CMGS="{NUMBER}"\r'.encode())
        client.read_until(b"\r\n> ")
        client.write(b"line one\r")
        client.read_until(b"\r\n> ")
        client.write(b"line two\x1a")
        assert client.read_until(FINAL_RE) == b"\r\n+CMGS: 1\r\n\r\nOK\r\n"
        (sms,) = network.wait_for_sent(1, timeout=5)
        assert (sms.number, sms.text, sms.encoding) == (NUMBER, "line one\nline two", "text")


def test_it_rejects_a_pdu_whose_length_lies() -> None:
    with modem() as (network, _, client):
        client.raw("ATE0")
        client.raw("AT+CMEE=1")
        part = encode_submit(NUMBER, "hello")[0]
        assert send_pdu(client, part.hex, part.tpdu_length + 1) == ["+CMS ERROR: 304"]
        assert send_pdu(client, "00ZZ", 1) == ["+CMS ERROR: 304"]
        assert network.sent() == []


def test_it_aborts_the_prompt_on_esc_and_sends_nothing() -> None:
    with modem() as (network, _, client):
        client.raw("ATE0")
        client.write(b"AT+CMGS=20\r")
        client.read_until(b"> ")
        client.write(b"0011000B91\x1b")
        assert client.read_until(FINAL_RE) == b"\r\nOK\r\n"
        assert client.command("AT") == ["OK"]
        assert network.sent() == []


@pytest.mark.parametrize(
    ("code", "cmee", "expected"),
    [(330, 1, "+CMS ERROR: 330"), (331, 1, "+CMS ERROR: 331"), (500, 2, "+CMS ERROR: unknown error")],
)
def test_it_fails_the_next_send_with_the_injected_cms_error(code: int, cmee: int, expected: str) -> None:
    with modem() as (network, sim, client):
        client.raw("ATE0")
        client.raw(f"AT+CMEE={cmee}")
        sim.fail_next_send(code)
        part = encode_submit(NUMBER, "x")[0]
        assert send_pdu(client, part.hex, part.tpdu_length) == [expected]
        assert send_pdu(client, part.hex, part.tpdu_length) == ["+CMGS: 1", "OK"]
        assert len(network.sent()) == 1


def test_it_refuses_to_send_without_network() -> None:
    with modem() as (_, sim, client):
        client.raw("ATE0")
        sim.set_registration(0)
        part = encode_submit(NUMBER, "x")[0]
        assert send_pdu(client, part.hex, part.tpdu_length) == ["+CMS ERROR: 331"]


def test_it_reports_delivery_with_cds_when_requested() -> None:
    with modem() as (_, _, client):
        client.raw("ATE0")
        client.command("AT+CNMI=2,1,0,1,0")
        part = encode_submit(NUMBER, "report me", status_report=True)[0]
        assert send_pdu(client, part.hex, part.tpdu_length) == ["+CMGS: 1", "OK"]
        urc = client.read_until(re.compile(rb"\+CDS: \d+\r\n[0-9A-F]+\r\n")).decode()
        report = decode_pdu(urc.split("\r\n")[-2])
        assert isinstance(report, StatusReport)
        assert (report.message_ref, report.recipient, report.delivered) == (1, NUMBER, True)


# --------------------------------------------------------------------------- receiving


def test_it_stores_injected_sms_and_signals_cmti_then_reads_and_deletes() -> None:
    with modem() as (network, sim, client):
        client.raw("ATE0")
        network.inject("+15557654321", "ACK web1")
        client.read_until(b'\r\n+CMTI: "SM",1\r\n')
        listing = client.command("AT+CMGL=4")
        assert listing[0] == "+CMGL: 1,0,,26"
        message = decode_pdu(listing[1])
        assert (message.sender, message.text) == ("+15557654321", "ACK web1")  # type: ignore[union-attr]
        assert client.command("AT+CMGR=1")[0] == "+CMGR: 1,,26"  # listed once: now read
        client.command("AT+CMGF=1")
        assert client.command('AT+CMGL="REC READ"')[1] == "ACK web1"
        assert client.command("AT+CMGD=1") == ["OK"]
        assert client.command("AT+CMGR=1") == ["OK"]  # empty slot
        assert client.command("AT+CMGR=99") == ["+CMS ERROR: 321"]
        assert sim.stored() == []


def test_it_stores_every_part_of_a_long_inbound_sms() -> None:
    with modem() as (network, sim, client):
        client.raw("ATE0")
        network.inject("+15557654321", "status? " * 40)
        client.read_until(b'+CMTI: "SM",2\r\n')
        assert [s.index for s in sim.stored()] == [1, 2, 3]


def test_it_lists_stored_pdus_like_the_vendor_transcript(corpus_dir: Path) -> None:
    cases = json.loads((corpus_dir / "python_gsmmodem_transcripts.json").read_text())["cases"]
    pdu_case = next(c for c in cases if c["id"] == "cmgl-pdu-4")
    text_case = next(c for c in cases if c["id"] == "cmgl-text-all")
    headers = pdu_case["response"][0:-1:2]
    pdus = pdu_case["response"][1:-1:2]
    with modem(SimOptions(first_index=0)) as (network, _, client):
        client.raw("ATE0")
        for pdu in pdus:
            network.inject_pdu(pdu)
        client.read_until(b'+CMTI: "SM",2\r\n')
        listing = client.command("AT+CMGL=4")
        # Same indexes, lengths and PDUs as the real modem (ours are all still unread).
        assert [re.sub(r"^(\+CMGL: \d+),\d", r"\1,0", h) for h in headers] == listing[0:-1:2]
        assert listing[1:-1:2] == pdus
        client.command("AT+CMGF=1")
        text = client.command('AT+CMGL="ALL"')
        expected = text_case["response"][:-1]
        for mine, theirs in zip(text[0:-1:2], expected[0::2], strict=True):
            # index, number and timestamp match the vendor's text-mode rendering
            assert mine.split(",")[2:] == theirs.split(",")[2:]
        assert text[1] == expected[1]


def test_it_holds_inbound_sms_while_the_sim_is_locked() -> None:
    with modem(SimOptions(pin="1234")) as (network, sim, client):
        client.raw("ATE0")
        network.inject("+15557654321", "queued")
        assert network.undelivered() == 1 and sim.stored() == []
        client.command('AT+CPIN="1234"')
        client.read_until(b'+CMTI: "SM",1\r\n')
        assert network.undelivered() == 0


def test_it_routes_sms_straight_to_the_host_with_cnmi_mt2() -> None:
    with modem() as (network, sim, client):
        client.raw("ATE0")
        client.command("AT+CNMI=2,2,0,0,0")
        network.inject("+15557654321", "direct")
        client.read_until(re.compile(rb"\+CMT: ,\d+\r\n[0-9A-F]+\r\n"))
        assert sim.stored() == []


def test_it_can_interleave_an_urc_with_a_reply() -> None:
    with modem() as (network, sim, client):
        client.raw("ATE0")
        sim.urc("^RSSI: 12", mid_reply=True)
        network.inject("+15557654321", "a")
        network.inject("+15557654321", "b")
        client.read_until(b'+CMTI: "SM",2\r\n')
        assert client.command("AT+CMGL=4")[:3] == ["+CMGL: 1,0,,20", "^RSSI: 12", sim.stored()[0].pdu]


# --------------------------------------------------------------------------- faults


def test_it_stops_answering_while_hung_and_recovers() -> None:
    with modem() as (_, sim, client):
        client.raw("ATE0")
        sim.hang()
        client.write(b"AT\r")
        assert client.nothing_within(0.3)
        sim.hang(False)
        assert client.command("AT") == ["OK"]


def test_it_delays_answers_by_the_configured_latency() -> None:
    with modem() as (_, sim, client):
        client.raw("ATE0")
        sim.set_latency(0.4)
        started = time.monotonic()
        assert client.command("AT") == ["OK"]
        assert time.monotonic() - started >= 0.4
        sim.set_latency(0)
        sim.set_latency(0.4, command="+CMGS")
        started = time.monotonic()
        client.command("AT+CSQ")
        assert time.monotonic() - started < 0.4


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x00\xff\xfe\x80garbage\r\n",
        bytes(range(256)),
        b"AT" + b"X" * 5000 + b"\r",
        b"\r\r\r\n\n",
        b"AT+CMGS=\r",
    ],
)
def test_it_survives_garbage_bytes(garbage: bytes) -> None:
    with modem() as (_, _, client):
        client.raw("ATE0")
        client.write(garbage + b"\x1b\r")
        client.write(b"AT+CGMI\r")
        # whatever the garbage provoked, the modem still answers the next real command
        client.read_until(b"\r\nHBGW\r\n\r\nOK\r\n")
        client.buffer.clear()
        assert client.command("AT") == ["OK"]


def test_it_vanishes_on_pty_unplug_and_comes_back_on_replug(tmp_path: Path) -> None:
    link = str(tmp_path / "ttyGSM0")
    network = Network()
    sim = Simulator(network, SimOptions(pin="1234"))
    with serve(sim, "pty", link=link) as transport:
        assert transport.device == link and os.path.islink(link)
        with client_for(transport) as client:
            client.raw("ATE0")
            client.command('AT+CPIN="1234"')
            network.inject("+15557654321", "kept")
            client.read_until(b"+CMTI")
            transport.unplug()
            assert not os.path.lexists(link)
            with pytest.raises(serial.SerialException):
                client.port.read(1)
                client.port.read(1)
        network.inject("+15557654321", "while away")  # the network holds it
        transport.replug()
        assert os.path.islink(link)
        with client_for(transport) as client:
            assert client.command("AT") == ["OK"]  # echo back on: a fresh power-up
            assert client.command("AT+CPIN?") == ["+CPIN: SIM PIN", "OK"]
            client.command('AT+CPIN="1234"')
            client.read_until(b'+CMTI: "SM",2\r\n')
            assert len(sim.stored()) == 2


def test_it_refuses_tcp_connections_while_unplugged() -> None:
    network = Network()
    sim = Simulator(network)
    with serve(sim, "tcp") as transport:
        with client_for(transport) as client:
            assert client.command("AT") == ["OK"]
            transport.unplug()
            with pytest.raises(serial.SerialException):
                client.port.read(1)
        with pytest.raises(serial.SerialException):
            serial.serial_for_url(transport.device, timeout=0.2)
        transport.replug()
        with client_for(transport) as client:
            assert client.command("AT") == ["OK"]


def test_it_gives_the_port_to_the_newest_tcp_client() -> None:
    with (
        serve(Simulator(Network()), "tcp") as transport,
        client_for(transport) as first,
        client_for(transport) as second,
    ):
        assert second.command("AT") == ["OK"]
        with pytest.raises(serial.SerialException):
            first.port.read(1)


def test_it_times_out_waiting_for_sent_messages() -> None:
    with pytest.raises(TimeoutError):
        Network().wait_for_sent(1, timeout=0.05)


# --------------------------------------------------------------------------- control socket and CLI


def test_it_is_driven_through_the_control_socket() -> None:
    network = Network()
    sim = Simulator(network)
    with (
        serve(sim, "tcp") as transport,
        ControlServer(sim, transport) as server,
        SimulatorControl("127.0.0.1", server.port) as control,
        client_for(transport) as client,
    ):
        client.raw("ATE0")
        control.inject("+15557654321", "ACK web1")
        client.read_until(b"+CMTI")
        control.fail_next_send(500)
        part = encode_submit(NUMBER, "hi")[0]
        assert send_pdu(client, part.hex, part.tpdu_length) == ["+CMS ERROR: 500"]
        assert send_pdu(client, part.hex, part.tpdu_length) == ["+CMGS: 1", "OK"]
        (sent,) = control.wait_sent(1, timeout=5)
        assert (sent["number"], sent["text"], sent["parts"], sent["refs"]) == (NUMBER, "hi", 1, [1])
        control.hang(True)
        assert control.status()["hung"] is True
        control.hang(False)
        control.latency(0)
        control.unplug()
        assert control.status()["plugged"] is False
        control.replug()
        assert control.status()["plugged"] is True


def test_it_answers_garbage_on_the_control_socket_without_dying() -> None:
    sim = Simulator(Network())
    with serve(sim, "tcp") as transport, ControlServer(sim, transport) as server:
        with (
            socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock,
            sock.makefile("rwb") as stream,
        ):
            for line in [
                b"not json",
                b"[1,2]",
                b'{"cmd":"nope"}',
                b'{"cmd":"inject"}',
                b'{"cmd":"fail_next_send","code":"x"}',
                b"\xff\xfe",
                b'{"cmd":"inject","pdu":"zz"}',
            ]:
                stream.write(line + b"\n")
                stream.flush()
                reply = json.loads(stream.readline())
                assert reply["ok"] is False and reply["error"]
        with SimulatorControl("127.0.0.1", server.port) as control:
            assert control.sent() == []
            with pytest.raises(SimulatorControlError):
                control.request("bogus")


def start_cli(*args: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "modem.simulator", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    ready = proc.stdout.readline().strip()
    if not ready:
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"simulator did not start: {err}")
    return proc, ready


def stop_cli(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
    return proc.returncode


def test_it_runs_from_the_command_line_on_tcp_with_control_and_sent_log(tmp_path: Path) -> None:
    log = tmp_path / "sent.jsonl"
    proc, ready = start_cli("--tcp", "127.0.0.1:0", "--control", "127.0.0.1:0", "--sent-log", str(log))
    try:
        url, control_part = ready.split()
        host, port = control_part.removeprefix("control=").rsplit(":", 1)
        with SimulatorControl(host, int(port)) as control:
            port_ = serial.serial_for_url(url, timeout=0.2)
            try:
                client = AtClient(port_)
                client.raw("ATE0")
                part = encode_submit(NUMBER, "from the CLI")[0]
                assert send_pdu(client, part.hex, part.tpdu_length) == ["+CMGS: 1", "OK"]
                control.wait_sent(1)
                control.inject("+15557654321", "ACK web1")
                client.read_until(b"+CMTI")
            finally:
                port_.close()
    finally:
        assert stop_cli(proc) == 0
    (record,) = [json.loads(line) for line in log.read_text().splitlines()]
    assert (record["number"], record["text"]) == (NUMBER, "from the CLI")


def test_it_runs_from_the_command_line_on_a_pty_with_a_pin(tmp_path: Path) -> None:
    link = tmp_path / "ttySIM"
    proc, ready = start_cli("--pty", str(link), "--pin", "1234", "--sim-busy", "0")
    try:
        assert ready == str(link)
        port = serial.Serial(ready, timeout=0.2)
        try:
            client = AtClient(port)
            client.raw("ATE0")
            assert client.command("AT+CPIN?") == ["+CPIN: SIM PIN", "OK"]
        finally:
            port.close()
    finally:
        assert stop_cli(proc) == 0
    assert not link.exists()


def test_it_refuses_a_control_socket_off_loopback() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "modem.simulator", "--tcp", "127.0.0.1:0", "--control", "0.0.0.0:0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2 and proc.stdout == ""
