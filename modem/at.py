"""The AT channel: framing, final result codes, the ``> `` prompt, URCs and timeouts.

Three layers, each usable on its own:

* :class:`AtFramer` turns raw bytes into events (a line, the ``> `` prompt, an echoed
  command line, junk). Pure: no I/O, no clock; fed whatever chunks the transport delivers.
* :class:`AtRouter` decides, event by event, whether a line belongs to the reply of the
  command in flight, completes it (a final result code), or is an unsolicited result code
  (URC) that arrived in the middle of it. Pure as well.
* :class:`AtChannel` owns a pyserial port (``serial.serial_for_url``: a device path, a pty,
  ``socket://host:port``). Blocking reads happen in ONE reader thread per open port, which
  only moves bytes to the event loop with ``loop.call_soon_threadsafe``; framing, routing
  and URC dispatch run on the loop. Commands are ``async`` and run one at a time.

The reply parsers at the end (``parse_registration``, ``parse_csq``, ``parse_cmgl`` ...) are
pure functions over reply lines. Error codes map to the typed exceptions of
:mod:`modem.errors`, which say whether a retry can help.

Nothing here logs message bodies, PDUs, PINs or phone numbers: commands are logged through
:func:`command_label`, lines only by length or URC name.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import re
import select
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from typing import Final as TypingFinal

import serial

from modem.errors import CmeError, CmsError, CommandError, ModemError, ModemTimeout, PortGone
from modem.pdu import clean_pdu_line

logger = logging.getLogger(__name__)

CTRL_Z = "\x1a"
ESC = "\x1b"

# ---------------------------------------------------------------------------------------------
# Error codes: their texts, after 3GPP TS 27.005 / 27.007 (and the vendor codes seen in
# practice). Whether a retry can help, and what the owner should do, is said once, in
# modem.errors' advice tables: the exceptions take it from there.
# ---------------------------------------------------------------------------------------------

CME_ERRORS: TypingFinal[dict[int, str]] = {
    0: "phone failure",
    1: "no connection to phone",
    2: "phone-adaptor link reserved",
    3: "operation not allowed",  # also seen while the modem is not registered yet
    4: "operation not supported",
    5: "PH-SIM PIN required",
    6: "PH-FSIM PIN required",
    7: "PH-FSIM PUK required",
    10: "SIM not inserted",
    11: "SIM PIN required",
    12: "SIM PUK required",
    13: "SIM failure",
    14: "SIM busy",
    15: "SIM wrong",
    16: "incorrect password",
    17: "SIM PIN2 required",
    18: "SIM PUK2 required",
    20: "memory full",
    21: "invalid index",
    22: "not found",
    23: "memory failure",
    24: "text string too long",
    25: "invalid characters in text string",
    26: "dial string too long",
    27: "invalid characters in dial string",
    30: "no network service",
    31: "network timeout",
    32: "network not allowed - emergency calls only",
    40: "network personalisation PIN required",
    41: "network personalisation PUK required",
    42: "network subset personalisation PIN required",
    43: "network subset personalisation PUK required",
    44: "service provider personalisation PIN required",
    45: "service provider personalisation PUK required",
    46: "corporate personalisation PIN required",
    47: "corporate personalisation PUK required",
    48: "PH-SIM PUK required",
    100: "unknown",
    103: "illegal MS",
    106: "illegal ME",
    107: "GPRS services not allowed",
    111: "PLMN not allowed",
    112: "location area not allowed",
    113: "roaming not allowed in this location area",
    126: "operation temporarily not allowed",
    132: "service option not supported",
    133: "requested service option not subscribed",
    134: "service option temporarily out of order",
    148: "unspecified GPRS error",
    149: "PDP authentication failure",
    150: "invalid mobile class",
    256: "operation temporarily not allowed",
    257: "call barred",
    258: "phone is busy",
    259: "user abort",
    260: "invalid dial string",
    261: "SS not executed",
    262: "SIM blocked",
    263: "invalid block",
    515: "device busy",
    772: "SIM powered down",
}

CMS_ERRORS: TypingFinal[dict[int, str]] = {
    1: "unassigned (unallocated) number",
    8: "operator determined barring",
    10: "call barred",
    17: "network failure",
    21: "short message transfer rejected",
    22: "memory capacity exceeded",
    27: "destination out of service",
    28: "unidentified subscriber",
    29: "facility rejected",
    30: "unknown subscriber",
    38: "network out of order",
    41: "temporary failure",
    42: "congestion",
    47: "resources unavailable, unspecified",
    50: "requested facility not subscribed",
    69: "requested facility not implemented",
    81: "invalid short message transfer reference value",
    95: "invalid message, unspecified",
    96: "invalid mandatory information",
    97: "message type non-existent or not implemented",
    98: "message not compatible with short message protocol state",
    99: "information element non-existent or not implemented",
    111: "protocol error, unspecified",
    127: "interworking, unspecified",
    128: "telematic interworking not supported",
    129: "short message type 0 not supported",
    130: "cannot replace short message",
    143: "unspecified TP-PID error",
    144: "data coding scheme (alphabet) not supported",
    145: "message class not supported",
    159: "unspecified TP-DCS error",
    160: "command cannot be actioned",
    161: "command unsupported",
    175: "unspecified TP-Command error",
    176: "TPDU not supported",
    192: "SC busy",
    193: "no SC subscription",
    194: "SC system failure",
    195: "invalid SME address",
    196: "destination SME barred",
    197: "SM rejected - duplicate SM",
    198: "TP-VPF not supported",
    199: "TP-VP not supported",
    208: "SIM SMS storage full",
    209: "no SMS storage capability in SIM",
    210: "error in MS",
    211: "memory capacity exceeded",
    212: "SIM application toolkit busy",
    213: "SIM data download error",
    255: "unspecified error cause",
    300: "ME failure",
    301: "SMS service of ME reserved",
    302: "operation not allowed",
    303: "operation not supported",
    304: "invalid PDU mode parameter",
    305: "invalid text mode parameter",
    310: "SIM not inserted",
    311: "SIM PIN required",
    312: "PH-SIM PIN required",
    313: "SIM failure",
    314: "SIM busy",
    315: "SIM wrong",
    316: "SIM PUK required",
    317: "SIM PIN2 required",
    318: "SIM PUK2 required",
    320: "memory failure",
    321: "invalid memory index",
    322: "memory full",
    330: "SMSC address unknown",
    331: "no network service",
    332: "network timeout",
    340: "no +CNMA acknowledgement expected",
    500: "unknown error",
    512: "MM establishment failure",
    513: "lower layer failure",
    514: "network congestion",
    515: "please wait, init in progress",
}

# Verbose forms (``AT+CMEE=2``, or modems that ignore CMEE=1): text -> code.
_CME_BY_TEXT: TypingFinal[dict[str, int]] = {t.lower(): c for c, t in CME_ERRORS.items()}
_CME_BY_TEXT.update({"incorrect pin": 16, "wrong password": 16, "sim not ready": 14})
_CMS_BY_TEXT: TypingFinal[dict[str, int]] = {t.lower(): c for c, t in CMS_ERRORS.items()}

#: Codes meaning "the SIM is still busy (booting, just unlocked): ask again shortly".
SIM_BUSY_CME: TypingFinal[frozenset[int]] = frozenset({14, 515})
SIM_BUSY_CMS: TypingFinal[frozenset[int]] = frozenset({314, 515})


# ---------------------------------------------------------------------------------------------
# Final result codes
# ---------------------------------------------------------------------------------------------


class FinalKind(enum.StrEnum):
    """What a final result code says about the command that produced it."""

    OK = "ok"
    CONNECT = "connect"
    ERROR = "error"  # plain ERROR, COMMAND NOT SUPPORT, MODEM ERROR: n
    CME = "cme"
    CMS = "cms"
    CALL = "call"  # NO CARRIER, BUSY, NO ANSWER, NO DIALTONE


@dataclass(frozen=True, slots=True)
class FinalResult:
    """A final result code: ``kind``, numeric ``code`` when known, the modem's ``text``."""

    kind: FinalKind
    code: int | None = None
    text: str = ""

    @property
    def ok(self) -> bool:
        """True for ``OK`` and ``CONNECT``."""
        return self.kind in (FinalKind.OK, FinalKind.CONNECT)


