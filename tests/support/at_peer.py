"""A scripted AT peer on a real pty, for the channel tests.

The test opens :attr:`AtPeer.device` (the slave tty) with the code under test; a
thread on the master side reads command lines and answers them from a responder.
Nothing is mocked: bytes cross a real kernel pty both ways.
"""

from __future__ import annotations

import contextlib
import os
import pty
import select
import threading
import tty
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

#: What a responder returns for one command line: chunks to write (str/bytes), ``PROMPT``
#: to show ``> `` and wait for a payload, or None for silence.
Chunk = str | bytes
Responder = Callable[[str], Sequence[Chunk] | None]
PayloadResponder = Callable[[str, str], Sequence[Chunk]]

PROMPT = "\x00PROMPT"


class AtPeer:
    """Answers AT command lines on a pty master from ``responder(command) -> chunks``.

    ``echo``: echo every byte back until the responder turns it off (``ATE0`` answered
    ``OK`` turns it off). After a ``PROMPT`` chunk the peer collects the payload up to
    Ctrl-Z (ESC aborts it) and writes ``on_payload(command, payload)``.
    """

    def __init__(
        self,
        responder: Responder,
        *,
        echo: bool = True,
        on_payload: PayloadResponder | None = None,
    ) -> None:
        self.responder = responder
        self.echo = echo
        self.on_payload = on_payload
        self.commands: list[str] = []
        self.payloads: list[str] = []
        self.escapes = 0
        self._master, self._slave = pty.openpty()
        tty.setraw(self._slave)
        self.device = os.ttyname(self._slave)
        self._wake_r, self._wake_w = os.pipe()
        self._stop = False
        self._closed = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="at-peer", daemon=True)
        self._line = bytearray()
        self._prompt_for: str | None = None
        self._payload = bytearray()
        self.received = threading.Event()  # set on every complete command line

    def start(self) -> AtPeer:
        self._thread.start()
        return self

    def __enter__(self) -> AtPeer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def write(self, data: Chunk) -> None:
        """Send bytes to the host now (URCs, garbage)."""
        raw = data.encode("latin-1") if isinstance(data, str) else data
        with self._lock:
            if not self._closed:
                os.write(self._master, raw)

    def vanish(self) -> None:
        """Close both pty ends, like a USB modem unplugged: the host's reads fail."""
        self._shutdown()

    def stop(self) -> None:
        self._shutdown()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def wait_for_command(self, prefix: str, timeout: float = 5.0) -> str:
        """Block until a command line starting with ``prefix`` arrived; return it."""
        deadline = threading.Event()
        timer = threading.Timer(timeout, deadline.set)
        timer.start()
        try:
            while not deadline.is_set():
                for cmd in list(self.commands):
                    if cmd.upper().startswith(prefix.upper()):
                        return cmd
                self.received.wait(0.05)
                self.received.clear()
        finally:
            timer.cancel()
        raise TimeoutError(f"no command {prefix!r} within {timeout} s; got {self.commands!r}")

    # -- thread

    def _shutdown(self) -> None:
        if self._stop:
            return
        self._stop = True
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(5)
        with self._lock:
            self._closed = True
            for fd in (self._master, self._slave):
                with contextlib.suppress(OSError):
                    os.close(fd)

    def _run(self) -> None:
        while not self._stop:
            readable, _, _ = select.select([self._master, self._wake_r], [], [], 1.0)
            if self._master not in readable:
                continue
            try:
                data = os.read(self._master, 4096)
            except OSError:
                return
            for byte in data:
                self._byte(byte)

    def _byte(self, byte: int) -> None:
        if self._prompt_for is not None:
            self._prompt_byte(byte)
            return
        if self.echo:
            self.write(bytes([byte]))
        if byte == 0x1B:
            self.escapes += 1
            self._line.clear()
            return
        if byte == 0x0A:
            return
        if byte != 0x0D:
            self._line.append(byte)
            return
        cmd = self._line.decode("latin-1").strip()
        self._line.clear()
        if not cmd:
            return
        self.commands.append(cmd)
        self.received.set()
        self._answer(cmd, self.responder(cmd))

    def _answer(self, cmd: str, chunks: Sequence[Chunk] | None) -> None:
        if chunks is None:
            return
        for chunk in chunks:
            if chunk == PROMPT:
                self._prompt_for = cmd
                self.write("\r\n> ")
                return
            self.write(chunk)
        if cmd.upper() == "ATE0" and any("OK" in str(c) for c in chunks):
            self.echo = False

    def _prompt_byte(self, byte: int) -> None:
        if byte == 0x1B:
            self.escapes += 1
            self._prompt_for = None
            self._payload.clear()
            return
        if byte != 0x1A:
            self._payload.append(byte)
            if self.echo:
                self.write(bytes([byte]))
            return
        cmd, self._prompt_for = self._prompt_for, None
        payload = self._payload.decode("latin-1")
        self._payload.clear()
        self.payloads.append(payload)
        assert cmd is not None
        answer = self.on_payload(cmd, payload) if self.on_payload else ["\r\nOK\r\n"]
        self._answer(cmd, answer)


def v1(*lines: str) -> list[str]:
    """Lines in the V1 result format: each framed by CR LF."""
    return [f"\r\n{line}\r\n" for line in lines]


class FakeModemTable:
    """A responder replaying one model of python-gsmmodem's ``fakemodems`` tables
    (``responses`` keyed by the command incl. CR; PIN-locked variants)."""

    def __init__(self, model: dict[str, Any], *, pin_locked: bool = False, pin: str = "1234") -> None:
        self.model = model
        self.locked = pin_locked
        self.pin = pin
        self.pin_attempts: list[str] = []

    def __call__(self, cmd: str) -> list[str]:
        key = cmd + "\r"
        model = self.model
        if self.locked:
            if cmd.upper().startswith("AT+CPIN="):
                value = cmd.split("=", 1)[1].strip('"')
                self.pin_attempts.append(value)
                if value == self.pin:
                    self.locked = False
                    return ["OK\r\n"]
                return ["+CME ERROR: 16\r\n"]
            if key in model["responses_when_pin_locked"]:
                return list(model["responses_when_pin_locked"][key])
            if key not in model["commandsNoPinRequired"]:
                return list(model["pinRequiredErrorResponse"])
        if key in model["responses"]:
            return list(model["responses"][key])
        return list(model["defaultResponse"])
