"""The Healthchecks-compatible ping API: parse, authenticate, one service call, a plain reply.

``/ping/<token>[/start|/fail|/log|/<exit status 0-255>]`` and
``/ping/<ping-key>/<name>[/<action>]``. Replies are one short line of text.

This is the hot path (DESIGN §8: thousands of pings/s), so it is served as ASGI straight on the
HTTP server's event loop, in front of the Bottle app: no worker thread, no framework objects; the
handler awaits the store's commit (``Service.submit_ping``) instead of parking a thread on it.
:func:`route` is the pure part; :class:`PingApi` is the I/O around it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from gateway.model import PingKind, PingMeta
from gateway.service import PingOutcome, Service
from gateway.store import StoreError
from web.auth import SECURITY_HEADER_PAIRS

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

TOKEN = re.compile(r"[A-Za-z0-9_-]{8,128}")
ALLOWED_METHODS = ("GET", "POST", "HEAD")
_ACTIONS = {"start": PingKind.START, "fail": PingKind.FAIL, "log": PingKind.LOG}
USER_AGENT_MAX = 200


class BadRequest(Exception):
    pass


@dataclasses.dataclass(frozen=True)
class Reply:
    status: int
    text: str


@dataclasses.dataclass(frozen=True)
class PingRequest:
    key: str  # the check's token, or the site ping key when ``name`` is given
    name: str | None
    kind: PingKind
    exit_status: int | None


NOT_FOUND = Reply(404, "not found")


def parse_action(action: str | None) -> tuple[PingKind, int | None] | None:
    """``None`` → success; a word → its kind; digits → an exit status. None if not an action.

    Raises BadRequest for an exit status out of 0-255.
    """
    if action is None or action == "":
        return PingKind.SUCCESS, None
    if action in _ACTIONS:
        return _ACTIONS[action], None
    if action.isascii() and action.isdigit():
        code = int(action)
        if code > 255:
            raise BadRequest("exit status must be 0-255")
        return (PingKind.SUCCESS if code == 0 else PingKind.FAIL), code
    return None


def is_ping_path(path: str) -> bool:
    return path == "/ping" or path.startswith("/ping/")


def route(method: str, path: str, is_ping_key: Callable[[str], bool]) -> Reply | PingRequest:
    """What ``method path`` (the decoded path, under /ping) asks for, or the reply refusing it.

    A wrong site key on ``/ping/<key>/<name>`` answers exactly like an unknown token (404), so a
    reply never tells whether a key or a name exists.
    """
    parts = path[len("/ping/") :].split("/") if path.startswith("/ping/") else []
    if not 1 <= len(parts) <= 3 or "" in parts:
        return NOT_FOUND
    if method not in ALLOWED_METHODS:
        return Reply(400, "bad request: use GET, POST or HEAD")
    a = parts[0]
    b = parts[1] if len(parts) > 1 else None
    c = parts[2] if len(parts) > 2 else None
    try:
        if b is not None and is_ping_key(a):
            act = parse_action(c)
            if act is None:
                return Reply(400, "bad request: unknown action")
            return PingRequest(a, b, *act)
        if not TOKEN.fullmatch(a):
            return Reply(400, "bad request: malformed token")
        if c is not None:
            return NOT_FOUND  # /ping/<wrong key>/<name>/<action>
        act = parse_action(b)
        if act is None:
            return NOT_FOUND  # /ping/<wrong key>/<name>
        return PingRequest(a, None, *act)
    except BadRequest as e:
        return Reply(400, f"bad request: {e}")


class Gone(Exception):
    """The client went away before we could answer."""


class PingApi:
    """ASGI app: answers every path under ``/ping``; any other request goes to ``other``.

    ``client_addr(peer, x_forwarded_for)`` gives the address to store (see web.app); a body must
    arrive within ``body_timeout`` seconds.
    """

    def __init__(
        self,
        service: Service,
        max_body: int,
        client_addr: Callable[[str | None, str], str | None],
        other: ASGIApp,
        body_timeout: float = 30.0,
    ) -> None:
        self.service = service
        self.max_body = max_body
        self.body_timeout = body_timeout
        self.client_addr = client_addr
        self.other = other
        self._headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"ping-body-limit", str(max_body).encode()),
            (b"cache-control", b"no-store"),
            *SECURITY_HEADER_PAIRS,
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_ping_path(scope["path"]):
            await self.other(scope, receive, send)
            return
        try:
            status, text = await self._handle(scope, receive)
        except Gone:
            return
        except Exception:
            logger.exception("internal error on %s %s", scope["method"], scope["path"][:80])
            status, text = 500, "internal error"
        body = (text + "\n").encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [*self._headers, (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _handle(self, scope: Scope, receive: Receive) -> tuple[int, str]:
        method: str = scope["method"]
        req = route(method, scope["path"], self.service.check_ping_key)
        if isinstance(req, Reply):
            return req.status, req.text
        length_header = user_agent = forwarded = ""
        chunked = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                length_header = value.decode("latin-1")
            elif name == b"user-agent":
                user_agent = user_agent or value.decode("latin-1")
            elif name == b"x-forwarded-for":
                forwarded = f"{forwarded},{value.decode('latin-1')}" if forwarded else value.decode("latin-1")
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
        try:
            length = int(length_header or 0)
        except ValueError:
            return 400, "bad request: invalid Content-Length"
        too_large = 413, f"body too large (limit {self.max_body} bytes)"
        if length > self.max_body:
            return too_large
        body = None
        if length or chunked:
            raw = await read_body(receive, self.max_body, self.body_timeout)
            if raw is None:
                return too_large
            if isinstance(raw, Reply):
                return raw.status, raw.text
            body = raw.decode("utf-8", "replace") or None
        client = scope.get("client")
        meta = PingMeta(
            source="http",
            remote_addr=self.client_addr(client[0] if client else None, forwarded),
            method=method,
            user_agent=user_agent[:USER_AGENT_MAX] or None,
            body=body,
        )
        try:
            outcome = await asyncio.wrap_future(
                self.service.submit_ping(req.key, req.name, req.kind, req.exit_status, meta)
            )
        except StoreError:
            return 503, "storage unavailable, try again"
        if outcome is PingOutcome.OK:
            return 200, "OK"
        if outcome is PingOutcome.LIMIT:
            return 403, "check limit reached"
        return NOT_FOUND.status, NOT_FOUND.text


async def read_body(receive: Receive, limit: int, timeout: float) -> bytes | Reply | None:
    """A request body: None when it passes ``limit`` bytes (the rest is not read), a 408 reply
    when the client stalls for ``timeout`` seconds; raises Gone when the client disconnects."""
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise Gone
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    return None
                chunks.append(chunk)
                if not message.get("more_body"):
                    return b"".join(chunks)
    except TimeoutError:
        return Reply(408, "request timeout: the body took too long")
