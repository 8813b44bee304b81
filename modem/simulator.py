"""A simulated GSM modem that speaks AT commands, with a fake phone network behind it.

Three layers, each usable on its own:

* :class:`Network` -- the fake phone network. It decodes and records every SMS
  the modem submits (multipart reassembled into one :class:`SentSms`) and
  delivers injected inbound SMS to the SIM (store-and-forward while the modem
  is off, locked or not registered, like a real SMSC).
* :class:`Simulator` -- the modem's AT state machine, transport-independent:
  bytes in through :meth:`Simulator.feed`, bytes out through
  :meth:`Simulator.read_output` (which also carries the configured latency).
* :class:`PtyModem` / :class:`TcpModem` -- serve a simulator on a real pty or a
  loopback TCP port from one background thread, with USB-style unplug/replug.

:func:`cli_main` runs one from the command line (``hbgw simulate-modem``), with
an optional JSON-lines control socket (:class:`SimulatorControl` is its client).

Behaviour follows what real modems do rather than the letter of 27.007/27.005
where the two differ: echo is on at power-up, ``ESC`` aborts a ``> `` prompt
(answered with ``OK`` like Quectel/SIMCom parts), an empty command line gets no
answer, bytes before ``AT`` on a line are ignored, ``+CMS ERROR`` is reported
numerically even with ``+CMEE=0`` (27.005 does not tie it to ``+CMEE``) and
verbosely with ``+CMEE=2``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import errno
import json
import logging
import os
import pty
import select
import signal
import socket
import threading
import time
import tty
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from modem.pdu import Deliver, PduError, Submit, decode_pdu, encode_deliver, encode_status_report

logger = logging.getLogger(__name__)

CTRL_Z = 0x1A
ESC = 0x1B

_CME_TEXT = {
    3: "operation not allowed",
    4: "operation not supported",
    10: "SIM not inserted",
    11: "SIM PIN required",
    12: "SIM PUK required",
    13: "SIM failure",
    14: "SIM busy",
    16: "incorrect password",
    21: "invalid index",
    30: "no network service",
    100: "unknown",
}
_CMS_TEXT = {
    304: "invalid PDU mode parameter",
    305: "invalid text mode parameter",
    310: "SIM not inserted",
    311: "SIM PIN required",
    314: "SIM busy",
    316: "SIM PUK required",
    321: "invalid memory index",
    322: "memory full",
    330: "SMSC address unknown",
    331: "no network service",
    332: "network timeout",
    500: "unknown error",
}
_STAT_TEXT = ("REC UNREAD", "REC READ", "STO UNSENT", "STO SENT")
_STORAGES = ("SM", "ME")
_MAX_LINE = 2048
_MAX_BODY = 4096
_MAX_PENDING_WRITE = 1 << 16


def mask_number(number: str) -> str:
    """A phone number shortened for logs: ``+1555***67``."""
    if len(number) <= 6:
        return "***"
    return f"{number[:5]}***{number[-2:]}"


# --------------------------------------------------------------------------- options and records


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


# --------------------------------------------------------------------------- the network


@dataclass
class _PartialSend:
    parts: dict[int, tuple[str, int, str]] = field(default_factory=dict)  # seq -> (text, mr, pdu)
    encoding: str = ""


class Network:
    """The fake phone network: records what the modem sends, delivers what tests inject.

    Thread-safe. Lock order: a simulator's lock may be held while taking the
    network's, never the other way round.
    """

    def __init__(self, *, smsc: str = "+15550000000") -> None:
        self.smsc = smsc
        self._cond = threading.Condition()
        self._sent: list[SentSms] = []
        self._partial: dict[tuple[str, int, int], _PartialSend] = {}
        self._undelivered: deque[list[str]] = deque()  # messages (lists of PDUs) not yet on a SIM
        self._listeners: list[Callable[[SentSms], None]] = []
        self._sim: Simulator | None = None
        self._concat_ref = 0

    # -- the test-facing side

    def sent(self) -> list[SentSms]:
        """Every complete message sent so far, oldest first."""
        with self._cond:
            return list(self._sent)

    def wait_for_sent(self, count: int, timeout: float) -> list[SentSms]:
        """Block until at least ``count`` messages were sent; raises ``TimeoutError``."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._sent) >= count, timeout):
                raise TimeoutError(f"{len(self._sent)} of {count} SMS sent after {timeout} s")
            return list(self._sent)

    def clear_sent(self) -> None:
        with self._cond:
            self._sent.clear()
            self._partial.clear()

    def on_sent(self, listener: Callable[[SentSms], None]) -> None:
        """Call ``listener`` (from the modem's thread) for every message recorded."""
        with self._cond:
            self._listeners.append(listener)

    def undelivered(self) -> int:
        """Inbound messages the network still holds (modem off, locked or storage full)."""
        with self._cond:
            return len(self._undelivered)

    def inject(self, sender: str, text: str, *, timestamp: dt.datetime | None = None) -> None:
        """Deliver an SMS from ``sender`` to the SIM (split into parts as needed)."""
        when = timestamp or dt.datetime.now(dt.UTC).replace(microsecond=0)
        with self._cond:
            self._concat_ref = (self._concat_ref + 1) % 256
            ref = self._concat_ref
        pdus = encode_deliver(sender, text, timestamp=when, smsc=self.smsc, concat_ref=ref)
        logger.info("network: inbound SMS from %s, %d part(s)", mask_number(sender), len(pdus))
        self._deliver(list(pdus))

    def inject_pdu(self, hex_pdu: str) -> None:
        """Deliver one raw PDU (hex, with the SMSC field) as-is, even a malformed one."""
        cleaned = hex_pdu.strip().upper()
        try:
            bytes.fromhex(cleaned)
        except ValueError as exc:
            raise ValueError(f"not a hex PDU: {exc}") from None
        self._deliver([cleaned])

    # -- the modem-facing side

    def _attach(self, sim: Simulator) -> None:
        with self._cond:
            self._sim = sim

    def _deliver(self, pdus: list[str]) -> None:
        sim = self._sim
        if sim is None:
            with self._cond:
                self._undelivered.append(pdus)
            return
        sim._receive_from_network(pdus)

    def _hold(self, pdus: list[str]) -> None:
        with self._cond:
            self._undelivered.append(pdus)

    def _take_undelivered(self) -> list[list[str]]:
        with self._cond:
            out = list(self._undelivered)
            self._undelivered.clear()
            return out

    def _return_undelivered(self, messages: list[list[str]]) -> None:
        with self._cond:
            self._undelivered.extendleft(reversed(messages))

    def _submit_pdu(self, submit: Submit, mr: int, pdu: str) -> None:
        encoding = str(getattr(submit, "encoding", ""))
        concat = submit.concat
        if concat is None or concat.total <= 1:
            self._record(SentSms(submit.recipient, submit.text, 1, (mr,), _utcnow(), encoding, (pdu,)))
            return
        key = (submit.recipient, concat.ref, concat.total)
        with self._cond:
            partial = self._partial.setdefault(key, _PartialSend(encoding=encoding))
            partial.parts[concat.seq] = (submit.text, mr, pdu)
            if len(partial.parts) < concat.total:
                return
            del self._partial[key]
        ordered = [partial.parts[seq] for seq in sorted(partial.parts)]
        self._record(
            SentSms(
                submit.recipient,
                "".join(p[0] for p in ordered),
                concat.total,
                tuple(p[1] for p in ordered),
                _utcnow(),
                partial.encoding,
                tuple(p[2] for p in ordered),
            )
        )

    def _submit_text(self, number: str, text: str, mr: int) -> None:
        self._record(SentSms(number, text, 1, (mr,), _utcnow(), "text", ()))

    def _record(self, sms: SentSms) -> None:
        logger.info("network: SMS to %s recorded, %d part(s)", mask_number(sms.number), sms.parts)
        with self._cond:
            self._sent.append(sms)
            listeners = list(self._listeners)
            self._cond.notify_all()
        for listener in listeners:
            try:
                listener(sms)
            except Exception:
                logger.exception("network: sent-listener failed")


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# --------------------------------------------------------------------------- the modem


