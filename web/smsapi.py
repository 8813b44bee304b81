"""The SMS API (``/api/v1/sms``): the box as the house's SMS gateway for scripts and for other
tools' webhooks, behind an API key (``Authorization: Bearer``; a "write" key, or an "sms" key
that may use nothing else). What each tool sends is read by :mod:`gateway.rules.receivers`;
what may be texted to whom, by :mod:`gateway.relay`.

    POST /api/v1/sms                  {"to"?, "text"} (JSON or form) → 202 {"id", "ids", "to",
    POST /api/v1/sms/send               "text", "state": "pending"}
    GET  /api/v1/sms/<id>             {"id", "to", "state", "error", "sent_at", "delivered_at",
                                       "text", "created", "origin"}; state: pending | sending |
                                       sent | delivered | failed (a read key may do this too)
    POST /api/v1/sms/alertmanager     Prometheus Alertmanager's webhook_config
    POST /api/v1/sms/uptime-kuma      Uptime Kuma's Webhook notification
    POST /api/v1/sms/healthchecks     Healthchecks' Webhook integration ({"text": "..."})
    POST /api/v1/sms/homeassistant    Home Assistant's notify.rest

A tool's message goes to the URL's ``?to=`` (a number or a contact's name; repeatable), else to
the owner's SMS numbers; a recipient the payload names (``to``, Home Assistant's ``target``)
comes first. A 202 means the SMS rows are committed: nothing accepted is lost. Errors are
``{"error": message}``, with ``field`` for input that must change: 400 (not JSON), 401 (no
valid key), 403 (relaying is off), 404 (no such message), 422 (a bad or forbidden number, an
empty text, a payload with nothing to text), 429 with ``Retry-After`` (the sender's hourly
share, or the relayed budget, is used up).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import bottle

from gateway.errors import ValidationError
from gateway.model import ApiKey, OutboxRow, iso
from gateway.relay import RelayOff
from gateway.rules import receivers
from gateway.service import Service
from gateway.store import Refused
from web import api  # web.api imports this module: use its names at call time

logger = logging.getLogger(__name__)

MAX_BODY = 100_000  # an Alertmanager group of many alerts is larger than the rest of the API's bodies
RETRY_AFTER = 300  # seconds: the shares are counted over the past hour, so a slot frees within it
_FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")


def payload() -> dict[str, Any]:
    """The request's fields: a JSON object, or a form (a repeated field is a list; Uptime Kuma's
    form-data body, one ``data`` field holding the JSON, is that JSON). Raises api.BadJson."""
    ctype = (bottle.request.content_type or "").split(";")[0].strip().lower()
    if ctype in _FORMS:
        forms = bottle.request.forms.decode()
        data: dict[str, Any] = {}
        for name in forms:
            values = forms.getall(name)
            if name in ("to", "target"):
                values = [plus(v) for v in values]
            data[name] = values[0] if len(values) == 1 else values
        if set(data) == {"data"} and isinstance(data["data"], str):
            return _json_object(data["data"].encode())
        return data
    length = int(bottle.request.content_length or 0)
    if length > MAX_BODY:
        raise api.BadJson(f"body over {MAX_BODY} bytes")
    raw = bottle.request.body.read(MAX_BODY + 1) if length else b""
    if not raw.strip():
        raise api.BadJson("the body is empty: send a JSON object")
    return _json_object(raw)


def plus(value: str) -> str:
    """A recipient from a form or a query string, where an unencoded "+" arrives as a space
    (``curl -d to=+4915...``, ``?to=+4915...``): a leading space before a digit is that "+"."""
    return "+" + value[1:] if value[:1] == " " and value[1:2].isdigit() else value


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except ValueError:
        raise api.BadJson("the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise api.BadJson("the body must be a JSON object")
    return data


def state_of(row: OutboxRow) -> tuple[str, str | None]:
    """A relayed message's state for the API, and its error: a delivery report's word wins
    over "sent" (delivered, or failed with the network's reason)."""
    if row.state == "sent" and row.delivery_state == "delivered":
        return "delivered", None
    if row.state == "sent" and row.delivery_state == "failed":
        return "failed", row.delivery_note or "the network reported the message undeliverable"
    return row.state, row.error


def message_json(row: OutboxRow) -> dict[str, Any]:
    state, error = state_of(row)
    return {
        "id": row.id,
        "to": row.recipient,
        "state": state,
        "error": error,
        "text": row.text,
        "created": iso(row.created),
        "sent_at": iso(row.sent_at),
        "delivered_at": iso(row.delivered_at),
        "origin": row.origin,
    }


def install(app: bottle.Bottle, service: Service) -> None:
    """Add the SMS API's routes to ``app`` (before the API's catch-all)."""

    def handled(fn: Callable[..., str]) -> Callable[..., str]:
        def run(*args: Any, **kwargs: Any) -> str:
            try:
                return fn(*args, **kwargs)
            except api.BadJson as e:
                return api.reply(400, {"error": str(e)})
            except ValidationError as e:
                return api.reply(422, {"error": str(e), "field": e.field})
            except RelayOff as e:
                return api.reply(403, {"error": str(e)})
            except Refused as e:
                bottle.response.set_header("Retry-After", str(RETRY_AFTER))
                return api.reply(429, {"error": str(e)})

        return run

    def origin(tool: str | None) -> str:
        key: ApiKey = bottle.request.environ["hbgw.api_key"]
        who = f"api key {key.id} ({key.label})"
        return f"{who} via {tool}" if tool else who

    def queue(request: receivers.Request, tool: str | None) -> str:
        to: str | tuple[str, ...] | None = request.to
        field = request.to_field
        if to is None:
            asked = [plus(t) for t in bottle.request.query.decode().getall("to") if t.strip()]
            to, field = (tuple(asked) if asked else None), "to"
        relay = service.relay
        try:
            numbers, text = relay.prepare(to, request.text, request.subject)
            ids = relay.queue(to, request.text, origin(tool), request.subject)
        except ValidationError as e:
            if e.field == "to" and field != "to":
                raise ValidationError(field, str(e)) from None
            raise
        return api.reply(202, {"id": ids[0], "ids": ids, "to": list(numbers), "text": text, "state": "pending"})

    def send() -> str:
        return queue(receivers.plain(payload()), None)

    def receiver(tool: str, read: Callable[[receivers.Payload], receivers.Request]) -> Callable[[], str]:
        def receive() -> str:
            return queue(read(payload()), tool)

        return receive

    def status(outbox_id: int) -> str:
        row = service.relay.message(outbox_id)
        if row is None:
            return api.reply(404, {"error": "no such relayed message"})
        return api.reply(200, message_json(row))

    def post_only(**_: Any) -> str:
        bottle.response.set_header("Allow", "POST")
        return api.reply(405, {"error": "send the message with POST"})

    app.route("/api/v1/sms", "POST", handled(send), auth="sms")
    app.route("/api/v1/sms/send", "POST", handled(send), auth="sms")
    app.route("/api/v1/sms/<outbox_id:int>", "GET", handled(status), auth="sms")
    for tool, read in receivers.RECEIVERS.items():
        app.route(f"/api/v1/sms/{tool}", "POST", handled(receiver(tool, read)), auth="sms")
    app.route(f"/api/v1/sms/<_:re:{'|'.join(['send', *receivers.RECEIVERS])}>", "GET", post_only)
    app.route("/api/v1/sms", "GET", post_only)
