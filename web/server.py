"""The HTTP server the daemon runs: uvicorn (httptools parser) on its own event loop, in a thread
the daemon owns and stops. Pings, the API and the web pages all arrive here (:mod:`web.app`).
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import ipaddress
import logging
import socket
import threading
import time
from typing import Any

import httptools
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

logger = logging.getLogger(__name__)

HEAD_MAX = 16 * 1024  # bytes of one request head (request line and header fields); more is 431
HEAD_FIELDS_MAX = 100  # header fields of one request (trailers of a chunked body included); more is 431
PER_ADDRESS_MAX = 64  # connections one client address (an IPv6 /64) may hold at once; more get 503
LOCAL = ("127.0.0.1/32", "::1/128")  # never capped: the box's own proxy and load generators
TOO_LARGE = f"request header fields too large (limit {HEAD_MAX} bytes, {HEAD_FIELDS_MAX} fields)"
LINGER = 1.0  # seconds a refused connection reads and drops what the client still sends ...
LINGER_BYTES = 256 * 1024  # ... at most this much, so the refusal arrives before any reset


class PeerLimit:
    """The connections each client address holds, against ``per_address``. An IPv6 client counts
    by its /64 (one host is usually given a whole /64). Addresses in ``exempt`` are not counted:
    a reverse proxy carries all its clients on one address, so capping it would let one client
    behind it starve every other (limit per client in the proxy instead)."""

    def __init__(self, per_address: int, exempt: tuple[str, ...]) -> None:
        self.per_address = per_address
        self.exempt = [ipaddress.ip_network(n, strict=False) for n in exempt]
        self.held: dict[str, int] = {}

    def key(self, peer: object) -> str | None:
        """The key ``peer`` (a socket's peername) is counted under; None if it is not counted."""
        if not isinstance(peer, tuple) or not peer:
            return None
        try:
            ip = ipaddress.ip_address(str(peer[0]).split("%", 1)[0])
        except ValueError:
            return None
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if any(ip in net for net in self.exempt):
            return None
        if isinstance(ip, ipaddress.IPv6Address):
            return str(ipaddress.IPv6Network((ip, 64), strict=False))
        return str(ip)

    def admit(self, key: str) -> bool:
        held = self.held.get(key, 0)
        if held >= self.per_address:
            return False
        self.held[key] = held + 1
        return True

    def release(self, key: str) -> None:
        held = self.held.pop(key) - 1
        if held:
            self.held[key] = held


def _reply(status: int, text: str) -> bytes:
    body = (text + "\n").encode()
    return (
        b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\ncache-control: no-store\r\n"
        b"content-length: %d\r\nconnection: close\r\n\r\n%s"
        % (status, http.HTTPStatus(status).phrase.encode(), len(body), body)
    )


class _HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits uvicorn lacks:

    - a deadline for each request head. uvicorn arms its keep-alive timer only after a response,
      so a client that connects and sends nothing, or trickles a request line byte by byte, would
      hold a connection slot forever (slowloris). Here a connection waiting for a request head
      gets ``timeout_keep_alive`` seconds in all;
    - a size for each request head (and trailer): the parser is fed at most ``HEAD_MAX`` bytes of
      it (and ``HEAD_FIELDS_MAX`` fields), then the client gets 431 and the connection closes;
    - a cap on the connections of one client address (``PeerLimit``): one more gets 503 at once;
    - pipelined requests before an unparsable one are all answered, in order, before the 400 (or
      431) that closes the connection; uvicorn wrote the 400 at once and dropped the rest.
    """

    limit: PeerLimit  # set per server, see HttpServer

    _head_timer: asyncio.TimerHandle | None = None
    _peer: str | None = None  # the key this connection is counted under in ``limit``
    _served = False  # admitted and handed to uvicorn
    _in_head = True  # reading header fields: a request head, or a chunked body's trailer
    _head_room = HEAD_MAX  # bytes they may still take
    _whole = True  # the last request read is complete, its body too
    _fields = 0  # header fields of the message being read
    _refusal: bytes | None = None  # the last reply, waiting for the requests before it
    _lingering = 0  # bytes dropped since the refusal was sent

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        key = self.limit.key(transport.get_extra_info("peername"))
        if key is not None and not self.limit.admit(key):
            # Refused before uvicorn sees it, so it never counts toward limit_concurrency.
            self.transport = transport
            logger.info("HTTP connection from %s refused: %d already open", key, self.limit.per_address)
            self._refusal = _reply(503, f"too many connections from your address (limit {self.limit.per_address})")
            self._send_refusal()
            return
        self._peer, self._served = key, True
        super().connection_made(transport)
        self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._peer is not None:
            self.limit.release(self._peer)
            self._peer = None
        self._stop_head_timer()
        if self._served:  # not when refused in connection_made: uvicorn never knew it
            super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refusal is not None:  # refused: drop what follows (the parser has failed)
            self._lingering += len(data)
            if self._lingering > LINGER_BYTES:
                self.transport.close()
            return
        self._unset_keepalive_if_required()
        # Feed the parser in pieces no bigger than what the head may still take: httptools
        # buffers a header field until it ends, so an unbounded head would be held in memory.
        # A head that starts in the middle of a piece is counted from the next piece only, so a
        # head of up to HEAD_MAX always passes and none of more than 2 x HEAD_MAX does.
        while data:
            if self._in_head and self._head_room <= 0:
                self._refuse(431, TOO_LARGE)
                return
            room = self._head_room if self._in_head else HEAD_MAX
            piece, data = (data, b"") if len(data) <= room else (data[:room], data[room:])
            if self._in_head:
                self._head_room -= len(piece)
            try:
                self.parser.feed_data(piece)
            except httptools.HttpParserError:
                if self._fields > HEAD_FIELDS_MAX:
                    self._refuse(431, TOO_LARGE)
                else:
                    self._refuse(400, "Invalid HTTP request received.")
                return
            except httptools.HttpParserUpgrade:
                if self._should_upgrade():
                    self.handle_websocket_upgrade()
                else:
                    self._unsupported_upgrade_warning()
                return
            if self.transport.is_closing():
                return

    def on_header(self, name: bytes, value: bytes) -> None:
        self._fields += 1
        if self._fields > HEAD_FIELDS_MAX:
            raise ValueError("too many header fields")  # the parser stops: HttpParserError
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = self._whole = False
        self._stop_head_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_head, self._head_room, self._fields, self._whole = True, HEAD_MAX, 0, True
        super().on_message_complete()

    # A chunk header may be the last one, followed by trailer fields that httptools buffers like
    # header fields: count what follows it as a head until chunk data shows up.
    def on_chunk_header(self) -> None:
        self._in_head, self._head_room = True, HEAD_MAX

    def on_body(self, body: bytes) -> None:
        self._in_head = False
        super().on_body(body)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._refusal is not None:
            self._send_refusal_when_answered()
        else:
            self._await_head()

    def _refuse(self, status: int, text: str) -> None:
        """The request being read cannot be served: answer the complete requests before it, then
        ``status`` and close."""
        logger.info("HTTP request from %s refused: %d %s", self.client[0] if self.client else "?", status, text)
        self._refusal = _reply(status, text)
        cycle = self.cycle
        if not self._whole and cycle is not None and not cycle.response_complete:
            # the request whose body the parser failed in: never answer it as if it were whole
            if self.pipeline and self.pipeline[0][0] is cycle:
                self.pipeline.popleft()  # queued behind others, not started
            elif not cycle.response_started:
                self._send_refusal()  # its handler waits for the rest of a body that won't come
                return
        self._send_refusal_when_answered()

    def _send_refusal_when_answered(self) -> None:
        if self.pipeline or (self.cycle is not None and not self.cycle.response_complete):
            return  # on_response_complete calls again
        if not self.transport.is_closing():
            self._send_refusal()

    def _send_refusal(self) -> None:
        """Write the refusal and close; keep reading (and dropping) for a moment, so a client
        still sending gets the reply rather than a reset."""
        assert self._refusal is not None
        self._stop_head_timer()
        self._unset_keepalive_if_required()
        self.transport.write(self._refusal)
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self._head_timer = self.loop.call_later(LINGER, self.transport.close)
        else:
            self.transport.close()

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
    returns once it serves; ``stop()`` returns within a few seconds.

    ``max_connections`` in all (beyond it requests get 503), ``per_address`` from one client
    address, except from loopback and ``trusted_proxies`` (see :class:`PeerLimit`)."""

    def __init__(
        self,
        app: Any,
        host: str,
        port: int,
        *,
        idle_timeout: float = 30.0,
        max_connections: int = 1000,
        per_address: int = PER_ADDRESS_MAX,
        trusted_proxies: tuple[str, ...] = (),
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
        # One protocol class per server, holding this server's count of connections per address.
        protocol = type("HttpProtocol", (_HttpProtocol,), {"limit": PeerLimit(per_address, LOCAL + trusted_proxies)})
        config = uvicorn.Config(
            app,
            http=protocol,
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