class _Final(Exception):
    """A command ends with a final result other than OK."""

    def __init__(self, kind: str, code: int = 0) -> None:
        super().__init__(kind, code)
        self.kind = kind  # "ERROR" | "CME" | "CMS"
        self.code = code


def _error() -> _Final:
    return _Final("ERROR")


def _cme(code: int) -> _Final:
    return _Final("CME", code)


def _cms(code: int) -> _Final:
    return _Final("CMS", code)


_PROMPT = object()  # a handler's "enter the > prompt" answer

_Handler = Callable[[str, str], "list[str] | object"]


def split_args(text: str) -> list[str]:
    """Split an AT parameter list on commas outside double quotes; unquote each."""
    out: list[str] = []
    cur: list[str] = []
    quoted = False
    for ch in text:
        if ch == '"':
            quoted = not quoted
            cur.append(ch)
        elif ch == "," and not quoted:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return [_unquote(a.strip()) for a in out]


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def _int_arg(args: list[str], i: int, default: int | None = None) -> int:
    if i < len(args) and args[i] != "":
        try:
            return int(args[i])
        except ValueError:
            raise _error() from None
    if default is None:
        raise _error()
    return default


class Simulator:
    """The modem's AT state machine. Transport-independent and thread-safe.

    A transport calls :meth:`feed` with the bytes the host wrote and drains
    :meth:`read_output`; :meth:`set_waker` lets it know when output appears
    from another thread (an injected SMS's ``+CMTI``).
    """

    def __init__(self, network: Network, options: SimOptions | None = None) -> None:
        self.network = network
        self.options = options or SimOptions()
        self._lock = threading.RLock()
        self._out: deque[bytes | float] = deque()
        self._delay_until: float | None = None
        self._waker: Callable[[], None] | None = None
        self._storage: dict[str, dict[int, StoredSms]] = {name: {} for name in _STORAGES}
        self._pin = self.options.pin
        self._pin_left = self.options.pin_attempts
        self._puk_left = 10
        self._next_mr = self.options.first_message_ref % 256
        self._fail_sends: deque[int | None] = deque()  # None: this one goes through
        self._hung = False
        self._latency = self.options.latency
        self._command_latency: dict[str, float] = {}
        self._registration = self.options.registration
        self._signal = self.options.signal_csq
        self._mid_reply_urcs: list[str] = []
        self._pending_after: list[Callable[[], None]] = []
        self._executing = False
        self.commands: deque[str] = deque(maxlen=1000)  # recent command lines, for tests
        self._powered = False
        self._handlers: dict[str, _Handler] = self._build_handlers()
        network._attach(self)
        self.power_on()

    # -- power and fault injection

    def power_on(self) -> None:
        """Power up (or reset): settings to defaults, SIM locked again, busy phase restarts."""
        with self._lock:
            self._powered = True
            self._powered_at = time.monotonic()
            self._busy_until = self._powered_at + self.options.sim_busy_seconds
            self._sim_state = "SIM PIN" if self._pin else "READY"
            if self._pin_left <= 0:
                self._sim_state = "SIM PUK" if self._puk_left > 0 else "BLOCKED"
            self._hung = False
            self._radio_on = True
            self._line = bytearray()
            self._mode = "command"  # | "pdu-prompt" | "text-prompt"
            self._body = bytearray()
            self._prompt_arg: int | str = 0
            self._held_urcs: list[str] = []
            self._out.clear()
            self._delay_until = None
            self._reset_settings()
        self._flush_network()

    def power_off(self) -> None:
        """Power down (USB unplugged): output dropped, inbound SMS wait in the network."""
        with self._lock:
            self._powered = False
            self._out.clear()
            self._delay_until = None

    def _reset_settings(self) -> None:
        self._echo = self.options.echo
        self._cmee = 0
        self._cmgf = 0
        self._cscs = "GSM"
        self._creg_n = 0
        self._cgreg_n = 0
        self._cops_format = 0
        self._cnmi = list(self.options.cnmi)
        self._csmp = [17, 167, 0, 0]
        self._csdh = 0
        self._smsc = self.options.smsc
        self._mems = ["SM", "SM", "SM"]

    def fail_next_send(self, cms_code: int, count: int = 1, after: int = 0) -> None:
        """After ``after`` more successful ``AT+CMGS`` submissions, the next ``count`` end in
        ``+CMS ERROR: cms_code``."""
        with self._lock:
            self._fail_sends.extend([None] * after + [cms_code] * count)

    def hang(self, on: bool = True) -> None:
        """Stop answering anything (input is dropped) until ``hang(False)`` or a power cycle."""
        with self._lock:
            self._hung = on
            self._line.clear()
            if on:
                self._out.clear()
                self._delay_until = None
        logger.info("simulator: hang %s", "on" if on else "off")

    @property
    def hung(self) -> bool:
        return self._hung

    def set_latency(self, seconds: float, command: str | None = None) -> None:
        """Delay every answer by ``seconds``; with ``command`` (e.g. ``"+CMGS"``) only that one."""
        with self._lock:
            if command is None:
                self._latency = max(0.0, seconds)
            else:
                self._command_latency[command.upper()] = max(0.0, seconds)

    def set_signal(self, csq: int) -> None:
        with self._lock:
            self._signal = csq

    def set_registration(self, stat: int) -> None:
        """Change the network registration (+CREG stat); emits ``+CREG`` when enabled."""
        with self._lock:
            self._registration = stat
            if self._creg_n:
                self._urc(f"+CREG: {self._creg_body(self._creg_n)[2:]}")
        self._flush_network()

    def urc(self, line: str, *, mid_reply: bool = False) -> None:
        """Emit an unsolicited line (``RING``, ``^RSSI: 12`` ...). With ``mid_reply``
        it is inserted inside the next multi-line answer instead, like modems that
        interleave URCs with replies."""
        with self._lock:
            if mid_reply:
                self._mid_reply_urcs.append(line)
            else:
                self._urc(line)

    @property
    def pin_attempts_left(self) -> int:
        return self._pin_left

    @property
    def sim_state(self) -> str:
        """``READY``, ``SIM PIN``, ``SIM PUK``, ``BLOCKED`` or ``BUSY``."""
        with self._lock:
            if time.monotonic() < self._busy_until:
                return "BUSY"
            return self._sim_state

    def stored(self, storage: str = "SM") -> list[StoredSms]:
        """A copy of the messages in one storage, by index."""
        with self._lock:
            slots = self._storage[storage]
            return [StoredSms(s.index, s.stat, s.pdu) for _, s in sorted(slots.items())]

    # -- transport side

    def set_waker(self, waker: Callable[[], None] | None) -> None:
        """Called (from any thread) whenever output was queued."""
        with self._lock:
            self._waker = waker

    def read_output(self) -> tuple[bytes, float | None]:
        """Bytes ready to send now, and seconds until more become ready (None: nothing pending)."""
        with self._lock:
            out = bytearray()
            while self._out:
                item = self._out[0]
                if isinstance(item, float):
                    now = time.monotonic()
                    if self._delay_until is None:
                        self._delay_until = now + item
                    if now < self._delay_until:
                        return bytes(out), self._delay_until - now
                    self._delay_until = None
                else:
                    out += item
                self._out.popleft()
            return bytes(out), None

    def feed(self, data: bytes) -> None:
        """Process bytes the host wrote."""
        with self._lock:
            if not self._powered or self._hung:
                return
            for byte in data:
                if self._mode == "command":
                    self._feed_command(byte)
                else:
                    self._feed_prompt(byte)
        self._wake()

    def _wake(self) -> None:
        waker = self._waker
        if waker is not None:
            waker()

    def _emit(self, data: bytes | str) -> None:
        if not self._powered or self._hung:
            return
        self._out.append(data.encode("latin-1", "replace") if isinstance(data, str) else data)

    def _delay(self, seconds: float) -> None:
        if seconds > 0:
            self._out.append(float(seconds))

    def _urc(self, line: str) -> None:
        """Queue an unsolicited line; held back while a command runs or a ``> `` prompt is open."""
        if self._mode != "command" or self._executing:
            self._held_urcs.append(line)
            return
        self._emit(f"\r\n{line}\r\n")
        self._wake()

    # -- command mode

    def _feed_command(self, byte: int) -> None:
        if byte == ESC:
            self._line.clear()
            return
        if byte == 0x0A:  # LF after CR, ignored
            return
        if byte in (0x08, 0x7F):
            if self._line:
                self._line.pop()
            if self._echo:
                self._emit(bytes([byte]))
            return
        if self._echo:
            self._emit(bytes([byte]))
        if byte != 0x0D:
            if len(self._line) < _MAX_LINE:
                self._line.append(byte)
            return
        raw = self._line.decode("latin-1")
        self._line.clear()
        start = raw.upper().find("AT")
        if start < 0:
            return  # noise or an empty line: real modems say nothing
        self._execute(raw[start:].strip())

    def _execute(self, line: str) -> None:
        self.commands.append(line)
        logger.debug("simulator: command %s", _redact(line))
        lines: list[str] = []
        final: _Final | None = None
        prompt = False
        delay = self._latency
        self._executing = True
        self._pending_after = []
        try:
            for cmd in self._split_commands(line[2:]):
                name = _command_name(cmd)
                delay = max(delay, self._command_latency.get(name, 0.0))
                result = self._run_one(cmd)
                if result is _PROMPT:
                    prompt = True
                    break
                assert isinstance(result, list)
                lines.extend(result)
        except _Final as exc:
            final = exc
        except Exception:
            # A simulator bug must not kill the transport thread: answer like a confused modem.
            logger.exception("simulator: command %s crashed", _redact(line))
            final = _error()
        finally:
            self._executing = False
        self._delay(delay)
        if prompt:
            self._emit("\r\n> ")
            return
        self._respond(lines, final)
        self._release_held_urcs()
        self._run_after()

    def _respond(self, lines: list[str], final: _Final | None) -> None:
        if self._mid_reply_urcs and lines:
            lines = [lines[0], *self._mid_reply_urcs, *lines[1:]]
            self._mid_reply_urcs.clear()
        if lines:
            self._emit("\r\n" + "\r\n".join(lines) + "\r\n")
        self._emit(f"\r\n{self._final_text(final)}\r\n")

    def _final_text(self, final: _Final | None) -> str:
        if final is None:
            return "OK"
        if final.kind == "CME":
            if self._cmee == 0:
                return "ERROR"
            if self._cmee == 2:
                return f"+CME ERROR: {_CME_TEXT.get(final.code, 'unknown')}"
            return f"+CME ERROR: {final.code}"
        if final.kind == "CMS":
            if self._cmee == 2:
                return f"+CMS ERROR: {_CMS_TEXT.get(final.code, 'unknown error')}"
            return f"+CMS ERROR: {final.code}"
        return "ERROR"

    @staticmethod
    def _split_commands(body: str) -> Iterator[str]:
        """``E0+CMEE=1;+CREG?`` -> ``E0``, ``+CMEE=1``, ``+CREG?`` (V.250 command line syntax)."""
        i = 0
        if body == "":
            return
        while i < len(body):
            ch = body[i]
            if ch in " ;":
                i += 1
                continue
            if ch in "+^$%*#!":
                j = i + 1
                quoted = False
                while j < len(body) and (quoted or body[j] != ";"):
                    if body[j] == '"':
                        quoted = not quoted
                    j += 1
                yield body[i:j].strip()
                i = j + 1
                continue
            if ch == "&":
                j = i + 2
            elif ch.upper() == "S" and i + 1 < len(body) and body[i + 1].isdigit():
                j = i + 1
                while j < len(body) and body[j].isdigit():
                    j += 1
                if j < len(body) and body[j] in "?=":
                    j += 1
            elif ch.isalpha():
                j = i + 1
            else:
                raise _error()
            while j < len(body) and body[j].isdigit():
                j += 1
            yield body[i:j]
            i = j

    def _run_one(self, cmd: str) -> list[str] | object:
        if cmd[0] not in "+^$%*#!":
            return self._basic(cmd)
        name = _command_name(cmd)
        rest = cmd[len(name) :]
        if rest == "":
            kind, arg = "exec", ""
        elif rest == "?":
            kind, arg = "read", ""
        elif rest == "=?":
            kind, arg = "test", ""
        elif rest.startswith("="):
            kind, arg = "set", rest[1:]
        else:
            raise _error()
        handler = self._handlers.get(name)
        if handler is None:
            raise _error()
        return handler(kind, arg)

    def _basic(self, cmd: str) -> list[str]:
        letter = cmd[0].upper()
        value = cmd[1:]
        if letter == "E":
            if value not in ("", "0", "1"):
                raise _error()
            self._echo = value == "1"
            return []
        if letter == "Z" or cmd.upper() == "&F":
            self._reset_settings()
            return []
        if letter == "I":
            o = self.options
            return [
                f"Manufacturer: {o.manufacturer}",
                f"Model: {o.model}",
                f"Revision: {o.revision}",
                f"IMEI: {o.imei}",
                "+GCAP: +CGSM",
            ]
        if letter == "V":
            if value not in ("", "1"):
                raise _error()  # numeric result codes are not simulated
            return []
        if letter in "QXLMH&":
            return []
        if letter == "S":
            if value.endswith("?"):
                return ["013" if value.startswith("3") else "000"]
            return []
        raise _error()

    # -- SIM checks

    def _sim_ready(self) -> bool:
        return self.sim_state == "READY"

    def _require_sim(self, *, sms: bool = False) -> None:
        state = self.sim_state
        if state == "READY":
            return
        if sms:
            code = {"BUSY": 314, "SIM PIN": 311, "SIM PUK": 316}.get(state, 310)
            raise _cms(code)
        raise _cme({"BUSY": 14, "SIM PIN": 11, "SIM PUK": 12}.get(state, 13))

    def _reg_stat(self) -> int:
        if not self._radio_on or not self._sim_ready():
            return 0
        return self._registration

    def _reachable(self) -> bool:
        return self._powered and self._reg_stat() in (1, 5)

    # -- network side (inbound)

    def _receive_from_network(self, pdus: list[str]) -> None:
        with self._lock:
            if not self._reachable() or not self._store_message(pdus):
                self.network._hold(pdus)

    def _flush_network(self) -> None:
        with self._lock:
            if not self._reachable():
                return
            waiting = self.network._take_undelivered()
            for i, pdus in enumerate(waiting):
                if not self._store_message(pdus):
                    self.network._return_undelivered(waiting[i:])
                    break

    def _store_message(self, pdus: list[str]) -> bool:
        """Store every part in the receive storage (mem3), with indications. False if full."""
        mode, mt = self._cnmi[0], self._cnmi[1]
        if mt in (2, 3) and mode in (1, 2, 3):
            for pdu in pdus:  # routed straight to the host, not stored
                self._urc_cmt(pdu)
            return True
        mem = self._mems[2]
        slots = self._storage[mem]
        free = [
            i
            for i in range(self.options.first_index, self.options.first_index + self.options.storage_size)
            if i not in slots
        ]
        if len(free) < len(pdus):
            return False
        for pdu, index in zip(pdus, free, strict=False):
            slots[index] = StoredSms(index, 0, pdu)
            if mt == 1 and mode in (1, 2, 3):
                self._urc(f'+CMTI: "{mem}",{index}')
        return True

    def _urc_cmt(self, pdu: str) -> None:
        if self._cmgf == 0:
            self._urc(f"+CMT: ,{_tpdu_len(pdu)}\r\n{pdu}")
            return
        fields = self._text_fields(pdu)
        if fields is None:
            return
        sender, text, ts = fields
        self._urc(f'+CMT: "{self._enc(sender)}",,"{ts}"\r\n{text}')

    # -- text-mode helpers

    def _enc(self, text: str) -> str:
        if self._cscs == "UCS2":
            return text.encode("utf-16-be").hex().upper()
        return text

    def _dec(self, text: str) -> str:
        if self._cscs == "UCS2":
            try:
                return bytes.fromhex(text).decode("utf-16-be")
            except ValueError:
                raise _cms(305) from None
        return text

    def _text_fields(self, pdu: str) -> tuple[str, str, str] | None:
        """(sender, text as text mode shows it, scts) of a stored DELIVER, or None."""
        try:
            msg = decode_pdu(pdu, smsc=True)
        except PduError:
            return None
        if not isinstance(msg, Deliver):
            return None
        text = msg.text
        if getattr(msg, "encoding", "gsm7") != "gsm7" and self._cscs != "UCS2":
            text = text.encode("utf-16-be").hex().upper()  # modems show non-GSM data as hex
        else:
            text = self._enc(text)
        return msg.sender, text, _scts(msg.timestamp)

    # -- handlers

    def _build_handlers(self) -> dict[str, _Handler]:
        simple = {
            "+CGMI": lambda: self.options.manufacturer,
            "+GMI": lambda: self.options.manufacturer,
            "+CGMM": lambda: self.options.model,
            "+GMM": lambda: self.options.model,
            "+CGMR": lambda: self.options.revision,
            "+GMR": lambda: self.options.revision,
            "+CGSN": lambda: self.options.imei,
            "+GSN": lambda: self.options.imei,
        }
        handlers: dict[str, _Handler] = {}
        for name, value in simple.items():
            handlers[name] = self._identity(value)
        handlers.update(
            {
                "+CIMI": self._h_cimi,
                "+CMEE": self._h_cmee,
                "+CPIN": self._h_cpin,
                "+CPINR": self._h_cpinr,
                "+CREG": self._h_creg,
                "+CGREG": self._h_cgreg,
                "+CEREG": self._h_cgreg,
                "+CGATT": self._h_cgatt,
                "+CSQ": self._h_csq,
                "+COPS": self._h_cops,
                "+CFUN": self._h_cfun,
                "+CSCA": self._h_csca,
                "+CSCS": self._h_cscs,
                "+CPMS": self._h_cpms,
                "+CNMI": self._h_cnmi,
                "+CMGF": self._h_cmgf,
                "+CMGS": self._h_cmgs,
                "+CMGL": self._h_cmgl,
                "+CMGR": self._h_cmgr,
                "+CMGD": self._h_cmgd,
                "+CSMP": self._h_csmp,
                "+CSDH": self._h_csdh,
                "+CSMS": self._h_csms,
                "+CNMA": lambda kind, arg: [],
                "+GCAP": lambda kind, arg: ["+GCAP: +CGSM"],
                "+CCLK": self._h_cclk,
            }
        )
        return handlers

    def _identity(self, value: Callable[[], str]) -> _Handler:
        def handler(kind: str, arg: str) -> list[str]:
            if kind == "test":
                return []
            if kind != "exec":
                raise _error()
            return [value()]

        return handler

    def _h_cimi(self, kind: str, arg: str) -> list[str]:
        if kind == "test":
            return []
        if kind != "exec":
            raise _error()
        self._require_sim()
        return [self.options.imsi]

    def _h_cmee(self, kind: str, arg: str) -> list[str]:
        if kind == "read":
            return [f"+CMEE: {self._cmee}"]
        if kind == "test":
            return ["+CMEE: (0-2)"]
        value = _int_arg(split_args(arg), 0, 0) if kind == "set" else 0
        if value not in (0, 1, 2):
            raise _error()
        self._cmee = value
        return []

    def _h_cpin(self, kind: str, arg: str) -> list[str]:
        if kind == "test":
            return []
        state = self.sim_state
        if kind == "read":
            if state == "BUSY":
                raise _cme(14)
            if state == "BLOCKED":
                raise _cme(13)
            return [f"+CPIN: {state}"]
        if kind != "set":
            raise _error()
        args = split_args(arg)
        if state == "BUSY":
            raise _cme(14)
        if state == "BLOCKED":
            raise _cme(13)
        if state == "READY":
            raise _cme(3)
        if state == "SIM PIN":
            if args[0] != self._pin:
                self._pin_left -= 1
                logger.info("simulator: wrong PIN, %d attempt(s) left", self._pin_left)
                if self._pin_left <= 0:
                    self._sim_state = "SIM PUK"
                raise _cme(16)
            self._pin_left = self.options.pin_attempts
        else:  # SIM PUK: AT+CPIN="<puk>","<new pin>"
            if len(args) < 2 or not args[1]:
                raise _cme(12)
            if args[0] != self.options.puk:
                self._puk_left -= 1
                if self._puk_left <= 0:
                    self._sim_state = "BLOCKED"
                raise _cme(16)
            self._pin = args[1]
            self._pin_left = self.options.pin_attempts
            self._puk_left = 10
        self._sim_state = "READY"
        self._busy_until = time.monotonic() + self.options.busy_after_pin_seconds
        if self._creg_n:
            self._urc(f"+CREG: {self._creg_body(self._creg_n)[2:]}")
        self._after_reply(self._flush_network)
        return []

    def _after_reply(self, fn: Callable[[], None]) -> None:
        # Runs once the current command's answer is queued (URCs must not land inside it).
        self._pending_after.append(fn)

    def _h_cpinr(self, kind: str, arg: str) -> list[str]:
        if kind == "test":
            return []
        return [
            f"+CPINR: SIM PIN,{self._pin_left},{self.options.pin_attempts}",
            f"+CPINR: SIM PUK,{self._puk_left},10",
        ]

    def _creg_body(self, n: int) -> str:
        stat = self._reg_stat()
        body = f"{n},{stat}"
        if n == 2 and stat in (1, 5):
            body += ',"1A2B","00003C4D"'
        return body

    def _h_creg(self, kind: str, arg: str) -> list[str]:
        if kind == "test":
            return ["+CREG: (0-2)"]
        if kind == "read":
            return [f"+CREG: {self._creg_body(self._creg_n)}"]
        if kind == "set":
            value = _int_arg(split_args(arg), 0, 0)
            if value not in (0, 1, 2):
                raise _error()
            self._creg_n = value
            return []
        raise _error()

    def _h_cgreg(self, kind: str, arg: str) -> list[str]:
        if kind == "test":
            return ["+CGREG: (0-2)"]
        if kind == "read":
            return [f"+CGREG: {self._creg_body(self._cgreg_n)}"]
        if kind == "set":
            value = _int_arg(split_args(arg), 0, 0)
            if value not in (0, 1, 2):
                raise _error()
            self._cgreg_n = value
            return []
        raise _error()

    def _h_cgatt(self, kind: str, arg: str) -> list[str]:
        if kind == "read":
            return [f"+CGATT: {1 if self._reg_stat() in (1, 5) else 0}"]
        if kind == "test":
            return ["+CGATT: (0,1)"]
        if kind == "set":
            return []
        raise _error()

    def _h_csq(self, kind: str, arg: str) -> list[str]:
        if kind == "test":
            return ["+CSQ: (0-31,99),(0-7,99)"]
        if kind != "exec":
            raise _error()
        rssi = self._signal if self._radio_on else 99
        return [f"+CSQ: {rssi},99"]

    def _h_cops(self, kind: str, arg: str) -> list[str]:
        o = self.options
        if kind == "test":
            return [f'+COPS: (2,"{o.operator}","{o.operator_short}","{o.operator_numeric}",0),,(0-4),(0-2)']
        if kind == "read":
            if self._reg_stat() not in (1, 5):
                return ["+COPS: 0"]
            name = (o.operator, o.operator_short, o.operator_numeric)[self._cops_format]
            return [f'+COPS: 0,{self._cops_format},"{self._enc(name)}",0']
        if kind != "set":
            raise _error()
        args = split_args(arg)
        mode = _int_arg(args, 0, 0)
        if mode == 3:
            fmt = _int_arg(args, 1, 0)
            if fmt not in (0, 1, 2):
                raise _error()
            self._cops_format = fmt
            return []
        if mode in (0, 1, 2, 4):
            if mode == 2:
                self._registration = 0
            elif mode == 0 and self._registration == 0:
                self._registration = self.options.registration
            return []
        raise _error()

    def _h_cfun(self, kind: str, arg: str) -> list[str]:
        if kind == "read":
            return [f"+CFUN: {1 if self._radio_on else 4}"]
        if kind == "test":
            return ["+CFUN: (0,1,4),(0-1)"]
        if kind != "set":
            raise _error()
        fun = _int_arg(split_args(arg), 0, 1)
        if fun not in (0, 1, 4):
            raise _error()
        self._radio_on = fun == 1
        self._after_reply(self._flush_network)
        return []

    def _h_csca(self, kind: str, arg: str) -> list[str]:
        if kind == "test":
            return []
        self._require_sim()
        if kind == "read":
            kind_of_number = 145 if self._smsc.startswith("+") else 129
            return [f'+CSCA: "{self._enc(self._smsc)}",{kind_of_number}']
        if kind == "set":
            args = split_args(arg)
            number = self._dec(args[0])
            if not number or not all(c.isdigit() or c == "+" for c in number):
                raise _error()
            self._smsc = number
            return []
        raise _error()

    def _h_cscs(self, kind: str, arg: str) -> list[str]:
        if kind == "test":
            return ['+CSCS: ("GSM","IRA","8859-1","UCS2")']
        if kind == "read":
            return [f'+CSCS: "{self._cscs}"']
        if kind == "set":
            value = split_args(arg)[0].upper()
            if value not in ("GSM", "IRA", "8859-1", "UCS2"):
                raise _error()
            self._cscs = value
            return []
        raise _error()

    def _cpms_counts(self) -> list[str]:
        return [f"{len(self._storage[m])},{self.options.storage_size}" for m in self._mems]

    def _h_cpms(self, kind: str, arg: str) -> list[str]:
        if kind == "test":
            mems = ",".join(f'"{m}"' for m in _STORAGES)
            return [f"+CPMS: ({mems}),({mems}),({mems})"]
        self._require_sim(sms=True)
        if kind == "read":
            fields = [f'"{m}",{c}' for m, c in zip(self._mems, self._cpms_counts(), strict=True)]
            return ["+CPMS: " + ",".join(fields)]
        if kind != "set":
            raise _error()
        args = [a.upper() for a in split_args(arg)]
        if not args or len(args) > 3 or any(a not in _STORAGES for a in args if a):
            raise _cms(302)
        for i, value in enumerate(args):
            if value:
                self._mems[i] = value
        return ["+CPMS: " + ",".join(self._cpms_counts())]

    def _h_cnmi(self, kind: str, arg: str) -> list[str]:
        if kind == "test":
            return ["+CNMI: (0-2),(0-3),(0,2),(0-2),(0,1)"]
        if kind == "read":
            return ["+CNMI: " + ",".join(str(v) for v in self._cnmi)]
        if kind != "set":
            raise _error()
        args = split_args(arg)
        values = [_int_arg(args, i, self._cnmi[i] if i else 0) for i in range(min(len(args), 5))]
        limits = (2, 3, 3, 2, 1)
        if any(v < 0 or v > limits[i] for i, v in enumerate(values)):
            raise _cms(303)
        self._cnmi[: len(values)] = values
        return []

    def _h_cmgf(self, kind: str, arg: str) -> list[str]:
        if kind == "test":
            return ["+CMGF: (0,1)"]
        if kind == "read":
            return [f"+CMGF: {self._cmgf}"]
        if kind == "set":
            value = _int_arg(split_args(arg), 0, 0)
            if value not in (0, 1):
                raise _error()
            if self.options.refuse_pdu_mode:
                if value == 0:
                    raise _error()
                return []  # "accepted", but the firmware keeps answering in PDU format
            self._cmgf = value
            return []
        raise _error()

    def _h_csmp(self, kind: str, arg: str) -> list[str]:
        if kind == "read":
            return ["+CSMP: " + ",".join(str(v) for v in self._csmp)]
        if kind == "test":
            return []
        if kind == "set":
            args = split_args(arg)
            for i in range(min(len(args), 4)):
                if args[i]:
                    self._csmp[i] = _int_arg(args, i)
            return []
        raise _error()

    def _h_csdh(self, kind: str, arg: str) -> list[str]:
        if kind == "read":
            return [f"+CSDH: {self._csdh}"]
        if kind == "test":
            return ["+CSDH: (0,1)"]
        if kind == "set":
            self._csdh = 1 if _int_arg(split_args(arg), 0, 0) else 0
            return []
        raise _error()

    def _h_csms(self, kind: str, arg: str) -> list[str]:
        if kind == "read":
            return ["+CSMS: 0,1,1,1"]
        if kind == "test":
            return ["+CSMS: (0,1)"]
        if kind == "set":
            return ["+CSMS: 1,1,1"]
        raise _error()

    def _h_cclk(self, kind: str, arg: str) -> list[str]:
        if kind == "read":
            return [f'+CCLK: "{_scts(_utcnow())}"']
        if kind in ("set", "test"):
            return []
        raise _error()

    # -- SMS commands

    def _h_cmgs(self, kind: str, arg: str) -> list[str] | object:
        if kind == "test":
            return []
        if kind != "set":
            raise _error()
        self._require_sim(sms=True)
        args = split_args(arg)
        if self._cmgf == 0:
            length = _int_arg(args, 0)
            if not 1 <= length <= 164:
                raise _cms(304)
            self._mode = "pdu-prompt"
            self._prompt_arg = length
        else:
            number = self._dec(args[0]) if args and args[0] else ""
            if not number:
                raise _cms(305)
            self._mode = "text-prompt"
            self._prompt_arg = number
        self._body.clear()
        return _PROMPT

    def _storage_slot(self, arg: str) -> tuple[dict[int, StoredSms], int]:
        self._require_sim(sms=True)
        index = _int_arg(split_args(arg), 0)
        first = self.options.first_index
        if not first <= index < first + self.options.storage_size:
            raise _cms(321)
        return self._storage[self._mems[0]], index

    def _h_cmgr(self, kind: str, arg: str) -> list[str]:
        if kind == "test":
            return []
        if kind != "set":
            raise _error()
        slots, index = self._storage_slot(arg)
        sms = slots.get(index)
        if sms is None:
            return []  # an empty slot: OK with nothing, as most modems answer
        lines = self._format_stored(sms, listing=False)
        if sms.stat == 0:
            sms.stat = 1
        return lines

    def _h_cmgl(self, kind: str, arg: str) -> list[str]:
        if kind == "test":
            if self._cmgf == 0:
                return ["+CMGL: (0-4)"]
            return ['+CMGL: ("REC UNREAD","REC READ","STO UNSENT","STO SENT","ALL")']
        self._require_sim(sms=True)
        if kind == "exec":
            wanted = 0
        elif kind == "set":
            raw = split_args(arg)[0]
            if self._cmgf == 0:
                try:
                    wanted = int(raw)
                except ValueError:
                    raise _cms(304) from None
            else:
                names = [*_STAT_TEXT, "ALL"]
                if raw.upper() not in names:
                    raise _cms(305)
                wanted = names.index(raw.upper())
            if not 0 <= wanted <= 4:
                raise _cms(304 if self._cmgf == 0 else 305)
        else:
            raise _error()
        lines: list[str] = []
        for _, sms in sorted(self._storage[self._mems[0]].items()):
            if wanted == 4 or sms.stat == wanted:
                lines.extend(self._format_stored(sms, listing=True))
                if sms.stat == 0:
                    sms.stat = 1
        return lines

    def _format_stored(self, sms: StoredSms, *, listing: bool) -> list[str]:
        head = f"+CMGL: {sms.index}," if listing else "+CMGR: "
        if self._cmgf == 0:
            return [f"{head}{sms.stat},,{_tpdu_len(sms.pdu)}", sms.pdu]
        fields = self._text_fields(sms.pdu)
        if fields is None:  # not a DELIVER this firmware can render: show it raw
            return [f'{head}"{_STAT_TEXT[sms.stat]}",,,', sms.pdu]
        sender, text, ts = fields
        kind_of_number = 145 if sender.startswith("+") else 129
        extra = f",{kind_of_number},{len(text)}" if self._csdh else ""
        return [f'{head}"{_STAT_TEXT[sms.stat]}","{self._enc(sender)}",,"{ts}"{extra}', text]

    def _h_cmgd(self, kind: str, arg: str) -> list[str]:
        if kind == "test":
            first = self.options.first_index
            return [f"+CMGD: ({first}-{first + self.options.storage_size - 1}),(0-4)"]
        if kind != "set":
            raise _error()
        slots, index = self._storage_slot(arg)
        args = split_args(arg)
        flag = _int_arg(args, 1, 0)
        if flag == 0:
            slots.pop(index, None)
        elif flag == 4:
            slots.clear()
        elif flag in (1, 2, 3):
            doomed = ({1}, {1, 3}, {1, 2, 3})[flag - 1]
            for i in [i for i, s in slots.items() if s.stat in doomed]:
                del slots[i]
        else:
            raise _cms(304)
        self._after_reply(self._flush_network)  # room again: the SMSC retries
        return []

    # -- prompt mode

    def _feed_prompt(self, byte: int) -> None:
        if byte == ESC:
            self._mode = "command"
            self._body.clear()
            if self.options.esc_ok:
                self._emit("\r\nOK\r\n")
            self._release_held_urcs()
            return
        if byte == CTRL_Z:
            self._submit_body()
            return
        if self._mode == "text-prompt" and byte == 0x0D:
            self._body.append(0x0A)
            self._emit("\r\n> ")
            return
        if byte == 0x0A:
            return
        if len(self._body) >= _MAX_BODY:
            self._mode = "command"
            self._body.clear()
            self._respond([], _cms(304))
            self._release_held_urcs()
            return
        self._body.append(byte)
        if self._echo:
            self._emit(bytes([byte]))

    def _release_held_urcs(self) -> None:
        held, self._held_urcs = self._held_urcs, []
        for line in held:
            self._urc(line)

    def _submit_body(self) -> None:
        mode, arg = self._mode, self._prompt_arg
        body = self._body.decode("latin-1")
        self._mode = "command"
        self._body.clear()
        self._pending_after = []
        delay = max(self._latency, self._command_latency.get("+CMGS", 0.0))
        report: str | None = None
        failure: _Final | None = None
        try:
            mr, report = self._submit(mode, arg, body)
        except _Final as exc:
            failure = exc
        except Exception:
            logger.exception("simulator: submission crashed")  # our bug: answer, don't die
            failure = _cms(500)
        self._delay(delay)
        if failure is not None:
            self._respond([], failure)
        else:
            self._respond([f"+CMGS: {mr}"], None)
            if report is not None:
                self._urc(report)
        self._release_held_urcs()
        self._run_after()

    def _submit(self, mode: str, arg: int | str, body: str) -> tuple[int, str | None]:
        """Validate and hand one submission to the network: (message ref, +CDS URC or None)."""
        submit = self._parse_submit(body, arg) if mode == "pdu-prompt" else None
        code = self._fail_sends.popleft() if self._fail_sends else None
        if code is not None:
            logger.info("simulator: injected +CMS ERROR %d", code)
            raise _cms(code)
        if self._reg_stat() not in (1, 5):
            raise _cms(331)
        mr = self._next_mr
        self._next_mr = (self._next_mr + 1) % 256
        if submit is not None:
            self.network._submit_pdu(submit, mr, "".join(body.split()).upper())
            if submit.status_report_request and self._cnmi[3] in (1, 2):
                return mr, self._status_report(mr, submit.recipient)
            return mr, None
        assert isinstance(arg, str)
        self.network._submit_text(arg, self._dec(body) if self._cscs == "UCS2" else body, mr)
        if self._csmp[0] & 0x20 and self._cnmi[3] in (1, 2):
            return mr, self._status_report(mr, arg)
        return mr, None

    @staticmethod
    def _parse_submit(body: str, length: int | str) -> Submit:
        """The PDU typed at the prompt, checked against ``AT+CMGS=<length>`` like modems do."""
        hex_pdu = "".join(body.split())
        try:
            raw = bytes.fromhex(hex_pdu)
        except ValueError:
            raise _cms(304) from None
        if not raw or len(raw) - raw[0] - 1 != length:
            raise _cms(304)
        try:
            submit = decode_pdu(raw, smsc=True)
        except PduError:
            raise _cms(304) from None
        if not isinstance(submit, Submit):
            raise _cms(304)
        return submit

    def _status_report(self, mr: int, recipient: str) -> str | None:
        now = _utcnow().replace(microsecond=0)
        try:
            pdu = encode_status_report(
                mr, recipient, sc_timestamp=now, discharge_time=now, status=0, smsc=self.network.smsc
            )
        except PduError:
            return None
        if self._cnmi[3] == 2:
            slots = self._storage[self._mems[2]]
            first = self.options.first_index
            free = [i for i in range(first, first + self.options.storage_size) if i not in slots]
            if not free:
                return None
            slots[free[0]] = StoredSms(free[0], 0, pdu)
            return f'+CDSI: "{self._mems[2]}",{free[0]}'
        if self._cmgf == 0:
            return f"+CDS: {_tpdu_len(pdu)}\r\n{pdu}"
        number = self._enc(recipient)
        return f'+CDS: 6,{mr},"{number}",145,"{_scts(now)}","{_scts(now)}",0'

    def _run_after(self) -> None:
        pending, self._pending_after = self._pending_after, []
        for fn in pending:
            fn()


