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
from collections.abc import Callable, Iterable
from typing import Any

import bottle

from gateway.service import Service

INTERNAL = "/hc-api"
_PUBLIC_PREFIXES = ("/api/v2/", "/api/v3/")


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


# (paths under /hc-api/v<n>, methods, the handler's name in web.hcroutes.handlers)
ROUTES: tuple[tuple[tuple[str, ...], tuple[str, ...], str], ...] = (
    (("/checks/", "/checks"), ("GET", "POST", "OPTIONS"), "checks"),
    (("/checks/<ident>",), ("GET", "POST", "DELETE", "OPTIONS"), "single"),
    (("/checks/<ident>/pause",), ("POST", "OPTIONS"), "pause"),
    (("/checks/<ident>/resume",), ("POST", "OPTIONS"), "resume"),
    (("/checks/<ident>/pings/", "/checks/<ident>/pings"), ("GET", "OPTIONS"), "pings"),
    (("/checks/<ident>/pings/<n:int>/body",), ("GET", "OPTIONS"), "ping_body"),
    (("/checks/<ident>/flips/", "/checks/<ident>/flips"), ("GET", "OPTIONS"), "flips"),
    (("/channels/", "/channels"), ("GET", "OPTIONS"), "channels"),
    (("/badges/", "/badges"), ("GET", "OPTIONS"), "badges"),
    (("/status/", "/status"), ("GET",), "status"),
)


def install(app: bottle.Bottle, service: Service) -> None:
    """Add Healthchecks' API under :data:`INTERNAL` to ``app`` (reached only through
    :func:`dialect`). The handlers (:mod:`web.hcroutes`) are imported at the first call."""
    loaded: dict[str, Callable[..., Any]] = {}

    def lazy(name: str) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            if not loaded:
                from web import hcroutes

                loaded.update(hcroutes.handlers(service))
            return loaded[name](*args, **kwargs)

        return run

    root = INTERNAL + "/v<v:re:[123]>"
    for paths, methods, name in ROUTES:
        for path in paths:
            app.route(root + path, list(methods), lazy(name))
