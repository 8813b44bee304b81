"""The web admin's routes over real HTTP against ``hbgw serve``: authentication and CSRF on every
mutating route, sessions, login throttling, security headers, hostile names, form errors."""

from __future__ import annotations

import html
import re
import sqlite3
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gateway import config as cfgmod
from tests.support.browser import WebClient, csrf_of
from tests.support.daemon import Daemon, hbgw, write_config

PASSWORD = "route-test-password-1"
HOSTILE = [
    "<img src=x onerror=alert(1)>",
    '"><script>alert(1)',
    'it\'s "quoted" & <b>bold<b>',
    "🚀 rocket ünïcode",
    "x" * 200,
]


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    root = tmp_path_factory.mktemp("web")
    data = root / "data"
    # Loopback is a "trusted proxy" here so that tests can speak for several client addresses
    # (X-Forwarded-For) and for TLS (X-Forwarded-Proto).
    cfg = write_config(root / "hbgw.toml", data, http='trusted_proxies = ["127.0.0.1"]\n')
    hbgw("passwd", "--password-stdin", config=cfg, input=PASSWORD + "\n")
    with Daemon(data, config=cfg) as d:
        yield d


_ADDR = iter(range(1, 10_000))


def client(gw: Daemon, *, login: bool = True) -> WebClient:
    """A browser from its own address (so throttling one test never locks out another)."""
    c = WebClient(gw.url)
    n = next(_ADDR)
    addr = f"198.18.{n // 250}.{n % 250 + 1}"
    original = c.request

    def request(method: str, path: str, **kw: Any) -> Any:
        kw["headers"] = {"X-Forwarded-For": addr, **(kw.get("headers") or {})}
        return original(method, path, **kw)

    c.request = request  # type: ignore[method-assign]
    if login:
        r = c.login(PASSWORD)
        assert r.status == 303, r.text
    return c


@pytest.fixture(scope="module")
def admin(gw: Daemon) -> WebClient:
    return client(gw)


def db(gw: Daemon) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{gw.data_dir / 'hbgw.sqlite3'}?mode=ro", uri=True)


