"""The Healthchecks-compatible ping API: parse, authenticate, one service call, a plain reply.

``/ping/<token>[/start|/fail|/log|/<exit status 0-255>]`` and
``/ping/<ping-key>/<name>[/<action>]``. Replies are one short line of text.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

import bottle

from gateway.model import PingKind, PingMeta
from gateway.service import PingOutcome, Service
from gateway.store import StoreError

logger = logging.getLogger(__name__)

TOKEN = re.compile(r"[A-Za-z0-9_-]{8,128}")
ALLOWED_METHODS = ("GET", "POST", "HEAD")
_ACTIONS = {"start": PingKind.START, "fail": PingKind.FAIL, "log": PingKind.LOG}


class BadRequest(Exception):
    pass


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


def install(app: bottle.Bottle, service: Service, max_body: int,
            client_addr: Callable[[], str | None]) -> None:
    """Add the ping routes to ``app``."""

    def reply(status: int, text: str) -> str:
        bottle.response.status = status
        bottle.response.content_type = "text/plain; charset=utf-8"
        bottle.response.set_header("Ping-Body-Limit", str(max_body))
        bottle.response.set_header("Cache-Control", "no-store")
        return text + "\n"

    def handle(a: str, b: str | None = None, c: str | None = None) -> str:
        req = bottle.request
        if req.method not in ALLOWED_METHODS:
            return reply(400, "bad request: use GET, POST or HEAD")
        try:
            length = int(req.environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return reply(400, "bad request: invalid Content-Length")
        if length > max_body:
            return reply(413, f"body too large (limit {max_body} bytes)")
        try:
            if b is not None and service.check_ping_key(a):
                act = parse_action(c)
                if act is None:
                    return reply(400, "bad request: unknown action")
                target: tuple[str, str] = ("name", b)
            else:
                if not TOKEN.fullmatch(a):
                    return reply(400, "bad request: malformed token")
                if c is not None:
                    return reply(404, "not found")  # /ping/<wrong key>/<name>/<action>
                act = parse_action(b)
                if act is None:
                    return reply(404, "not found")  # /ping/<wrong key>/<name>
                target = ("token", a)
        except BadRequest as e:
            return reply(400, f"bad request: {e}")
        body = None
        if length or req.environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked":
            raw = req.environ["wsgi.input"].read(max_body + 1)
            if len(raw) > max_body:
                return reply(413, f"body too large (limit {max_body} bytes)")
            body = raw.decode("utf-8", "replace") or None
        meta = PingMeta(source="http", remote_addr=client_addr(), method=req.method,
                        user_agent=(req.environ.get("HTTP_USER_AGENT") or "")[:200] or None,
                        body=body)
        kind, exit_status = act
        try:
            if target[0] == "name":
                outcome = service.record_named_ping(a, target[1], kind, exit_status, meta)
            else:
                outcome = service.record_ping(target[1], kind, exit_status, meta)
        except StoreError:
            return reply(503, "storage unavailable, try again")
        if outcome is PingOutcome.OK:
            return reply(200, "OK")
        if outcome is PingOutcome.LIMIT:
            return reply(403, "check limit reached")
        return reply(404, "not found")

    for path in ("/ping/<a>", "/ping/<a>/<b>", "/ping/<a>/<b>/<c>"):
        app.route(path, method="ANY", callback=handle)
