"""A minimal AT client over a real pyserial port, for tests that drive the simulator."""

from __future__ import annotations

import re
import time

import serial

FINAL = re.compile(rb"\r\n(OK|ERROR|\+CME ERROR: [^\r]*|\+CMS ERROR: [^\r]*)\r\n")


class AtClient:
    """Writes commands and reads until a final result code, with deadlines (no sleeps)."""

    def __init__(self, port: serial.SerialBase) -> None:
        self.port = port
        self.buffer = bytearray()

    def write(self, data: bytes) -> None:
        self.port.write(data)
        self.port.flush()

    def read_until(self, pattern: bytes | re.Pattern[bytes], timeout: float = 5.0) -> bytes:
        """Everything up to and including ``pattern``; raises TimeoutError."""
        deadline = time.monotonic() + timeout
        while True:
            if isinstance(pattern, bytes):
                pos = self.buffer.find(pattern)
                end = pos + len(pattern) if pos >= 0 else -1
            else:
                match = pattern.search(self.buffer)
                end = match.end() if match else -1
            if end >= 0:
                out = bytes(self.buffer[:end])
                del self.buffer[:end]
                return out
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {pattern!r} in {bytes(self.buffer)!r}")
            self.port.timeout = min(left, 0.2)
            self.buffer += self.port.read(max(1, self.port.in_waiting))

    def raw(self, command: str, timeout: float = 5.0) -> bytes:
        """Send ``command`` + CR; the exact bytes up to the final result code."""
        self.write(command.encode("latin-1") + b"\r")
        return self.read_until(FINAL, timeout)

    def command(self, command: str, timeout: float = 5.0) -> list[str]:
        """Send ``command``; the non-empty reply lines without the echo, final result last."""
        text = self.raw(command, timeout).decode("latin-1")
        lines = [line for line in text.split("\r\n") if line]
        if lines and lines[0].rstrip("\r") == command:
            lines = lines[1:]
        return lines

    def nothing_within(self, seconds: float) -> bool:
        """True if no byte arrives within ``seconds`` (for 'it stays silent' checks)."""
        if self.buffer:
            return False
        self.port.timeout = seconds
        self.buffer += self.port.read(1)
        return not self.buffer