_FINAL_WORDS: TypingFinal[dict[str, FinalResult]] = {
    "OK": FinalResult(FinalKind.OK),
    "CONNECT": FinalResult(FinalKind.CONNECT),
    "ERROR": FinalResult(FinalKind.ERROR, text="ERROR"),
    "COMMAND NOT SUPPORT": FinalResult(FinalKind.ERROR, text="COMMAND NOT SUPPORT"),
    "NO CARRIER": FinalResult(FinalKind.CALL, text="NO CARRIER"),
    "BUSY": FinalResult(FinalKind.CALL, text="BUSY"),
    "NO ANSWER": FinalResult(FinalKind.CALL, text="NO ANSWER"),
    "NO DIALTONE": FinalResult(FinalKind.CALL, text="NO DIALTONE"),
}
_CM_ERROR_RE = re.compile(r"^\+(CME|CMS) ERROR:(.*)$")
_MODEM_ERROR_RE = re.compile(r"^MODEM ERROR:\s*(\d+)$")
_CONNECT_RE = re.compile(r"^CONNECT(?:\s+\d+)?$")


def parse_final(line: str) -> FinalResult | None:
    """Return the final result code ``line`` stands for, or None for any other line.

    Knows ``OK``, ``ERROR``, ``+CME ERROR: <n|text>``, ``+CMS ERROR: <n|text>``, the call
    results (``NO CARRIER``, ``BUSY``, ``NO ANSWER``, ``NO DIALTONE``), ``CONNECT [rate]``,
    Huawei's ``COMMAND NOT SUPPORT`` and ``MODEM ERROR: <n>``. ``+CME ERROR:`` with nothing
    after it still ends the command (as a CME error of unknown code).
    """
    text = line.strip()
    word = _FINAL_WORDS.get(text)
    if word is not None:
        return word
    m = _CM_ERROR_RE.match(text)
    if m:
        kind = FinalKind.CME if m.group(1) == "CME" else FinalKind.CMS
        detail = m.group(2).strip()
        if detail.isdigit():
            return FinalResult(kind, int(detail), detail)
        table = _CME_BY_TEXT if kind is FinalKind.CME else _CMS_BY_TEXT
        return FinalResult(kind, table.get(detail.lower()), detail)
    m = _MODEM_ERROR_RE.match(text)
    if m:
        return FinalResult(FinalKind.ERROR, int(m.group(1)), text)
    if _CONNECT_RE.match(text):
        return FinalResult(FinalKind.CONNECT, text=text)
    return None


def error_for(final: FinalResult, label: str) -> ModemError:
    """Map a failed final result to the typed exception of :mod:`modem.errors`.

    ``label`` names the command (see :func:`command_label`; never the raw command, which may
    hold a PIN or a phone number). Whether it is ``permanent`` follows the code's advice
    (:mod:`modem.errors`); unknown codes are retryable.
    """
    if final.kind is FinalKind.CME:
        code = final.code if final.code is not None else 100
        return CmeError(code, f"{CME_ERRORS.get(code, final.text or 'unknown')} ({label})")
    if final.kind is FinalKind.CMS:
        code = final.code if final.code is not None else 500
        return CmsError(code, f"{CMS_ERRORS.get(code, final.text or 'unknown')} ({label})")
    if final.kind is FinalKind.CALL:
        return CallEnded(final.text, f"{label}: {final.text}")
    if final.text == "COMMAND NOT SUPPORT":
        return CommandError(f"{label}: command not supported", permanent=True)
    return CommandError(f"{label}: {final.text or final.kind.value}", permanent=False)


class CallEnded(CommandError):
    """``ATD``/``ATA`` ended in a call result (``NO CARRIER``, ``BUSY``, ``NO ANSWER``, ``NO
    DIALTONE``): ``result`` is that word. Whether the call can be tried again is the caller's
    to decide (:mod:`modem.voice`), so it is not permanent here."""

    def __init__(self, result: str, message: str) -> None:
        super().__init__(message, permanent=False)
        self.result = result


_SENSITIVE_HEADS: TypingFinal[frozenset[str]] = frozenset(
    {"+CPIN", "+CPWD", "+CLCK", "+CSCA", "+CMGS", "+CMGW", "+CUSD", "+CPBW", "+CNUM", "D"}
)
_HEAD_RE = re.compile(r"^AT([+^$%*#][A-Z0-9]+|&?[A-Z])", re.IGNORECASE)


def command_label(command: str) -> str:
    """A loggable name for ``command``: its head, with arguments that may carry secrets
    (PIN, phone numbers, USSD codes; any quoted argument) replaced by ``…``."""
    text = command.strip()
    m = _HEAD_RE.match(text)
    if not m:
        return "AT?" if text else "<empty>"
    head = m.group(0).upper()
    rest = text[m.end() :]
    if not rest or rest in ("?", "=?"):
        return head + rest
    name = m.group(1).upper()
    if name in _SENSITIVE_HEADS and name != "+CMGS":
        return head + "=…" if rest.startswith("=") else head + "…"
    if '"' in rest or (name == "+CMGS" and not re.fullmatch(r"=\d+", rest)):
        return head + "=…"
    return head + rest if len(rest) <= 24 else head + "…"


# ---------------------------------------------------------------------------------------------
# Framing
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LineEvent:
    """One non-empty line (terminator stripped, decoded as UTF-8)."""

    text: str


@dataclass(frozen=True, slots=True)
class PromptEvent:
    """The ``> `` prompt (no line terminator after it) asking for the payload."""


@dataclass(frozen=True, slots=True)
class EchoEvent:
    """The modem echoing back what we wrote (the command line before its reply)."""

    text: str


@dataclass(frozen=True, slots=True)
class JunkEvent:
    """Bytes dropped by the framer: ``reason`` is "not UTF-8", "control bytes" or "too long"."""

    size: int
    reason: str


AtEvent = LineEvent | PromptEvent | EchoEvent | JunkEvent

_CR, _LF = 0x0D, 0x0A
_ALLOWED_CONTROL = frozenset({0x09, 0x1A, 0x1B})  # tab, and Ctrl-Z / ESC in payload echoes


class AtFramer:
    """Incremental byte → event parser for AT traffic (V1 result format). No I/O.

    Lines end at CR, LF or CR LF; empty lines are dropped. ``> `` at the start of a line is
    the prompt. After :meth:`arm_echo` (call it just before writing a command while the
    modem may echo), the next line is taken as the echo when it does not start with CR/LF
    and ends with CR: modems echo ``<command>\\r`` and start their reply with ``\\r\\n``.
    NUL bytes are ignored; undecodable, control-ridden or over-long lines become
    :class:`JunkEvent`; the framer never raises on any input.
    """

    def __init__(self, *, max_line: int = 4096) -> None:
        self._max_line = max_line
        self._buf = bytearray()
        self._skip_lf = False  # last terminator was CR: a following LF belongs to it
        self._armed = False  # next line may be the echo of our command
        self._arm_after_line = False  # armed while a line was half received
        self._echo_cr = False  # echo candidate ended with CR; decided on the next byte
        self._discarding = 0  # bytes dropped from an over-long line (until its terminator)

    @property
    def pending(self) -> bytes:
        """Bytes of the line received so far (no terminator seen yet)."""
        return bytes(self._buf)

    def reset(self) -> None:
        """Forget any partial line and echo expectation (after reopening a port)."""
        self._buf.clear()
        self._skip_lf = self._armed = self._arm_after_line = self._echo_cr = False
        self._discarding = 0

    def arm_echo(self) -> None:
        """Expect the echo of a command we are about to write as the next line."""
        if self._buf or self._echo_cr:
            self._arm_after_line = True
        else:
            self._armed = True

    def feed(self, data: bytes) -> list[AtEvent]:
        """Consume ``data`` and return the events completed by it, in order."""
        events: list[AtEvent] = []
        for byte in data:
            if self._echo_cr:
                self._echo_cr = False
                self._emit_echo(events)
                if byte == _LF:
                    continue
            if byte == 0:
                continue
            if byte == _LF and self._skip_lf:
                self._skip_lf = False
                continue
            self._skip_lf = False
            if byte in (_CR, _LF):
                self._end_line(byte, events)
                continue
            if self._discarding:
                self._discarding += 1
                continue
            self._buf.append(byte)
            if len(self._buf) == 2 and self._buf == b"> ":
                self._buf.clear()
                self._armed = False
                events.append(PromptEvent())
            elif len(self._buf) > self._max_line:
                self._discarding = len(self._buf)
                self._buf.clear()
        return events

    def _end_line(self, byte: int, events: list[AtEvent]) -> None:
        if byte == _CR:
            self._skip_lf = True
        if self._discarding:
            events.append(JunkEvent(self._discarding, "too long"))
            self._discarding = 0
            self._line_done()
            return
        if not self._buf:
            # An empty line: if we expected an echo, the reply started right away with
            # CR/LF, so the modem does not echo (or not this time).
            self._armed = False
            return
        if self._armed:
            if byte == _CR:
                # "<echo>\r": decide on the next byte (LF or the reply's own CR/first char).
                self._skip_lf = False
                self._echo_cr = True
                return
            self._armed = False  # LF-only terminator: a normal line, not an echo
        self._emit_line(events)
        self._line_done()

    def _line_done(self) -> None:
        if self._arm_after_line:
            self._arm_after_line = False
            self._armed = True

    def _emit_echo(self, events: list[AtEvent]) -> None:
        raw = bytes(self._buf)
        self._buf.clear()
        self._armed = False
        events.append(EchoEvent(raw.decode("utf-8", errors="replace")))
        self._line_done()

    def _emit_line(self, events: list[AtEvent]) -> None:
        raw = bytes(self._buf)
        self._buf.clear()
        if any(b < 0x20 and b not in _ALLOWED_CONTROL for b in raw) or 0x7F in raw:
            events.append(JunkEvent(len(raw), "control bytes"))
            return
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            events.append(JunkEvent(len(raw), "not UTF-8"))
            return
        text = text.strip(" \t")
        if text:
            events.append(LineEvent(text))