def _command_name(cmd: str) -> str:
    """``+CMGS=23`` -> ``+CMGS``; ``E0`` -> ``E``."""
    if cmd[0] not in "+^$%*#!":
        return cmd[:1].upper()
    i = 1
    while i < len(cmd) and (cmd[i].isalnum() or cmd[i] == "_"):
        i += 1
    return cmd[:i].upper()


def _redact(line: str) -> str:
    upper = line.upper()
    if upper.startswith("AT+CPIN=") or upper.startswith('AT+CMGS="'):
        return line.split("=", 1)[0] + "=***"
    return line


def _tpdu_len(pdu: str) -> int:
    """Octets after the SMSC field (what +CMGS/+CMGL/+CMGR count)."""
    try:
        raw = bytes.fromhex(pdu)
    except ValueError:
        return len(pdu) // 2
    if not raw:
        return 0
    return max(0, len(raw) - raw[0] - 1)


def _scts(when: dt.datetime) -> str:
    """``yy/MM/dd,hh:mm:ss±zz`` (zz in quarter hours), as text mode shows timestamps."""
    offset = when.utcoffset() or dt.timedelta(0)
    quarters = int(offset.total_seconds() // 900)
    sign = "-" if quarters < 0 else "+"
    return when.strftime("%y/%m/%d,%H:%M:%S") + f"{sign}{abs(quarters):02d}"


# --------------------------------------------------------------------------- transports


class _Transport:
    """Serves one :class:`Simulator` from one background thread (select loop)."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._wake_r = -1
        self._wake_w = -1
        self._state_lock = threading.Lock()
        self._started = False
        self._plugged = False

    # -- public lifecycle

    def start(self) -> _Transport:
        with self._state_lock:
            if not self._started:
                self._started = True
                self._plug()
        return self

    def unplug(self) -> None:
        """Like pulling the USB cable: the port vanishes and the modem loses power."""
        with self._state_lock:
            if self._plugged:
                self.sim.power_off()
                self._unplug()
                logger.info("simulator: unplugged")

    def replug(self) -> None:
        """The port comes back (a fresh power-up: PIN and SIM-busy phase again, storage kept)."""
        with self._state_lock:
            if self._started and not self._plugged:
                self._plug()
                self.sim.power_on()
                logger.info("simulator: replugged")

    def stop(self) -> None:
        """Idempotent: stops the thread and closes every descriptor."""
        with self._state_lock:
            if self._plugged:
                self._unplug()
            self._started = False

    @property
    def plugged(self) -> bool:
        return self._plugged

    def __enter__(self) -> _Transport:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- plumbing

    def _plug(self) -> None:
        self._open_endpoint()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._stopping = False
        self.sim.set_waker(self._wake)
        self._thread = threading.Thread(target=self._run, name=type(self).__name__, daemon=True)
        self._thread.start()
        self._plugged = True

    def _unplug(self) -> None:
        self._stopping = True
        self._wake()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.sim.set_waker(None)
        os.close(self._wake_r)
        os.close(self._wake_w)
        self._wake_r = self._wake_w = -1
        self._close_endpoint()
        self._plugged = False

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # pipe full (already awake) or closed (stopping)
            os.write(self._wake_w, b"\0")

    def _run(self) -> None:
        pending = bytearray()
        try:
            while not self._stopping:
                data, wait = self.sim.read_output()
                out_fd = self._out_fd()
                if data and out_fd is not None and len(pending) < _MAX_PENDING_WRITE:
                    pending += data
                if out_fd is None:
                    pending.clear()
                readers = [self._wake_r, *self._in_fds()]
                writers = [out_fd] if pending and out_fd is not None else []
                readable, writable, _ = select.select(readers, writers, [], wait)
                if self._wake_r in readable:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_r, 4096)
                if writable and pending:
                    sent = self._write(bytes(pending))
                    del pending[:sent]
                for fd in readable:
                    if fd != self._wake_r:
                        self._on_readable(fd)
        except Exception:
            logger.exception("simulator: transport thread crashed")

    # -- per-transport hooks

    def _open_endpoint(self) -> None:
        raise NotImplementedError

    def _close_endpoint(self) -> None:
        raise NotImplementedError

    def _in_fds(self) -> list[int]:
        raise NotImplementedError

    def _out_fd(self) -> int | None:
        raise NotImplementedError

    def _on_readable(self, fd: int) -> None:
        raise NotImplementedError

    def _write(self, data: bytes) -> int:
        raise NotImplementedError


class PtyModem(_Transport):
    """Serves a simulator on a pseudo-terminal. Open :attr:`device` with pyserial or gammu.

    We keep the slave side open ourselves so hosts can open and close the
    device repeatedly (and reads on the master never see EIO between hosts).
    """

    def __init__(self, sim: Simulator, link: str | None = None) -> None:
        super().__init__(sim)
        self.link = link
        self._master = -1
        self._slave = -1
        self._tty_name = ""

    @property
    def device(self) -> str:
        """The path a driver opens: the link if one was given, else the slave tty."""
        return self.link if self.link else self._tty_name

    def start(self) -> PtyModem:
        super().start()
        return self

    def __enter__(self) -> PtyModem:
        return self.start()

    def _open_endpoint(self) -> None:
        self._master, self._slave = pty.openpty()
        # Raw, so the line discipline neither echoes our output back to us nor rewrites CR/LF.
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self._tty_name = os.ttyname(self._slave)
        if self.link:
            tmp = f"{self.link}.tmp{os.getpid()}"
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            os.symlink(self._tty_name, tmp)
            os.replace(tmp, self.link)

    def _close_endpoint(self) -> None:
        if self.link:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.link)
        for fd in (self._master, self._slave):
            if fd >= 0:
                os.close(fd)
        self._master = self._slave = -1

    def _in_fds(self) -> list[int]:
        return [self._master]

    def _out_fd(self) -> int | None:
        return self._master

    def _on_readable(self, fd: int) -> None:
        try:
            data = os.read(self._master, 4096)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno != errno.EIO:
                raise
            return
        self.sim.feed(data)

    def _write(self, data: bytes) -> int:
        try:
            return os.write(self._master, data)
        except BlockingIOError:
            return 0


class TcpModem(_Transport):
    """Serves a simulator on a TCP port (``socket://host:port`` for pyserial), one host at a time.

    A new connection replaces the previous one, like ser2net with a stale
    client. ``unplug`` drops the connection and refuses new ones until ``replug``.
    """

    def __init__(self, sim: Simulator, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(sim)
        self.host = host
        self.port = port
        self._listener: socket.socket | None = None
        self._client: socket.socket | None = None

    @property
    def url(self) -> str:
        return f"socket://{self.host}:{self.port}"

    @property
    def device(self) -> str:
        return self.url

    def start(self) -> TcpModem:
        super().start()
        return self

    def __enter__(self) -> TcpModem:
        return self.start()

    def _open_endpoint(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self.host, self.port))
            listener.listen(4)
            listener.setblocking(False)
        except OSError:
            listener.close()
            raise
        self.port = listener.getsockname()[1]
        self._listener = listener

    def _close_endpoint(self) -> None:
        self._drop_client()
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def _drop_client(self) -> None:
        if self._client is not None:
            with contextlib.suppress(OSError):
                self._client.shutdown(socket.SHUT_RDWR)
            self._client.close()
            self._client = None

    def _in_fds(self) -> list[int]:
        fds = [self._listener.fileno()] if self._listener is not None else []
        if self._client is not None:
            fds.append(self._client.fileno())
        return fds

    def _out_fd(self) -> int | None:
        return self._client.fileno() if self._client is not None else None

    def _on_readable(self, fd: int) -> None:
        if self._listener is not None and fd == self._listener.fileno():
            try:
                conn, _ = self._listener.accept()
            except BlockingIOError:
                return
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._drop_client()
            self._client = conn
            return
        if self._client is None or fd != self._client.fileno():
            return
        try:
            data = self._client.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._drop_client()
            return
        self.sim.feed(data)

    def _write(self, data: bytes) -> int:
        if self._client is None:
            return len(data)
        try:
            return self._client.send(data)
        except BlockingIOError:
            return 0
        except OSError:
            self._drop_client()
            return len(data)


# --------------------------------------------------------------------------- control socket


class ControlServer:
    """JSON-lines control socket on loopback, so out-of-process tests can drive the network.

    One request per line, one reply line each, always with ``"ok"``.
    """

    def __init__(self, sim: Simulator, transport: _Transport, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sim = sim
        self.transport = transport
        self.host = host
        self.port = port
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._clients: dict[socket.socket, threading.Thread] = {}
        self._lock = threading.Lock()
        self._stopping = False

    def start(self) -> ControlServer:
        listener = socket.create_server((self.host, self.port))
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._thread = threading.Thread(target=self._accept_loop, name="sim-control", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Idempotent: closes the listener and every client, joins the threads."""
        self._stopping = True
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._lock:
            clients = dict(self._clients)
        for conn, thread in clients.items():
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            thread.join(timeout=5)

    def __enter__(self) -> ControlServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _accept_loop(self) -> None:
        listener = self._listener
        assert listener is not None
        while not self._stopping:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(conn,), name="sim-control-client", daemon=True)
            with self._lock:
                self._clients[conn] = thread
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            with conn, conn.makefile("rwb") as stream:
                for raw in stream:
                    if len(raw) > 1 << 20:
                        reply: dict[str, Any] = {"ok": False, "error": "line too long"}
                    else:
                        reply = self.handle_line(raw)
                    stream.write(json.dumps(reply).encode() + b"\n")
                    stream.flush()
        except OSError:
            pass
        finally:
            with self._lock:
                self._clients.pop(conn, None)

    def handle_line(self, raw: bytes) -> dict[str, Any]:
        """Answer one request line. Never raises."""
        try:
            request = json.loads(raw)
        except ValueError:
            return {"ok": False, "error": "not JSON"}
        if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
            return {"ok": False, "error": 'expected an object with "cmd"'}
        try:
            return self._dispatch(request)
        except (KeyError, TypeError, ValueError) as exc:
            return {"ok": False, "error": f"bad request: {exc.__class__.__name__}: {exc}"}
        except TimeoutError as exc:
            return {"ok": False, "error": str(exc)}
        except Exception as exc:
            logger.exception("simulator control: %s failed", request.get("cmd"))
            return {"ok": False, "error": f"internal error: {exc.__class__.__name__}"}

    def _dispatch(self, req: dict[str, Any]) -> dict[str, Any]:
        cmd = req["cmd"]
        sim, network = self.sim, self.sim.network
        if cmd == "inject":
            if "pdu" in req:
                network.inject_pdu(_str(req["pdu"]))
            else:
                network.inject(_str(req["from"]), _str(req["text"]))
        elif cmd == "sent":
            return {"ok": True, "sent": [s.to_json() for s in network.sent()]}
        elif cmd == "wait_sent":
            timeout = min(float(req.get("timeout", 10.0)), 120.0)
            got = network.wait_for_sent(int(req["count"]), timeout)
            return {"ok": True, "sent": [s.to_json() for s in got]}
        elif cmd == "clear_sent":
            network.clear_sent()
        elif cmd == "fail_next_send":
            sim.fail_next_send(int(req["code"]), int(req.get("count", 1)), int(req.get("after", 0)))
        elif cmd == "latency":
            command = req.get("command")
            sim.set_latency(float(req["seconds"]), _str(command) if command is not None else None)
        elif cmd == "hang":
            sim.hang(bool(req.get("on", True)))
        elif cmd == "unplug":
            self.transport.unplug()
        elif cmd == "replug":
            self.transport.replug()
        elif cmd == "signal":
            sim.set_signal(int(req["csq"]))
        elif cmd == "registration":
            sim.set_registration(int(req["stat"]))
        elif cmd == "urc":
            sim.urc(_str(req["line"]), mid_reply=bool(req.get("mid_reply", False)))
        elif cmd == "stored":
            return {
                "ok": True,
                "stored": [{"index": s.index, "stat": s.stat, "pdu": s.pdu} for s in sim.stored()],
            }
        elif cmd == "status":
            return {
                "ok": True,
                "device": getattr(self.transport, "device", ""),
                "plugged": self.transport.plugged,
                "sim": sim.sim_state,
                "hung": sim.hung,
                "undelivered": network.undelivered(),
                "sent": len(network.sent()),
            }
        else:
            return {"ok": False, "error": f"unknown cmd {cmd[:40]!r}"}
        return {"ok": True}


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError("expected a string")
    return value


class SimulatorControlError(Exception):
    """The control socket answered ``{"ok": false}``."""


class SimulatorControl:
    """Client of :class:`ControlServer` (for tests that run the simulator in another process)."""

    def __init__(self, host: str, port: int, *, timeout: float = 30.0) -> None:
        self._sock = socket.create_connection((host, port), timeout=timeout)
        self._stream = self._sock.makefile("rwb")

    def request(self, cmd: str, **fields: Any) -> dict[str, Any]:
        """Send one command; returns the reply, raises :class:`SimulatorControlError` if not ok."""
        self._stream.write(json.dumps({"cmd": cmd, **fields}).encode() + b"\n")
        self._stream.flush()
        line = self._stream.readline()
        if not line:
            raise SimulatorControlError("control socket closed")
        reply: dict[str, Any] = json.loads(line)
        if not reply.get("ok"):
            raise SimulatorControlError(str(reply.get("error")))
        return reply

    def inject(self, sender: str, text: str) -> None:
        self.request("inject", **{"from": sender, "text": text})

    def inject_pdu(self, pdu: str) -> None:
        self.request("inject", pdu=pdu)

    def sent(self) -> list[dict[str, Any]]:
        return list(self.request("sent")["sent"])

    def wait_sent(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        return list(self.request("wait_sent", count=count, timeout=timeout)["sent"])

    def fail_next_send(self, code: int, count: int = 1, after: int = 0) -> None:
        self.request("fail_next_send", code=code, count=count, after=after)

    def latency(self, seconds: float, command: str | None = None) -> None:
        self.request("latency", seconds=seconds, **({"command": command} if command else {}))

    def hang(self, on: bool = True) -> None:
        self.request("hang", on=on)

    def unplug(self) -> None:
        self.request("unplug")

    def replug(self) -> None:
        self.request("replug")

    def status(self) -> dict[str, Any]:
        return self.request("status")

    def close(self) -> None:
        self._stream.close()
        self._sock.close()

    def __enter__(self) -> SimulatorControl:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


# --------------------------------------------------------------------------- command line


def _host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``hbgw simulate-modem``."""
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--pty", metavar="LINK", help="serve on a pty; LINK becomes a symlink to it")
    where.add_argument("--tcp", metavar="HOST:PORT", type=_host_port, help="serve on TCP (port 0: any)")
    parser.add_argument("--pin", help="the SIM asks for this PIN")
    parser.add_argument(
        "--sim-busy",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="+CME ERROR: 14 for this long after power-up",
    )
    parser.add_argument("--latency", type=float, default=0.0, metavar="SECONDS", help="delay before every answer")
    parser.add_argument(
        "--control", metavar="HOST:PORT", type=_host_port, help="JSON-lines control socket (loopback only)"
    )
    parser.add_argument("--sent-log", metavar="FILE", help="append one JSON line per SMS sent")


def cli_main(args: argparse.Namespace) -> int:
    """Run until SIGTERM/SIGINT. Prints one ready line on stdout: the device (pty link or
    ``socket://host:port``), then `` control=host:port`` when a control socket was asked for."""
    if args.control is not None and args.control[0] not in ("127.0.0.1", "::1", "localhost"):
        logger.error("the control socket must listen on loopback, not %s", args.control[0])
        return 2
    options = SimOptions(pin=args.pin, sim_busy_seconds=args.sim_busy, latency=args.latency)
    network = Network(smsc=options.smsc)
    sim = Simulator(network, options)
    if args.sent_log:
        log_path = Path(args.sent_log)

        def append(sms: SentSms) -> None:
            with log_path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(sms.to_json()) + "\n")

        network.on_sent(append)
    transport: PtyModem | TcpModem = PtyModem(sim, link=args.pty) if args.pty else TcpModem(sim, *args.tcp)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    control: ControlServer | None = None
    try:
        transport.start()
        ready = transport.device
        if args.control is not None:
            control = ControlServer(sim, transport, *args.control).start()
            ready += f" control={control.host}:{control.port}"
        print(ready, flush=True)
        logger.info("simulated modem on %s", ready)
        while not stop.wait(0.5):
            pass
    except OSError as exc:
        logger.error("simulated modem: %s", exc)
        return 1
    finally:
        if control is not None:
            control.stop()
        transport.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


if __name__ == "__main__":
    import sys

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    _parser = argparse.ArgumentParser(prog="python -m modem.simulator", description="simulated GSM modem")
    add_cli_arguments(_parser)
    sys.exit(cli_main(_parser.parse_args()))
