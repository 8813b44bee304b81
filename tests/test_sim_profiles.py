"""Simulator profiles (the modems people buy) and fault modes, against the simulator itself:
bytes fed in and read back out, over a real pty, and ``hbgw simulate-modem`` as a process."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import serial

from modem.pdu import PduError, decode_pdu, encode_submit
from modem.simulator import FAULTS, PROFILES, Network, PtyModem, SimOptions, Simulator, build_options
from tests.support.daemon import hbgw, wait_for
from tests.support.sim import SimProcess
from tests.support.sim_client import AtClient

FINAL = re.compile(rb"\r\n(OK|ERROR|\+CM[ES] ERROR: [^\r]*)\r\n")
OWNER = "+15550000001"
LTE = ["generic", "huawei-e3372", "sim7600", "ec25"]


class Wire:
    """The host side of a :class:`Simulator` without a transport: feed bytes, read bytes."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.buffer = bytearray()
        self._woken = threading.Event()
        sim.set_waker(self._woken.set)

    def pump(self) -> float | None:
        data, wait = self.sim.read_output()
        self.buffer += data
        return wait

    def wait_for(self, pattern: bytes, timeout: float = 5.0) -> bytes:
        """Everything up to and including the first match of ``pattern``; raises TimeoutError."""
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while True:
            wait = self.pump()
            match = regex.search(self.buffer)
            if match:
                out = bytes(self.buffer[: match.end()])
                del self.buffer[: match.end()]
                return out
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {pattern!r} in ...{bytes(self.buffer[-300:])!r}")
            self._woken.wait(min(left, wait if wait is not None else left))
            self._woken.clear()

    def nothing_like(self, pattern: bytes, seconds: float) -> bool:
        """True if ``pattern`` does not show up within ``seconds`` (for "it stays quiet")."""
        try:
            self.wait_for(pattern, seconds)
        except TimeoutError:
            return True
        return False

    def drain(self) -> list[str]:
        """The lines waiting now (unsolicited ones), emptying the buffer."""
        self.pump()
        lines = [line for line in self.buffer.decode("latin-1").split("\r\n") if line]
        self.buffer.clear()
        return lines

    def command(self, line: str) -> list[str]:
        """Send one command line (echo off); its reply lines, final result last."""
        self.drain()
        self.sim.feed(line.encode("latin-1") + b"\r")
        text = self.wait_for(FINAL.pattern).decode("latin-1")
        return [part.strip() for part in text.split("\r\n") if part.strip()]


@contextmanager
def wire(profile: str = "generic", *faults: str, **overrides: object) -> Iterator[Wire]:
    network = Network()
    sim = Simulator(network, build_options(profile, faults, **overrides))
    w = Wire(sim)
    try:
        yield w
    finally:
        sim.set_waker(None)


def quiet(w: Wire) -> Wire:
    """Echo off and the power-up chatter read, so replies are just their lines."""
    w.sim.feed(b"ATE0\r")
    w.wait_for(FINAL.pattern)
    w.drain()
    return w


def send(w: Wire, text: str = "server down") -> list[str]:
    part = encode_submit(OWNER, text)[0]
    w.drain()
    w.sim.feed(f"AT+CMGS={part.tpdu_length}\r".encode())
    w.wait_for(rb"> ")
    w.sim.feed(part.hex.encode() + b"\x1a")
    return [line for line in w.wait_for(FINAL.pattern).decode().split("\r\n") if line]


# --------------------------------------------------------------------------- building options


def test_it_builds_the_generic_modem_by_default() -> None:
    assert build_options() == SimOptions()
    assert build_options("generic", []) == SimOptions()
    assert build_options("sim800", ["denied"], pin="1234").pin == "1234"