# ---------------------------------------------------------------------------------------------
# URCs and routing
# ---------------------------------------------------------------------------------------------

#: Prefixes of unsolicited result codes we recognise (3GPP and common vendor ones).
URC_PREFIXES: TypingFinal[tuple[str, ...]] = (
    "+CMTI:", "+CMT:", "+CDS:", "+CDSI:", "+CBM:", "+CBMI:",
    "+CREG:", "+CGREG:", "+CEREG:", "+C5GREG:",
    "+CUSD:", "+CRING:", "+CLIP:", "+CCWA:", "+CLCC:", "+COLP:", "+CIEV:", "+CSSI:", "+CSSU:", "+CGEV:",
    "+CTZV:", "+CTZE:", "+CTZEU:", "+CSQN:", "+PACSP", "+CPIN:", "+QIND:", "+STIN:",
    "+CUSATP:", "+ZPASR:", "+ZUSIMR:", "+ZDONR:", "+WIND:", "+SIM:", "+PBREADY", "+QUSIM:",
    "+CFUN:",  # SIM800/EC25 at power-up; the answer to AT+CFUN? when that is in flight
    "^RSSI:", "^HCSQ:", "^BOOT:", "^MODE:", "^SRVST:", "^SIMST:", "^SYSSTART", "^CEND:",
    "^ORIG:", "^CONF:", "^CONN:", "^DSFLOWRPT:", "^STIN:", "^NDISSTAT:", "^RFSWITCH:",
    "^SMMEMFULL:", "^NWTIME:", "^SYSINFOEX:", "*PSUTTZ:", "*ECAV:", "*ATREADY", "$QCSIMSTAT:",
)  # fmt: skip
#: Whole-line URCs.
URC_WORDS: TypingFinal[frozenset[str]] = frozenset(
    {"RING", "RDY", "SMS READY", "SMS DONE", "CALL READY", "PB DONE", "NORMAL POWER DOWN"}
)
#: Call results (V.250): the final result of ``ATD``/``ATA``/``ATO``; with no command in
#: flight, the unsolicited end of a call that went on after ``ATD<number>;`` said OK.
CALL_RESULT_WORDS: TypingFinal[frozenset[str]] = frozenset({"NO CARRIER", "BUSY", "NO ANSWER", "NO DIALTONE"})
_CONNECT_COMMAND_RE = re.compile(r"^AT[DAO]", re.IGNORECASE)
#: URCs followed by one more line (the PDU, or the text in text mode).
_URC_WITH_BODY: TypingFinal[tuple[str, ...]] = ("+CMT:", "+CBM:")
_REGISTRATION_PREFIXES: TypingFinal[tuple[str, ...]] = ("+CREG:", "+CGREG:", "+CEREG:", "+C5GREG:")
_HEX_RE = re.compile(r"^[0-9A-Fa-f]+$")


@dataclass(frozen=True, slots=True)
class Urc:
    """An unsolicited result code: ``name`` ("+CMTI", "RING", ...), the whole ``line``, and
    for ``+CMT`` / ``+CDS`` / ``+CBM`` the ``pdu`` (or text-mode body) line that followed."""

    name: str
    line: str
    pdu: str | None = None

    @property
    def args(self) -> str:
        """The part after ``NAME:`` (stripped); empty for whole-line URCs."""
        _, sep, rest = self.line.partition(":")
        return rest.strip() if sep else ""


def urc_name(line: str) -> str | None:
    """The URC name of ``line`` ("+CMTI", "RING") when it is a known URC, else None."""
    upper = line.upper()
    if upper in URC_WORDS or upper in CALL_RESULT_WORDS:
        return upper
    for prefix in URC_PREFIXES:
        if upper.startswith(prefix):
            return prefix.rstrip(":")
    return None


def _loggable_name(line: str) -> str:
    m = re.match(r"^[+^$*#%][A-Za-z0-9]{1,12}", line)
    return m.group(0) if m else f"<{len(line)} chars>"


def _needs_body(name: str, line: str) -> bool:
    prefix = name + ":"
    if prefix in _URC_WITH_BODY:
        return True
    if prefix == "+CDS:":
        # PDU mode: "+CDS: <length>" then the PDU. Text mode: everything on one line.
        return line.partition(":")[2].strip().isdigit()
    return False


@dataclass(frozen=True, slots=True)
class Reply:
    """The command in flight finished: its reply ``lines`` (echo and URCs removed) and the
    final result."""

    lines: list[str]
    final: FinalResult


@dataclass(frozen=True, slots=True)
class PromptSeen:
    """The ``> `` prompt for the command in flight."""


@dataclass(frozen=True, slots=True)
class SoftFinalSeen:
    """A line that may end the command for modems that omit ``OK`` after it (Wavecom
    ``+CPIN:``): the channel waits a moment for a real final result, then completes."""


RouterOutput = Reply | Urc | PromptSeen | SoftFinalSeen


class _Auto(enum.Enum):
    AUTO = "auto"


AUTO: TypingFinal = _Auto.AUTO
PrefixSpec = str | Sequence[str] | None | _Auto


def reply_prefixes(command: str, spec: PrefixSpec = AUTO) -> tuple[str, ...]:
    """The information-response prefixes ``command`` may legitimately return.

    ``AUTO`` derives them from the command (``AT+CSQ`` → ``+CSQ:``; ``ATE0`` → none);
    a string or sequence overrides; None means "no prefixed lines expected".
    """
    if spec is None:
        return ()
    if isinstance(spec, str):
        return (spec,)
    if isinstance(spec, _Auto):
        m = re.match(r"^AT([+^$%*][A-Za-z0-9]+)", command.strip(), re.IGNORECASE)
        return (m.group(1).upper() + ":",) if m else ()
    return tuple(spec)


@dataclass(slots=True)
class _Txn:
    command: str
    prefixes: tuple[str, ...]
    soft_final: str | None
    prompt: bool
    lines: list[str] = field(default_factory=list)
    payload: str | None = None