def query(gw: Daemon, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    con = db(gw)
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


def snapshot(gw: Daemon) -> tuple[Any, ...]:
    """Everything a mutating route could change (the last-alive tick excluded)."""
    con = db(gw)
    try:
        return (
            con.execute("SELECT * FROM checks ORDER BY id").fetchall(),
            con.execute("SELECT count(*) FROM events").fetchone(),
            con.execute("SELECT * FROM outbox ORDER BY id").fetchall(),
            con.execute("SELECT * FROM settings WHERE key != 'last_alive' ORDER BY key").fetchall(),
            con.execute("SELECT * FROM api_keys ORDER BY id").fetchall(),
            con.execute("SELECT id FROM sessions ORDER BY id").fetchall(),
        )
    finally:
        con.close()


def add_check(c: WebClient, name: str, period: str = "1h") -> None:
    r = c.post("/checks", {"csrf": c.csrf(), "name": name, "period": period, "grace": "1h"})
    assert r.status == 303, r.text


def check_row(gw: Daemon, name: str) -> dict[str, Any] | None:
    con = db(gw)
    con.row_factory = sqlite3.Row
    try:
        r = con.execute("SELECT * FROM checks WHERE name = ?", (name,)).fetchone()
        return dict(r) if r else None
    finally:
        con.close()


# ----------------------------------------------------------------------------- the auth matrix


@dataclass
class Mutation:
    """A mutating route: how to prepare for it, its form, and how to tell it happened."""

    path: str
    form: Callable[[str], dict[str, str]]
    happened: Callable[[Daemon, str], bool]
    prepare: Callable[[WebClient, Daemon, str], None] = lambda c, gw, name: add_check(c, name)
    ok_status: int = 303


def _alerts_saved_on_the_page(c: WebClient, name: str) -> None:
    form = {"csrf": c.csrf(), "email_to": f"{name}@example.org", "repeat": "20m", "max_sms_per_hour": "30"}
    assert c.post("/settings/alerts", form).status == 303


def _paused(c: WebClient, gw: Daemon, name: str) -> None:
    add_check(c, name)
    assert c.post(f"/checks/{name}/pause", {"csrf": c.csrf()}).status == 303


def _key(c: WebClient, gw: Daemon, name: str) -> None:
    assert c.post("/settings/api-keys", {"csrf": c.csrf(), "label": name}).status == 303


def _key_id(gw: Daemon, name: str) -> int:
    return int(query(gw, "SELECT id FROM api_keys WHERE label = ?", name)[0][0])


_WINDOW_OF = (
    "SELECT m.id, m.ended_early FROM maintenance m JOIN checks c ON m.scope = 'checks:' || c.id WHERE c.name = ?"
)


def _window(c: WebClient, gw: Daemon, name: str) -> None:
    add_check(c, name)
    form = {"csrf": c.csrf(), "scope": "checks", "checks": name, "length": "1h"}
    assert c.post("/maintenance", form).status == 303


MUTATIONS = {
    "add check": Mutation(
        "/checks",
        lambda n: {"name": n, "period": "5m", "grace": "5m"},
        lambda gw, n: check_row(gw, n) is not None,
        prepare=lambda c, gw, n: None,
    ),
    "sms toggle": Mutation("/sms", lambda n: {"off": n}, lambda gw, n: check_row(gw, n)["sms_enabled"] == 0),  # type: ignore[index]
    "edit check": Mutation(
        "/checks/{name}",
        lambda n: {"period": "7m", "grace": "1m", "sms": "1"},
        lambda gw, n: check_row(gw, n)["period"] == 420,  # type: ignore[index]
    ),
    "delete": Mutation("/checks/{name}/delete", lambda n: {}, lambda gw, n: check_row(gw, n) is None),
    "pause": Mutation("/checks/{name}/pause", lambda n: {}, lambda gw, n: check_row(gw, n)["status"] == "paused"),  # type: ignore[index]
    "resume": Mutation(
        "/checks/{name}/resume",
        lambda n: {},
        lambda gw, n: check_row(gw, n)["status"] != "paused",  # type: ignore[index]
        prepare=_paused,
    ),
    "new ping url": Mutation(
        "/checks/{name}/new-url",
        lambda n: {},
        lambda gw, n: bool(
            query(
                gw,
                "SELECT 1 FROM events e JOIN checks c ON c.id = e.check_id"
                " WHERE c.name = ? AND e.kind = 'ping URL replaced'",
                n,
            )
        ),
    ),
    "test sms": Mutation(
        "/modem/test-sms",
        lambda n: {"number": "+15551230077", "text": n},
        lambda gw, n: bool(query(gw, "SELECT 1 FROM outbox WHERE text = ?", n)),
        prepare=lambda c, gw, n: None,
    ),
    "alert settings": Mutation(
        "/settings/alerts",
        lambda n: {
            "sms_to": "+15551230001",
            "email_to": f"{n}@example.org",
            "sms_allow": "",
            "sms_pin": "",
            "repeat": "20m",
            "quiet_hours": "",
            "max_sms_per_hour": "30",
        },
        lambda gw, n: n in (query(gw, "SELECT value FROM settings WHERE key = 'owner_settings'") or [("",)])[0][0],
        prepare=lambda c, gw, n: None,
    ),
    "use the file's alert settings": Mutation(
        "/settings/alerts/reset",
        lambda n: {},
        lambda gw, n: query(gw, "SELECT value FROM settings WHERE key = 'owner_settings'") == [("",)],
        prepare=lambda c, gw, n: _alerts_saved_on_the_page(c, n),
    ),
    "create api key": Mutation(
        "/settings/api-keys",
        lambda n: {"label": n},
        lambda gw, n: bool(query(gw, "SELECT 1 FROM api_keys WHERE label = ?", n)),
        prepare=lambda c, gw, n: None,
    ),
    "revoke api key": Mutation(
        "/settings/api-keys/{key}/revoke",
        lambda n: {},
        lambda gw, n: query(gw, "SELECT revoked FROM api_keys WHERE label = ?", n)[0][0] is not None,
        prepare=_key,
    ),
    "add maintenance window": Mutation(
        "/maintenance",
        lambda n: {"scope": "checks", "checks": n, "length": "1h"},
        lambda gw, n: bool(query(gw, _WINDOW_OF, n)),
    ),
    "end maintenance window": Mutation(
        "/maintenance/{window}/end",
        lambda n: {},
        lambda gw, n: query(gw, _WINDOW_OF, n)[0][1] is not None,
        prepare=_window,
    ),
    "logout": Mutation("/logout", lambda n: {}, lambda gw, n: True, prepare=lambda c, gw, n: None),
}

PERSONAS = ["anonymous", "no csrf", "another session's csrf", "cross-site", "logged in with csrf"]


@pytest.mark.parametrize("persona", PERSONAS)
@pytest.mark.parametrize("route", list(MUTATIONS))
def test_it_guards_every_mutating_route(gw: Daemon, admin: WebClient, route: str, persona: str) -> None:
    m = MUTATIONS[route]
    name = f"t-{uuid.uuid4().hex[:10]}"
    m.prepare(admin, gw, name)
    path = m.path.format(
        name=name,
        key=_key_id(gw, name) if "{key}" in m.path else 0,
        window=query(gw, _WINDOW_OF, name)[0][0] if "{window}" in m.path else 0,
    )
    user = client(gw)
    form = m.form(name)
    headers: dict[str, str] = {}
    if persona == "anonymous":
        user = client(gw, login=False)
        form["csrf"] = admin.csrf()  # even a valid token is worthless without its session
    elif persona == "another session's csrf":
        form["csrf"] = admin.csrf()
    elif persona == "cross-site":
        form["csrf"] = user.csrf()
        headers["Sec-Fetch-Site"] = "cross-site"
    elif persona == "logged in with csrf":
        form["csrf"] = user.csrf()
    before = snapshot(gw)
    r = user.post(path, form, headers=headers)
    if persona == "logged in with csrf":
        assert r.status == m.ok_status, r.text
        assert m.happened(gw, name)
        if route == "logout":
            assert user.get("/").status == 303
    else:
        assert r.status == 403, r.text
        assert "Traceback" not in r.text
        assert snapshot(gw) == before
        if route != "logout":
            assert not m.happened(gw, name)


def test_it_refuses_a_login_post_without_its_form_token(gw: Daemon) -> None:
    c = client(gw, login=False)
    c.get("/login")
    r = c.post("/login", {"password": PASSWORD})
    assert r.status == 403
    assert "hbgw_session" not in c.jar


# ----------------------------------------------------------------------------- sessions


@pytest.mark.parametrize("path", ["/", "/checks/web1", "/modem", "/settings", "/partial/overview"])
def test_it_sends_anonymous_visitors_to_the_login_page(gw: Daemon, path: str) -> None:
    r = client(gw, login=False).get(path)
    assert r.status == 303
    assert r.header("Location").endswith("/login?next=" + path)  # type: ignore[union-attr]


def test_it_sets_a_strict_httponly_session_cookie_and_secure_only_over_tls(gw: Daemon) -> None:
    c = client(gw, login=False)
    page = c.get("/login")
    r = c.post("/login", {"csrf": csrf_of(page.text), "password": PASSWORD, "next": "/settings"})
    assert r.status == 303 and r.header("Location").endswith("/settings")  # type: ignore[union-attr]
    cookie = next(h for h in r.cookies() if h.startswith("hbgw_session="))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    assert "Secure" not in cookie
    # the database holds only a hash of the cookie value
    assert not query(gw, "SELECT 1 FROM sessions WHERE id = ?", c.jar["hbgw_session"])

    tls = client(gw, login=False)
    page = tls.get("/login", headers={"X-Forwarded-Proto": "https"})
    r = tls.post("/login", {"csrf": csrf_of(page.text), "password": PASSWORD}, headers={"X-Forwarded-Proto": "https"})
    cookie = next(h for h in r.cookies() if h.startswith("hbgw_session="))
    assert "Secure" in cookie


def test_it_never_redirects_off_site_after_login(gw: Daemon) -> None:
    c = client(gw, login=False)
    page = c.get("/login")
    r = c.post("/login", {"csrf": csrf_of(page.text), "password": PASSWORD, "next": "//evil.example/"})
    assert r.status == 303 and r.header("Location") == f"{gw.url}/"


def test_it_forgets_a_session_on_logout(gw: Daemon) -> None:
    c = client(gw)
    stolen = dict(c.jar)
    assert c.post("/logout", {"csrf": c.csrf()}).status == 303
    replay = WebClient(gw.url, jar=stolen)
    assert replay.get("/").status == 303


def test_it_throttles_logins_per_address(gw: Daemon) -> None:
    c = client(gw, login=False)
    for _ in range(5):
        page = c.get("/login")
        r = c.post("/login", {"csrf": csrf_of(page.text), "password": "wrong-password"})
        assert r.status == 401 and "Wrong password" in r.text
    page = c.get("/login")
    r = c.post("/login", {"csrf": csrf_of(page.text), "password": PASSWORD})
    assert r.status == 429 and "Too many failed attempts" in r.text
    assert int(r.header("Retry-After") or 0) > 0
    assert "hbgw_session" not in c.jar
    assert client(gw).get("/").status == 200  # another address is not affected


def test_it_changes_the_password_and_logs_out_other_sessions(gw: Daemon, admin: WebClient) -> None:
    me, other = client(gw), client(gw)
    r = me.post("/settings/password", {"csrf": me.csrf(), "current": "nope", "new": "x" * 12, "again": "x" * 12})
    assert r.status == 400 and 'id="e-current"' in r.text
    r = me.post("/settings/password", {"csrf": me.csrf(), "current": PASSWORD, "new": "short", "again": "short"})
    assert r.status == 400 and 'id="e-new"' in r.text
    new = "a-brand-new-password"
    r = me.post("/settings/password", {"csrf": me.csrf(), "current": PASSWORD, "new": new, "again": new})
    assert r.status == 303
    try:
        assert other.get("/").status == 303
        assert me.get("/").status == 200
        assert client(gw, login=False).login(PASSWORD).status == 401
    finally:
        r = me.post("/settings/password", {"csrf": me.csrf(), "current": new, "new": PASSWORD, "again": PASSWORD})
        assert r.status == 303
        assert admin.login(PASSWORD).status == 303  # the shared session was logged out too


# ----------------------------------------------------------------------------- headers


@pytest.mark.parametrize(
    "path", ["/", "/login", "/checks/no-such-check", "/nothing-here", "/static/app.css", "/healthz"]
)
def test_it_sends_security_headers_everywhere(gw: Daemon, admin: WebClient, path: str) -> None:
    r = admin.get(path)
    csp = r.header("Content-Security-Policy") or ""
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert r.header("X-Frame-Options") == "DENY"
    assert r.header("Referrer-Policy") == "no-referrer"
    assert r.header("X-Content-Type-Options") == "nosniff"


def test_its_pages_have_no_inline_scripts_or_styles(gw: Daemon, admin: WebClient) -> None:
    add_check(admin, "inline-probe")
    for path in ("/", "/checks/inline-probe", "/modem", "/settings", "/checks/inline-probe/delete"):
        page = admin.get(path).text
        assert not re.search(r"<script(?![^>]*\bsrc=)", page), path
        assert " style=" not in page and "<style" not in page, path
        assert re.search(r"\son[a-z]+=", page) is None, path


# ----------------------------------------------------------------------------- content


@pytest.mark.parametrize("name", HOSTILE)
def test_it_shows_hostile_names_as_text(gw: Daemon, admin: WebClient, name: str) -> None:
    add_check(admin, name)
    index = admin.get("/").text
    assert "<img src=x" not in index and "<script>alert" not in index and "<b>bold" not in index
    assert (
        'value="'
        + name.replace("&", "&amp;")
        .replace('"', "&#34;")
        .replace("'", "&#39;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        + '"'
        in index
    )
    from urllib.parse import quote

    page = admin.get("/checks/" + quote(name, safe=""))
    assert page.status == 200
    assert "<img src=x" not in page.text and "<script>alert" not in page.text
    r = admin.post("/sms", {"csrf": admin.csrf(), "off": name})
    assert r.status == 303
    assert check_row(gw, name)["sms_enabled"] == 0  # type: ignore[index]


def test_it_answers_an_unknown_check_with_a_404_page(gw: Daemon, admin: WebClient) -> None:
    for r in (
        admin.get("/checks/no-such-check"),
        admin.get("/checks/no-such-check/delete"),
        admin.post("/sms", {"csrf": admin.csrf(), "on": "no-such-check"}),
        admin.post("/checks/no-such-check/pause", {"csrf": admin.csrf()}),
    ):
        assert r.status == 404
        assert "There is no server called" in r.text and "<html" in r.text


def test_it_lists_problems_first(gw: Daemon, admin: WebClient) -> None:
    add_check(admin, "aaa-paused")
    admin.post("/checks/aaa-paused/pause", {"csrf": admin.csrf()})
    add_check(admin, "zzz-down")
    tok = query(gw, "SELECT token FROM checks WHERE name = 'zzz-down'")[0][0]
    assert WebClient(gw.url).get(f"/ping/{tok}/fail").status == 200
    rows = re.findall(r'<tr class="(\w+)"><td class="n"><a href="/checks/([^"]+)"', admin.get("/").text)
    statuses = [s for s, _ in rows]
    order = {"down": 0, "late": 1, "up": 2, "new": 3, "paused": 4}
    assert statuses == sorted(statuses, key=order.__getitem__)
    assert rows[0] == ("down", "zzz-down") and rows[-1][0] == "paused"
    summary = admin.get("/partial/overview").text
    assert "<html" not in summary and re.search(r"1 down", summary)


def test_it_shows_the_form_again_with_the_error_next_to_the_field(gw: Daemon, admin: WebClient) -> None:
    add_check(admin, "form-errors")
    before = check_row(gw, "form-errors")
    r = admin.post("/checks/form-errors", {"csrf": admin.csrf(), "period": "banana", "grace": "1m"})
    assert r.status == 400
    assert re.search(r'id="f-period"[^>]*value="banana"', r.text)
    assert re.search(r'<p class="err" id="e-period">[^<]*duration', r.text)
    r = admin.post("/checks/form-errors", {"csrf": admin.csrf(), "period": "5m", "grace": "1m", "cron": "not a cron"})
    assert r.status == 400 and 'id="e-cron"' in r.text
    assert check_row(gw, "form-errors") == before

    r = admin.post("/checks", {"csrf": admin.csrf(), "name": "form-errors", "period": "5m"})
    assert r.status == 400 and 'id="e-name"' in r.text  # the name exists
    r = admin.post(
        "/settings/alerts",
        {
            "csrf": admin.csrf(),
            "sms_to": "12345",
            "email_to": "",
            "sms_allow": "",
            "sms_pin": "",
            "repeat": "15m",
            "quiet_hours": "",
            "max_sms_per_hour": "30",
        },
    )
    assert r.status == 400 and 'id="e-sms_to"' in r.text
    r = admin.post("/modem/test-sms", {"csrf": admin.csrf(), "number": "not a number", "text": "x"})
    assert r.status == 400 and 'id="e-number"' in r.text


def test_it_replaces_a_leaked_ping_url(gw: Daemon, admin: WebClient) -> None:
    add_check(admin, "leaked")
    old = query(gw, "SELECT token FROM checks WHERE name = 'leaked'")[0][0]
    assert WebClient(gw.url).get(f"/ping/{old}").status == 200
    r = admin.post("/checks/leaked/new-url", {"csrf": admin.csrf()})
    assert r.status == 303 and (r.header("Location") or "").endswith("/checks/leaked?new-url=1#snip-h")
    new = query(gw, "SELECT token FROM checks WHERE name = 'leaked'")[0][0]
    assert new != old
    assert WebClient(gw.url).get(f"/ping/{old}").status == 404
    page = admin.get("/checks/leaked?new-url=1")
    assert f"/ping/{new}<" in page.text and f"{new}@" in page.text and old not in page.text
    assert "The old ones answer 404 now" in page.text and "ping URL replaced" in page.text
    assert "1 shown of 1" in page.text  # the history stays
    assert admin.post("/checks/no-such-check/new-url", {"csrf": admin.csrf()}).status == 404


BANNER = re.compile(r'<div class="alert bad banner" role="alert">.*?<ul>(.*?)</ul>', re.S)


def troubles_on(page: str) -> list[str]:
    m = BANNER.search(page)
    return re.findall(r"<li>([^<]*)</li>", m.group(1)) if m else []


def test_every_page_says_when_alerts_cannot_go_out(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "hbgw.toml", tmp_path / "data")
    hbgw("passwd", "--password-stdin", config=cfg, input=PASSWORD + "\n")
    with Daemon(tmp_path / "data", config=cfg) as d:
        c = WebClient(d.url)
        assert c.login(PASSWORD).status == 303
        nobody = (
            "nobody to alert: add a phone number or an email address on the settings page"
            " ([alerts] sms_to, email_to, push_to, or an escalation ladder)."
        )
        for path in ("/", "/modem", "/settings", "/partial/banner", "/partial/overview", "/partial/modem"):
            assert troubles_on(c.get(path).text) == [nobody], path
        assert troubles_on(c.get("/no-such-page", headers={"Accept": "text/html"}).text) == [nobody]
        r = c.post(
            "/settings/alerts",
            {
                "csrf": c.csrf(),
                "sms_to": "+15551230001",
                "email_to": "",
                "sms_allow": "",
                "sms_pin": "",
                "repeat": "15m",
                "quiet_hours": "",
                "max_sms_per_hour": "30",
            },
        )
        assert r.status in (200, 303), r.text
        assert troubles_on(c.get("/partial/overview").text) == [
            "SMS numbers are set but no modem is configured ([modem] backend)."
        ]
        # the test SMS goes to the owner's first number unless changed (not only a placeholder)
        assert re.search(r'id="f-number" name="number" type="tel" value="\+15551230001"', c.get("/modem").text)
        assert "<title>Settings · hbgw</title>" in c.get("/settings").text


def test_it_shows_a_new_api_key_once_after_a_redirect(gw: Daemon, admin: WebClient) -> None:
    r = admin.post("/settings/api-keys", {"csrf": admin.csrf(), "label": "shown-once"})
    assert r.status == 303 and r.header("Location") is not None
    assert "hbgw_" not in (r.header("Location") or "") and "hbgw_" not in r.text
    page = admin.get("/settings#api-keys").text
    key = re.search(r'<pre id="new-key">(hbgw_[^<]+)</pre>', page)
    assert key
    again = admin.get("/settings").text  # a reload: no second key, and the key is gone
    assert key.group(1) not in again and 'id="new-key"' not in again
    assert query(gw, "SELECT count(*) FROM api_keys WHERE label = 'shown-once'") == [(1,)]
    assert not query(gw, "SELECT 1 FROM api_keys WHERE hash = ?", key.group(1))
    other = client(gw)  # another session never sees it
    admin.post("/settings/api-keys", {"csrf": admin.csrf(), "label": "not-yours"})
    assert 'id="new-key"' not in other.get("/settings").text


@pytest.mark.parametrize(
    ("method", "path", "status", "says"),
    [
        ("GET", "/nope", 404, "Page not found"),
        ("GET", "/checks/web1/pause", 405, "Use the button"),
        ("GET", "/logout", 405, "Log out</button>"),
    ],
)
def test_it_answers_unknown_pages_and_wrong_methods_in_the_layout(
    gw: Daemon, admin: WebClient, method: str, path: str, status: int, says: str
) -> None:
    r = admin.request(method, path, headers={"Accept": "text/html,application/xhtml+xml"})
    assert r.status == status
    assert "<html" in r.text and says in r.text and 'class="top"' in r.text
    assert r.header("Content-Security-Policy")
    plain = admin.request(method, path)  # scripts and curl keep the short text answer
    assert plain.status == status and "<html" not in plain.text
    api = admin.get("/api/v1/nope", headers={"Accept": "text/html"})
    assert api.status == 404 and "<html" not in api.text


def test_it_filters_the_overview_by_tag_and_words_without_javascript(gw: Daemon, admin: WebClient) -> None:
    for name, tags in (("flt-web", "office"), ("flt-db", "office db"), ("flt-home", "home")):
        add_check(admin, name)
        form = {"csrf": admin.csrf(), "period": "1h", "grace": "5m", "tags": tags, "sms": "1"}
        assert admin.post(f"/checks/{name}", form).status == 303

    def names(path: str) -> list[str]:
        return re.findall(r'<td class="n"><a href="/checks/(flt-[^"]+)"', admin.get(path).text)

    assert sorted(names("/")) == ["flt-db", "flt-home", "flt-web"]
    assert sorted(names("/?tag=office")) == ["flt-db", "flt-web"]
    assert names("/?tag=office&q=web") == ["flt-web"]
    assert names("/partial/overview?tag=office&q=WEB") == ["flt-web"]
    page = admin.get("/?tag=office").text
    assert 'data-live="/partial/overview?tag=office"' in page
    assert re.search(r'<a class="chip on" href="/\?tag=office" aria-current="true">office</a>', page)
    assert "No server matches" in admin.get("/?q=zzz-nothing").text


def test_it_masks_numbers_and_push_targets_on_every_page(gw: Daemon, admin: WebClient) -> None:
    add_check(admin, "masked")
    secret = "tgram://123456:SECRETTOKEN/987"
    con = sqlite3.connect(gw.data_dir / "hbgw.sqlite3")
    try:
        cid = con.execute("SELECT id FROM checks WHERE name = 'masked'").fetchone()[0]
        for channel, to in (("push", secret), ("sms", "+15551239876")):
            con.execute(
                "INSERT INTO outbox (created, channel, recipient, text, state, not_before, check_id, check_name)"
                " VALUES (?, ?, ?, 'DOWN masked', 'failed', 0, ?, 'masked')",
                (1e9, channel, to, cid),
            )
        con.commit()
    finally:
        con.close()
    for path in ("/modem", "/checks/masked", "/partial/modem", "/partial/check/masked"):
        text = admin.get(path).text
        assert "SECRETTOKEN" not in text and "+15551239876" not in text, path
    assert "push tgram://…" in admin.get("/modem").text
    assert "+155***76" in admin.get("/checks/masked").text


@pytest.mark.parametrize(("scope", "shown"), [("read", "read only"), ("sms", "sending SMS")])
def test_the_settings_page_makes_read_only_and_sms_only_keys(
    gw: Daemon, admin: WebClient, scope: str, shown: str
) -> None:
    assert (
        admin.post("/settings/api-keys", {"csrf": admin.csrf(), "label": f"{scope}-key", "scope": scope}).status == 303
    )
    r = admin.get("/settings")
    key = re.search(r'<pre id="new-key">(hbgw_[^<]+)</pre>', r.text)
    assert key
    assert query(gw, "SELECT scope FROM api_keys WHERE label = ?", f"{scope}-key") == [(scope,)]
    assert re.search(rf"<td>{scope}-key</td>\s*<td class=\"mono\">[^<]+</td>\s*<td>{shown}</td>", r.text)
    refused = WebClient(gw.url).request(
        "POST", "/api/v1/checks", data=b'{"name": "nope"}', headers={"Authorization": f"Bearer {key.group(1)}"}
    )
    assert refused.status == 401  # neither may create a check
    bad = admin.post("/settings/api-keys", {"csrf": admin.csrf(), "label": "x", "scope": "root"})
    assert bad.status == 400 and "one of write, read, sms" in bad.text


def test_it_compresses_pages_for_browsers_that_accept_gzip(gw: Daemon, admin: WebClient) -> None:
    r = admin.get("/")
    assert r.header("Content-Encoding") == "gzip" and "<table" in r.text
    assert r.header("Cache-Control") == "no-store"


def test_it_has_no_demo_phone_outside_demo_mode(gw: Daemon, admin: WebClient) -> None:
    r = admin.post("/modem/phone", {"csrf": admin.csrf(), "reply": "STATUS"})
    assert r.status == 404
    assert "Simulated phone" not in admin.get("/modem").text


def test_it_logs_every_session_out_when_hbgw_passwd_sets_a_new_password(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "hbgw.toml", tmp_path / "data")
    hbgw("passwd", "--password-stdin", config=cfg, input=PASSWORD + "\n")
    with Daemon(tmp_path / "data", config=cfg) as d:
        c = WebClient(d.url)
        assert c.login(PASSWORD).status == 303 and c.get("/").status == 200
        r = hbgw("passwd", "--password-stdin", config=cfg, input="a-brand-new-password\n")
        assert "1 web session(s) logged out" in r.stdout
        assert c.get("/").status == 303  # back to the login page
        assert WebClient(d.url).login(PASSWORD).status != 303
        assert WebClient(d.url).login("a-brand-new-password").status == 303


def test_it_refuses_the_settings_page_values_the_config_file_refuses(tmp_path: Path) -> None:
    """One validator: the page says what the file says, for the same value."""
    cfg = write_config(tmp_path / "hbgw.toml", tmp_path / "data")
    hbgw("passwd", "--password-stdin", config=cfg, input=PASSWORD + "\n")
    form = {"sms_to": "", "email_to": "", "sms_allow": "", "sms_pin": "", "repeat": "15m", "quiet_hours": ""}
    with Daemon(tmp_path / "data", config=cfg) as d:
        c = WebClient(d.url)
        assert c.login(PASSWORD).status == 303
        for field, bad in (("sms_to", "0612345678"), ("sms_pin", "12"), ("quiet_hours", "25:00-07:00")):
            r = c.post("/settings/alerts", {**form, "max_sms_per_hour": "30", field: bad, "csrf": c.csrf()})
            assert r.status == 400
            try:
                cfgmod.parse({"alerts": {field: [bad] if field == "sms_to" else bad}}, "f.toml")
            except cfgmod.ConfigError as e:
                said = str(e).split(f"[alerts] {field}: ", 1)[1]
            else:
                raise AssertionError(f"the file took {field} = {bad!r}")
            shown = re.search(rf'<p class="err" id="e-{field}">([^<]*)</p>', r.text)
            assert shown is not None and html.unescape(shown.group(1)) == said


def test_the_check_page_edits_tags_slug_description_and_ping_rules_and_shows_run_times(
    gw: Daemon, admin: WebClient
) -> None:
    add_check(admin, "nightly backup", "1d")
    form = {
        "csrf": admin.csrf(),
        "period": "1d",
        "grace": "1h",
        "tz": "UTC",
        "sms": "1",
        "email": "1",
        "tags": "db  office db",
        "slug": "nightly",
        "desc": "rsync to the NAS <weekly>",
        "post_only": "1",
    }
    assert admin.post("/checks/nightly%20backup", form).status == 303
    row = check_row(gw, "nightly backup")
    assert row is not None
    assert (row["tags"], row["slug"], row["description"], row["methods"], row["manual_resume"]) == (
        "db office",
        "nightly",
        "rsync to the NAS <weekly>",
        "POST",
        0,
    )
    bad = admin.post("/checks/nightly%20backup", {**form, "csrf": admin.csrf(), "slug": "Not A Slug"})
    assert bad.status == 400 and "lower-case a-z 0-9" in bad.text
    token = row["token"]
    rid = str(uuid.uuid4())
    for suffix in (f"/start?rid={rid}", f"?rid={rid}"):
        urllib.request.urlopen(urllib.request.Request(f"{gw.url}/ping/{token}{suffix}", method="POST"), timeout=10)
    page = admin.get("/checks/nightly%20backup").text
    assert "rsync to the NAS &lt;weekly&gt;" in page
    assert '<a class="tag" href="/?tag=db">db</a><a class="tag" href="/?tag=office">office</a>' in page
    assert re.search(r'<span id="last-run">Last run took [\d.]+ s\.</span>', page)
    assert f'title="run id {rid}"' in page
    assert re.search(r'<pre id="snip-slug">http://[^<]+/ping/[A-Za-z0-9_-]+/nightly</pre>', page)
    badge = re.search(r'<img src="(/b/3/[A-Za-z0-9_-]+\.svg)"', page)
    assert badge, "the status badge, by a path on this origin (the CSP allows only 'self')"
    anonymous = urllib.request.urlopen(f"{gw.url}{badge.group(1)}", timeout=10)
    assert anonymous.status == 200 and b"nightly backup" in anonymous.read()


def test_the_overview_heartbeat_bar_is_small_and_says_what_each_ping_was() -> None:
    from gateway.readmodels import beat_letters
    from web.pages import beat_bar

    newest_first = [("success", 0), ("fail", None), ("success", 2), ("start", None), ("ign", None), ("log", None)]
    assert beat_letters(newest_first) == "sisffo"  # oldest first; exit status 2 is a failure
    svg = str(beat_bar("sisffo", 30))
    assert svg.count("<path") == 5  # one path per colour: empty slots, start/log, ignored, failed, ok
    assert 'class="f" d="M162 0h4v18h-4zM168 0h4v18h-4z"' in svg  # the 28th and 29th of 30 slots
    assert len(str(beat_bar("o" * 30, 30))) < 600


def test_the_overview_groups_by_tag(gw: Daemon, admin: WebClient) -> None:
    from gateway.readmodels import by_tag

    for name, tags in (("grp-web", "office"), ("grp-db", "office lab"), ("grp-x", "")):
        add_check(admin, name, "1h")
        form = {"csrf": admin.csrf(), "period": "1h", "grace": "1h", "tz": "UTC", "sms": "1", "email": "1"}
        assert admin.post(f"/checks/{name}", {**form, "tags": tags}).status == 303
    page = admin.get("/?group=tag&q=grp-").text
    order = re.findall(
        r'<tr class="group"><th colspan="7" scope="rowgroup">(?:<a[^>]*>)?([^<]+)|href="/checks/(grp-[a-z]+)"', page
    )
    flat = [h or n for h, n in order]
    assert flat == ["lab", "grp-db", "office", "grp-db", "grp-web", "no tag", "grp-x"]
    assert 'href="/?q=grp-">Ungroup</a>' in page
    assert "Group by tag" in admin.get("/?q=grp-").text
    live = admin.get("/partial/overview?group=tag&q=grp-").text  # the page's live updates keep the grouping
    assert 'scope="rowgroup"' in live
    assert by_tag([], grouped=True) == []