@pytest.mark.parametrize(
    ("profile", "faults", "message"),
    [
        ("nokia", [], "unknown modem profile 'nokia'"),
        ("generic", ["flaky"], "unknown fault 'flaky'"),
        ("generic", ["hang-usb", "hang-never"], "hang-usb and hang-never cannot be combined"),
        ("ec25", ["denied", "sms-only"], "denied and sms-only cannot be combined"),
    ],
)
def test_it_rejects_unknown_names_and_clashing_faults(profile: str, faults: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        build_options(profile, faults)


def test_it_rejects_unknown_overrides() -> None:
    with pytest.raises(ValueError, match="unknown simulator option"):
        build_options("generic", [], colour="blue")


# --------------------------------------------------------------------------- profiles


@pytest.mark.parametrize(
    ("profile", "boot"),
    [
        ("generic", []),
        ("huawei-e3372", []),
        ("sim7600", ["RDY", "+CPIN: READY", "SMS DONE", "PB DONE"]),
        ("ec25", ["RDY", "+CFUN: 1", "+CPIN: READY", "+QUSIM: 1", "+QIND: SMS DONE", "+QIND: PB DONE"]),
        ("sim800", ["RDY", "+CFUN: 1", "+CPIN: READY", "Call Ready", "SMS Ready"]),
    ],
)
def test_it_prints_the_vendor_power_up_lines(profile: str, boot: list[str]) -> None:
    with wire(profile, flood_interval=0.0) as w:
        assert w.drain() == boot


def test_it_prints_sim_pin_at_power_up_and_the_rest_after_the_pin() -> None:
    with wire("sim800", pin="1234") as w:
        assert w.drain() == ["RDY", "+CFUN: 1", "+CPIN: SIM PIN"]
        assert w.command('AT+CPIN="1234"')[-1] == "OK"
        assert w.drain() == ["+CPIN: READY", "Call Ready", "SMS Ready"]


@pytest.mark.parametrize(
    ("profile", "identity", "cpms", "first"),
    [
        ("generic", ["HBGW", "HBGW-SIM-1", "HBGW-SIM 1.0"], '("SM","ME")', 1),
        ("huawei-e3372", ["huawei", "E3372", "22.200.15.00.00"], '("SM","ME")', 0),
        ("sim7600", ["SIMCOM INCORPORATED", "SIMCOM_SIM7600E-H", "LE20B04SIM7600M22"], '("SM","ME","MT")', 0),
        ("ec25", ["Quectel", "EC25", "EC25EFAR06A06M4G"], '("SM","ME","MT")', 0),
        ("sim800", ["SIMCOM_Ltd", "SIMCOM_SIM800L", "Revision:1418B04SIM800L24"], '("SM","ME","MT")', 1),
    ],
)
def test_it_answers_identity_storages_and_numbering_like_the_vendor(
    profile: str, identity: list[str], cpms: str, first: int
) -> None:
    with wire(profile, flood_interval=0.0, flood_between_commands=False) as w:
        quiet(w)
        assert [w.command(c)[0] for c in ("AT+CGMI", "AT+CGMM", "AT+CGMR")] == identity
        assert w.command("AT+CPMS=?") == [f"+CPMS: {cpms},{cpms},{cpms}", "OK"]
        w.sim.network.inject(OWNER, "STATUS")
        assert w.drain() == [f'+CMTI: "SM",{first}']
        assert [s.index for s in w.sim.stored()] == [first]
        if "MT" in cpms:  # the ME's storages as one: here the SIM's message shows there too
            assert w.command('AT+CPMS="MT","MT","MT"') == ["+CPMS: 1,30,1,30,1,30", "OK"]


@pytest.mark.parametrize("profile", ["huawei-e3372", "sim7600", "ec25"])
def test_it_registers_on_lte_with_act_7(profile: str) -> None:
    with wire(profile, flood_interval=0.0, flood_between_commands=False) as w:
        quiet(w)
        assert w.command("AT+CEREG=2;+CEREG?") == ['+CEREG: 2,1,"1A2B","00003C4D",7', "OK"]
        assert w.command("AT+CREG=2;+CREG?") == ['+CREG: 2,1,"1A2B","00003C4D",7', "OK"]


def test_it_answers_cereg_with_error_on_the_2g_module() -> None:
    with wire("sim800") as w:
        quiet(w)
        assert w.command("AT+CEREG?") == ["ERROR"]
        assert w.command("AT+CEREG=2") == ["ERROR"]
        assert w.command("AT+C5GREG?") == ["ERROR"]
        assert w.command("AT+CREG=2;+CREG?") == ['+CREG: 2,1,"1A2B","00003C4D"', "OK"]


@pytest.mark.parametrize("profile", ["sim7600", "ec25", "sim800"])
def test_it_announces_the_sim_again_after_a_radio_cycle(profile: str) -> None:
    with wire(profile) as w:
        quiet(w)
        assert w.command("AT+CFUN=4") == ["OK"]
        assert w.drain() == []
        assert w.command("AT+CFUN=1")[0] == "OK"
        assert w.drain()[0] == "+CPIN: READY"


def test_it_floods_huawei_reports_until_curc_0() -> None:
    with wire("huawei-e3372", flood_interval=0.05) as w:
        for line in (rb"\^RSSI: 20", rb'\^HCSQ: "LTE",48,48,150,19', rb"\^MODE: 17,17", rb"\^SRVST: 2", rb"\^BOOT: "):
            w.wait_for(line)
        assert w.command("AT^CURC?") == ["AT^CURC?", "^CURC: 1", "OK"]  # echo is on at power-up
        quiet(w)
        w.command("AT")
        assert w.drain()[0].startswith("^")  # one slips out between two commands as well
        assert w.command("AT^CURC=?") == ["^CURC: (0-1)", "OK"]
        assert w.command("AT^CURC=0") == ["OK"]
        assert w.command("AT^CURC?") == ["^CURC: 0", "OK"]
        assert w.drain() == []
        assert w.nothing_like(rb"\^(RSSI|HCSQ|MODE|SRVST|BOOT)", 0.3)  # six rounds' worth
        assert w.command("AT^CURC=1") == ["OK"]
        w.wait_for(rb"\^RSSI: 20")


def test_it_sends_quectel_csq_reports_until_qindcfg_turns_them_off() -> None:
    with wire("ec25", flood_interval=0.05) as w:
        quiet(w)
        w.wait_for(rb'\+QIND: "csq",20,99')
        assert w.command('AT+QINDCFG="csq"') == ['+QINDCFG: "csq",1', "OK"]
        assert w.command('AT+QINDCFG="csq",0,1') == ["OK"]
        w.drain()
        assert w.nothing_like(rb"\+QIND: \"csq\"", 0.3)


def test_it_reports_cms_errors_in_the_vendor_words() -> None:
    with wire("ec25", "lte-no-sms") as w:
        quiet(w)
        w.command("AT+CMEE=2")
        assert send(w)[-1] == "+CMS ERROR: Unknown"


# --------------------------------------------------------------------------- faults


@pytest.mark.parametrize("profile", list(PROFILES))
def test_it_boots_with_the_radio_off(profile: str) -> None:
    with wire(profile, "radio-off") as w:
        boot = w.drain()
        if profile in ("ec25", "sim800"):
            assert "+CFUN: 4" in boot
        quiet(w)
        assert w.command("AT+CFUN?") == ["+CFUN: 4", "OK"]
        assert send(w)[-1] == "+CMS ERROR: 331"


@pytest.mark.parametrize(
    ("profile", "fault", "command", "expected"),
    [
        *[(p, "denied", "AT+CREG?", "+CREG: 0,3") for p in PROFILES],
        *[(p, "denied", "AT+CEREG?", "+CEREG: 0,3") for p in LTE],
        *[(p, "sms-only", "AT+CEREG?", "+CEREG: 0,6") for p in LTE],
        *[(p, "sms-only", "AT+CREG?", "+CREG: 0,0") for p in LTE],
        ("sim800", "sms-only", "AT+CREG?", "+CREG: 0,6"),
        *[(p, "lte-no-sms", "AT+CEREG?", "+CEREG: 0,1") for p in LTE],
        *[(p, "lte-no-sms", "AT+CREG?", "+CREG: 0,0") for p in PROFILES],
    ],
)
def test_it_registers_as_the_fault_says(profile: str, fault: str, command: str, expected: str) -> None:
    with wire(profile, fault) as w:
        quiet(w)
        assert w.command(command) == [expected, "OK"]


@pytest.mark.parametrize("profile", list(PROFILES))
def test_it_sends_on_sms_only_but_not_on_lte_without_sms(profile: str) -> None:
    with wire(profile, "sms-only") as w:
        quiet(w)
        assert send(w) == ["+CMGS: 1", "OK"]
    with wire(profile, "lte-no-sms") as w:
        quiet(w)
        assert send(w) == ["+CMS ERROR: 500"]
        assert w.sim.network.sent() == []


@pytest.mark.parametrize("profile", ["generic", "huawei-e3372", "sim800"])
def test_it_hangs_at_the_first_send_until_a_radio_cycle(profile: str) -> None:
    with wire(profile, "hang-radio", flood_interval=0.0, flood_between_commands=False) as w:
        quiet(w)
        w.sim.feed(b"AT+CMGS=20\r")
        assert w.sim.hang_clears == "radio"
        assert w.nothing_like(rb"> |OK|ERROR", 0.2)
        assert w.command("AT+CREG?") == ["+CREG: 0,2", "OK"]  # answering, but off the network
        assert w.command("AT+CFUN=0") == ["OK"]
        assert w.command("AT+CFUN=1")[0] == "OK"
        assert not w.sim.hung
        assert send(w) == ["+CMGS: 1", "OK"]


@pytest.mark.parametrize(("fault", "clears"), [("hang-usb", True), ("hang-never", False)])
def test_it_hangs_at_the_first_send_until_a_usb_replug_or_for_good(tmp_path: Path, fault: str, clears: bool) -> None:
    sim = Simulator(Network(), build_options("ec25", [fault]))
    with PtyModem(sim, link=str(tmp_path / "ttyUSB2")) as transport:

        def client() -> tuple[serial.Serial, AtClient]:
            port = serial.Serial(transport.device, timeout=0.2)
            return port, AtClient(port)

        port, at = client()
        try:
            at.raw("ATE0")
            assert at.command("AT") == ["OK"]
            at.write(b"AT+CMGS=20\r")
            wait_for(lambda: sim.hung)
            assert sim.hang_clears == ("usb" if clears else "never")
            assert at.nothing_within(0.2)
            at.write(b"AT+CFUN=0\r")
            assert at.nothing_within(0.2)  # a radio cycle does not reach it
        finally:
            port.close()
        transport.unplug()
        transport.replug()
        port, at = client()
        try:
            if clears:
                at.raw("ATE0")
                assert at.command("AT+CPMS?")[-1] == "OK"
            else:
                at.write(b"AT\r")
                assert at.nothing_within(0.3)
                assert sim.hung
        finally:
            port.close()


@pytest.mark.parametrize(
    ("profile", "full", "free"),
    [
        ("generic", '+CIEV: "SMSFULL",1', '+CIEV: "SMSFULL",0'),
        ("huawei-e3372", '^SMMEMFULL: "SM"', None),
        ("sim7600", '+CIEV: "SMSFULL",1', '+CIEV: "SMSFULL",0'),
        ("ec25", '+QIND: "smsfull","SM"', None),
        ("sim800", '+CIEV: "SMSFULL",1', '+CIEV: "SMSFULL",0'),
    ],
)
def test_it_holds_new_sms_while_the_storage_is_full_then_delivers(profile: str, full: str, free: str | None) -> None:
    with wire(profile, "storage-full", flood_interval=0.0, flood_between_commands=False) as w:
        quiet(w)
        first = w.sim.options.first_index
        assert w.sim.storage_fill() == (30, 30)
        assert {s.stat for s in w.sim.stored()} == {1}  # all read already
        assert w.command("AT+CPMS?") == ['+CPMS: "SM",30,30,"SM",30,30,"SM",30,30', "OK"]
        w.sim.network.inject(OWNER, "STATUS")
        assert w.drain() == [full]
        assert w.sim.network.undelivered() == 1
        assert w.command(f"AT+CMGD={first}") == ["OK"]
        after = w.drain()
        assert after == ([free] if free else []) + [f'+CMTI: "SM",{first}']
        assert w.sim.network.undelivered() == 0
        assert w.command(f"AT+CMGR={first}")[0].startswith("+CMGR: 0,,")


def test_it_keeps_quiet_about_a_full_storage_after_curc_0() -> None:
    with wire("huawei-e3372", "storage-full", flood_interval=0.0, flood_between_commands=False) as w:
        quiet(w)
        w.command("AT^CURC=0")
        w.sim.network.inject(OWNER, "STATUS")
        assert w.drain() == []  # ^SMMEMFULL is one of the reports ^CURC governs
        assert w.sim.network.undelivered() == 1


@pytest.mark.parametrize("profile", list(PROFILES))
def test_it_boots_with_junk_in_three_slots(profile: str) -> None:
    with wire(profile, "junk-slots", flood_interval=0.0, flood_between_commands=False) as w:
        quiet(w)
        lines = w.command("AT+CMGL=4")
        assert lines[-1] == "OK" and len(lines) == 7
        first = w.sim.options.first_index
        assert [line.split(",")[0] for line in lines[0:6:2]] == [f"+CMGL: {first + i}" for i in range(3)]
        for pdu in lines[1:6:2]:
            with pytest.raises(PduError):
                decode_pdu(pdu, smsc=True)


def test_it_combines_junk_with_a_full_storage() -> None:
    with wire("sim800", "junk-slots", "storage-full") as w:
        assert w.sim.storage_fill() == (30, 30)
        assert [s.stat for s in w.sim.stored()[:4]] == [0, 0, 0, 1]


# --------------------------------------------------------------------------- command line


def test_it_lists_the_profiles_and_faults() -> None:
    out = hbgw("simulate-modem", "--list-profiles").stdout
    for name in [*PROFILES, *FAULTS]:
        assert re.search(rf"^  {re.escape(name)} +\S", out, re.M), name


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--profile", "nokia"], "invalid choice: 'nokia'"),
        (["--fault", "flaky"], "invalid choice: 'flaky'"),
        (["--fault", "hang-usb", "--fault", "hang-never"], "hang-usb and hang-never cannot be combined"),
    ],
)
def test_it_refuses_bad_profile_and_fault_names(tmp_path: Path, args: list[str], message: str) -> None:
    proc = hbgw("simulate-modem", "--pty", str(tmp_path / "tty"), *args, check=False)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "tty").exists()


def test_it_runs_a_profile_with_faults_from_the_command_line(tmp_path: Path) -> None:
    link = tmp_path / "ttyUSB0"
    args = ["--profile", "huawei-e3372", "--fault", "storage-full", "--fault", "radio-off", "--flood-interval", "0.05"]
    with SimProcess(link, *args) as control:
        status = control.status()
        assert (status["profile"], status["faults"]) == ("huawei-e3372", ["storage-full", "radio-off"])
        assert status["storage"] == [30, 30]
        port = serial.Serial(str(link), timeout=0.2)
        try:
            at = AtClient(port)
            at.read_until(re.compile(rb"\^RSSI: 99\r\n"))  # radio off: no signal
            at.write(b"AT^CURC=0\r")
            at.read_until(re.compile(rb"AT\^CURC=0\r\r\nOK\r\n"))
            assert at.command("ATE0") == ["OK"]
            assert at.command("AT+CFUN?") == ["+CFUN: 4", "OK"]
        finally:
            port.close()
