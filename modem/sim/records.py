"""The simulator's options and records: how the simulated modem and its SIM behave at
power-up (:class:`SimOptions`), a message as the network saw it sent (:class:`SentSms`), one
storage slot (:class:`StoredSms`), and one voice call the modem made (:class:`CallRecord`)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any


@dataclass
class SimOptions:
    """How the simulated modem and its SIM behave at power-up."""

    pin: str | None = None  # None: SIM not PIN-locked
    puk: str = "12345678"
    pin_attempts: int = 3
    sim_busy_seconds: float = 0.0  # +CME ERROR: 14 for this long after power-up
    busy_after_pin_seconds: float = 0.0  # ... and for this long after a correct PIN
    latency: float = 0.0  # seconds before every command's answer
    echo: bool = True
    operator: str = "HBGW Sim"
    operator_short: str = "HBGW"
    operator_numeric: str = "00101"
    signal_csq: int = 20  # +CSQ rssi, 0..31 or 99
    registration: int = 1  # +CREG stat: 1 home, 5 roaming, 2 searching, 3 denied, 0 not
    smsc: str = "+15550000000"
    manufacturer: str = "HBGW"
    model: str = "HBGW-SIM-1"
    revision: str = "HBGW-SIM 1.0"
    imei: str = "356938035643809"
    imsi: str = "001010123456789"
    storage_size: int = 30  # slots per storage ("SM" and "ME")
    first_index: int = 1  # some modems number storage from 0
    cnmi: tuple[int, int, int, int, int] = (2, 1, 0, 1, 0)  # new-SMS indications at power-up
    esc_ok: bool = True  # answer OK after ESC aborts a prompt
    # Broken firmware: refuses AT+CMGF=0 yet lists and reads messages in PDU format.
    # (python-gammu then falls back to text mode and crashes on the PDU reply.)
    refuse_pdu_mode: bool = False
    first_message_ref: int = 1
    radio_at_boot: int = 1  # +CFUN at power-up: 1 on, 0 or 4 off (some sticks boot so)
    refuse_radio_on: bool = False  # AT+CFUN=1 answers +CME ERROR: 3 (radio stays as it is)
    eps_registration: int | None = None  # +CEREG stat; None: the same as ``registration``
    act: int | None = None  # <AcT> reported in +CREG/+CGREG/+CEREG (n=2) and +COPS
    has_c5greg: bool = False  # answers AT+C5GREG (else ERROR, like pre-5G modems)
    # AT+CMGL on an empty storage ends in this error instead of a bare OK: "cms" -> +CMS
    # ERROR: 321 (invalid memory index), "cme" -> +CME ERROR: 22 (not found); None: OK.
    empty_list_error: str | None = None
    short_creg: bool = False  # AT+CREG? answers "n,stat,AcT" (three fields, seen in the field)
    # -- vendor behaviour (modem.sim.profiles fills these in; the defaults are the generic modem)
    profile: str = "generic"  # the profile's name, for status reports
    faults: tuple[str, ...] = ()  # the fault modes' names, for status reports
    has_cereg: bool = True  # answers AT+CEREG (a 2G-only module answers ERROR)
    storages: tuple[str, ...] = ("SM", "ME")  # what AT+CPMS=? offers; "MT" shares "SM"'s slots
    cms_texts: tuple[tuple[int, str], ...] = ()  # vendor +CMS ERROR texts (+CMEE=2) over 27.005's
    boot_urcs: tuple[str, ...] = ()  # unsolicited lines at power-up ("RDY", "+CFUN: 1" ...)
    # Unsolicited lines once the SIM is ready: at power-up, after the PIN and after AT+CFUN=1
    # ("+CPIN: READY", "SMS DONE" ...).
    ready_urcs: tuple[str, ...] = ()
    # Periodic status reports (Huawei ^RSSI, Quectel +QIND: "csq"): str.format templates with
    # {rssi} (+CSQ), {dbm}, {hcsq_rssi}, {hcsq_rsrp}, {hcsq_sinr}, {hcsq_rsrq} (^HCSQ scales).
    flood_urcs: tuple[str, ...] = ()
    flood_interval: float = 0.0  # seconds between two rounds of flood_urcs; 0: none on a timer
    flood_between_commands: bool = False  # one flood line after every command's answer
    # The vendor command that switches the flood off: "^CURC" (Huawei) or "+QINDCFG" (Quectel).
    urc_control: str | None = None
    # Sent when an inbound SMS finds the receive storage full; {mem} is the storage, quoted.
    storage_full_urc: str | None = None
    storage_free_urc: str | None = None  # ... and when room was made again after that
    hang_on_send: str | None = None  # Simulator.hang(clears=...) at the first AT+CMGS
    submit_error: int | None = None  # every submission ends in +CMS ERROR: <this>
    full_at_boot: bool = False  # the receive storage starts full of read messages
    junk_slots: int = 0  # this many slots start with undecodable PDUs
    # -- the subscriber and the network's services (Network.configure takes these over)
    own_number: str | None = "+15550009999"  # AT+CNUM; None: the SIM does not know it (ERROR)
    loopback_delay: float = 0.0  # seconds an SMS to own_number takes to come back
    loopback_lost: bool = False  # ... or it never comes back
    # Status reports for submissions with TP-SRR: "delivered" | "delayed" | "failed" | "never".
    delivery: str = "delivered"
    report_delay: float = 1.0  # "delayed": seconds from the temporary report to the final one
    ussd_answers: dict[str, str] = field(
        default_factory=lambda: {"*100#": "Balance: 12.34 EUR. Valid until 2027-03-01."}
    )
    ussd_delay: float = 0.0  # seconds from AT+CUSD's OK to the +CUSD answer
    ussd_encoding: str = "text"  # how +CUSD shows the answer: "text" | "gsm7-hex" | "ucs2-hex"
    ussd_mode: str = "answer"  # "answer" | "silent" (never answers) | "timeout" (+CUSD: 5)
    voice: bool = True  # False: a data-only module, ATD<n>; answers +CME ERROR: 4
    call_outcome: str = "answer"  # what a dialled phone does (Network.set_call_outcome per number)
    call_setup_seconds: float = 0.5  # dialling (+CLCC stat 2) before it rings or fails
    ring_seconds: float = 2.0  # alerting (stat 3) before "answer" / "reject" happen
    no_answer_seconds: float = 30.0  # a phone nobody answers: the network gives up (NO ANSWER)


@dataclass(frozen=True)
class SentSms:
    """One message the modem submitted, as the network saw it (multipart reassembled)."""

    number: str
    text: str
    parts: int
    refs: tuple[int, ...]
    at: dt.datetime  # UTC, when the last part arrived
    encoding: str = ""  # "gsm7" | "ucs2" | "8bit" | "text" (text-mode submit)
    pdus: tuple[str, ...] = ()  # the hex PDUs as the host sent them (text mode: empty)

    def to_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "text": self.text,
            "parts": self.parts,
            "refs": list(self.refs),
            "at": self.at.isoformat(),
            "encoding": self.encoding,
            "pdus": list(self.pdus),
        }


@dataclass
class StoredSms:
    """One slot of the simulated SIM/phone storage."""

    index: int
    stat: int  # 0 REC UNREAD, 1 REC READ, 2 STO UNSENT, 3 STO SENT
    pdu: str  # hex, with the SMSC field


@dataclass(frozen=True)
class CallRecord:
    """One voice call the modem dialled, as the network saw it (``ended`` False while it lasts)."""

    number: str
    outcome: str  # what the called phone was set to do: "answer", "busy", "no-answer" ...
    at: dt.datetime  # UTC, when ATD dialled
    answered: bool = False
    ended: bool = False
    # How it ended: "host" (ATH/AT+CHUP), "remote" (the phone hung up), "busy", "rejected",
    # "no-answer" (network timeout), "invalid" (unassigned number), "no-voice", "dropped"
    # (power or radio lost); "" while the call lasts.
    result: str = ""
    duration: float = 0.0  # seconds the call was active (answered); 0 if never answered

    def to_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "outcome": self.outcome,
            "at": self.at.isoformat(),
            "answered": self.answered,
            "ended": self.ended,
            "result": self.result,
            "duration": self.duration,
        }
