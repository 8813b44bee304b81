"""The WSGI application: ``create_app(service, config)`` returns a ``bottle.Bottle``.

Debug is off and every error handler answers a short text without internals; tracebacks go to
the log only.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

import bottle

from gateway.config import Config
from gateway.service import Service
from web import ping

logger = logging.getLogger(__name__)

bottle.BaseRequest.MEMFILE_MAX = 64 * 1024


def client_address(trusted: tuple[str, ...]) -> Any:
    """A function giving the request's client IP. ``X-Forwarded-For`` is honoured only when the
    direct peer is one of the ``trusted`` proxies (then its right-most untrusted entry wins)."""
    nets = [ipaddress.ip_network(t, strict=False) for t in trusted]

    def is_trusted(addr: str) -> bool:
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            return False
        return any(ip in n for n in nets)

    def get() -> str | None:
        env = bottle.request.environ
        peer: str | None = env.get("REMOTE_ADDR")
        if not nets or peer is None or not is_trusted(peer):
            return peer
        hops = [h.strip() for h in env.get("HTTP_X_FORWARDED_FOR", "").split(",") if h.strip()]
        for hop in reversed(hops):
            if not is_trusted(hop):
                return hop
        return hops[0] if hops else peer

    return get


def create_app(service: Service, config: Config) -> bottle.Bottle:
    app = bottle.Bottle(catchall=True, autojson=False)
    app.config["hbgw.service"] = service
    client = client_address(config.http.trusted_proxies)
    ping.install(app, service, config.http.max_body, client)

    @app.get("/healthz")
    def healthz() -> str:
        bottle.response.content_type = "text/plain; charset=utf-8"
        return "ok\n"

    def plain_error(err: bottle.HTTPError) -> str:
        if err.status_code >= 500:
            logger.error("internal error on %s %s: %s", bottle.request.method,
                         bottle.request.path, err.exception, exc_info=err.exception)
        bottle.response.content_type = "text/plain; charset=utf-8"
        bottle.response.set_header("Cache-Control", "no-store")
        text = {400: "bad request", 404: "not found", 405: "method not allowed",
                413: "body too large"}.get(err.status_code, "internal error")
        return text + "\n"

    for code in (400, 404, 405, 413, 500):
        app.error(code)(plain_error)
    return app
