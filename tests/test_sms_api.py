"""The SMS API against ``hbgw serve`` over real HTTP (curl, and requests/httpx as the tools that
use them send): queueing, each tool's webhook as that tool sends it, API key scopes, the errors
(nothing queued on any of them), relaying off, a sender's share used up; and, on the simulated
modem, an SMS that reaches the phone and whose delivery report the API then shows. Payload
reading without I/O: test_receivers.py."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from collections.abc import Iterator
from itertools import count
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests

from tests.support.daemon import Daemon, hbgw, hbgw_json, wait_for, write_config
from tests.support.rig import OWNER, rig
from tests.test_receivers import am_alert, am_payload, kuma_payload

PARTNER = "+15551230002"
STRANGER = "+15559990000"
PER_SENDER = 5
CONFIG = f"""
[alerts]
sms_to = ["{OWNER}"]
max_sms_per_hour = 1000

[relay]
enabled = true
per_sender_per_hour = {PER_SENDER}

[contacts]
partner = {{ phone = "{PARTNER}" }}
"""
_labels = count(1)


class Gateway:
    def __init__(self, daemon: Daemon, cfg: Path, data: Path) -> None:
        self.daemon = daemon
        self.cfg = cfg
        self.data = data
        self.url = daemon.url

    def key(self, scope: str = "sms") -> str:
        """A new API key ("sms", "read" or "write"), made with the CLI as the owner would."""
        flag = {"sms": ["--sms-only"], "read": ["--read-only"], "write": []}[scope]
        return str(hbgw_json("apikey", "add", f"{scope}-{next(_labels)}", *flag, config=self.cfg)["key"])

    def relayed(self) -> list[tuple[Any, ...]]:
        con = sqlite3.connect(f"file:{self.data / 'hbgw.sqlite3'}?mode=ro", uri=True)
        try:
            return con.execute(
                "SELECT id, recipient, text, origin FROM outbox WHERE kind = 'relay' ORDER BY id"
            ).fetchall()
        finally:
            con.close()


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    root = tmp_path_factory.mktemp("smsapi")
    data = root / "data"
    cfg = write_config(root / "hbgw.toml", data, extra=CONFIG)
    hbgw("check", "add", "web1", "--period", "1h", config=cfg)
    with Daemon(data, config=cfg) as d:
        yield Gateway(d, cfg, data)


def curl(url: str, *args: str) -> tuple[int, dict[str, str], Any]:
    """POST (or what ``args`` say) with curl; the status, headers (lower-case names) and JSON."""
    out = subprocess.run(
        ["curl", "-sS", "-D", "-", "--max-time", "20", *args, url],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    head, _, body = out.replace("\r\n", "\n").partition("\n\n")
    lines = head.splitlines()
    pairs = [line.split(": ", 1) for line in lines[1:] if ": " in line]
    headers = {name.lower(): value for name, value in pairs}
    is_json = headers.get("content-type", "").startswith("application/json")
    return int(lines[0].split()[1]), headers, (json.loads(body) if is_json else body)


def bearer(key: str) -> list[str]:
    return ["-H", f"Authorization: Bearer {key}"]


def post_json(url: str, key: str, body: Any) -> tuple[int, dict[str, str], Any]:
    return curl(url, *bearer(key), "-H", "Content-Type: application/json", "--data-binary", json.dumps(body))


# ------------------------------------------------------------------ queueing and reading back


def test_it_queues_an_sms_and_says_what_will_be_sent(gw: Gateway) -> None:
    key = gw.key()
    with httpx.Client(base_url=gw.url, headers={"Authorization": f"Bearer {key}"}) as c:
        r = c.post("/api/v1/sms", json={"to": "partner", "text": "\u201cBackup\u201d finished \u2013 3 files"})
        assert r.status_code == 202, r.text
        sent = r.json()
        assert sent["to"] == [PARTNER] and sent["text"] == '"Backup" finished - 3 files'
        assert sent["state"] == "pending" and sent["ids"] == [sent["id"]]
        (row,) = [row for row in gw.relayed() if row[0] == sent["id"]]  # committed before the 202
        assert row[1:3] == (PARTNER, sent["text"]) and row[3].startswith("api key ")
        got = c.get(f"/api/v1/sms/{sent['id']}").json()
        assert (got["id"], got["to"], got["text"]) == (sent["id"], PARTNER, sent["text"])
        assert got["state"] in ("pending", "sending", "failed") and got["sent_at"] is None
        assert set(got) >= {"id", "to", "state", "error", "sent_at", "delivered_at", "text"}


def test_it_takes_a_form_and_texts_the_owner_by_default(gw: Gateway) -> None:
    status, _, sent = curl(f"{gw.url}/api/v1/sms", *bearer(gw.key()), "-d", "text=UPS on battery")
    assert status == 202 and sent["to"] == [OWNER] and sent["text"] == "UPS on battery"
    status, _, sent = curl(
        f"{gw.url}/api/v1/sms/send", *bearer(gw.key()), "-d", "to=partner", "-d", f"to={OWNER}", "-d", "message=hi"
    )  # an unencoded "+" arrives as a space: still the number meant
    assert status == 202 and sent["to"] == [PARTNER, OWNER] and len(sent["ids"]) == 2
    status, _, sent = curl(
        f"{gw.url}/api/v1/sms", *bearer(gw.key()), "--data-urlencode", f"to={PARTNER}", "-d", "text=x"
    )
    assert status == 202 and sent["to"] == [PARTNER]


# ------------------------------------------------------------------ each tool as it sends


def test_alertmanager_notifications_become_one_sms_each(gw: Gateway) -> None:
    key = gw.key()
    payload = am_payload(
        "firing",
        [am_alert("firing", "HighLoad", "web1:9100"), am_alert("firing", "HighLoad", "web2:9100")],
    )
    status, _, sent = post_json(f"{gw.url}/api/v1/sms/alertmanager", key, payload)
    assert status == 202 and sent["text"] == "FIRING: 2 alerts: HighLoad on web1, web2" and sent["to"] == [OWNER]
    resolved = am_payload("resolved", [am_alert("resolved", "HighLoad", "web1:9100", "Load back under 4")])
    status, _, sent = post_json(f"{gw.url}/api/v1/sms/alertmanager?to=partner&to={OWNER}", key, resolved)
    assert status == 202 and sent["to"] == [PARTNER, OWNER]
    assert sent["text"] == "RESOLVED: HighLoad on web1\nLoad back under 4"
    (origin,) = {row[3] for row in gw.relayed() if row[0] in sent["ids"]}
    assert origin.endswith("via alertmanager")


def test_uptime_kuma_webhooks_as_json_and_as_form_data(gw: Gateway) -> None:
    key = gw.key()
    down = kuma_payload(0, msg="timeout of 48000ms exceeded")
    status, _, sent = post_json(f"{gw.url}/api/v1/sms/uptime-kuma", key, down)
    assert status == 202 and sent["text"] == "DOWN web1: timeout of 48000ms exceeded"
    up = kuma_payload(1, msg="200 - OK")  # Kuma's "form-data" body type: one field, data, holding the JSON
    status, _, sent = curl(f"{gw.url}/api/v1/sms/uptime-kuma?to=partner", *bearer(key), "-F", f"data={json.dumps(up)}")
    assert status == 202 and (sent["text"], sent["to"]) == ("UP web1: 200 - OK", [PARTNER])


def test_healthchecks_webhook_with_the_documented_body(gw: Gateway) -> None:
    status, _, sent = post_json(f"{gw.url}/api/v1/sms/healthchecks", gw.key(), {"text": "backup is down"})
    assert status == 202 and sent["text"] == "backup is down" and sent["to"] == [OWNER]


def test_home_assistant_notify_rest_post_json_and_post(gw: Gateway) -> None:
    headers = {"Authorization": f"Bearer {gw.key()}"}
    url = f"{gw.url}/api/v1/sms/homeassistant"
    # what rest/notify.py sends: {message_param_name: message, title_param_name: title,
    # target_param_name: the first target}, as json= (POST_JSON) or data= (POST)
    r = requests.post(url, headers=headers, json={"message": "Garage door open", "target": "partner"}, timeout=10)
    assert r.status_code == 202 and r.json()["to"] == [PARTNER] and r.json()["text"] == "Garage door open"
    form = {"message": "Freezer door open", "title": "Home Assistant", "target": OWNER}
    r = requests.post(url, headers=headers, data=form, timeout=10)
    assert r.status_code == 202 and r.json()["text"] == "Home Assistant\nFreezer door open"
    r = requests.post(url, headers=headers, json={"message": "x", "target": STRANGER}, timeout=10)
    assert r.status_code == 422 and r.json()["field"] == "target"


# ------------------------------------------------------------------ refusals: nothing queued


@pytest.mark.parametrize(
    ("path", "args", "status", "field"),
    [
        ("/api/v1/sms", ["--json", json.dumps({"to": STRANGER, "text": "hi"})], 422, "to"),
        ("/api/v1/sms", ["--json", json.dumps({"to": "nobody", "text": "hi"})], 422, "to"),
        ("/api/v1/sms", ["--json", json.dumps({"to": "partner", "text": "  "})], 422, "text"),
        ("/api/v1/sms", ["--json", json.dumps({"text": "hi", "number": PARTNER})], 422, "number"),
        ("/api/v1/sms", ["--json", '{"text": "hi"'], 400, None),
        ("/api/v1/sms", ["--json", '["hi"]'], 400, None),
        ("/api/v1/sms", ["-X", "POST"], 400, None),
        ("/api/v1/sms?to=" + STRANGER.replace("+", "%2B"), ["-d", "text=hi"], 422, "to"),
        (
            "/api/v1/sms/alertmanager",
            ["--json", json.dumps(am_payload("firing", [am_alert("firing", "x", "y")]) | {"alerts": []})],
            422,
            "alerts",
        ),
        ("/api/v1/sms/alertmanager", ["--json", '{"version": "4", "alerts": [{"status": "fir'], 400, None),
        (
            "/api/v1/sms/uptime-kuma",
            ["--json", json.dumps({"heartbeat": None, "monitor": None, "msg": "hbgw Testing"})],
            422,
            "monitor",
        ),
        ("/api/v1/sms/healthchecks", ["--json", json.dumps({"status": "down"})], 422, "text"),
        ("/api/v1/sms/homeassistant", ["--json", json.dumps({"title": "Home Assistant"})], 422, "message"),
    ],
)
def test_it_refuses_with_a_clear_4xx_and_queues_nothing(
    gw: Gateway, path: str, args: list[str], status: int, field: str | None
) -> None:
    key = gw.key()
    before = gw.relayed()
    got, _, body = curl(gw.url + path, *bearer(key), *args)
    assert (got, body.get("field")) == (status, field) and body["error"]
    assert gw.relayed() == before


def test_it_says_what_kumas_test_button_did(gw: Gateway) -> None:
    test = {"heartbeat": None, "monitor": None, "msg": "hbgw Testing"}
    status, _, body = post_json(f"{gw.url}/api/v1/sms/uptime-kuma", gw.key(), test)
    assert status == 422 and "test notification" in body["error"] and "the key works" in body["error"]


def test_a_sender_over_its_share_is_told_when_to_retry(gw: Gateway) -> None:
    key = gw.key()
    for _ in range(PER_SENDER):
        assert curl(f"{gw.url}/api/v1/sms", *bearer(key), "-d", "text=flood")[0] == 202
    before = gw.relayed()
    status, headers, body = curl(f"{gw.url}/api/v1/sms", *bearer(key), "-d", "text=flood")
    assert status == 429 and int(headers["retry-after"]) > 0 and f"{PER_SENDER} SMS per hour" in body["error"]
    assert gw.relayed() == before
    # another key (another sender) still has its own share
    assert curl(f"{gw.url}/api/v1/sms", *bearer(gw.key()), "-d", "text=other")[0] == 202


def test_unknown_ids_and_gets_on_the_receivers(gw: Gateway) -> None:
    key = gw.key()
    assert curl(f"{gw.url}/api/v1/sms/999999", *bearer(key))[0] == 404
    status, headers, _ = curl(f"{gw.url}/api/v1/sms/alertmanager", *bearer(key))
    assert status == 405 and headers["allow"] == "POST"


# ------------------------------------------------------------------ API key scopes


@pytest.fixture(scope="module")
def message_id(gw: Gateway) -> int:
    return int(curl(f"{gw.url}/api/v1/sms", *bearer(gw.key()), "-d", "text=scope test")[2]["id"])


@pytest.mark.parametrize(
    ("scope", "method", "path", "want"),
    [
        ("sms", "POST", "/api/v1/sms", 202),
        ("sms", "POST", "/api/v1/sms/healthchecks", 202),
        ("sms", "GET", "/api/v1/sms/{id}", 200),
        ("sms", "GET", "/api/v1/checks", 401),
        ("sms", "POST", "/api/v1/checks/web1/pause", 401),
        ("sms", "GET", "/api/v1/settings", 401),
        ("sms", "GET", "/metrics", 401),
        ("sms", "GET", "/projects/hbgw/metrics/{key}", 401),
        ("read", "GET", "/api/v1/sms/{id}", 200),
        ("read", "POST", "/api/v1/sms", 401),
        ("read", "POST", "/api/v1/sms/alertmanager", 401),
        ("write", "POST", "/api/v1/sms", 202),
        ("write", "GET", "/api/v1/sms/{id}", 200),
        ("write", "GET", "/api/v1/checks", 200),
        (None, "POST", "/api/v1/sms", 401),
        (None, "GET", "/api/v1/sms/{id}", 401),
    ],
)
def test_each_key_may_do_what_its_scope_says(
    gw: Gateway, message_id: int, scope: str | None, method: str, path: str, want: int
) -> None:
    key = gw.key(scope) if scope else "hbgw_not-a-key"
    path = path.format(id=message_id, key=key)
    args = ["-X", method, *bearer(key)]
    if method == "POST":
        args += ["-H", "Content-Type: application/json", "--data-binary", json.dumps({"text": "scoped"})]
    assert curl(gw.url + path, *args)[0] == want


def test_an_sms_key_is_refused_by_the_healthchecks_api(gw: Gateway) -> None:
    key = gw.key()
    assert curl(f"{gw.url}/api/v3/checks/", "-H", f"X-Api-Key: {key}")[0] == 401


# ------------------------------------------------------------------ relaying off; end to end


def test_it_says_relaying_is_off(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cfg = write_config(tmp_path / "hbgw.toml", data, extra=f'[alerts]\nsms_to = ["{OWNER}"]\n')
    key = hbgw_json("apikey", "add", "prom", "--sms-only", config=cfg)["key"]
    with Daemon(data, config=cfg) as d:
        status, _, body = curl(f"{d.url}/api/v1/sms", *bearer(key), "-d", "text=hi")
        assert (status, body) == (403, {"error": "relaying is off ([relay] enabled = false)"})


def test_the_sms_reaches_the_phone_and_its_delivery_report_the_api(tmp_path: Path) -> None:
    with rig(tmp_path, [], extra="[relay]\nenabled = true\n", start=False) as r:
        key = hbgw_json("apikey", "add", "alertmanager", "--sms-only", config=r.cfg)["key"]
        r.daemon.start()
        payload = am_payload("firing", [am_alert("firing", "DiskFull", "nas:9100", "/srv is 97% full")])
        status, _, sent = post_json(f"{r.daemon.url}/api/v1/sms/alertmanager", key, payload)
        assert status == 202
        (sms,) = r.sim.wait_sent(1, timeout=20)
        assert (sms["number"], sms["text"]) == (OWNER, "FIRING: DiskFull on nas\n/srv is 97% full")

        def state() -> dict[str, Any]:
            return dict(curl(f"{r.daemon.url}/api/v1/sms/{sent['id']}", *bearer(key))[2])

        got = wait_for(lambda: (s := state())["state"] == "delivered" and s, timeout=20, what="the delivery report")
        assert got["sent_at"] and got["delivered_at"] and got["error"] is None
