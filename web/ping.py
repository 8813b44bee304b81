"""The Healthchecks-compatible ping API: parse, authenticate, one service call, a plain reply.

``/ping/<token>[/start|/fail|/log|/<exit status 0-255>][/]``,
``/ping/<token>/snooze?for=30m[&until_up=1]`` (a mute before a planned reboot, not a heartbeat) and
``/ping/<ping-key>/<slug>[/<action>][/]`` (``?create=1`` makes a check for a new slug, 201),
with ``?rid=<uuid>`` pairing a /start with its end; and Uptime Kuma's push URL
``/api/push/<token>?status=up|down&msg=...&ping=...``. As Healthchecks does: any body is read up
to ``[http] max_body`` and its first :data:`STORED` bytes kept (``Ping-Body-Limit``), every
reply allows any origin (CORS), ``OPTIONS`` answers a preflight without counting as a ping.
Replies are one short line of text (Kuma's: its JSON).

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
from urllib.parse import parse_qs

from gateway.errors import ValidationError
from gateway.model import PingKind, PingMeta
from gateway.rules.durations import parse_duration
from gateway.rules.slugs import valid_rid
from gateway.service import PingOutcome, Service
from gateway.store import BODY_EXCERPT, StoreError
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
STORED = BODY_EXCERPT  # bytes of a body that are kept (Healthchecks' default is the same)
KUMA_PREFIX = "/api/push/"
CORS = [(b"access-control-allow-origin", b"*")]  # on every reply, as Healthchecks sends it
PREFLIGHT = [  # and what a browser's OPTIONS asks for
    (b"access-control-allow-methods", b"GET, POST, HEAD, OPTIONS"),
    (b"access-control-allow-headers", b"Content-Type"),
    (b"access-control-max-age", b"86400"),
]


class BadRequest(Exception):
    pass


@dataclasses.dataclass(frozen=True)
class Reply:
    status: int
    text: str


@dataclasses.dataclass(frozen=True)
class PingRequest:
    key: str  # the check's token, or the site ping key when ``name`` is given
    name: str | None  # a slug (or a check's name)
    kind: PingKind
    exit_status: int | None
    rid: str | None = None
    create: bool = False
    kuma: bool = False  # Uptime Kuma's push URL: reply in its JSON
    note: str | None = None  # Kuma's msg and ping, stored as the body


@dataclasses.dataclass(frozen=True)
class SnoozeRequest:
    """``/ping/<token>/snooze?for=30m[&until_up=1]``: mute the check for ``seconds``; with
    ``until_up`` its first good ping ends the snooze."""

    token: str
    seconds: float
    until_up: bool = False


NOT_FOUND = Reply(404, "not found")
_FLAGS = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False, "": False}


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
    return path == "/ping" or path.startswith("/ping/") or path.startswith(KUMA_PREFIX)


def route(
    method: str, path: str, is_ping_key: Callable[[str], bool], query: str = ""
) -> Reply | PingRequest | SnoozeRequest:
    """What ``method path?query`` (the decoded path, under /ping or /api/push) asks for, or the
    reply refusing it.

    A wrong site key on ``/ping/<key>/<slug>`` answers exactly like an unknown token (404), so a
    reply never tells whether a key or a slug exists.
    """
    if path.startswith(KUMA_PREFIX):
        return _kuma(method, path[len(KUMA_PREFIX) :], query)
    parts = path[len("/ping/") :].split("/") if path.startswith("/ping/") else []
    if len(parts) > 1 and parts[-1] == "":
        parts.pop()  # one trailing slash, as Healthchecks allows
    if not 1 <= len(parts) <= 3 or "" in parts:
        return NOT_FOUND
    if method not in ALLOWED_METHODS:
        return Reply(400, "bad request: use GET, POST or HEAD")
    args = parse_qs(query, max_num_fields=20) if query else {}
    rid = args.get("rid", [None])[0]
    if rid is not None and not valid_rid(rid):
        return Reply(400, "bad request: rid must be a UUID")
    a = parts[0]
    b = parts[1] if len(parts) > 1 else None
    c = parts[2] if len(parts) > 2 else None
    try:
        if b is not None and is_ping_key(a):
            act = parse_action(c)
            if act is None:
                return Reply(400, "bad request: unknown action")
            return PingRequest(a, b, *act, rid=rid, create=args.get("create") == ["1"])
        if not TOKEN.fullmatch(a):
            return Reply(400, "bad request: malformed token")
        if c is not None:
            return NOT_FOUND  # /ping/<wrong key>/<slug>/<action>
        if b == "snooze":
            return _snooze(method, a, args)
        act = parse_action(b)
        if act is None:
            return NOT_FOUND  # /ping/<wrong key>/<slug>
        return PingRequest(a, None, *act, rid=rid)
    except BadRequest as e:
        return Reply(400, f"bad request: {e}")


def _snooze(method: str, token: str, args: dict[str, list[str]]) -> Reply | SnoozeRequest:
    """``for`` (required, with a unit, 1m to 7d) and ``until_up`` (1/0, true/false)."""
    if method == "HEAD":
        return Reply(400, "bad request: snooze with GET or POST")
    raw = args.get("for", [None])[0]
    if raw is None:
        return Reply(400, "bad request: say how long, e.g. snooze?for=30m")
    try:
        seconds = parse_duration(raw)
    except ValueError as e:
        return Reply(400, f"bad request: for: {e}")
    if not 60 <= seconds <= 7 * 86400:
        return Reply(400, "bad request: for: a snooze lasts from 1m to 7d")
    flag = args.get("until_up", [""])[0].strip().casefold()
    if flag not in _FLAGS:
        return Reply(400, "bad request: until_up is 1 or 0")
    return SnoozeRequest(token, seconds, _FLAGS[flag])


def _kuma(method: str, token: str, query: str) -> Reply | PingRequest:
    """Uptime Kuma's push URL: ``status`` up (the default) or down, ``msg`` and ``ping`` (its
    response time in ms) kept as the ping's body."""
    token = token.rstrip("/")
    if not TOKEN.fullmatch(token):
        return Reply(404, '{"ok":false,"msg":"Monitor not found or not active."}')
    args = parse_qs(query, max_num_fields=20) if query else {}
    status = args.get("status", ["up"])[0]
    if status not in ("up", "down"):
        return Reply(400, '{"ok":false,"msg":"status must be up or down"}')
    msg = args.get("msg", [""])[0][:1000]
    ms = args.get("ping", [""])[0][:20]
    note = " ".join(p for p in (msg, f"(ping {ms} ms)" if ms else "") if p) or None
    kind = PingKind.SUCCESS if status == "up" else PingKind.FAIL
    return PingRequest(token, None, kind, None, kuma=True, note=note)


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
        common = [
            (b"ping-body-limit", str(STORED).encode()),
            (b"cache-control", b"no-store"),
            *CORS,
            *SECURITY_HEADER_PAIRS,
        ]
        self._headers = [(b"content-type", b"text/plain; charset=utf-8"), *common]
        self._kuma_headers = [(b"content-type", b"application/json; charset=utf-8"), *common]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_ping_path(scope["path"]):
            await self.other(scope, receive, send)
            return
        kuma = scope["path"].startswith(KUMA_PREFIX)
        if scope["method"] == "OPTIONS":  # a browser's CORS preflight: not a ping
            await send({"type": "http.response.start", "status": 204, "headers": [*self._headers, *PREFLIGHT]})
            await send({"type": "http.response.body", "body": b""})
            return
        try:
            status, text = await self._handle(scope, receive)
        except Gone:
            return
        except Exception:
            logger.exception("internal error on %s %s", scope["method"], scope["path"][:80])
            status, text = 500, "internal error"
        if kuma and not text.startswith("{"):
            ok = "true" if status < 300 else "false"
            text = f'{{"ok":{ok}}}' if status < 300 else f'{{"ok":false,"msg":"{text}"}}'
        body = (text + "\n").encode()
        headers = self._kuma_headers if kuma else self._headers
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [*headers, (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _handle(self, scope: Scope, receive: Receive) -> tuple[int, str]:
        method: str = scope["method"]
        raw_query = scope.get("query_string")
        query = raw_query.decode("latin-1") if raw_query else ""
        req = route(method, scope["path"], self.service.check_ping_key, query)
        if isinstance(req, Reply):
            return req.status, req.text
        if isinstance(req, SnoozeRequest):
            try:
                snoozed = await self.service.quiet.snooze_by_token(req.token, req.seconds, req.until_up)
            except ValidationError as e:
                return 400, f"bad request: {e}"
            except StoreError:
                return 503, "storage unavailable, try again"
            return (200, "OK") if snoozed is not None else (NOT_FOUND.status, NOT_FOUND.text)
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
            raw = await read_body(receive, self.max_body, self.body_timeout, keep=STORED)
            if raw is None:
                return too_large
            if isinstance(raw, Reply):
                return raw.status, raw.text
            body = raw.decode("utf-8", "replace") or None
        if req.note is not None:
            body = req.note
        client = scope.get("client")
        meta = PingMeta(
            source="http",
            remote_addr=self.client_addr(client[0] if client else None, forwarded),
            method=method,
            user_agent=user_agent[:USER_AGENT_MAX] or None,
            body=body,
            rid=req.rid,
        )
        try:
            outcome = await asyncio.wrap_future(
                self.service.submit_ping(req.key, req.name, req.kind, req.exit_status, meta, req.create)
            )
        except StoreError:
            return 503, "storage unavailable, try again"
        return _REPLIES.get(outcome, (NOT_FOUND.status, NOT_FOUND.text))


_REPLIES = {
    PingOutcome.OK: (200, "OK"),
    PingOutcome.CREATED: (201, "Created"),
    PingOutcome.LIMIT: (403, "check limit reached"),
    PingOutcome.AMBIGUOUS: (409, "ambiguous slug"),
}


async def read_body(receive: Receive, limit: int, timeout: float, keep: int | None = None) -> bytes | Reply | None:
    """A request body (its first ``keep`` bytes, when given): None when it passes ``limit`` bytes
    (the rest is not read), a 408 reply when the client stalls for ``timeout`` seconds; raises
    Gone when the client disconnects."""
    chunks: list[bytes] = []
    size = kept = 0
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
                if keep is None:
                    chunks.append(chunk)
                elif kept < keep:
                    chunks.append(chunk[: keep - kept])
                    kept += len(chunks[-1])
                if not message.get("more_body"):
                    return b"".join(chunks)
    except TimeoutError:
        return Reply(408, "request timeout: the body took too long")
