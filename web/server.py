"""The HTTP server the daemon runs: uvicorn (httptools parser) on its own event loop, in a thread
the daemon owns and stops. Pings, the API and the web pages all arrive here (:mod:`web.app`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

logger = logging.getLogger(__name__)


class _HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline for each request head. uvicorn arms its
    keep-alive timer only after a response, so a client that connects and sends nothing, or
    trickles a request line byte by byte, would hold a connection slot forever (slowloris).
    Here a connection waiting for a request head gets ``timeout_keep_alive`` seconds in all."""

    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_head()

    def on_headers_complete(self) -> None:
        self._stop_head_timer()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def _await_head(self) -> None:
        if self._head_timer is None and not self.transport.is_closing():
            self._head_timer = self.loop.call_later(self.timeout_keep_alive, self._head_timeout)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        self._head_timer = None
        if (self.cycle is None or self.cycle.response_complete) and not self.transport.is_closing():
            self.transport.close()


class _Server(uvicorn.Server):
    """uvicorn's server, ticking once a second instead of ten times: the tick only refreshes the
    Date header (1 s resolution) and looks at ``should_exit``, and an idle gateway on a Pi should
    sleep. ``stop()`` wakes it at once, so shutting down is no slower."""

    _loop: asyncio.AbstractEventLoop | None = None
    _wake: asyncio.Event | None = None

    async def main_loop(self) -> None:
        self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
        while not await self.on_tick(0):  # counter 0: refresh the Date header every tick
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._wake.wait()

    def exit_soon(self) -> None:
        """Ask the server to stop, from any thread."""
        self.should_exit = True
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already closed
                loop.call_soon_threadsafe(wake.set)


class HttpServer:
    """uvicorn (httptools parser) on its own event loop, in a thread we own. The socket is bound
    here (port 0 allowed), so a busy port fails in the constructor with OSError; ``start()``
    returns once it serves; ``stop()`` returns within a few seconds."""

    def __init__(
        self, app: Any, host: str, port: int, *, idle_timeout: float = 30.0, max_connections: int = 1000
    ) -> None:
        family, kind, proto, _, addr = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        self._sock = socket.socket(family, kind, proto)
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and host in ("::", ""):
                self._sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            self._sock.bind(addr)
            self._sock.listen(2048)
        except OSError:
            self._sock.close()
            raise
        config = uvicorn.Config(
            app,
            http=_HttpProtocol,
            loop="asyncio",
            lifespan="off",
            interface="asgi3",
            ws="none",  # plain HTTP only, whatever else is installed beside us
            log_config=None,
            access_log=False,
            server_header=False,
            proxy_headers=False,  # X-Forwarded-For is judged by [http] trusted_proxies (web.app)
            limit_concurrency=max_connections,
            timeout_keep_alive=idle_timeout,  # type: ignore[arg-type]  # call_later takes a float
            timeout_graceful_shutdown=2,
        )
        self._server = _Server(config)
        self._thread = threading.Thread(target=self._serve, name="hbgw-http", daemon=True)
        self._error: BaseException | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._sock.getsockname()[:2]
        return str(host), int(port)

    def _serve(self) -> None:
        try:
            asyncio.run(self._server.serve(sockets=[self._sock]))
        except BaseException as e:  # uvicorn may sys.exit() on a start-up failure
            self._error = e
            logger.exception("HTTP server stopped with an error")

    def start(self) -> HttpServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise OSError(f"the HTTP server did not start: {self._error or 'timeout'}")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        """Stop accepting, let the requests in flight answer (2 s at most), close the rest."""
        self._server.exit_soon()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._sock.close()
