"""What other tools' webhooks ask the gateway to text (pure): each tool's payload, exactly as
that tool sends it, turned into a relayed message's text (and recipients, when the payload names
them), or a ValidationError naming the field that is wrong.

- Prometheus Alertmanager, ``webhook_config`` (payload version 4): one SMS per notification,
  summarising its alerts by alertname: ``FIRING: 3 alerts: HighLoad on web1, web2; DiskFull on
  nas``; a notification without alerts is refused.
- Uptime Kuma, the Webhook notification's default body (``{"heartbeat", "monitor", "msg"}``, as
  JSON or as a ``data`` form field): ``DOWN web1: <the heartbeat's message>``. Kuma's "Test"
  button sends neither monitor nor heartbeat: refused, so the test says plainly that nothing is
  texted (a real notification is).
- Healthchecks, the Webhook integration: its request body is the user's, so we take ``text``
  (or ``message``) from a JSON object or a form, e.g. ``{"text": "$NAME is $STATUS"}``.
- Home Assistant, ``notify.rest``: ``message``, and ``title`` and ``target`` when
  ``title_param_name``/``target_param_name`` are set, as JSON (``method: POST_JSON``) or a form
  (``method: POST``). ``target`` is one recipient (Home Assistant sends only its first).
- Anything else (scripts, curl): ``to`` and ``text`` (or ``message``).

Who may be texted, and how a text is fitted into SMS parts, is decided later by
:mod:`gateway.rules.relay`; here only what the tool said.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.errors import ValidationError


@dataclass(frozen=True)
class Request:
    """A relayed message a tool asked for. ``to``: the recipients the payload itself names
    (None: whoever the URL's ``?to=`` names, else the owner)."""

    text: str
    subject: str = ""
    to: str | tuple[str, ...] | None = None
    to_field: str = "to"  # the payload's name for ``to`` (errors about the recipient name it)


Payload = Mapping[str, Any]

# Uptime Kuma's heartbeat states (its src/util.ts: DOWN = 0, UP = 1, PENDING = 2, MAINTENANCE = 3).
KUMA_STATES = {0: "DOWN", 1: "UP", 2: "PENDING", 3: "MAINTENANCE"}
_HOST_PORT = re.compile(r"^([A-Za-z0-9_.-]+):\d{1,5}$")


# ------------------------------------------------------------------ Prometheus Alertmanager


def alertmanager(payload: Payload) -> Request:
    """One SMS for an Alertmanager notification: its firing alerts, then its resolved ones, each
    as "alertname on instance, instance; other alertname on ..."; for a single alert also its
    summary (or description). ``truncatedAlerts`` (alerts Alertmanager left out, ``max_alerts``)
    are counted. Raises ValidationError("alerts") when there is no alert to tell."""
    alerts = payload.get("alerts")
    if not isinstance(alerts, list) or not alerts:
        raise ValidationError("alerts", "the notification has no alerts: nothing to send")
    if not all(isinstance(a, dict) for a in alerts):
        raise ValidationError("alerts", "each alert must be an object (Alertmanager's webhook payload)")
    overall = _word(payload.get("status"), "firing")
    firing = [a for a in alerts if _word(a.get("status"), overall) == "firing"]
    resolved = [a for a in alerts if _word(a.get("status"), overall) != "firing"]
    truncated = payload.get("truncatedAlerts")
    more = truncated if isinstance(truncated, int) and truncated > 0 else 0
    lines = []
    if firing:
        lines.append(_alert_line("FIRING", firing, more if overall == "firing" else 0))
    if resolved:
        lines.append(_alert_line("RESOLVED", resolved, more if overall != "firing" else 0))
    about = _annotation(alerts[0]) if len(alerts) == 1 and not more else _annotation(payload, "commonAnnotations")
    if about:
        lines.append(about)
    return Request("\n".join(lines))


def _word(value: Any, default: str) -> str:
    return value.strip().lower() if isinstance(value, str) and value.strip() else default


def _alert_line(state: str, alerts: list[dict[str, Any]], more: int) -> str:
    groups: dict[str, list[str]] = {}
    for alert in alerts:
        labels = alert.get("labels")
        labels = labels if isinstance(labels, dict) else {}
        name = _label(labels, "alertname") or "alert"
        where = groups.setdefault(name, [])
        instance = _instance(labels)
        if instance and instance not in where:
            where.append(instance)
    parts = [f"{name} on {', '.join(where)}" if where else name for name, where in groups.items()]
    count = len(alerts) + more
    head = f"{state}: {count} alerts: " if count > 1 else f"{state}: "
    tail = f"; +{more} more" if more else ""
    return head + "; ".join(parts) + tail


def _label(labels: Mapping[str, Any], name: str) -> str:
    value = labels.get(name)
    return " ".join(value.split()) if isinstance(value, str) else ""


def _instance(labels: Mapping[str, Any]) -> str:
    """Where an alert is: its instance (without an exporter's port: "web1:9100" is "web1"),
    else its host, node or job."""
    instance = _label(labels, "instance")
    m = _HOST_PORT.match(instance)
    if m:
        return m.group(1)
    for name in ("host", "hostname", "node", "job"):
        if not instance:
            instance = _label(labels, name)
    return instance


def _annotation(data: Mapping[str, Any], key: str = "annotations") -> str:
    notes = data.get(key)
    if not isinstance(notes, dict):
        return ""
    for name in ("summary", "description", "message"):
        value = notes.get(name)
        if isinstance(value, str) and value.strip():
            return " ".join(value.split())
    return ""


# ------------------------------------------------------------------ Uptime Kuma


def uptime_kuma(payload: Payload) -> Request:
    """An Uptime Kuma Webhook notification: "DOWN <monitor>: <heartbeat message>" (UP, PENDING,
    MAINTENANCE likewise); a notification about a monitor without a heartbeat (a certificate
    about to expire) is Kuma's own ``msg``. Raises ValidationError("monitor") for Kuma's test
    notification (no monitor, no heartbeat), ValidationError("msg") for an empty one."""
    monitor, heartbeat, msg = payload.get("monitor"), payload.get("heartbeat"), payload.get("msg")
    msg = " ".join(msg.split()) if isinstance(msg, str) else ""
    if monitor is None and heartbeat is None:
        raise ValidationError(
            "monitor",
            f"an Uptime Kuma test notification ({msg!r}): the key works, but a test is not texted;"
            " a monitor's notifications are",
        )
    if monitor is not None and not isinstance(monitor, dict):
        raise ValidationError("monitor", "must be an object (Uptime Kuma's monitor)")
    if heartbeat is not None and not isinstance(heartbeat, dict):
        raise ValidationError("heartbeat", "must be an object (Uptime Kuma's heartbeat)")
    name = _text_of(monitor, "name") if monitor else ""
    if heartbeat and name:
        status = heartbeat.get("status")
        state = KUMA_STATES.get(status, f"STATUS {status}") if isinstance(status, int) else "STATUS ?"
        said = _text_of(heartbeat, "msg")
        return Request(f"{state} {name}: {said}" if said else f"{state} {name}")
    if not msg:
        raise ValidationError("msg", "the notification has no message")
    return Request(msg)


def _text_of(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    return " ".join(value.split()) if isinstance(value, str) else ""


# ------------------------------------------------------------------ Healthchecks, Home Assistant, plain


def healthchecks(payload: Payload) -> Request:
    """Healthchecks' Webhook integration, whose body the user writes: ``text`` or ``message``
    (and optionally ``to``); other fields are left alone (they are the user's)."""
    return Request(_message(payload, ("text", "message")), to=_to(payload, "to"))


def home_assistant(payload: Payload) -> Request:
    """Home Assistant's ``notify.rest``: ``message``; ``title`` (the SMS's first line) and
    ``target`` (the recipient: a number or a contact's name) when Home Assistant is set to send
    them. Other fields (``data``/``data_template`` extras) are left alone."""
    title = payload.get("title")
    if title is not None and not isinstance(title, str):
        raise ValidationError("title", "must be a string")
    message = _message(payload, ("message",))
    return Request(message, subject=title or "", to=_to(payload, "target"), to_field="target")


PLAIN_FIELDS = frozenset({"to", "text", "message", "subject"})


def plain(payload: Payload) -> Request:
    """The gateway's own form: ``to`` (a number, a contact's name, or a list of those; left out:
    the owner), ``text`` (or ``message``) and optionally ``subject`` (a first line). Other fields
    are refused, so a misspelt one is not silently ignored."""
    unknown = sorted(set(payload) - PLAIN_FIELDS)
    if unknown:
        raise ValidationError(unknown[0], f"unknown field (allowed: {', '.join(sorted(PLAIN_FIELDS))})")
    subject = payload.get("subject")
    if subject is not None and not isinstance(subject, str):
        raise ValidationError("subject", "must be a string")
    return Request(_message(payload, ("text", "message")), subject=subject or "", to=_to(payload, "to"))


def _message(payload: Payload, names: tuple[str, ...]) -> str:
    given = [n for n in names if payload.get(n) is not None]
    if len(given) > 1:
        raise ValidationError(given[1], f"give {' or '.join(repr(n) for n in names)}, not both")
    if not given:
        raise ValidationError(names[0], f"the message is missing ({' or '.join(repr(n) for n in names)})")
    value = payload[given[0]]
    if not isinstance(value, str):
        raise ValidationError(given[0], "must be a string")
    if not value.strip():
        raise ValidationError(given[0], "the message is empty")
    return value


def _to(payload: Payload, name: str) -> str | tuple[str, ...] | None:
    value = payload.get(name)
    if value is None or value == "" or value == []:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ValidationError(name, "a phone number (+E.164), a contact's name, or a list of those")


RECEIVERS: dict[str, Callable[[Payload], Request]] = {
    "alertmanager": alertmanager,
    "uptime-kuma": uptime_kuma,
    "healthchecks": healthchecks,
    "homeassistant": home_assistant,
}
