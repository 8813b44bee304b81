"""A real SMTP server on loopback (aiosmtpd on its own loop in a thread) that keeps what it gets."""

from __future__ import annotations

import asyncio
import email
import threading
from email.message import Message
from functools import partial
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session


class SmtpSink:
    def __init__(self) -> None:
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
        return "250 OK"

    def start(self) -> SmtpSink:
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        fut.result(timeout=10)
        return self

    async def _start(self) -> None:
        self._server = await self._loop.create_server(partial(SMTP, self), "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def wait(self, count: int, timeout: float = 15.0) -> list[tuple[list[str], Message]]:
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.messages) >= count, timeout=timeout):
                raise AssertionError(f"expected {count} email(s), got {len(self.messages)}")
            return list(self.messages)

    def bodies(self) -> list[str]:
        with self._cond:
            return [str(m.get_payload()) for _, m in self.messages]

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