class AtRouter:
    """Separates the reply of the command in flight from URCs. Pure: no I/O, no clock.

    A line goes to the reply when it carries one of the command's prefixes (except the
    one-field "+CREG: <stat>" unsolicited form during ``AT+CREG?``), when it is a final
    result code (which completes the command), or when it has no ``+NAME:``-style prefix
    (information text such as ``AT+CGMI``'s, PDU lines). Known URCs go to the URC side even
    in the middle of a reply; so do unknown ``+X:`` / ``^X:`` lines during a command that
    has reply prefixes of its own (with none, they stay in the reply).
    ``+CMT`` / ``+CDS`` take the following PDU line with them.
    With no command in flight every line is a URC; stray final codes are dropped, except the
    call results (``NO CARRIER``, ``BUSY`` ...): the end of a call placed earlier, as a URC.
    During a command they complete it, as ModemManager reads them (the channel then
    resynchronises: see :meth:`AtChannel.command`).
    """

    def __init__(self) -> None:
        self._txn: _Txn | None = None
        self._held: Urc | None = None  # URC waiting for its PDU/body line

    @property
    def busy(self) -> bool:
        """True while a command is in flight."""
        return self._txn is not None

    def begin(
        self,
        command: str,
        prefixes: tuple[str, ...],
        *,
        soft_final: str | None = None,
        prompt: bool = False,
    ) -> None:
        """Start routing replies for ``command``. Raises RuntimeError if one is in flight."""
        if self._txn is not None:
            raise RuntimeError("AtRouter.begin while a command is in flight")
        self._txn = _Txn(command.strip(), prefixes, soft_final, prompt)

    def payload_sent(self, payload: str) -> None:
        """The payload after the prompt was written (so its echo can be recognised)."""
        if self._txn is not None:
            self._txn.payload = payload.strip()

    def abort(self) -> list[str]:
        """Forget the command in flight (timeout, cancellation); return its partial reply."""
        txn, self._txn = self._txn, None
        return list(txn.lines) if txn else []

    def feed(self, event: AtEvent) -> list[RouterOutput]:
        """Route one framer event; return what it completed, in order."""
        out: list[RouterOutput] = []
        if isinstance(event, PromptEvent):
            self._flush_held(out)
            if self._txn is not None and self._txn.prompt:
                out.append(PromptSeen())
            else:
                logger.debug("AT: unexpected '> ' prompt ignored")
            return out
        if isinstance(event, EchoEvent):
            return out
        if isinstance(event, JunkEvent):
            logger.info("AT: dropped %d bytes of garbage (%s)", event.size, event.reason)
            return out
        line = event.text
        if self._held is not None:
            held, self._held = self._held, None
            if parse_final(line) is None and urc_name(line) is None:
                out.append(Urc(held.name, held.line, line))
                return out
            out.append(held)
        self._route_line(line, out)
        return out

    def _flush_held(self, out: list[RouterOutput]) -> None:
        if self._held is not None:
            out.append(self._held)
            self._held = None

    def _route_line(self, line: str, out: list[RouterOutput]) -> None:
        txn = self._txn
        if txn is None and line.strip().upper() in CALL_RESULT_WORDS:
            # A call placed earlier (ATD<number>; said OK) ended: the network's word.
            self._urc(line.strip().upper(), out)
            return
        if txn is None:
            if parse_final(line) is not None:
                logger.debug("AT: stray final result with no command in flight dropped")
            elif line[:2].upper() == "AT":
                logger.debug("AT: stray echo dropped")
            else:
                self._urc(line, out)
            return
        if not txn.lines and self._is_echo(line, txn):
            return
        final = parse_final(line)
        if final is not None:
            self._txn = None
            out.append(Reply(txn.lines, final))
            return
        upper = line.upper()
        if any(upper.startswith(p) for p in txn.prefixes):
            if upper.startswith(_REGISTRATION_PREFIXES) and _is_unsolicited_registration(line):
                self._urc(line, out)
                return
            txn.lines.append(line)
            if txn.soft_final is not None and upper.startswith(txn.soft_final.upper()):
                out.append(SoftFinalSeen())
            return
        if urc_name(line) is not None:
            self._urc(line, out)
            return
        if txn.prefixes and line[:1] in "+^$*%#" and ":" in line:
            # A command that answers with a known prefix does not also answer with another
            # one: this is an unsolicited code we do not know (logged by name only).
            self._urc(line, out)
            return
        txn.lines.append(line)

    @staticmethod
    def _is_echo(line: str, txn: _Txn) -> bool:
        text = line.strip().strip(CTRL_Z + ESC).strip()
        if txn.payload is not None:
            return text == txn.payload or text.upper() == txn.payload.upper()
        if text.upper() == txn.command.upper():
            return True
        # A truncated or partly garbled echo still starts with "AT" and a prefix of the command.
        return len(text) >= 2 and text[:2].upper() == "AT" and txn.command.upper().startswith(text.upper())

    def _urc(self, line: str, out: list[RouterOutput]) -> None:
        name = urc_name(line)
        if name is None:
            logger.debug("AT: unknown unsolicited line %s", _loggable_name(line))
            name = _loggable_name(line) if line[:1] in "+^$*#%" else "?"
        urc = Urc(name, line)
        if _needs_body(name, line):
            self._held = urc
            return
        out.append(urc)


# ---------------------------------------------------------------------------------------------
# The channel: one port, one reader thread, commands on the event loop
# ---------------------------------------------------------------------------------------------

UrcHandler = Callable[[Urc], None]
GoneHandler = Callable[[PortGone], None]


