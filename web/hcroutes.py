"""The handlers of Healthchecks' management API (the routing, the dialect rule and what differs
from Healthchecks are in :mod:`web.hcapi`). Imported at the first request a Healthchecks client
makes, so a gateway nobody calls that way does not hold its code in memory."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from typing import Any

import bottle

from gateway.errors import ValidationError
from gateway.model import ApiKey, Check, Status
from gateway.rules import hcfields as hc
from gateway.service import Service
from gateway.store import Conflict, NotFound
from web import badges
from web.api import MAX_JSON, reply

logger = logging.getLogger(__name__)

_UNIQUE_KEY_LEN = 40
_CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Headers": "X-Api-Key",
    "Access-Control-Max-Age": "600",
}


class _Refusal(Exception):
    """Stop handling and answer ``status`` with ``body`` (a JSON object, or text)."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


def _error(status: int, message: str) -> _Refusal:
    return _Refusal(status, {"error": message})


def _request_json() -> dict[str, Any]:
    """A POST's JSON object ({} without a body), as Healthchecks' ``authorize`` parses it."""
    if bottle.request.method != "POST":
        return {}
    length = int(bottle.request.content_length or 0)
    if length > MAX_JSON:
        raise _error(400, "could not parse request body")
    raw = bottle.request.body.read(MAX_JSON + 1) if length else b""
    if not raw:
        return {}
    try:
        data = json.loads(raw.decode())
    except ValueError:
        raise _error(400, "could not parse request body") from None
    if not isinstance(data, dict):
        raise _error(400, "json validation error: value is not an object")
    return data


class _Call:
    """One authenticated request: its version, key and JSON body."""

    def __init__(self, v: int, key: ApiKey, data: dict[str, Any]) -> None:
        self.v = v
        self.key = key
        self.data = data

    @property
    def readonly(self) -> bool:
        return self.key.scope == "read"


