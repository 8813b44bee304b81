"""The simulated modem's AT command line, transport-independent and thread-safe.

:class:`AtMachine` frames what the host types into command lines (echo, backspace, noise
before ``AT``), splits them into commands (V.250 syntax), dispatches each to a handler the
subclass registers, answers with final result codes (``+CME`` / ``+CMS ERROR`` per
``+CMEE``), holds URCs back while a command runs or a ``> `` prompt is open, collects the
payload typed at the prompt, and queues output with the configured latency.

Behaviour follows what real modems do rather than the letter of 27.007/27.005 where the two
differ: echo is on at power-up, ``ESC`` aborts a ``> `` prompt (answered with ``OK`` like
Quectel/SIMCom parts), an empty command line gets no answer, bytes before ``AT`` on a line
are ignored, ``+CMS ERROR`` is reported numerically even with ``+CMEE=0`` (27.005 does not
tie it to ``+CMEE``) and verbosely with ``+CMEE=2``.
"""

from __future__ import annotations

import abc
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator

from modem.sim.records import SimOptions

# Named as before the split into modules: log filters select "modem.simulator".
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
_MAX_LINE = 2048
_MAX_BODY = 4096


# Final results of a dial command besides OK and the errors (V.250 6.3.1.9).
CALL_RESULTS = ("NO CARRIER", "BUSY", "NO ANSWER", "NO DIALTONE")


class _Final(Exception):
    """A command ends with a final result other than OK."""

    def __init__(self, kind: str, code: int = 0) -> None:
        super().__init__(kind, code)
        self.kind = kind  # "ERROR" | "CME" | "CMS" | one of CALL_RESULTS
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


class AtMachine(abc.ABC):
    """The V.250 command line of a simulated modem; subclasses supply the commands.

    A transport calls :meth:`feed` with the bytes the host wrote and drains
    :meth:`read_output`; :meth:`set_waker` lets it know when output appears
    from another thread (an injected SMS's ``+CMTI``).
    """

    def __init__(self, options: SimOptions) -> None:
        self.options = options
        self._lock = threading.RLock()
        self._out: deque[bytes | float] = deque()
        self._delay_until: float | None = None
        self._waker: Callable[[], None] | None = None
        self._hung = False
        self._latency = options.latency
        self._command_latency: dict[str, float] = {}
        self._mid_reply_urcs: list[str] = []
        self._pending_after: list[Callable[[], None]] = []
        self._executing = False
        self.commands: deque[str] = deque(maxlen=1000)  # recent command lines, for tests
        self._powered = False
        self._handlers: dict[str, _Handler] = {}  # "+CMGS" -> handler(kind, arg)
        self._timers: set[threading.Timer] = set()
        self._epoch = 0  # bumped at every power change: timers of an older epoch do nothing
        self._reset_io()

    def _reset_io(self) -> None:
        """A fresh command line at power-up: nothing typed, queued or held back."""
        self._hung = False
        self._line = bytearray()
        self._mode = "command"  # | "pdu-prompt" | "text-prompt"
        self._body = bytearray()
        self._prompt_arg: int | str = 0
        self._held_urcs: list[str] = []
        self._out.clear()
        self._delay_until = None

    def _reset_settings(self) -> None:
        """Settings to their power-up values (``ATZ``, ``AT&F``, power-up). Subclasses add theirs."""
        self._echo = self.options.echo
        self._cmee = 0
        self._settings: dict[str, int] = {}  # the plain <n> settings (see _setting)

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

    def _call_later(self, seconds: float, fn: Callable[[], None]) -> None:
        """Run ``fn`` under the lock after ``seconds`` (the network answering later), unless the
        modem lost power or was reset meanwhile. Its URCs go out as usual."""
        epoch = self._epoch

        def run() -> None:
            with self._lock:
                self._timers.discard(timer)
                if epoch != self._epoch or not self._powered:
                    return
                fn()
            self._wake()

        timer = threading.Timer(max(0.0, seconds), run)
        timer.daemon = True
        self._timers.add(timer)
        timer.start()

    def _cancel_timers(self) -> None:
        """Forget everything :meth:`_call_later` scheduled (power lost)."""
        self._epoch += 1
        timers, self._timers = self._timers, set()
        for timer in timers:
            timer.cancel()

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
        self._between_commands()

    @abc.abstractmethod
    def _between_commands(self) -> None:
        """Called once a command line's answer is queued (unsolicited chatter goes here)."""

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
        if final.kind in CALL_RESULTS:
            return final.kind
        if final.kind == "CMS":
            if self._cmee == 2:
                text = dict(self.options.cms_texts).get(final.code) or _CMS_TEXT.get(final.code, "unknown error")
                return f"+CMS ERROR: {text}"
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
            if ch.upper() == "D":
                # V.250 6.3.1: the dial string runs to the end of the line; its ";" (voice, back
                # to command state) is the dial command's own, not a separator.
                yield body[i:].strip()
                return
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

    @abc.abstractmethod
    def _basic(self, cmd: str) -> list[str]:
        """Run one basic command (``E0``, ``Z``, ``I``, ``S0?`` ...); raise ``_Final`` to refuse it."""

    def _setting(self, name: str, highest: int) -> _Handler:
        """A plain ``<n>`` setting, 0 at power-up: set, read back, range on test."""

        def handler(kind: str, arg: str) -> list[str]:
            if kind == "test":
                return [f"{name}: (0-{highest})"]
            if kind == "read":
                return [f"{name}: {self._settings.get(name, 0)}"]
            if kind != "set":
                raise _error()
            value = _int_arg(split_args(arg), 0, 0)
            if not 0 <= value <= highest:
                raise _error()
            self._settings[name] = value
            return []

        return handler

    def _after_reply(self, fn: Callable[[], None]) -> None:
        # Runs once the current command's answer is queued (URCs must not land inside it).
        self._pending_after.append(fn)

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

    @abc.abstractmethod
    def _submit(self, mode: str, arg: int | str, body: str) -> tuple[int, str | None]:
        """Hand the payload typed at the ``> `` prompt on: (message ref, URC to emit or None)."""

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
    if upper.startswith("ATD"):
        return "ATD***"  # a phone number
    return line