class AtChannel:
    """An AT command channel over one pyserial port.

    ``on_urc`` is called on the event loop for every URC (it must not block; queue work);
    ``on_gone`` once when the port vanishes. Exceptions raised by either are logged as bugs
    and never affect the channel.

    Not thread-safe: use it from one event loop. Commands are serialised by a lock.
    """

    READ_POLL = 0.5  # seconds between stop-flag checks when the port cannot be woken up
    RESYNC_DRAIN = 0.1  # quiet time after a resync, for late replies of a timed-out command

    def __init__(
        self,
        url: str,
        *,
        baudrate: int = 115200,
        on_urc: UrcHandler | None = None,
        on_gone: GoneHandler | None = None,
        write_timeout: float = 5.0,
        soft_final_grace: float = 0.3,
    ) -> None:
        self.url = url
        self.baudrate = baudrate
        self._on_urc = on_urc
        self._on_gone = on_gone
        self._write_timeout = write_timeout
        self._soft_final_grace = soft_final_grace
        self._framer = AtFramer()
        self._router = AtRouter()
        self._lock = asyncio.Lock()
        self._serial: serial.SerialBase | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._serial_lock = threading.Lock()  # hand-over of the port between thread and close()
        self._wake_r, self._wake_w = -1, -1
        self._loop: asyncio.AbstractEventLoop | None = None
        self._exited: asyncio.Future[None] | None = None
        self._gone: PortGone | None = None
        self._closed = False
        self._reply: asyncio.Future[Reply] | None = None
        self._prompt: asyncio.Future[None] | None = None
        self._soft_timer: asyncio.TimerHandle | None = None
        self._desynced = False
        #: Whether the modem may echo commands. True until ``ATE0`` succeeded; while True the
        #: framer is armed to recognise the echo before every write.
        self.expect_echo = True

    # -- state (no I/O) ------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        """True between a successful :meth:`open` and :meth:`close` or the port vanishing."""
        return self._serial is not None and self._gone is None and not self._closed

    @property
    def gone(self) -> PortGone | None:
        """The error that took the port away, if it vanished."""
        return self._gone

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self, *, timeout: float = 10.0) -> None:
        """Open the port (in the reader thread, since opening may block) and start reading.

        Raises PortGone when the device cannot be opened, ModemTimeout when opening hangs.
        """
        if self._thread is not None:
            raise RuntimeError("AtChannel.open called twice")
        loop = asyncio.get_running_loop()
        self._loop = loop
        ready: asyncio.Future[None] = loop.create_future()
        self._exited = loop.create_future()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._thread = threading.Thread(target=self._reader, args=(ready,), name=f"at-reader {self.url}", daemon=True)
        self._thread.start()
        try:
            await asyncio.wait_for(ready, timeout)
        except TimeoutError:
            await self.close()
            raise ModemTimeout(f"opening {self.url} timed out after {timeout:g} s") from None
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Stop the reader thread and close the port. Idempotent; never raises on I/O."""
        if self._closed:
            return
        self._closed = True
        self._fail_pending(PortGone(f"{self.url}: channel closed"))
        self._stop.set()
        if self._wake_w >= 0:
            with contextlib.suppress(OSError):
                os.write(self._wake_w, b"x")
        if self._exited is not None and self._thread is not None and self._thread.is_alive():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._exited), self.READ_POLL * 4)
        if self._thread is not None:
            self._thread.join(timeout=1.0)
            if self._thread.is_alive():
                logger.warning("AT reader thread for %s did not stop", self.url)
        with self._serial_lock:  # normally the reader thread closed it on its way out
            ser, self._serial = self._serial, None
        if ser is not None:
            _close_port(ser)
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._wake_r = self._wake_w = -1

    # -- commands ----------------------------------------------------------------------------

    async def command(
        self,
        cmd: str,
        *,
        timeout: float,
        expect_prefix: PrefixSpec = AUTO,
        soft_final: str | None = None,
    ) -> list[str]:
        """Send ``cmd`` (without the trailing CR) and return its reply lines.

        Echo, URCs and the final ``OK`` are not part of the result. ``expect_prefix`` names
        the information-response prefixes the command may return (see
        :func:`reply_prefixes`). ``soft_final``: a reply prefix after which some modems send
        no ``OK`` (the command then completes shortly after that line).

        Raises CmeError / CmsError / CommandError when the modem answers with an error
        (``permanent`` says whether a retry can help), ModemTimeout when no final result
        arrives within ``timeout`` seconds (the channel stays usable: the next command
        resynchronises first), PortGone when the port vanished or is closed.
        """
        if any(c in cmd for c in "\r\n" + CTRL_Z + ESC):
            raise ValueError("an AT command must not contain CR, LF, Ctrl-Z or ESC")
        async with self._lock:
            await self._prepare(timeout)
            reply = await self._transact(cmd, timeout, reply_prefixes(cmd, expect_prefix), soft_final)
            if reply.final.kind is FinalKind.CALL and not _CONNECT_COMMAND_RE.match(cmd):
                # A call ended while another command ran: that command's own final result
                # is still to come, and must not complete the next one.
                self._desynced = True
        if not reply.final.ok:
            raise error_for(reply.final, command_label(cmd))
        return reply.lines

    async def command_with_prompt(
        self,
        cmd: str,
        payload: str,
        *,
        timeout: float,
        prompt_timeout: float | None = None,
    ) -> list[str]:
        """Send ``cmd``, wait for the ``> `` prompt, send ``payload`` + Ctrl-Z, return the reply.

        Used for ``AT+CMGS=<n>``. ``prompt_timeout`` (default: ``min(timeout, 10)``) bounds
        the wait for the prompt, ``timeout`` the wait for the final result after the
        payload. On a timeout ESC is sent to leave the prompt and ModemTimeout raised.
        Raises like :meth:`command`; an error instead of the prompt is raised as such.
        """
        if any(c in payload for c in (CTRL_Z, ESC, "\r", "\n")):
            raise ValueError("payload must not contain Ctrl-Z, ESC or line breaks")
        label = command_label(cmd)
        p_timeout = min(timeout, 10.0) if prompt_timeout is None else prompt_timeout
        loop = asyncio.get_running_loop()
        async with self._lock:
            await self._prepare(timeout)
            reply_fut: asyncio.Future[Reply] = loop.create_future()
            prompt_fut: asyncio.Future[None] = loop.create_future()
            self._reply, self._prompt = reply_fut, prompt_fut
            self._router.begin(cmd, reply_prefixes(cmd), prompt=True)
            try:
                self._write_line(cmd)
                waiting: set[asyncio.Future[Any]] = {reply_fut, prompt_fut}
                done, _ = await asyncio.wait(waiting, timeout=p_timeout, return_when=asyncio.FIRST_COMPLETED)
                if reply_fut in done:  # an error instead of the prompt
                    reply = reply_fut.result()
                elif prompt_fut in done:
                    prompt_fut.result()  # PortGone surfaces here
                    self._router.payload_sent(payload)
                    if self.expect_echo:
                        self._framer.arm_echo()
                    self._write((payload + CTRL_Z).encode("ascii"))
                    try:
                        async with asyncio.timeout(timeout):  # not wait_for (3.11 swallows a cancel)
                            reply = await asyncio.shield(reply_fut)
                    except TimeoutError:
                        self._abort_txn()
                        self._write_quietly(ESC)
                        raise ModemTimeout(f"{label}: no result {timeout:g} s after the payload") from None
                else:
                    partial = self._abort_txn()
                    self._write_quietly(ESC)
                    raise ModemTimeout(f"{label}: no '> ' prompt within {p_timeout:g} s", partial=partial)
            except BaseException:
                self._abort_txn()
                raise
            finally:
                self._reply = self._prompt = None
                for fut in (reply_fut, prompt_fut):
                    if not fut.done():
                        fut.cancel()
                    elif not fut.cancelled():
                        fut.exception()  # mark retrieved
        if not reply.final.ok:
            raise error_for(reply.final, label)
        return reply.lines

    async def abort_prompt(self) -> None:
        """Send ESC: leaves a half-finished ``> `` prompt (harmless otherwise).

        Raises PortGone when the port is gone.
        """
        async with self._lock:
            self._check_usable()
            self._write(ESC.encode("ascii"))
            self._desynced = True  # a modem leaving a prompt may answer with a late OK

    # -- internals: command flow -------------------------------------------------------------

    def _check_usable(self) -> None:
        if self._gone is not None:
            raise PortGone(str(self._gone))
        if self._closed or self._serial is None:
            raise PortGone(f"{self.url}: port is not open")

    async def _prepare(self, timeout: float) -> None:
        self._check_usable()
        if self._desynced:
            await self._resync(min(timeout, 3.0))

    async def _resync(self, timeout: float) -> None:
        """After a timeout the modem may still answer the old command: send ``AT``, wait
        for its ``OK`` and let late lines drain, so they cannot complete the next command."""
        reply = await self._transact("AT", timeout, (), None, resync=True)
        await asyncio.sleep(self.RESYNC_DRAIN)
        if reply.final.ok or reply.final.kind in (FinalKind.CME, FinalKind.ERROR):
            self._desynced = False

    async def _transact(
        self,
        cmd: str,
        timeout: float,
        prefixes: tuple[str, ...],
        soft_final: str | None,
        *,
        resync: bool = False,
    ) -> Reply:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Reply] = loop.create_future()
        self._reply = fut
        self._router.begin(cmd, prefixes, soft_final=soft_final)
        try:
            self._write_line(cmd)
            # not wait_for: on 3.11 it returns the reply and swallows a cancellation that arrives
            # with it, and the cancelled task (an inbound loop being closed) runs on forever
            async with asyncio.timeout(timeout):
                return await asyncio.shield(fut)
        except TimeoutError:
            partial = self._abort_txn()
            what = "resync (AT)" if resync else command_label(cmd)
            raise ModemTimeout(f"{what} timed out after {timeout:g} s", partial=partial) from None
        except BaseException:
            self._abort_txn()
            raise
        finally:
            self._reply = None
            self._cancel_soft_timer()
            if not fut.done():
                fut.cancel()
            elif not fut.cancelled():
                fut.exception()

    def _abort_txn(self) -> list[str]:
        self._cancel_soft_timer()
        if self._router.busy:
            self._desynced = True
            return self._router.abort()
        return []

    def _write_line(self, cmd: str) -> None:
        if self.expect_echo:
            self._framer.arm_echo()
        self._write((cmd + "\r").encode("ascii"))

    def _write(self, data: bytes) -> None:
        """Write ``data``. Short writes to a tty or socket go to the kernel buffer at once;
        ``write_timeout`` bounds a stalled port (flow control), reported as ModemTimeout."""
        self._check_usable()
        ser = self._serial
        if ser is None:  # the reader thread just closed a failed port
            raise PortGone(f"{self.url}: port is not open")
        try:
            ser.write(data)
        except serial.SerialTimeoutException:
            self._desynced = True
            raise ModemTimeout(f"{self.url}: write timed out") from None
        except (serial.SerialException, OSError) as exc:
            gone = PortGone(f"{self.url}: write failed ({type(exc).__name__})")
            self._port_failed(gone)
            raise gone from exc

    def _write_quietly(self, text: str) -> None:
        with contextlib.suppress(ModemError):
            self._write(text.encode("ascii"))

    def _cancel_soft_timer(self) -> None:
        if self._soft_timer is not None:
            self._soft_timer.cancel()
            self._soft_timer = None

    # -- internals: events from the reader thread (run on the loop) --------------------------

    def _on_bytes(self, data: bytes) -> None:
        try:
            events = self._framer.feed(data)
            for event in events:
                for output in self._router.feed(event):
                    self._dispatch(output)
        except Exception:  # a bug of ours, not an I/O failure: keep the channel alive
            logger.exception("AT channel %s: internal error while parsing modem output", self.url)

    def _dispatch(self, output: RouterOutput) -> None:
        if isinstance(output, Reply):
            self._cancel_soft_timer()
            if self._reply is not None and not self._reply.done():
                self._reply.set_result(output)
        elif isinstance(output, PromptSeen):
            if self._prompt is not None and not self._prompt.done():
                self._prompt.set_result(None)
        elif isinstance(output, SoftFinalSeen):
            if self._loop is not None and self._soft_timer is None:
                self._soft_timer = self._loop.call_later(self._soft_final_grace, self._complete_soft)
        else:
            if self._on_urc is not None:
                try:
                    self._on_urc(output)
                except Exception:
                    logger.exception("URC handler failed for %s", output.name)

    def _complete_soft(self) -> None:
        self._soft_timer = None
        if self._router.busy and self._reply is not None and not self._reply.done():
            lines = self._router.abort()
            self._reply.set_result(Reply(lines, FinalResult(FinalKind.OK)))

    def _port_failed(self, gone: PortGone) -> None:
        if self._gone is not None or self._closed:
            return
        self._gone = gone
        logger.warning("AT port %s gone: %s", self.url, gone)
        self._fail_pending(gone)
        if self._on_gone is not None:
            try:
                self._on_gone(gone)
            except Exception:
                logger.exception("port-gone handler failed")

    def _fail_pending(self, exc: PortGone) -> None:
        self._cancel_soft_timer()
        self._router.abort()
        for fut in (self._reply, self._prompt):
            if fut is not None and not fut.done():
                fut.set_exception(PortGone(str(exc)))

    # -- the reader thread -------------------------------------------------------------------

    def _post(self, callback: Callable[..., object], *args: object) -> bool:
        loop = self._loop
        if loop is None:
            return False
        try:
            loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # loop closed: nobody is listening any more
            return False
        return True

    @staticmethod
    def _resolve(fut: asyncio.Future[None], exc: BaseException | None) -> None:
        if fut.done():
            return
        if exc is None:
            fut.set_result(None)
        else:
            fut.set_exception(exc)

    def _reader(self, ready: asyncio.Future[None]) -> None:
        """Body of the reader thread: open the port, then move bytes to the loop until
        stopped or the port fails. Only blocking pyserial calls live here."""
        try:
            ser = serial.serial_for_url(self.url, baudrate=self.baudrate, timeout=0, write_timeout=self._write_timeout)
        except (serial.SerialException, OSError, ValueError) as exc:
            self._post(self._resolve, ready, PortGone(f"cannot open {self.url}: {exc}"))
            self._post(self._resolve, self._exited, None)
            return
        with self._serial_lock:
            if self._stop.is_set():  # closed while we were opening: nobody will close it
                _close_port(ser)
                self._post(self._resolve, self._exited, None)
                return
            self._serial = ser
        self._post(self._resolve, ready, None)
        try:
            fileno: int | None = ser.fileno()
        except (AttributeError, NotImplementedError, serial.SerialException, OSError):
            fileno = None
        error: BaseException | None = None
        while not self._stop.is_set():
            try:
                data = self._read_some(ser, fileno)
            except (serial.SerialException, OSError) as exc:
                error = exc
                break
            except Exception as exc:  # pyserial internals failing while the port is torn down
                if not self._stop.is_set():
                    logger.exception("AT reader for %s: unexpected read failure", self.url)
                error = exc
                break
            if data and not self._post(self._on_bytes, data):
                break
        if error is not None and not self._stop.is_set():
            self._post(self._port_failed, PortGone(f"{self.url}: read failed ({type(error).__name__})"))
        # Closing may block too (pyserial's socket:// sleeps 0.3 s in close()): do it here.
        with self._serial_lock:
            mine, self._serial = self._serial, None
        if mine is not None:
            _close_port(mine)
        self._post(self._resolve, self._exited, None)

    def _read_some(self, ser: serial.SerialBase, fileno: int | None) -> bytes:
        if fileno is None:  # a transport without a file descriptor: poll with a timeout
            ser.timeout = self.READ_POLL
            return bytes(ser.read(max(1, ser.in_waiting)))
        readable, _, _ = select.select([fileno, self._wake_r], [], [], self.READ_POLL)
        if fileno not in readable:
            return b""
        data = ser.read(4096)  # timeout=0: whatever is there, at once
        return bytes(data)


def _close_port(ser: serial.SerialBase) -> None:
    """Close ``ser`` whatever state it is in. pyserial 3.5's ``socket://`` handler skips
    closing its socket when ``shutdown()`` fails (peer already gone), which would leak the
    descriptor: close that socket ourselves as well."""
    sock = getattr(ser, "_socket", None)
    with contextlib.suppress(Exception):
        ser.close()
    if sock is not None:
        with contextlib.suppress(Exception):
            sock.close()


# ---------------------------------------------------------------------------------------------
# Reply parsers (pure)
# ---------------------------------------------------------------------------------------------


def _fields(args: str) -> list[str]:
    """Split ``a,"b,c",d`` at top-level commas (quotes and parentheses respected)."""
    out: list[str] = []
    cur: list[str] = []
    depth = 0
    quoted = False
    for ch in args:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth = max(0, depth - 1)
        elif not quoted and depth == 0 and ch == ",":
            out.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    out.append("".join(cur).strip())
    return out


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def _args_of(line: str, prefix: str) -> str | None:
    text = line.strip()
    if not text.upper().startswith(prefix.upper()):
        return None
    return text[len(prefix) :].strip()


def _small_int(value: str, limit: int) -> int | None:
    """``value`` as a non-negative decimal ≤ ``limit`` (leading zeros allowed), else None.
    Quoted values never count: registration states and modes are never quoted."""
    value = value.strip()
    if not value.isdigit():
        return None
    number = int(value)
    return number if number <= limit else None


def _hex_field(value: str, max_digits: int) -> int | None:
    value = _unquote(value).strip()
    if not value or len(value) > max_digits or not _HEX_RE.match(value):
        return None
    return int(value, 16)


REGISTRATION_STATES: TypingFinal[dict[int, str]] = {
    0: "unregistered",
    1: "home",
    2: "searching",
    3: "denied",
    4: "unknown",
    5: "roaming",
    6: "home",  # home, SMS only
    7: "roaming",  # roaming, SMS only
    8: "denied",  # emergency services only
    9: "home",  # home, CSFB not preferred
    10: "roaming",  # roaming, CSFB not preferred
    11: "denied",  # attached for restricted local operator services only
}
#: 27.007 ``<AcT>`` 0-13 → the radio generation shown to the owner.
ACCESS_TECHNOLOGIES: TypingFinal[dict[int, str]] = {
    0: "GSM",
    1: "GSM",  # GSM Compact
    2: "UMTS",
    3: "GSM",  # GSM with EGPRS (EDGE)
    4: "UMTS",  # HSDPA
    5: "UMTS",  # HSUPA
    6: "UMTS",  # HSDPA and HSUPA
    7: "LTE",
    8: "GSM",  # EC-GSM-IoT
    9: "LTE",  # E-UTRAN NB-S1 (NB-IoT)
    10: "LTE",  # E-UTRA connected to a 5G core
    11: "NR",  # NR connected to a 5G core
    12: "NR",  # NG-RAN
    13: "NR",  # E-UTRA-NR dual connectivity (5G NSA, on an LTE anchor)
}


def access_technology(act: int | None) -> str | None:
    """``<AcT>`` → "GSM" | "UMTS" | "LTE" | "NR"; None when absent or unknown."""
    return None if act is None else ACCESS_TECHNOLOGIES.get(act)


@dataclass(frozen=True, slots=True)
class Registration:
    """A ``+CREG`` / ``+CGREG`` / ``+CEREG`` / ``+C5GREG`` line, solicited or unsolicited."""

    kind: str  # "CREG", "CGREG", ...
    stat: int
    solicited: bool
    lac: int | None = None  # LAC, or TAC for CEREG / C5GREG
    ci: int | None = None
    act: int | None = None  # 27.007 <AcT> 0-13 when reported

    @property
    def state(self) -> str:
        """One of "home", "roaming" | "searching" | "denied" | "unregistered" | "unknown"."""
        return REGISTRATION_STATES.get(self.stat, "unknown")

    @property
    def registered(self) -> bool:
        return self.state in ("home", "roaming")

    @property
    def sms_only(self) -> bool:
        """Registered for SMS only (EPS stat 6/7): SMS works, calls and data do not."""
        return self.stat in (6, 7)


_REG_RE = re.compile(r"^\+(C5GREG|CGREG|CEREG|CREG):\s*(.*)$", re.IGNORECASE)


def _loc_field(value: str) -> tuple[int | None, int]:
    """A LAC/TAC/CI field → (value, misses): empty is fine, hex (quoted or not) is fine."""
    if value in ("", '""'):
        return None, 0
    parsed = _hex_field(value, 10)
    return parsed, 0 if parsed is not None else 1


def _act_field(value: str) -> tuple[int | None, int]:
    if value == "":
        return None, 0
    act = _small_int(value, 13)
    if act is not None:
        return act, 0
    # A long value where the AcT should be is a CI: the other reading is the better one.
    return None, 2 if len(value.strip('" ')) > 2 else 1


def _reading(kind: str, fields: list[str], base: int) -> tuple[int, Registration] | None:
    """Read ``fields`` as the solicited (``base`` 1: n first) or unsolicited (0) form:
    (misses, registration), or None when the form is impossible (n or stat not a small
    unquoted number)."""
    if base == 1 and _small_int(fields[0], 5) is None:
        return None
    stat = _small_int(fields[base], 11)
    if stat is None:
        return None
    tail = fields[base + 1 :]
    solicited = base == 1
    if not tail:
        return 0, Registration(kind, stat, solicited)
    if len(tail) == 1:
        # "n,stat,AcT" (seen from simulators and a few firmwares): only as the solicited form.
        act, miss = _act_field(tail[0])
        if solicited and not tail[0].startswith('"'):
            return miss, Registration(kind, stat, True, act=act)
        return 2, Registration(kind, stat, solicited)
    lac, miss_lac = _loc_field(tail[0])
    ci, miss_ci = _loc_field(tail[1])
    act, miss_act = _act_field(tail[2]) if len(tail) > 2 else (None, 0)
    misses = miss_lac + miss_ci + miss_act
    if miss_act and len(tail) > 3 and len(tail[1].strip('" ')) <= 2:
        # Novatel/Sierra: "<lac>, <rac>, <ci>, <AcT>" (a RAC squeezed in before the CI).
        ci2, miss_ci2 = _loc_field(tail[2])
        act2, miss_act2 = _act_field(tail[3])
        if miss_lac + miss_ci2 + miss_act2 < misses:
            ci, act, misses = ci2, act2, miss_lac + miss_ci2 + miss_act2
    return misses, Registration(kind, stat, solicited, lac, ci, act)


def parse_registration(line: str, *, solicited: bool | None = None) -> Registration | None:
    """Parse a registration line in either form; None when it is not one.

    Solicited (reply to ``AT+CREG?``): ``<n>,<stat>[,<lac>,<ci>[,<AcT>[,...]]]`` (also the
    short ``<n>,<stat>,<AcT>``); unsolicited (URC): ``<stat>[,<lac>,<ci>[,<AcT>[,...]]]``.
    Fields after the AcT (RAC, reject causes, PSM timers, NSSAI) are ignored. One field is
    always the unsolicited form, two the solicited one. Otherwise both readings are scored
    (``n`` ≤ 5 and ``stat`` ≤ 11 unquoted numbers, LAC/CI hex, AcT ≤ 13) and the one with
    fewer misfits wins; the ``solicited`` hint (a command for this prefix is in flight)
    breaks a tie, the solicited form when there is no hint.
    """
    m = _REG_RE.match(line.strip())
    if not m:
        return None
    kind = m.group(1).upper()
    fields = _fields(m.group(2))
    if not fields or fields == [""]:
        return None
    if len(fields) == 1:
        stat = _small_int(fields[0], 99)
        return None if stat is None else Registration(kind, stat, False)
    if len(fields) == 2:
        stat = _small_int(fields[1], 99)
        return None if stat is None else Registration(kind, stat, True)
    sol = _reading(kind, fields, 1)
    unsol = _reading(kind, fields, 0)
    if sol is None or unsol is None:
        found = sol or unsol
        return None if found is None else found[1]
    if sol[0] != unsol[0]:
        return sol[1] if sol[0] < unsol[0] else unsol[1]
    return unsol[1] if solicited is False else sol[1]


@dataclass(frozen=True, slots=True)
class RegistrationSummary:
    """CREG/CGREG/CEREG/C5GREG combined: ``state`` as in :attr:`Registration.state`
    (registered when any domain is), ``sms_only`` when every registered domain is "SMS
    only", ``technology`` ("GSM" | "UMTS" | "LTE" | "NR", None when not reported) and
    ``note``, a sentence for the owner when the registration limits alerts (else None)."""

    state: str
    sms_only: bool = False
    technology: str | None = None
    note: str | None = None


_STATE_RANK: TypingFinal[dict[str, int]] = {"denied": 3, "searching": 2, "unregistered": 1, "unknown": 0}


def combine_registrations(regs: Sequence[Registration]) -> RegistrationSummary:
    """Combine the registration of every domain the modem reported (pure).

    Registered when any domain is home or roaming (an LTE module may show CREG 0 or 2 while
    CEREG is registered). A full-service domain is preferred to an SMS-only one, CS/LTE/NR
    all count the same. With none registered: "denied" before "searching" before
    "unregistered" before "unknown".
    """
    if not regs:
        return RegistrationSummary("unknown")
    registered = [r for r in regs if r.registered]
    if registered:
        best = min(registered, key=lambda r: (r.sms_only, r.act is None))
        act = best.act if best.act is not None else next((r.act for r in registered if r.act is not None), None)
        sms_only = best.sms_only
        note = None
        if sms_only:
            note = f"registered for SMS only (+{best.kind} {best.stat}): SMS alerts work, calls and data do not"
        return RegistrationSummary(best.state, sms_only, access_technology(act), note)
    worst = max(regs, key=lambda r: _STATE_RANK.get(r.state, 0))
    note = None
    if worst.state == "denied":
        note = (
            f"registration denied (+{worst.kind} {worst.stat}): the network refuses this SIM here "
            "(a data-only SIM, or no SMS for it on this network); alerts cannot be sent"
        )
    return RegistrationSummary(worst.state, False, access_technology(worst.act), note)


def _is_unsolicited_registration(line: str) -> bool:
    reg = parse_registration(line, solicited=True)
    return reg is not None and not reg.solicited


def parse_csq(lines: Sequence[str]) -> tuple[int, int] | None:
    """``+CSQ: <rssi>,<ber>`` → ``(rssi, ber)``; None when absent or malformed."""
    for line in lines:
        args = _args_of(line, "+CSQ:")
        if args is None:
            continue
        parts = [p.strip() for p in args.split(",")]
        if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit():
            return int(parts[0]), int(parts[1])
    return None


def rssi_to_dbm(rssi: int) -> int | None:
    """27.007 ``<rssi>`` 0..31 → dBm (``-113 + 2*rssi``); 99 (unknown) or junk → None."""
    if 0 <= rssi <= 31:
        return -113 + 2 * rssi
    return None


@dataclass(frozen=True, slots=True)
class Operator:
    """``+COPS?``: registration ``mode``, name ``format`` (0 long, 1 short, 2 numeric),
    ``name`` and access technology ``act`` (None when not reported)."""

    mode: int
    format: int | None
    name: str | None
    act: int | None


def parse_cops(lines: Sequence[str]) -> Operator | None:
    """Parse the ``AT+COPS?`` reply (``+COPS: 0,0,"Operator",7`` or ``+COPS: 0``)."""
    for line in lines:
        args = _args_of(line, "+COPS:")
        if args is None or args.startswith("("):
            continue
        fields = _fields(args)
        mode = _small_int(fields[0], 9)
        if mode is None:
            continue
        fmt = _small_int(fields[1], 9) if len(fields) > 1 else None
        name = _unquote(fields[2]) if len(fields) > 2 else None
        act = _small_int(fields[3], 99) if len(fields) > 3 else None
        return Operator(mode, fmt, name or None, act)
    return None


@dataclass(frozen=True, slots=True)
class Network:
    """One entry of the ``AT+COPS=?`` scan: ``status`` (0 unknown, 1 available, 2 current,
    3 forbidden), names (None when empty), ``numeric`` MCC+MNC, ``act`` (None if absent)."""

    status: int
    long_name: str | None
    short_name: str | None
    numeric: str
    act: int | None


_NET_RE = re.compile(r'\(\s*(\d)\s*,\s*("[^"]*"|)\s*,\s*("[^"]*"|)\s*,\s*"(\d*)"\s*\)?\s*(?:,\s*(\d+)\s*)?\)')


def parse_cops_list(reply: str, *, ucs2: bool = False) -> list[Network]:
    """Parse an ``AT+COPS=?`` reply (one or several lines) into networks.

    Tolerates the vendor quirks seen in the field: an extra ``)`` before the AcT, missing
    commas between entries, entries split over lines, one ``+COPS:`` per network.
    The trailing lists of supported modes and formats are not networks and are skipped.
    ``ucs2``: the modem is set to ``AT+CSCS="UCS2"``, so strings arrive as UTF-16 hex.
    """
    flat = " ".join(part.strip() for part in reply.splitlines())

    def text(value: str) -> str:
        value = _unquote(value)
        return _maybe_ucs2_hex(value) if ucs2 else value

    return [
        Network(
            int(m.group(1)),
            text(m.group(2)) or None,
            text(m.group(3)) or None,
            text(m.group(4)),
            int(m.group(5)) if m.group(5) is not None else None,
        )
        for m in _NET_RE.finditer(flat)
    ]


def parse_cpms_support(line: str) -> tuple[frozenset[str], ...]:
    """Parse ``AT+CPMS=?`` → the storages allowed for mem1, mem2, mem3 (sets of names)."""
    args = _args_of(line.strip(), "+CPMS:")
    if args is None:
        return ()
    return tuple(frozenset(re.findall(r'"([^"]*)"', f)) for f in _fields(args))


def parse_cpms(lines: Sequence[str]) -> str | None:
    """The current read storage (mem1) from ``AT+CPMS?``; None when not reported."""
    for line in lines:
        args = _args_of(line, "+CPMS:")
        if args is None:
            continue
        first = _unquote(_fields(args)[0])
        return first or None
    return None


def parse_cpin(lines: Sequence[str]) -> str | None:
    """``+CPIN: READY`` → ``"READY"`` (``SIM PIN``, ``SIM PUK``, ...); None when absent."""
    for line in lines:
        args = _args_of(line, "+CPIN:")
        if args is not None:
            return _unquote(args).upper() or None
    return None


def _maybe_ucs2_hex(value: str) -> str:
    if len(value) >= 4 and len(value) % 4 == 0 and re.fullmatch(r"(00[0-9A-Fa-f]{2})+", value):
        with contextlib.suppress(ValueError, UnicodeDecodeError):
            return bytes.fromhex(value).decode("utf-16-be")
    return value


def parse_csca(lines: Sequence[str]) -> str | None:
    """The SMSC number from ``AT+CSCA?`` (``+CSCA: "+491722270333",145``); None if unset.
    A UCS2-hex encoded number (modems set to ``AT+CSCS="UCS2"``) is decoded."""
    for line in lines:
        args = _args_of(line, "+CSCA:")
        if args is None:
            continue
        number = _maybe_ucs2_hex(_unquote(_fields(args)[0]))
        return number or None
    return None


def parse_cmgs(lines: Sequence[str]) -> int | None:
    """The message reference from ``+CMGS: <mr>[,<ackpdu>]``; None when absent."""
    for line in lines:
        args = _args_of(line, "+CMGS:")
        if args is None:
            continue
        first = _fields(args)[0]
        if first.isdigit():
            return int(first)
    return None


def storage_full_report(urc: Urc) -> bool:
    """True when ``urc`` says the message storage is full, in any form modems use: Huawei's
    ``^SMMEMFULL: "SM"``, Quectel's ``+QIND: "smsfull",...`` and 27.007's ``+CIEV:
    "smsfull",1`` (indicator named; a numeric indicator index means nothing without
    ``AT+CIND=?``, so it is not guessed)."""
    if urc.name == "^SMMEMFULL":
        return True
    fields = [_unquote(f).lower() for f in _fields(urc.args)]
    if not fields or fields[0] != "smsfull":
        return False
    if urc.name == "+QIND":
        return True
    return urc.name == "+CIEV" and len(fields) > 1 and fields[1].isdigit() and int(fields[1]) > 0


def parse_cmti(urc: Urc) -> tuple[str, int] | None:
    """``+CMTI: "SM",3`` (also ``+CDSI``) → ``("SM", 3)``; None when malformed."""
    fields = _fields(urc.args)
    if len(fields) < 2 or not fields[1].strip().isdigit():
        return None
    return _unquote(fields[0]).upper(), int(fields[1])


@dataclass(frozen=True, slots=True)
class StoredPdu:
    """A message in modem storage: ``index`` (None for ``+CMGR``), ``stat`` (0 REC UNREAD,
    1 REC READ, 2 STO UNSENT, 3 STO SENT; None when the modem leaves it out), the TPDU
    ``length`` the modem reported, and the ``pdu`` hex (with the SMSC field)."""

    index: int | None
    stat: int | None
    length: int | None
    pdu: str


def _pdu_header(args: str, *, with_index: bool) -> tuple[int | None, int | None, int | None]:
    fields = _fields(args)
    index: int | None = None
    if with_index:
        if not fields or not fields[0].isdigit():
            raise ValueError("no index")
        index = int(fields.pop(0))
    stat = int(fields[0]) if fields and fields[0].isdigit() else None
    length_field = fields[-1] if len(fields) >= 2 else ""
    length = int(length_field) if length_field.isdigit() else None
    return index, stat, length


def parse_cmgl(lines: Sequence[str]) -> list[StoredPdu]:
    """Parse a PDU-mode ``AT+CMGL`` reply: ``+CMGL: <index>,<stat>,[<alpha>],<length>``
    each followed by a PDU line. Headers without a hex line after them and stray lines are
    skipped (counted in the debug log, contents never logged)."""
    out: list[StoredPdu] = []
    header: tuple[int | None, int | None, int | None] | None = None
    skipped = 0
    for line in lines:
        args = _args_of(line, "+CMGL:")
        if args is not None:
            if header is not None:
                skipped += 1
            try:
                header = _pdu_header(args, with_index=True)
            except ValueError:
                header = None
                skipped += 1
            continue
        pdu = clean_pdu_line(line) if header is not None else None
        if header is not None and pdu is not None:
            out.append(StoredPdu(header[0], header[1], header[2], pdu))
        else:
            skipped += 1
        header = None
    if header is not None:
        skipped += 1
    if skipped:
        logger.debug("+CMGL: %d unexpected lines skipped", skipped)
    return out


def parse_cmgr(lines: Sequence[str], index: int | None = None) -> StoredPdu | None:
    """Parse a PDU-mode ``AT+CMGR`` reply: ``+CMGR: <stat>,[<alpha>],<length>`` then the
    PDU (on the next line, or after whitespace on the same line). None when the slot is
    empty (some modems answer a bare ``OK``)."""
    header: tuple[int | None, int | None, int | None] | None = None
    for line in lines:
        args = _args_of(line, "+CMGR:")
        if args is not None:
            head, _, tail = args.partition(" ")
            header = _pdu_header(head, with_index=False)
            pdu = clean_pdu_line(tail) if tail.strip() else None
            if pdu is not None:
                return StoredPdu(index, header[1], header[2], pdu)
            continue
        pdu = clean_pdu_line(line) if header is not None else None
        if header is not None and pdu is not None:
            return StoredPdu(index, header[1], header[2], pdu)
    return None


def info_text(lines: Sequence[str], prefix: str | None = None) -> str | None:
    """The information text of commands like ``AT+CGMI``: lines joined by a space, a
    leading ``prefix`` (some modems answer ``+CGMI: huawei``) and quotes removed."""
    parts: list[str] = []
    for line in lines:
        text = line.strip()
        if prefix is not None:
            args = _args_of(text, prefix)
            if args is not None:
                text = args
        text = _unquote(text).strip()
        if text:
            parts.append(text)
    return " ".join(parts) or None
