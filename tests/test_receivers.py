"""What other tools' webhooks ask the gateway to text (pure): each tool's payload in the shape
its documentation gives (Alertmanager's webhook_config payload, version 4; Uptime Kuma's Webhook
notification body, webhook.js; Healthchecks' Webhook integration with the body we document;
Home Assistant's notify.rest, rest/notify.py), turned into a text, and what is refused."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.errors import ValidationError
from gateway.rules import receivers
from gateway.rules.relay import compose, fit


def am_alert(status: str, name: str, instance: str | None, summary: str = "", **labels: str) -> dict[str, Any]:
    """One alert as Alertmanager's webhook payload lists it."""
    if instance is not None:
        labels["instance"] = instance
    return {
        "status": status,
        "labels": {"alertname": name, "job": "node", "severity": "warning", **labels},
        "annotations": {"summary": summary} if summary else {},
        "startsAt": "2026-03-02T14:02:11.482Z",
        "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-03-02T14:31:41.482Z",
        "generatorURL": "http://prometheus.lan:9090/graph?g0.expr=node_load1+%3E+4&g0.tab=1",
        "fingerprint": "5d8f0c3e2b1a9f47",
    }


def am_payload(status: str, alerts: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """Alertmanager's webhook_config body (payload version 4), around ``alerts``."""
    common = alerts[0]["labels"] if len(alerts) == 1 else {"job": "node", "severity": "warning"}
    return {
        "version": "4",
        "groupKey": '{}:{job="node"}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "hbgw-sms",
        "groupLabels": {"job": "node"},
        "commonLabels": common,
        "commonAnnotations": alerts[0]["annotations"] if len(alerts) == 1 else {},
        "externalURL": "http://alertmanager.lan:9093",
        "alerts": alerts,
        **extra,
    }


def kuma_payload(status: int | None, name: str = "web1", msg: str = "") -> dict[str, Any]:
    """Uptime Kuma's Webhook notification, its default JSON body: heartbeat, monitor, msg."""
    monitor = {
        "id": 3,
        "name": name,
        "description": None,
        "pathName": name,
        "parent": None,
        "url": "https://web1.lan/health",
        "method": "GET",
        "hostname": None,
        "port": None,
        "maxretries": 1,
        "weight": 2000,
        "active": True,
        "type": "http",
        "interval": 60,
        "retryInterval": 60,
        "keyword": None,
        "expiryNotification": False,
        "ignoreTls": False,
        "upsideDown": False,
        "maxredirects": 10,
        "accepted_statuscodes": ["200-299"],
        "dns_resolve_type": "A",
        "dns_resolve_server": "1.1.1.1",
        "notificationIDList": {"1": True},
        "tags": [],
    }
    heartbeat = None
    if status is not None:
        heartbeat = {
            "monitorID": 3,
            "status": status,
            "time": "2026-03-02 14:02:11.482",
            "msg": msg,
            "ping": None if status == 0 else 41,
            "important": True,
            "duration": 60,
            "timezone": "Europe/Berlin",
            "timezoneOffset": "+01:00",
            "localDateTime": "2026-03-02 15:02:11",
        }
    word = {0: "\U0001f534 Down", 1: "\u2705 Up"}.get(status or 0, "Pending")
    return {"heartbeat": heartbeat, "monitor": monitor, "msg": f"[{name}] [{word}] {msg}"}


# ------------------------------------------------------------------ Alertmanager


@pytest.mark.parametrize(
    ("payload", "want"),
    [
        (
            am_payload("firing", [am_alert("firing", "HighLoad", "web1:9100", "Load above 4 for 5m on web1")]),
            "FIRING: HighLoad on web1\nLoad above 4 for 5m on web1",
        ),
        (
            am_payload(
                "firing",
                [
                    am_alert("firing", "HighLoad", "web1:9100"),
                    am_alert("firing", "HighLoad", "web2:9100"),
                    am_alert("firing", "DiskFull", "nas.lan:9100", mountpoint="/srv"),
                ],
            ),
            "FIRING: 3 alerts: HighLoad on web1, web2; DiskFull on nas.lan",
        ),
        (
            am_payload(
                "resolved",
                [am_alert("resolved", "HighLoad", "web1:9100"), am_alert("resolved", "HighLoad", "web2:9100")],
            ),
            "RESOLVED: 2 alerts: HighLoad on web1, web2",
        ),
        (  # send_resolved: a firing notification lists the group's resolved alerts too
            am_payload(
                "firing", [am_alert("firing", "DiskFull", "nas:9100"), am_alert("resolved", "HighLoad", "web1:9100")]
            ),
            "FIRING: DiskFull on nas\nRESOLVED: HighLoad on web1",
        ),
        (  # max_alerts: Alertmanager counts what it left out
            am_payload(
                "firing", [am_alert("firing", "Down", "a:1"), am_alert("firing", "Down", "b:1")], truncatedAlerts=5
            ),
            "FIRING: 7 alerts: Down on a, b; +5 more",
        ),
        (  # a blackbox probe: the instance is a URL, and no summary but a description
            am_payload(
                "firing",
                [
                    {
                        **am_alert("firing", "ProbeFailure", "https://shop.example.org"),
                        "annotations": {"description": "https://shop.example.org down for over 5m"},
                    }
                ],
            ),
            "FIRING: ProbeFailure on https://shop.example.org\nhttps://shop.example.org down for over 5m",
        ),
        (  # no instance label: the job says where
            am_payload("firing", [am_alert("firing", "Watchdog", None)]),
            "FIRING: Watchdog on node",
        ),
    ],
)
def test_it_summarises_an_alertmanager_notification_in_one_sms(payload: dict[str, Any], want: str) -> None:
    assert receivers.alertmanager(payload) == receivers.Request(want)


@pytest.mark.parametrize(
    "payload",
    [
        am_payload("firing", [am_alert("firing", "x", "y")]) | {"alerts": []},
        {"version": "4", "status": "firing", "receiver": "hbgw-sms"},
        am_payload("firing", [am_alert("firing", "x", "y")]) | {"alerts": ["HighLoad"]},
    ],
)
def test_it_refuses_an_alertmanager_payload_without_alerts(payload: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as e:
        receivers.alertmanager(payload)
    assert e.value.field == "alerts"


# ------------------------------------------------------------------ Uptime Kuma


@pytest.mark.parametrize(
    ("payload", "want"),
    [
        (kuma_payload(0, msg="timeout of 48000ms exceeded"), "DOWN web1: timeout of 48000ms exceeded"),
        (kuma_payload(1, msg="200 - OK"), "UP web1: 200 - OK"),
        (kuma_payload(2, msg="connect ECONNREFUSED 10.0.0.5:443"), "PENDING web1: connect ECONNREFUSED 10.0.0.5:443"),
        (kuma_payload(3, name="nas"), "MAINTENANCE nas"),
        (  # about a monitor, without a heartbeat (a certificate about to expire): Kuma's own words
            kuma_payload(None) | {"msg": "[web1][https://web1.lan/health] Certificate will expire in 7 days"},
            "[web1][https://web1.lan/health] Certificate will expire in 7 days",
        ),
    ],
)
def test_it_texts_an_uptime_kuma_notification(payload: dict[str, Any], want: str) -> None:
    assert receivers.uptime_kuma(payload) == receivers.Request(want)


def test_it_texts_kumas_words_in_gsm7_where_its_own_msg_would_be_ucs2() -> None:
    """Kuma's msg carries an emoji (one UCS-2 SMS holds 70 characters); ours stays GSM-7."""
    payload = kuma_payload(0, msg="timeout of 48000ms exceeded")
    text = fit(compose("", receivers.uptime_kuma(payload).text), 1, "ucs2")
    assert text.isascii() and "\U0001f534" in payload["msg"]


def test_it_refuses_kumas_test_notification_saying_why() -> None:
    with pytest.raises(ValidationError) as e:
        receivers.uptime_kuma({"heartbeat": None, "monitor": None, "msg": "hbgw Testing"})
    assert e.value.field == "monitor" and "test notification" in str(e.value) and "'hbgw Testing'" in str(e.value)


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"heartbeat": "up", "monitor": {"name": "web1"}, "msg": "x"}, "heartbeat"),
        ({"heartbeat": None, "monitor": ["web1"], "msg": "x"}, "monitor"),
        (kuma_payload(None) | {"msg": "  "}, "msg"),
    ],
)
def test_it_refuses_a_kuma_payload_of_the_wrong_shape(payload: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as e:
        receivers.uptime_kuma(payload)
    assert e.value.field == field


# ------------------------------------------------------------------ Healthchecks, Home Assistant, plain


@pytest.mark.parametrize(
    ("read", "payload", "want"),
    [
        # Healthchecks: the body we document, {"text": "$NAME is $STATUS"}, after its substitution
        (receivers.healthchecks, {"text": "backup is down"}, receivers.Request("backup is down")),
        (receivers.healthchecks, {"message": "backup is up", "status": "up"}, receivers.Request("backup is up")),
        (
            receivers.healthchecks,
            {"text": "nas is down", "to": "partner"},
            receivers.Request("nas is down", to="partner"),
        ),
        # Home Assistant notify.rest: message; title and target with title_/target_param_name set
        (
            receivers.home_assistant,
            {"message": "Garage door open"},
            receivers.Request("Garage door open", to_field="target"),
        ),
        (
            receivers.home_assistant,
            {"message": "Garage door open", "title": "Home Assistant", "target": "+15551230002"},
            receivers.Request("Garage door open", "Home Assistant", "+15551230002", "target"),
        ),
        (  # data: extra parameters are the user's, and left alone
            receivers.home_assistant,
            {"message": "Freezer at -5 °C", "target": "partner", "priority": "high"},
            receivers.Request("Freezer at -5 °C", to="partner", to_field="target"),
        ),
        (receivers.plain, {"text": "hello"}, receivers.Request("hello")),
        (
            receivers.plain,
            {"to": ["owner", "+15551230002"], "message": "hi"},
            receivers.Request("hi", to=("owner", "+15551230002")),
        ),
        (receivers.plain, {"to": "", "text": "x", "subject": "NAS"}, receivers.Request("x", subject="NAS")),
    ],
)
def test_it_reads_the_message_and_the_recipient(read: Any, payload: dict[str, Any], want: receivers.Request) -> None:
    assert read(payload) == want


@pytest.mark.parametrize(
    ("read", "payload", "field"),
    [
        (receivers.healthchecks, {"status": "down"}, "text"),
        (receivers.healthchecks, {"text": "  "}, "text"),
        (receivers.healthchecks, {"text": "a", "message": "b"}, "message"),
        (receivers.healthchecks, {"text": 3}, "text"),
        (receivers.home_assistant, {"title": "Home Assistant"}, "message"),
        (receivers.home_assistant, {"message": "x", "title": 5}, "title"),
        (receivers.home_assistant, {"message": "x", "target": {"phone": "+1"}}, "target"),
        (receivers.plain, {"to": "+15551230002"}, "text"),
        (receivers.plain, {"text": "x", "txt": "y"}, "txt"),
        (receivers.plain, {"text": "x", "to": [1]}, "to"),
    ],
)
def test_it_refuses_a_message_it_cannot_text_naming_the_field(read: Any, payload: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as e:
        read(payload)
    assert e.value.field == field


def test_every_receiver_has_its_url_name() -> None:
    assert set(receivers.RECEIVERS) == {"alertmanager", "uptime-kuma", "healthchecks", "homeassistant"}
