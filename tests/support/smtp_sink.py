"""A real SMTP server on loopback (aiosmtpd on its own loop in a thread) that keeps what it gets.

Optionally a relay as the owner's provider runs it: ``tls="starttls"`` (port 587 style: STARTTLS
required before anything else) or ``tls="ssl"`` (port 465 style: TLS from the first byte), with
``login=(user, password)`` required (only over TLS)."""

from __future__ import annotations

import argparse
import asyncio
import email
import json
import signal
import ssl
import subprocess
import sys
import threading
import time
import warnings
from email.message import Message
from functools import partial
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


class SmtpSink:
    def __init__(
        self, *, tls: str | None = None, cert: tuple[Path, Path] | None = None, login: tuple[str, str] | None = None
    ) -> None:
        self.tls = tls
        self.login = login
        self.ssl_context: ssl.SSLContext | None = None
        if tls is not None:
            assert cert is not None, "TLS needs (cert, key)"
            self.ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self.ssl_context.load_cert_chain(str(cert[0]), str(cert[1]))
        self.logins: list[tuple[str, bool]] = []  # (user, accepted)
        self.on_change: Any = None  # called (in the sink's thread) after each login or message
        self.messages: list[tuple[list[str], Message]] = []
        self._cond = threading.Condition()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.AbstractServer | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="smtp-sink", daemon=True)
        self.port = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        msg = email.message_from_bytes(envelope.original_content or b"")
        with self._cond:
            self.messages.append((list(envelope.rcpt_tos), msg))
            self._cond.notify_all()
        if self.on_change:
            self.on_change()
        return "250 OK"

    def start(self) -> SmtpSink:
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        fut.result(timeout=10)
        return self

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: object
    ) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and self.login is not None
            and (data.login.decode(), data.password.decode()) == self.login
        )
        user = data.login.decode() if isinstance(data, LoginPassword) else "?"
        with self._cond:
            self.logins.append((user, ok))
        if self.on_change:
            self.on_change()
        return AuthResult(success=ok, handled=False)  # aiosmtpd answers 235 or 535

    async def _start(self) -> None:
        options: dict[str, Any] = {}
        if self.tls == "starttls":
            options.update(tls_context=self.ssl_context, require_starttls=True)
        if self.login is not None:
            # PLAIN only: smtplib tries every advertised mechanism, so a wrong password is one try
            options.update(
                authenticator=self._authenticate,
                auth_required=True,
                auth_exclude_mechanism=["LOGIN"],
                auth_require_tls=self.tls == "starttls",
            )  # SMTPS: all of it is TLS
        factory = partial(SMTP, self, **options)
        self._server = await self._loop.create_server(
            factory, "127.0.0.1", 0, ssl=self.ssl_context if self.tls == "ssl" else None
        )
        self.port = self._server.sockets[0].getsockname()[1]

    def wait(self, count: int, timeout: float = 15.0) -> list[tuple[list[str], Message]]:
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.messages) >= count, timeout=timeout):
                raise AssertionError(f"expected {count} email(s), got {len(self.messages)}")
            return list(self.messages)

    def bodies(self) -> list[str]:
        """The text of each message, transfer-decoded (quoted-printable, base64)."""
        with self._cond:
            return [_text(m) for _, m in self.messages]

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
                await self._server.wait_closed()
            for t in asyncio.all_tasks():
                if t is not asyncio.current_task():
                    t.cancel()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class SinkProcess:
    """An :class:`SmtpSink` relay in a child process (``python -m tests.support.smtp_sink``), for
    sessions that end in failed TLS handshakes: asyncio/aiosmtpd leak their end of those, which
    pytest would report against whatever test runs next. Stopped by its PID."""

    def __init__(self, state: Path, *, tls: str, cert: tuple[Path, Path], login: tuple[str, str]) -> None:
        self.state = state
        self.args = [
            "--tls",
            tls,
            "--cert",
            str(cert[0]),
            "--key",
            str(cert[1]),
            "--login",
            f"{login[0]}:{login[1]}",
            "--state",
            str(state),
        ]
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def __enter__(self) -> SinkProcess:
        self.state.mkdir(parents=True, exist_ok=True)
        root = Path(__file__).resolve().parents[2]
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.support.smtp_sink", *self.args], cwd=root)
        deadline = time.monotonic() + 15
        while not (self.state / "port").exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("the relay process did not start")
            time.sleep(0.02)
        self.port = int((self.state / "port").read_text())
        return self

    def seen(self) -> dict[str, Any]:
        path = self.state / "seen.json"
        return json.loads(path.read_text()) if path.exists() else {"logins": [], "messages": []}

    def __exit__(self, *exc: Any) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tls", choices=("starttls", "ssl"))
    parser.add_argument("--cert", type=Path)
    parser.add_argument("--key", type=Path)
    parser.add_argument("--login")
    parser.add_argument("--state", type=Path, required=True)
    a = parser.parse_args()
    if a.tls == "ssl":  # aiosmtpd cannot tell that an SMTPS session is all TLS
        warnings.filterwarnings("ignore", "Requiring AUTH while not requiring TLS", UserWarning)
    user, _, password = (a.login or ":").partition(":")
    sink = SmtpSink(tls=a.tls, cert=(a.cert, a.key) if a.cert else None, login=(user, password) if a.login else None)

    def record() -> None:
        with sink._cond:
            seen = {"logins": sink.logins, "messages": [m.as_string() for _, m in sink.messages]}
        tmp = a.state / "seen.tmp"
        tmp.write_text(json.dumps(seen))
        tmp.replace(a.state / "seen.json")

    sink.on_change = record
    sink.start()
    (a.state / "port.tmp").write_text(str(sink.port))
    (a.state / "port.tmp").replace(a.state / "port")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    sink.stop()


if __name__ == "__main__":
    main()


def _text(m: Message) -> str:
    raw = m.get_payload(decode=True)
    if isinstance(raw, bytes):
        return raw.decode(m.get_content_charset() or "utf-8", errors="replace")
    return str(m.get_payload())
