"""The JSON API and /metrics over real HTTP against ``hbgw serve``, with keys made on the
settings page. What /metrics says: tests/test_metrics.py."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.browser import WebClient
from tests.support.daemon import Daemon, hbgw, hbgw_json, wait_for, write_config

PASSWORD = "api-test-password-1"


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    root = tmp_path_factory.mktemp("api")
    data = root / "data"
    cfg = write_config(root / "hbgw.toml", data)
    hbgw("passwd", "--password-stdin", config=cfg, input=PASSWORD + "\n")
    hbgw("check", "add", "web1", "--period", "1h", config=cfg)
    with Daemon(data, config=cfg) as d:
        d.cfg = cfg  # type: ignore[attr-defined]
        yield d


@pytest.fixture(scope="module")
def admin(gw: Daemon) -> WebClient:
    c = WebClient(gw.url)
    assert c.login(PASSWORD).status == 303
    return c


def new_key(admin: WebClient, label: str) -> str:
    assert admin.post("/settings/api-keys", {"csrf": admin.csrf(), "label": label}).status == 303
    r = admin.get("/settings")  # post/redirect/get: the key is shown once, on the next page
    m = re.search(r'<pre id="new-key">([^<]+)</pre>', r.text)
    assert m, r.text
    return m.group(1)


@pytest.fixture(scope="module")
def key(admin: WebClient) -> str:
    return new_key(admin, "tests")


class Api:
    def __init__(self, gw: Daemon, key: str | None) -> None:
        self.client = WebClient(gw.url)
        self.key = key

    def __call__(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.key}"} if self.key else {}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        r = self.client.request(method, path, data=data, headers=headers)
        ctype = r.header("Content-Type") or ""
        return r.status, (r.json() if ctype.startswith("application/json") else r.text)


@pytest.fixture(scope="module")
def api(gw: Daemon, key: str) -> Api:
    return Api(gw, key)


ENDPOINTS = [
    ("GET", "/api/v1/checks"),
    ("POST", "/api/v1/checks"),
    ("GET", "/api/v1/checks/web1"),
    ("PATCH", "/api/v1/checks/web1"),
    ("POST", "/api/v1/checks/web1"),
    ("DELETE", "/api/v1/checks/web1"),
    ("POST", "/api/v1/checks/web1/pause"),
    ("POST", "/api/v1/checks/web1/resume"),
    ("POST", "/api/v1/checks/web1/new-url"),
    ("GET", "/api/v1/checks/web1/pings"),
    ("POST", "/api/v1/checks/web1/snooze"),
    ("GET", "/api/v1/maintenance"),
    ("POST", "/api/v1/maintenance"),
    ("POST", "/api/v1/maintenance/1/end"),
    ("GET", "/metrics"),
    ("GET", "/api/v1/settings"),
    ("PATCH", "/api/v1/settings"),
    ("DELETE", "/api/v1/settings"),
]


@pytest.mark.parametrize("credential", ["none", "wrong", "revoked", "session cookie"])
@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_it_needs_a_valid_api_key(gw: Daemon, admin: WebClient, method: str, path: str, credential: str) -> None:
    if credential == "revoked":
        secret = new_key(admin, "to-revoke")
        con = sqlite3.connect(f"file:{gw.data_dir / 'hbgw.sqlite3'}?mode=ro", uri=True)
        key_id = con.execute("SELECT max(id) FROM api_keys").fetchone()[0]
        con.close()
        assert admin.post(f"/settings/api-keys/{key_id}/revoke", {"csrf": admin.csrf()}).status == 303
        call = Api(gw, secret)
    elif credential == "wrong":
        call = Api(gw, "hbgw_" + "A" * 40)
    elif credential == "session cookie":  # a logged-in browser is not an API client
        call = Api(gw, None)
        call.client.jar = dict(admin.jar)
    else:
        call = Api(gw, None)
    saved = page_settings(gw)
    status, body = call(method, path, {"name": "sneaky"} if method != "GET" else None)
    assert status == 401
    if path.startswith("/api"):
        assert "API key" in body["error"]
    assert checks(gw) == {"web1": ("new", 1)}  # nothing created, changed or deleted
    assert page_settings(gw) == saved


def page_settings(gw: Daemon) -> list[tuple[str]]:
    con = sqlite3.connect(f"file:{gw.data_dir / 'hbgw.sqlite3'}?mode=ro", uri=True)
    try:
        return list(con.execute("SELECT value FROM settings WHERE key = 'owner_settings'"))
    finally:
        con.close()


def checks(gw: Daemon) -> dict[str, tuple[str, int]]:
    con = sqlite3.connect(f"file:{gw.data_dir / 'hbgw.sqlite3'}?mode=ro", uri=True)
    try:
        return {n: (s, e) for n, s, e in con.execute("SELECT name, status, sms_enabled FROM checks")}
    finally:
        con.close()


def test_it_manages_checks(gw: Daemon, api: Api) -> None:
    status, check = api("POST", "/api/v1/checks", {"name": "api-box", "period": "5m", "grace": 60})
    assert status == 201
    assert (check["name"], check["period"], check["grace"], check["status"]) == ("api-box", 300, 60, "new")
    assert api("POST", "/api/v1/checks", {"name": "api-box"})[0] == 409
    status, err = api("POST", "/api/v1/checks", {"name": "bad", "period": "soon"})
    assert status == 400 and err["field"] == "period"
    assert api("POST", "/api/v1/checks", {"name": ""})[1]["field"] == "name"
    # a Healthchecks-shaped body sent with our Bearer key is refused, never half-applied
    status, err = api("POST", "/api/v1/checks", {"name": "hc-shaped", "timeout": 300, "schedule": "* * * * *"})
    assert (status, err["field"]) == (400, "schedule") and "unknown field" in err["error"]
    assert api("GET", "/api/v1/checks/hc-shaped")[0] == 404
    assert api("POST", "/api/v1/checks", [1, 2])[0] == 400

    assert api("GET", "/api/v1/checks/api-box")[1]["ping_url"] == check["ping_url"]
    names = [c["name"] for c in api("GET", "/api/v1/checks")[1]["checks"]]
    assert "api-box" in names and "web1" in names

    status, changed = api("PATCH", "/api/v1/checks/api-box", {"sms_enabled": False, "period": "10m"})
    assert status == 200 and changed["sms_enabled"] is False and changed["period"] == 600
    assert changed["grace"] == 60  # left out: unchanged
    assert api("PATCH", "/api/v1/checks/api-box", {"colour": "red"})[1]["field"] == "colour"
    assert api("PATCH", "/api/v1/checks/api-box", {"cron": "61 * * * *"})[1]["field"] == "cron"
    shown = hbgw_json("check", "show", "api-box", config=gw.cfg)  # type: ignore[attr-defined]
    assert shown["sms_enabled"] is False and shown["period"] == 600

    assert api("POST", "/api/v1/checks/api-box/pause")[1]["status"] == "paused"
    assert api("POST", "/api/v1/checks/api-box/resume")[1]["status"] == "new"

    ping = WebClient(gw.url).request(
        "POST",
        "/ping/" + check["ping_url"].rsplit("/", 1)[1] + "/fail",
        data=b"disk full",
        headers={"User-Agent": "api-test"},
    )
    assert ping.status == 200
    status, pings = api("GET", "/api/v1/checks/api-box/pings?limit=5")
    assert status == 200
    assert pings["pings"][0] | {"at": None} == {
        "at": None,
        "kind": "fail",
        "exit_status": None,
        "source": "http",
        "remote_addr": "127.0.0.1",
        "method": "POST",
        "user_agent": "api-test",
        "body": "disk full",
        "rid": None,
        "duration": None,
    }
    assert api("GET", "/api/v1/checks/api-box/pings?limit=x")[0] == 400

    old_url, old_email = check["ping_url"], check["email"]
    status, renewed = api("POST", "/api/v1/checks/api-box/new-url")
    assert status == 200 and renewed["name"] == "api-box" and renewed["n_pings"] == 1
    assert renewed["ping_url"] != old_url and renewed["email"] != old_email
    token_path = "/ping/" + old_url.rsplit("/", 1)[1]
    assert WebClient(gw.url).request("GET", token_path).status == 404
    assert WebClient(gw.url).request("GET", "/ping/" + renewed["ping_url"].rsplit("/", 1)[1]).status == 200
    assert api("POST", "/api/v1/checks/no-such/new-url") == (404, {"error": "no such check"})

    assert api("DELETE", "/api/v1/checks/api-box") == (200, {"deleted": "api-box"})
    assert api("GET", "/api/v1/checks/api-box") == (404, {"error": "no such check"})
    assert api("DELETE", "/api/v1/checks/api-box")[0] == 404
    assert api("GET", "/api/v1/nothing")[0] == 404


def test_it_edits_alert_settings_with_the_rules_of_the_page(api: Api) -> None:
    status, got = api("GET", "/api/v1/settings")
    assert status == 200 and got["set_on_page"] == [] and got["settings"]["repeat"] == 900
    status, got = api("PATCH", "/api/v1/settings", {"sms_to": ["+33 6 12 34 56 78"], "repeat": "20m"})
    assert status == 200, got
    assert (got["settings"]["sms_to"], got["settings"]["repeat"]) == (["+33612345678"], 1200)
    assert got["set_on_page"] == ["repeat", "sms_to"]
    for bad, field in (({"repeat": "soon"}, "repeat"), ({"sms_pin": "12"}, "sms_pin"), ({"nope": 1}, "nope")):
        status, err = api("PATCH", "/api/v1/settings", bad)
        assert (status, err["field"]) == (400, field)
    status, got = api("PATCH", "/api/v1/settings", {"sms_pin": "4321"})
    assert status == 200 and got["settings"]["sms_pin"] is True and "4321" not in json.dumps(got)
    status, got = api("DELETE", "/api/v1/settings")
    assert status == 200 and got["set_on_page"] == [] and got["settings"]["repeat"] == 900
    assert got["settings"]["sms_to"] == [] and got["settings"]["sms_pin"] is False


def test_it_toggles_sms_like_the_page_does(gw: Daemon, api: Api, admin: WebClient) -> None:
    """The page, the API (and SMS commands) make the same service call: same effect, same event."""
    assert api("PATCH", "/api/v1/checks/web1", {"sms_enabled": False})[1]["sms_enabled"] is False
    assert admin.post("/sms", {"csrf": admin.csrf(), "on": "web1"}).status == 303
    assert api("GET", "/api/v1/checks/web1")[1]["sms_enabled"] is True


def test_it_answers_healthz_without_a_key(gw: Daemon) -> None:
    r = WebClient(gw.url).get("/healthz")
    assert (r.status, r.text) == (200, "ok\n")


def muted(gw: Daemon, name: str) -> float | None:
    con = sqlite3.connect(f"file:{gw.data_dir / 'hbgw.sqlite3'}?mode=ro", uri=True)
    try:
        return con.execute("SELECT muted_until FROM checks WHERE name = ?", (name,)).fetchone()[0]  # type: ignore[no-any-return]
    finally:
        con.close()


@pytest.mark.parametrize("action", ["ack", "mute", "unmute"])
def test_acknowledging_and_muting_need_a_key_too(gw: Daemon, action: str) -> None:
    status, _ = Api(gw, None)("POST", f"/api/v1/checks/web1/{action}", {"for": "2h"})
    assert status == 401 and muted(gw, "web1") is None


def test_it_mutes_unmutes_and_acknowledges(gw: Daemon, api: Api) -> None:
    status, body = api("POST", "/api/v1/checks/web1/mute", {"for": "2h"})
    assert status == 200 and body["muted_until"] is not None and muted(gw, "web1") is not None
    assert api("POST", "/api/v1/checks/web1/unmute")[1]["muted_until"] is None
    status, body = api("POST", "/api/v1/checks/web1/mute", {"for": "forever"})
    assert status == 400 and body["field"] == "for"
    status, body = api("POST", "/api/v1/checks/web1/mute", {"for": "10s"})
    assert status == 400 and "1m to 30d" in body["error"]
    status, body = api("POST", "/api/v1/checks/web1/ack")  # not down: nothing to acknowledge
    assert status == 200 and body["acked"] is False and body["acked_by"] is None
    assert api("POST", "/api/v1/checks/nope/ack")[0] == 404
    assert muted(gw, "web1") is None


def test_the_page_acknowledges_a_down_check_and_mutes_from_the_check_page(gw: Daemon, admin: WebClient) -> None:
    hbgw("check", "add", "flaky", "--period", "1s", "--grace", "0s", config=gw.cfg)  # type: ignore[attr-defined]
    token = hbgw_json("check", "show", "flaky", config=gw.cfg)["ping_url"].rsplit("/", 1)[1]  # type: ignore[attr-defined]
    assert WebClient(gw.url).get(f"/ping/{token}").status == 200
    wait_for(lambda: "Acknowledge</button>" in admin.get("/").text, timeout=20, what="flaky down on the overview")
    r = admin.post("/checks/flaky/ack", {"csrf": admin.csrf(), "next": "/"})
    assert r.status == 303
    shown = hbgw_json("check", "show", "flaky", config=gw.cfg)  # type: ignore[attr-defined]
    assert shown["acked"] and shown["acked_by"] == "web"
    assert "acknowledged by web at" in admin.get("/").text
    assert admin.post("/checks/flaky/mute", {"csrf": admin.csrf(), "for": "8h"}).status == 303
    page = admin.get("/checks/flaky").text
    assert "Muted until" in page and 'action="/checks/flaky/unmute"' in page
    assert admin.post("/checks/flaky/mute", {"csrf": "forged", "for": "8h"}).status == 403  # CSRF
    assert admin.post("/checks/flaky/unmute", {"csrf": admin.csrf()}).status == 303
    assert "Muted until" not in admin.get("/checks/flaky").text
    assert admin.post("/checks/flaky/mute", {"csrf": admin.csrf(), "for": "soon"}).status == 400
    hbgw("check", "rm", "flaky", config=gw.cfg)  # type: ignore[attr-defined]
