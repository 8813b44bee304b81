"""Status badges at Healthchecks' URLs, readable without a login: the unguessable key is the
credential (the rules and the drawing are :mod:`gateway.rules.badges`).

    GET /b/2/<check badge key>.<fmt>                 one check, two states (late shows as up)
    GET /b/3/<check badge key>.<fmt>                 one check, three states
    GET /badge/<site badge key>/<sig>/<tag>.<fmt>    every check with the tag, three states
    GET /badge/<site badge key>/<sig>-2/<tag>.<fmt>  ... two states
    GET /badge/<site badge key>/<sig>.<fmt>          every check (the tag "*"), three states
    GET /badge/<site badge key>/<sig>-2.<fmt>        ... two states

``fmt`` is ``svg``, ``json`` (``{"status", "total", "grace", "down"}``) or ``shields`` (a
shields.io endpoint). ``<tag>`` is percent-encoded. An unknown key, a wrong signature or an
unknown format answer 404. The badge secret and the site badge key are made on first use and
kept in the settings table (``badge_secret``, ``badge_key``); a check's key stays the same
across renames and new ping URLs.

:func:`badge_urls` and :func:`project_badges` give the URLs (Healthchecks' management API lists
them as ``badge_url`` and under ``/api/v3/badges/``).
"""

from __future__ import annotations

import hmac
import json
import threading
import weakref
from urllib.parse import quote

import bottle

from gateway.model import Check
from gateway.rules import badges as rules
from gateway.rules import status as st
from gateway.service import Service, url_secret

FORMATS = ("svg", "json", "shields")


class _Keys:
    """The badge secret and the site key of one service, and its checks' keys (memoized: one
    HMAC per check, not per request)."""

    def __init__(self, service: Service) -> None:
        self.secret = service.store.setting_or_create("badge_secret", lambda: url_secret(16))
        self.site_key = service.store.setting_or_create("badge_key", lambda: url_secret(16))
        self._checks: dict[tuple[int, float], str] = {}

    def check_key(self, check: Check) -> str:
        memo = (check.id, check.created)
        key = self._checks.get(memo)
        if key is None:
            key = self._checks[memo] = rules.check_key(self.secret, check.id, check.created)
        return key


_keys: weakref.WeakKeyDictionary[Service, _Keys] = weakref.WeakKeyDictionary()
_keys_lock = threading.Lock()


def _keys_of(service: Service) -> _Keys:
    # The settings are read (or made) once per service; a write per badge request would queue
    # behind the ping path on the store's one writer.
    with _keys_lock:
        keys = _keys.get(service)
        if keys is None:
            keys = _keys[service] = _Keys(service)
        return keys


def check_badge_key(service: Service, check: Check) -> str:
    return _keys_of(service).check_key(check)


def badge_urls(service: Service, check: Check) -> dict[str, str]:
    """The badge URLs of one check: ``svg``, ``json``, ``shields`` (two states) and ``svg3``,
    ``json3``, ``shields3`` (three states)."""
    key = check_badge_key(service, check)
    base = service.base_url
    out: dict[str, str] = {}
    for fmt in FORMATS:
        out[fmt] = f"{base}/b/2/{key}.{fmt}"
        out[f"{fmt}3"] = f"{base}/b/3/{key}.{fmt}"
    return _ordered(out)


def tag_urls(service: Service, tag: str) -> dict[str, str]:
    """The badge URLs of every check with ``tag`` (``"*"``: every check), keyed as
    :func:`badge_urls`."""
    keys = _keys_of(service)
    sig = rules.tag_signature(keys.secret, keys.site_key, tag)
    root = f"{service.base_url}/badge/{keys.site_key}"
    out: dict[str, str] = {}
    for fmt in FORMATS:
        for suffix, name in ((rules.TWO_STATES, fmt), ("", f"{fmt}3")):
            if tag == rules.ALL:
                out[name] = f"{root}/{sig}{suffix}.{fmt}"
            else:
                out[name] = f"{root}/{sig}{suffix}/{quote(tag, safe='')}.{fmt}"
    return _ordered(out)


def project_badges(service: Service) -> dict[str, dict[str, str]]:
    """Every tag in use, and ``"*"``, with its badge URLs (as :func:`tag_urls`)."""
    tags = {rules.ALL}
    for check in service.list_checks():
        tags.update(check.tag_list)
    return {tag: tag_urls(service, tag) for tag in sorted(tags)}


def _ordered(urls: dict[str, str]) -> dict[str, str]:
    return {k: urls[k] for k in ("svg", "svg3", "json", "json3", "shields", "shields3")}


# ---------------------------------------------------------------------- routes


def _not_found() -> str:
    bottle.response.status = 404
    bottle.response.content_type = "text/plain; charset=utf-8"
    bottle.response.set_header("Cache-Control", "no-store")
    return "not found\n"


def _render(fmt: str, label: str, summary: rules.Summary) -> str:
    bottle.response.set_header("Cache-Control", "no-cache, no-store, must-revalidate, max-age=0")
    bottle.response.set_header("Access-Control-Allow-Origin", "*")  # shields.io, README pages
    if fmt == "svg":
        bottle.response.content_type = "image/svg+xml"
        return rules.svg(label, summary.status)
    bottle.response.content_type = "application/json"
    data = rules.to_json(summary) if fmt == "json" else rules.to_shields(label, summary.status)
    return json.dumps(data, ensure_ascii=False) + "\n"


def _split_format(rest: str) -> tuple[str, str] | None:
    name, dot, fmt = rest.rpartition(".")
    if not dot or not name or fmt not in FORMATS:
        return None
    return name, fmt


def install(app: bottle.Bottle, service: Service) -> None:
    """Add the badge routes to ``app`` (no login: ``auth="public"``)."""
    _keys_of(service)  # made at startup, so the first badge request reads, never writes

    def one_check(states: str, rest: str) -> str:
        parsed = _split_format(rest)
        if states not in ("2", "3") or parsed is None:
            return _not_found()
        key, fmt = parsed
        keys = _keys_of(service)
        for check in service.list_checks():
            if hmac.compare_digest(keys.check_key(check).encode(), key.encode()):
                status = st.evaluate(check, service.clock()).status
                return _render(fmt, check.name, rules.summarize([status], int(states)))
        return _not_found()

    def tagged(site_key: str, signature: str, tag: str, fmt: str) -> str:
        keys = _keys_of(service)
        states = rules.signature_states(signature)
        if (
            states is None
            or not hmac.compare_digest(keys.site_key.encode(), site_key.encode())
            or not rules.signature_ok(keys.secret, keys.site_key, tag, signature)
        ):
            return _not_found()
        now = service.clock()
        checks = service.list_checks()
        if tag != rules.ALL:
            checks = [c for c in checks if tag in c.tag_list]
        summary = rules.summarize((st.evaluate(c, now).status for c in checks), states)
        return _render(fmt, rules.ALL_LABEL if tag == rules.ALL else tag, summary)

    def tag_badge(site_key: str, signature: str, rest: str) -> str:
        parsed = _split_format(rest)
        if parsed is None:
            return _not_found()
        return tagged(site_key, signature, parsed[0], parsed[1])

    def all_badge(site_key: str, rest: str) -> str:
        parsed = _split_format(rest)
        if parsed is None:
            return _not_found()
        return tagged(site_key, parsed[0], rules.ALL, parsed[1])

    app.route("/b/<states>/<rest>", "GET", one_check, auth="public")
    app.route("/badge/<site_key>/<rest>", "GET", all_badge, auth="public")
    app.route("/badge/<site_key>/<signature>/<rest:path>", "GET", tag_badge, auth="public")
