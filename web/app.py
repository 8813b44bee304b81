"""The WSGI application: ``create_app(service, config)`` returns a ``bottle.Bottle``.

It carries the ping API (:mod:`web.ping`), the admin pages (:mod:`web.pages`), the JSON API and
/metrics (:mod:`web.api`) and /healthz. Debug is off; every error answers a short text (or a
small page) without internals, and tracebacks go to the log only. Every response carries the
security headers of :mod:`web.auth`.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

import bottle

from gateway.config import Config
from gateway.service import Service
from web import api, auth, pages, ping

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
        forwarded: str = env.get("HTTP_X_FORWARDED_FOR", "")
        hops = [h.strip() for h in forwarded.split(",") if h.strip()]
        for hop in reversed(hops):
            if not is_trusted(hop):
                return hop
        return hops[0] if hops else peer

    return get


def create_app(service: Service, config: Config, *, demo_phone: Any = None) -> bottle.Bottle:
    """The whole HTTP surface of one gateway.

    ``demo_phone``: in demo mode, the simulated phone network (``.sent()``, ``.inject(sender,
    text)``, as :class:`modem.simulator.Network`); the modem page then shows a phone to reply from.
    """
    app = bottle.Bottle(catchall=True, autojson=False)
    app.config["hbgw.service"] = service
    client = client_address(config.http.trusted_proxies)
    ping.install(app, service, config.http.max_body, client)
    service.load_owner_settings()

    def headers() -> None:
        auth.add_security_headers(bottle.response)

    def healthz() -> str:
        bottle.response.content_type = "text/plain; charset=utf-8"
        return "ok\n"

    app.add_hook("after_request", headers)
    app.route("/healthz", "GET", healthz)

    gate = auth.Auth(service, config.http.trusted_proxies, client)
    site = pages.Pages(app, service, config, gate, client, demo_phone=demo_phone)
    app.install(auth.AuthPlugin(gate, forbidden=site.forbidden, login_redirect=site.login_redirect,
                                unauthorized=api.unauthorized))
    site.install()
    api.install(app, service)

    def plain_error(err: bottle.HTTPError) -> str:
        if err.status_code >= 500:
            logger.error("internal error on %s %s: %s", bottle.request.method,
                         bottle.request.path, err.exception, exc_info=err.exception)
        auth.add_security_headers(bottle.response)
        bottle.response.content_type = "text/plain; charset=utf-8"
        bottle.response.set_header("Cache-Control", "no-store")
        text = {400: "bad request", 403: "forbidden", 404: "not found", 405: "method not allowed",
                413: "body too large"}.get(err.status_code, "internal error")
        return text + "\n"

    for code in (400, 403, 404, 405, 413, 500):
        app.error(code)(plain_error)
    return app