def handlers(service: Service) -> dict[str, Callable[..., Any]]:
    """The route callbacks of Healthchecks' API over ``service``, by the names in
    :data:`web.hcapi.ROUTES`."""

    def authorize(v: str, read: bool) -> _Call:
        version = int(v)
        data = _request_json()
        secret = bottle.request.get_header("X-Api-Key")
        if secret is None and not read and "api_key" in data:
            secret = str(data["api_key"])
        if not secret:
            raise _error(401, "missing api key")
        key = service.accounts.authenticate_api_key(secret)
        if key is None or (key.scope == "read" and not read):
            raise _error(401, "wrong api key")
        return _Call(version, key, data)

    def channels() -> list[hc.Channel]:
        s = service.settings
        return hc.channels_of(s.sms_to, s.email_to)

    def to_dict(call: _Call, check: Check, now: float | None = None) -> dict[str, Any]:
        return hc.check_dict(
            check,
            service.clock() if now is None else now,
            v=call.v,
            readonly=call.readonly,
            base_url=service.base_url,
            badge_url=badges.badge_urls(service, check)["svg"],
            channels="" if call.readonly else hc.check_channels(check, channels()),
        )

    def find(ident: str, *, unique: bool = False) -> Check:
        if unique and len(ident) == _UNIQUE_KEY_LEN:
            for c in service.list_checks():
                if hc.unique_key(c.token) == ident:
                    return c
        found = service.find_check_by_token(ident)
        if found is None:
            raise _error(404, "not found")
        return found

    def handled(read: bool, fn: Callable[..., Any]) -> Callable[..., Any]:
        def run(v: str, **kwargs: Any) -> Any:
            for name, value in _CORS.items():
                bottle.response.set_header(name, value)
            try:
                if bottle.request.method == "OPTIONS":
                    bottle.response.status = 204
                    return ""
                # a read-only key may only read: a POST or DELETE needs a read-write key
                reading = read and bottle.request.method in ("GET", "HEAD")
                return fn(authorize(v, reading), **kwargs)
            except _Refusal as r:
                if isinstance(r.body, str):
                    bottle.response.status = r.status
                    bottle.response.content_type = "text/plain; charset=utf-8"
                    return r.body
                return reply(r.status, r.body)
            except hc.SpecError as e:
                return reply(400, {"error": str(e)})
            except ValidationError as e:
                return reply(400, {"error": f"json validation error: {e.field}: {e}"})
            except NotFound:
                return reply(404, {"error": "not found"})
            except Conflict as e:
                return reply(409, {"error": str(e)})

        return run

    # ------------------------------------------------------------------ checks

    def list_checks(call: _Call) -> str:
        tags = bottle.request.query.getall("tag")
        slug = bottle.request.query.get("slug")
        now = service.clock()
        found = [
            to_dict(call, c, now)
            for c in service.list_checks()
            if hc.matches_tags(c, tags) and (not slug or c.slug == slug)
        ]
        return reply(200, {"checks": found})

    def checks(call: _Call) -> str:
        return create(call) if bottle.request.method == "POST" else list_checks(call)

    def create(call: _Call) -> str:
        spec = hc.parse_spec(call.data)
        chans = channels()
        existing = hc.find_unique(service.list_checks(), spec)
        if existing is not None:
            changes = hc.spec_changes(spec, v=call.v, check=existing, channels=chans)
            return reply(200, to_dict(call, _patch(existing, changes)))
        if service.store.count_checks() >= service.config.security.max_checks:
            raise _error(403, "check limit reached")
        token = str(uuid.uuid4())
        changes = hc.spec_changes(spec, v=call.v, check=None, channels=chans)
        name = changes.pop("name", None) or hc.new_check_name(spec, token)
        timing = {k: changes.pop(k, None) for k in ("period", "grace", "cron", "tz")}
        fields = {k: changes.pop(k) for k in ("slug", "tags", "desc", "manual_resume", "methods") if k in changes}
        check = service.add_check(name, token=token, **timing, **fields)
        rest = {k: v for k, v in changes.items() if getattr(check, k, None) != v}
        if rest:
            check = service.patch_check(check.name, **rest)
        return reply(201, to_dict(call, check))

    def _patch(check: Check, changes: dict[str, Any]) -> Check:
        if not changes:
            return check
        return service.patch_check(check.name, **changes)

    def single(call: _Call, ident: str) -> str:
        method = bottle.request.method
        if method == "GET":
            return reply(200, to_dict(call, find(ident, unique=True)))
        check = find(ident)
        if method == "DELETE":
            gone = service.remove_check(check.name)
            return reply(200, to_dict(call, gone))
        spec = hc.parse_spec(call.data)
        changes = hc.spec_changes(spec, v=call.v, check=check, channels=channels())
        return reply(200, to_dict(call, _patch(check, changes)))

    def pause(call: _Call, ident: str) -> str:
        check = find(ident)
        if check.status is not Status.PAUSED:
            check = service.pause(check.name)
        return reply(200, to_dict(call, check))

    def resume(call: _Call, ident: str) -> str:
        check = find(ident)
        if check.status is not Status.PAUSED:
            raise _Refusal(409, "check is not paused")
        return reply(200, to_dict(call, service.resume(check.name)))

    def pings(call: _Call, ident: str) -> str:
        check = find(ident)
        rows = service.store.list_pings(check.id, limit=1000)
        base = service.base_url
        return reply(200, {"pings": [hc.ping_dict(p, v=call.v, base_url=base, token=check.token) for p in rows]})

    def ping_body(call: _Call, ident: str, n: int) -> str:
        check = find(ident)
        found = service.store.list_pings(check.id, limit=1, ping_id=n)
        if not found or not found[0].body:
            raise _error(404, "not found")
        bottle.response.content_type = "text/plain"
        return found[0].body

    def flips(call: _Call, ident: str) -> str:
        check = find(ident, unique=True)
        try:
            window = hc.parse_flip_window(bottle.request.query, service.clock())
        except hc.SpecError:
            raise _Refusal(400, "") from None
        events = service.store.list_flips(check.id, window.start, window.end)
        return reply(200, {"flips": [hc.flip_dict(e) for e in events if hc.is_hc_flip(e.old_status, e.new_status)]})

    # ------------------------------------------------------------------ project

    def list_channels(call: _Call) -> str:
        return reply(200, {"channels": [c.to_dict() for c in channels()]})

    def list_badges(call: _Call) -> str:
        return reply(200, {"badges": badges.project_badges(service)})

    def status(v: str) -> str:
        service.store.count_checks()  # the database answers
        bottle.response.content_type = "text/plain; charset=utf-8"
        bottle.response.set_header("Cache-Control", "no-store")
        return "OK"

    return {
        "checks": handled(True, checks),
        "single": handled(True, single),
        "pause": handled(False, pause),
        "resume": handled(False, resume),
        "pings": handled(False, pings),
        "ping_body": handled(False, ping_body),
        "flips": handled(True, flips),
        "channels": handled(False, list_channels),
        "badges": handled(True, list_badges),
        "status": status,
    }
