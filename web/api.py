"""The JSON API (``/api/v1``), behind an API key; ``install`` also adds ``/metrics``
(:mod:`web.metrics`) and the status badges (:mod:`web.badges`).

``Authorization: Bearer <key>``; keys are made on the settings page and stored as hashes. A check
is always its stable JSON form, :meth:`Service.describe`. Errors are ``{"error": message}`` with
``field`` for invalid input (400), 401 without a valid key, 404 for an unknown check, 409 for a
name that exists.

    GET    /api/v1/checks                   {"checks": [check, ...]}
    POST   /api/v1/checks                   {"name", "period"?, "grace"?, "cron"?, "tz"?, "token"?,
                                             "slug"?, "tags"?, "desc"?, "manual_resume"?,
                                             "methods"?} → 201 check
    GET    /api/v1/checks/<name>            check
    POST   /api/v1/checks/<name>            {"period"?, "grace"?, "cron"?, "tz"?, "sms_enabled"?,
    PATCH  /api/v1/checks/<name>             "email_enabled"?, "repeat"?, "ladder"?, "name"?,
                                             "slug"?, "tags"?, "desc"?, "manual_resume"?,
                                             "methods"?, "depends_on"?} → check (fields left out stay)
    DELETE /api/v1/checks/<name>            {"deleted": name}
    POST   /api/v1/checks/<name>/pause      check
    POST   /api/v1/checks/<name>/ack        check (acknowledge the outage)
    POST   /api/v1/checks/<name>/mute       {"for": "2h"} -> check
    POST   /api/v1/checks/<name>/unmute     check
    POST   /api/v1/checks/<name>/resume     check
    POST   /api/v1/checks/<name>/new-url    check with a new ping URL and email address (the old
                                            ones answer 404 from now on)
    GET    /api/v1/checks/<name>/pings      {"pings": [...]}, newest first (?limit=1-1000)
    POST   /api/v1/checks/<name>/snooze     {"for": "30m", "until_up"?: true} -> check
    GET    /api/v1/maintenance              {"windows": [window, ...]} in force (?all=1: every one)
    POST   /api/v1/maintenance              {"checks": [name, ...] | "tag": "office" | "all": true,
                                             "from"?: "02:00" | ISO, "cron"?, "tz"?, "for": "1h"}
                                             → 201 window
    POST   /api/v1/maintenance/<id>/end     window (ended now)

Durations are seconds or strings such as "15m". Tags are a space-separated string on input and a
list in a check. A read-only key may only GET. Healthchecks' own API (``X-Api-Key``, trailing
slashes, UUIDs) is :mod:`web.hcapi`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import bottle

from gateway.errors import ValidationError
from gateway.quiet import WindowRequest
from gateway.rules import settings as settings_rules
from gateway.service import Service, parse_duration_field
from gateway.store import Conflict, NotFound
from web import badges, metrics, smsapi

logger = logging.getLogger(__name__)

MAX_JSON = 16 * 1024


def reply(status: int, data: Any) -> str:
    bottle.response.status = status
    bottle.response.content_type = "application/json"
    bottle.response.set_header("Cache-Control", "no-store")
    return json.dumps(data, ensure_ascii=False) + "\n"


def unauthorized() -> str:
    bottle.response.set_header("WWW-Authenticate", 'Bearer realm="hbgw"')
    return reply(401, {"error": "a valid API key is required (Authorization: Bearer <key>)"})


class BadJson(Exception):
    pass


def body() -> dict[str, Any]:
    """The request's JSON object (empty body: {}). Raises BadJson."""
    length = int(bottle.request.content_length or 0)
    if length > MAX_JSON:
        raise BadJson(f"body over {MAX_JSON} bytes")
    raw = bottle.request.body.read(MAX_JSON + 1) if length else b""
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        raise BadJson("the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise BadJson("the body must be a JSON object")
    return data


def _text(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise ValidationError(key, "must be a string")
    return value


def _flag(data: dict[str, Any], key: str, default: bool) -> bool:
    value = data.get(key, default)
    if not isinstance(value, bool):
        raise ValidationError(key, "must be true or false")
    return value


def install(app: bottle.Bottle, service: Service) -> None:
    """Add the API routes, /metrics and the badges to ``app`` (authentication: the ``auth`` option)."""

    def handled(fn: Callable[..., str]) -> Callable[..., str]:
        def run(*args: Any, **kwargs: Any) -> str:
            try:
                return fn(*args, **kwargs)
            except BadJson as e:
                return reply(400, {"error": str(e)})
            except ValidationError as e:
                return reply(400, {"error": str(e), "field": e.field})
            except NotFound:
                return reply(404, {"error": "no such check"})
            except Conflict as e:
                return reply(409, {"error": str(e)})

        return run

    def route(path: str, method: str | list[str], fn: Callable[..., str]) -> None:
        app.route(path, method, handled(fn), auth="api")

    def list_checks() -> str:
        now = service.clock()
        return reply(200, {"checks": [service.views.describe(c, now) for c in service.list_checks()]})

    def create() -> str:
        data = body()
        allowed = {"name", "period", "grace", "cron", "tz", "token", "slug", "tags", "desc", "manual_resume", "methods"}
        unknown = sorted(set(data) - allowed)
        if unknown:  # e.g. Healthchecks' "timeout": that API answers with X-Api-Key (web.hcapi)
            raise ValidationError(unknown[0], f"unknown field (allowed: {', '.join(sorted(allowed))})")
        extra = {k: data[k] for k in ("slug", "tags", "desc", "manual_resume", "methods") if k in data}
        check = service.add_check(
            _text(data, "name") or "",
            period=parse_duration_field("period", data.get("period")),
            grace=parse_duration_field("grace", data.get("grace")),
            cron=_text(data, "cron"),
            tz=_text(data, "tz"),
            token=_text(data, "token"),
            **extra,
        )
        return reply(201, service.views.describe(check))

    def get(name: str) -> str:
        return reply(200, service.views.describe(service.get_check(name)))

    def update(name: str) -> str:
        data = body()
        allowed = {"period", "grace", "cron", "tz", "sms_enabled", "email_enabled", "repeat", "ladder"}
        allowed |= {"name", "slug", "tags", "desc", "manual_resume", "methods"}
        allowed |= {"depends_on"}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise ValidationError(unknown[0], f"unknown field (allowed: {', '.join(sorted(allowed))})")
        changes: dict[str, Any] = {}
        for key in data:
            if key in ("period", "grace", "repeat"):
                changes[key] = parse_duration_field(key, data[key])
            elif key in ("cron", "tz", "ladder"):
                changes[key] = _text(data, key)
            elif key in ("name", "slug", "tags", "desc", "manual_resume", "methods", "depends_on"):
                changes[key] = data[key]  # checked by the service (rules.checkfields)
            else:
                changes[key] = _flag(data, key, False)
        if "depends_on" in changes:
            depends_on = changes.pop("depends_on")
            if depends_on is not None and not isinstance(depends_on, (list, str)):
                raise ValidationError("depends_on", "a list of check names")
            service.deps.set(name, depends_on)
            if not changes:
                return reply(200, service.views.describe(service.get_check(name)))
        # one transaction, merged with the check as stored then: two edits never undo each other
        return reply(200, service.views.describe(service.patch_check(name, **changes)))

    def delete(name: str) -> str:
        check = service.remove_check(name)
        return reply(200, {"deleted": check.name})

    def pause(name: str) -> str:
        return reply(200, service.views.describe(service.pause(name)))

    def resume(name: str) -> str:
        return reply(200, service.views.describe(service.resume(name)))

    def ack(name: str) -> str:
        return reply(200, service.views.describe(service.ack(name, "api")))

    def mute(name: str) -> str:
        seconds = parse_duration_field("for", body().get("for"))
        if seconds is None:
            raise ValidationError("for", 'how long, e.g. "2h" (1m to 30d)')
        return reply(200, service.views.describe(service.mute(name, seconds, "api")))

    def unmute(name: str) -> str:
        return reply(200, service.views.describe(service.unmute(name, "api")))

    def snooze(name: str) -> str:
        data = body()
        seconds = parse_duration_field("for", data.get("for"))
        if seconds is None:
            raise ValidationError("for", 'how long, e.g. "30m" (1m to 7d)')
        check = service.quiet.snooze(name, seconds, _flag(data, "until_up", False), "api")
        return reply(200, service.views.describe(check))

    def list_windows() -> str:
        every = bottle.request.query.get("all") in ("1", "true")
        names = service.quiet.check_names()
        windows = service.quiet.windows(all_windows=every)
        return reply(200, {"windows": [service.quiet.describe(w, names) for w in windows]})

    def add_window() -> str:
        data = body()
        allowed = {"checks", "tag", "all", "from", "cron", "tz", "for"}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise ValidationError(unknown[0], f"unknown field (allowed: {', '.join(sorted(allowed))})")
        checks = data.get("checks") or []
        if not isinstance(checks, list) or not all(isinstance(c, str) for c in checks):
            raise ValidationError("checks", "a list of check names")
        length = parse_duration_field("for", data.get("for"))
        if length is None:
            raise ValidationError("for", 'how long, e.g. "1h"')
        req = WindowRequest(
            length=length,
            checks=tuple(checks),
            tag=_text(data, "tag"),
            all_checks=_flag(data, "all", False),
            start=_text(data, "from"),
            cron=_text(data, "cron"),
            tz=_text(data, "tz"),
        )
        return reply(201, service.quiet.describe(service.quiet.add(req, "api")))

    def end_window(wid: str) -> str:
        if not wid.isdigit():
            return reply(404, {"error": "no such maintenance window"})
        try:
            w = service.quiet.end(int(wid), "api")
        except NotFound:
            return reply(404, {"error": "no such maintenance window"})
        return reply(200, service.quiet.describe(w))

    def new_url(name: str) -> str:
        return reply(200, service.views.describe(service.replace_token(name)))

    def pings(name: str) -> str:
        try:
            limit = int(bottle.request.query.get("limit") or 100)
        except ValueError:
            raise ValidationError("limit", "a number from 1 to 1000") from None
        return reply(200, {"pings": service.views.ping_log(name, limit)})

    def settings_json() -> dict[str, Any]:
        view = service.settings_view()
        out = settings_rules.to_json({k: getattr(view.in_force, k) for k in settings_rules.EDITABLE})
        out["sms_pin"] = bool(view.in_force.sms_pin)  # whether one is set, never the PIN itself
        return {"settings": out, "set_on_page": sorted(view.on_page)}

    def get_settings() -> str:
        return reply(200, settings_json())

    def update_settings() -> str:
        # the same rules as the settings page and the config file (gateway.rules.settings)
        service.update_owner_settings(**body())
        return reply(200, settings_json())

    def reset_settings() -> str:
        service.use_file_settings()
        return reply(200, settings_json())

    route("/api/v1/settings", "GET", get_settings)
    route("/api/v1/settings", ["POST", "PATCH"], update_settings)
    route("/api/v1/settings", "DELETE", reset_settings)
    route("/api/v1/checks", "GET", list_checks)
    route("/api/v1/checks", "POST", create)
    route("/api/v1/checks/<name>", "GET", get)
    route("/api/v1/checks/<name>", ["POST", "PATCH"], update)
    route("/api/v1/checks/<name>", "DELETE", delete)
    route("/api/v1/checks/<name>/pause", "POST", pause)
    route("/api/v1/checks/<name>/resume", "POST", resume)
    route("/api/v1/checks/<name>/new-url", "POST", new_url)
    route("/api/v1/checks/<name>/ack", "POST", ack)
    route("/api/v1/checks/<name>/mute", "POST", mute)
    route("/api/v1/checks/<name>/unmute", "POST", unmute)
    route("/api/v1/checks/<name>/pings", "GET", pings)
    route("/api/v1/checks/<name>/snooze", "POST", snooze)
    route("/api/v1/maintenance", "GET", list_windows)
    route("/api/v1/maintenance", "POST", add_window)
    route("/api/v1/maintenance/<wid>/end", "POST", end_window)

    smsapi.install(app, service)  # before the catch-all below, which stays the last /api route

    def unknown(rest: str) -> str:
        return reply(404, {"error": "no such API endpoint"})

    app.route("/api/<rest:path>", ["GET", "POST", "PATCH", "PUT", "DELETE"], unknown)
    metrics.install(app, service)
    badges.install(app, service)
