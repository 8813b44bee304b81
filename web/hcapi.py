"""Healthchecks' management API (its ``templates/docs/api.md``), so its clients, scripts and
Terraform providers work against the gateway unchanged.

Two dialects on /api/v1
-----------------------
Healthchecks' API lives at ``/api/v1/``, ``/api/v2/`` and ``/api/v3/``; ours (:mod:`web.api`) at
``/api/v1/checks[/<name>]``. :func:`dialect` decides, before Bottle sees the request (the body
is in memory by then, see ``web.app.Site._admin``). A request is Healthchecks' when its path

1. starts with ``/api/v2/`` or ``/api/v3/``; or
2. starts with ``/api/v1/`` and it has an ``X-Api-Key`` header; or
3. starts with ``/api/v1/``, has no ``Authorization`` header, and its path ends with ``/`` or
   contains ``/pings/`` or ``/flips/``, or its JSON body has an ``api_key`` field.

Everything else under ``/api/v1/`` is ours (``Authorization: Bearer``, no trailing slashes).
Healthchecks' requests are rewritten to the internal prefix :data:`INTERNAL` (``/api/v3/x`` →
``/hc-api/v3/x``), where the routes below live; a request that arrives there from outside
answers 404, so the rule above is the only way in.

Endpoints (``v`` = 1, 2 or 3; trailing slashes as Healthchecks writes them, also accepted
without)::

    GET    checks/                    {"checks": [...]}  ?tag= (repeatable, all must match), ?slug=
    POST   checks/                    create → 201; ``unique`` finds and updates → 200
    GET    checks/<uuid|unique_key>   one check
    POST   checks/<uuid>              update
    DELETE checks/<uuid>              the check as it was
    POST   checks/<uuid>/pause        the check (already paused: unchanged)
    POST   checks/<uuid>/resume       the check; 409 "check is not paused"
    GET    checks/<uuid>/pings/       {"pings": [...]} newest first
    GET    checks/<uuid>/pings/<n>/body   text/plain; 404 when it has none
    GET    checks/<uuid|unique_key>/flips/   {"flips": [...]} ?seconds= ?start= ?end=
    GET    channels/                  {"channels": [...]}: the owner's SMS numbers and addresses
    GET    badges/                    {"badges": {"<tag>": {...}, "*": {...}}}
    GET    status/                    "OK" (no key: the database answers)

A ``<uuid>`` is the check's ping token: a Healthchecks UUID, or one of our own tokens.

Authentication: ``X-Api-Key``, or for POST an ``api_key`` field in the JSON body; 401
``{"error": "missing api key"}`` / ``{"error": "wrong api key"}``. A read-only key may list and
get checks (without ``uuid``, URLs and ``channels``, with ``unique_key``), list flips and badges;
anything else answers "wrong api key", as Healthchecks does.

Where we differ, deliberately:

- Checks created here get a UUID ping token, so Healthchecks clients that expect one work.
- A check needs a name here: one created without gets its slug or ``check-<token start>``.
  Names are unique here, so a create or rename to a taken name answers 409.
- ``channels``: our checks alert every SMS recipient or none, and every email recipient or none.
  ``"*"`` or a list naming an SMS integration turns SMS on (else off when a list is given), the
  same for email; absent leaves them as they are. On create, absent means both on (Healthchecks
  assigns none): a check nobody hears about is useless.
- Resuming a check that was pinged before starts a fresh period here, so it answers ``up``
  (Healthchecks forgets the last ping and answers ``new``).
- ``n`` in pings is our ping id, unique across checks (Healthchecks counts per check).
- Flips to and from ``late`` are left out: Healthchecks has no such state (late is still up).
- The check limit (``[security] max_checks``) answers 403, as Healthchecks' plan limit.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Iterable
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

INTERNAL = "/hc-api"
_PUBLIC_PREFIXES = ("/api/v2/", "/api/v3/")
_UNIQUE_KEY_LEN = 40
_CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Headers": "X-Api-Key",
    "Access-Control-Max-Age": "600",
}


def dialect(path: str, headers: Iterable[tuple[bytes, bytes]], body: bytes) -> str | None:
    """The internal path of a request that is Healthchecks' (the rule in the module docstring),
    or None: not Healthchecks' (ours, or not the API). ``headers`` as ASGI gives them (names in
    lower case); ``body`` the request body read so far."""
    if path.startswith(_PUBLIC_PREFIXES):
        return INTERNAL + path[len("/api") :]
    if not path.startswith("/api/v1/"):
        return None
    names = {name.lower() for name, _ in headers}
    ours = INTERNAL + path[len("/api") :]
    if b"x-api-key" in names:
        return ours
    if b"authorization" in names:
        return None
    if path.endswith("/") or "/pings/" in path or "/flips/" in path or _has_api_key(body):
        return ours
    return None


def _has_api_key(body: bytes) -> bool:
    if b"api_key" not in body:
        return False
    try:
        data = json.loads(body)
    except ValueError:
        return False
    return isinstance(data, dict) and "api_key" in data


def is_internal(path: str) -> bool:
    """Whether ``path`` is under the internal prefix (from outside: 404)."""
    return path == INTERNAL or path.startswith(INTERNAL + "/")


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


def install(app: bottle.Bottle, service: Service) -> None:
    """Add Healthchecks' API under :data:`INTERNAL` to ``app`` (reached only through
    :func:`dialect`)."""

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

    root = INTERNAL + "/v<v:re:[123]>"

    def route(paths: tuple[str, ...], methods: list[str], read: bool, fn: Callable[..., Any]) -> None:
        for path in paths:
            app.route(root + path, [*methods, "OPTIONS"], handled(read, fn))

    route(("/checks/", "/checks"), ["GET", "POST"], True, checks)
    route(("/checks/<ident>",), ["GET", "POST", "DELETE"], True, single)
    route(("/checks/<ident>/pause",), ["POST"], False, pause)
    route(("/checks/<ident>/resume",), ["POST"], False, resume)
    route(("/checks/<ident>/pings/", "/checks/<ident>/pings"), ["GET"], False, pings)
    route(("/checks/<ident>/pings/<n:int>/body",), ["GET"], False, ping_body)
    route(("/checks/<ident>/flips/", "/checks/<ident>/flips"), ["GET"], True, flips)
    route(("/channels/", "/channels"), ["GET"], False, list_channels)
    route(("/badges/", "/badges"), ["GET"], True, list_badges)
    for path in ("/status/", "/status"):
        app.route(root + path, "GET", status)
