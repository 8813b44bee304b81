"""SMTP test clients: a raw line-level session (for what smtplib refuses to send) and an
in-process listener (``gateway.intake.mail.start_smtp`` on a loop in a thread) for limits that need
small values, such as the idle timeout."""

from __future__ import annotations

import asyncio
import socket
import threading
from pathlib import Path
from typing import Any

from gateway.config import Config, SecurityConfig, SmtpConfig
from gateway.intake.mail import SmtpListener, start_smtp
from gateway.service import Service
from gateway.store import Store


class RawSmtp:
    """One SMTP connection spoken line by line, from ``source`` (an address to bind, such as
    127.0.0.2, so that tests on loopback can be several clients) if given. ``reply()`` reads one
    (multi-line) reply."""

    def __init__(self, host: str, port: int, timeout: float = 10.0, source: str | None = None) -> None:
        self.sock = socket.create_connection(
            (host, port), timeout=timeout, source_address=None if source is None else (source, 0)
        )
        self.file = self.sock.makefile("rb")

    def reply(self) -> tuple[int, str]:
        """(code, text of all lines). (0, "") when the server has closed the connection."""
        lines: list[str] = []
        while True:
            line = self.file.readline(100_000)
            if not line:
                return 0, "\n".join(lines)
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            lines.append(text)
            if len(text) < 4 or text[3] != "-":
                return int(text[:3]), "\n".join(lines)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def cmd(self, line: bytes | str) -> tuple[int, str]:
        self.send((line.encode() if isinstance(line, str) else line) + b"\r\n")
        return self.reply()

    def closed_by_peer(self) -> bool:
        """True once the server has hung up (reads EOF)."""
        return self.file.read(1) == b""

    def close(self) -> None:
        self.file.close()
        self.sock.close()

    def __enter__(self) -> RawSmtp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class InProcessSmtp:
    """``start_smtp`` over a fresh store in ``data_dir``, on its own loop in a thread."""

    def __init__(
        self, data_dir: Path, *, domain: str = "hb.test", ping_key: str | None = None, **listener_kw: Any
    ) -> None:
        self.config = Config(
            data_dir=data_dir,
            smtp=SmtpConfig(listen="127.0.0.1:0", domain=domain),
            security=SecurityConfig(ping_key=ping_key),
        )
        self.store = Store(self.config.db_path).open()
        self.service = Service(self.store, self.config)
        self._kw = listener_kw
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="smtp-test-loop", daemon=True)
        self.listener: SmtpListener | None = None

    @property
    def address(self) -> tuple[str, int]:
        assert self.listener is not None
        return self.listener.address

    def run(self, coro: Any, timeout: float = 10) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def start(self) -> InProcessSmtp:
        self._thread.start()
        self.listener = self.run(start_smtp(self.service, self.config, **self._kw))
        return self

    def stop(self) -> None:
        if self.listener is not None:
            self.run(self.listener.close(grace=2))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.run_until_complete(self._loop.shutdown_default_executor())
        self._loop.close()
        self.store.close()

    def __enter__(self) -> InProcessSmtp:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
