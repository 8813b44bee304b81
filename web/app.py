"""The HTTP surface. :class:`Site` is the ASGI application the server runs: the ping API
(:mod:`web.ping`, the hot path, served on the event loop) in front of the Bottle app that
``create_app(service, config)`` builds: the admin pages (:mod:`web.pages`), the JSON API and
/metrics (:mod:`web.api`) and /healthz, run in a thread pool through a2wsgi.

Debug is off; every error answers a short text (or a small page) without internals, and
tracebacks go to the log only. Every response carries the security headers of :mod:`web.auth`.
"""

from __future__ import annotations

import ipaddress
import logging
import sys
from collections.abc import Callable
from typing import Any

import a2wsgi
import bottle

from gateway.config import Config
from gateway.service import Service
from web import api, auth, hcapi, pages, ping

logger = logging.getLogger(__name__)

bottle.BaseRequest.MEMFILE_MAX = 64 * 1024


def client_address(trusted: tuple[str, ...]) -> Callable[[str | None, str], str | None]:
    """A function ``(peer, x_forwarded_for) -> client IP``. ``X-Forwarded-For`` is honoured only
    when the direct peer is one of the ``trusted`` proxies (then its right-most untrusted entry
    wins)."""
    nets = [ipaddress.ip_network(t, strict=False) for t in trusted]

    def is_trusted(addr: str) -> bool:
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            return False
        return any(ip in n for n in nets)

    def resolve(peer: str | None, forwarded: str) -> str | None:
        if not nets or peer is None or not is_trusted(peer):
            return peer
        hops = [h.strip() for h in forwarded.split(",") if h.strip()]
        for hop in reversed(hops):
            if not is_trusted(hop):
                return hop
        return hops[0] if hops else peer

    return resolve


def create_app(service: Service, config: Config, *, demo_phone: Any = None) -> bottle.Bottle:
    """The whole HTTP surface of one gateway.

    ``demo_phone``: in demo mode, the simulated phone network (``.sent()``, ``.inject(sender,
    text)``, as :class:`modem.simulator.Network`); the modem page then shows a phone to reply from.
    """
    app = bottle.Bottle(catchall=True, autojson=False)
    app.config["hbgw.service"] = service
    resolve = client_address(config.http.trusted_proxies)

    def client() -> str | None:
        env = bottle.request.environ
        return resolve(env.get("REMOTE_ADDR"), env.get("HTTP_X_FORWARDED_FOR", ""))

    def headers() -> None:
        auth.add_security_headers(bottle.response)

    def healthz() -> str:
        bottle.response.content_type = "text/plain; charset=utf-8"
        return "ok\n"

    app.add_hook("after_request", headers)
    app.route("/healthz", "GET", healthz)

    gate = auth.Auth(service, config.http.trusted_proxies, client)
    site = pages.Pages(app, service, config, gate, client, demo_phone=demo_phone)
    app.install(
        auth.AuthPlugin(
            gate, forbidden=site.forbidden, login_redirect=site.login_redirect, unauthorized=api.unauthorized
        )
    )
    site.install()
    api.install(app, service)
    hcapi.install(app, service)

    def plain_error(err: bottle.HTTPError) -> str:
        if err.status_code >= 500:
            logger.error(
                "internal error on %s %s: %s",
                bottle.request.method,
                bottle.request.path,
                err.exception,
                exc_info=err.exception,
            )
        auth.add_security_headers(bottle.response)
        bottle.response.content_type = "text/plain; charset=utf-8"
        bottle.response.set_header("Cache-Control", "no-store")
        text = {
            400: "bad request",
            403: "forbidden",
            404: "not found",
            405: "method not allowed",
            413: "body too large",
        }.get(err.status_code, "internal error")
        return text + "\n"

    for code in (400, 403, 404, 405, 413, 500):
        app.error(code)(plain_error)
    return app


class Site:
    """The ASGI app of one gateway (``site.app``); ``close()`` stops its WSGI threads."""

    def __init__(self, service: Service, config: Config, *, demo_phone: Any = None) -> None:
        self.wsgi = create_app(service, config, demo_phone=demo_phone)
        # Request bodies for the Bottle side (forms, JSON) are small; a ping body has its own limit.
        self.max_body = min(config.http.max_body, 100_000) + 1024
        self.body_timeout = config.http.idle_timeout
        self._bridge: Any = a2wsgi.WSGIMiddleware(
            self._wsgi_entry,  # type: ignore[arg-type]
            workers=config.http.threads,
        )
        self.app = ping.PingApi(
            service,
            config.http.max_body,
            client_address(config.http.trusted_proxies),
            self._admin,
            body_timeout=config.http.idle_timeout,
        )

    def _wsgi_entry(self, environ: dict[str, Any], start_response: Any) -> Any:
        environ["wsgi.errors"] = sys.stderr  # a2wsgi says stdout; Bottle writes tracebacks there
        return self.wsgi(environ, start_response)

    async def _admin(self, scope: ping.Scope, receive: ping.Receive, send: ping.Send) -> None:
        if scope["type"] != "http":
            return  # no websockets here
        if hcapi.is_internal(scope["path"]):
            await _plain(send, 404, "not found")  # Healthchecks' routes are reached only through hcapi.dialect
            return
        length = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        chunked = any(k == b"transfer-encoding" for k, _ in scope["headers"])
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            await _plain(
                send, 413 if length.isdigit() else 400, "body too large" if length.isdigit() else "bad request"
            )
            return
        body: bytes | ping.Reply | None = b""
        if chunked or (length is not None and int(length) > 0):
            # Take the (small) body here, bounded in size and time, so a slow or oversized upload
            # never ties up a page thread; the app then reads it from memory.
            try:
                body = await ping.read_body(receive, self.max_body, self.body_timeout)
            except ping.Gone:
                return
            if body is None:
                await _plain(send, 413, "body too large")
                return
            if isinstance(body, ping.Reply):
                await _plain(send, body.status, body.text)
                return
            receive = _replay(body, receive)
        # Healthchecks' management API shares /api/v1 with ours: hcapi.dialect tells them apart
        target = hcapi.dialect(scope["path"], scope["headers"], body if isinstance(body, bytes) else b"")
        if target is not None:
            scope = {**scope, "path": target, "raw_path": target.encode()}
        await self._bridge(scope, receive, send)

    def close(self) -> None:
        self._bridge.executor.shutdown(wait=False, cancel_futures=True)


def _replay(body: bytes, receive: ping.Receive) -> ping.Receive:
    sent = False

    async def again() -> ping.Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: the disconnect, whenever it comes

    return again


async def _plain(send: ping.Send, status: int, text: str) -> None:
    body = (text + "\n").encode()
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"cache-control", b"no-store"),
        (b"content-length", str(len(body)).encode()),
        *auth.SECURITY_HEADER_PAIRS,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
