"""The web admin in a real headless Chromium (Playwright) against ``hbgw serve`` on loopback.

Also saves screenshots of the main pages at desktop and phone widths into
``test-artifacts/screenshots/`` for people to look at.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.browser import SCREENSHOTS, WebClient, chromium_path, launch
from tests.support.daemon import Daemon, hbgw, hbgw_json, wait_for, write_config

pytestmark = pytest.mark.skipif(chromium_path() is None, reason="needs Chromium (Debian: chromium)")

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

PASSWORD = "browser-test-password"
XSS = ["<img src=x onerror=alert(1)>", '"><script>alert(1)']
LONG = "a-server-with-a-very-long-name-" * 6 + "end"


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    root = tmp_path_factory.mktemp("browser")
    data = root / "data"
    cfg = write_config(root / "hbgw.toml", data, extra='[alerts]\nsms_to = ["+15551230000"]\n')
    hbgw("passwd", "--password-stdin", config=cfg, input=PASSWORD + "\n")
    for name in ("web1", "db1", "backup", "trash", "mail.example.org", *XSS, LONG, "nas 🚀"):
        hbgw("check", "add", name, "--period", "15m", "--grace", "10m", config=cfg)
    hbgw("check", "pause", "mail.example.org", config=cfg)
    with Daemon(data, config=cfg) as d:
        d.cfg = cfg  # type: ignore[attr-defined]
        for name in ("web1", "db1", "nas 🚀"):
            ping(d, name)
        ping(d, "db1", "/fail", b"pg_dump: error: connection refused")
        yield d


def show(gw: Daemon, name: str) -> dict[str, Any]:
    result: dict[str, Any] = hbgw_json("check", "show", name, config=gw.cfg)  # type: ignore[attr-defined]
    return result


def ping(gw: Daemon, name: str, suffix: str = "", body: bytes | None = None) -> None:
    token = show(gw, name)["ping_url"].rsplit("/", 1)[1]
    r = WebClient(gw.url).request(
        "POST" if body else "GET", f"/ping/{token}{suffix}", data=body, headers={"User-Agent": "curl/8.0 (test)"}
    )
    assert r.status == 200


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = launch(p)
        try:
            yield b
        finally:
            b.close()


class Watch:
    """Fails the test on any JavaScript dialog (an XSS would alert) or CSP violation."""

    def __init__(self, page: Any) -> None:
        self.problems: list[str] = []
        page.on("dialog", self._dialog)
        # (a 400 is the form coming back with an error message: expected in one test)
        page.on(
            "console",
            lambda m: (
                self.problems.append(f"console: {m.text}")
                if m.type == "error" and "status of 400" not in m.text
                else None
            ),
        )
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))

    def _dialog(self, dialog: Any) -> None:
        self.problems.append(f"dialog: {dialog.message}")
        dialog.dismiss()


def login(page: Any, gw: Daemon) -> None:
    page.goto(gw.url + "/")
    expect(page).to_have_url(re.compile(r"/login\?next=/$"))
    page.get_by_label("Admin password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(gw.url + "/")


@pytest.fixture(scope="module")
def session(browser: Any, gw: Daemon) -> Iterator[tuple[Any, Watch]]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    watch = Watch(page)
    login(page, gw)
    yield page, watch
    ctx.close()
    assert not watch.problems, watch.problems


@pytest.fixture()
def page(session: tuple[Any, Watch], gw: Daemon) -> Any:
    p, watch = session
    p.goto(gw.url + "/")
    yield p
    assert not watch.problems, watch.problems


def row(page: Any, name: str) -> Any:
    return page.locator("table.checks tbody tr").filter(has=page.get_by_role("link", name=name, exact=True))


def test_it_shows_every_server_with_problems_first(page: Any) -> None:
    rows = page.locator("table.checks tbody tr")
    expect(rows).to_have_count(9)
    expect(rows.first).to_have_class("down")
    expect(rows.first.locator("td.n a")).to_have_text("db1")
    expect(rows.last).to_have_class("paused")
    expect(page.locator(".summary")).to_contain_text("1 down")
    expect(page.locator(".summary")).to_contain_text("2 up")
    expect(page.locator(".summary")).to_contain_text("modem: none configured")
    expect(row(page, "web1").locator("time")).to_have_attribute("title", re.compile(r"^\d{4}-\d\d-\d\d "))
    expect(row(page, "db1").locator(".when.dn")).to_have_text(re.compile(r"for \d+ s"))
    expect(row(page, "web1").locator("td.sched")).to_have_text("every 15 min")
    expect(page).to_have_title("(1) Servers · hbgw")  # the down count, in the tab


def test_statuses_are_louder_than_the_sms_toggles(page: Any) -> None:
    def colour(locator: Any, prop: str) -> str:
        return str(locator.evaluate(f"e => getComputedStyle(e).{prop}"))

    assert colour(row(page, "db1").locator(".badge.down"), "backgroundColor") == "rgb(196, 39, 31)"
    assert colour(row(page, "web1").locator(".badge.up"), "backgroundColor") == "rgb(26, 127, 55)"
    toggle = row(page, "web1").locator("button.tg")
    expect(toggle).to_have_text("Turn SMS off")
    assert colour(toggle, "backgroundColor") == "rgb(255, 255, 255)"  # neutral: an action, not a state
    expect(row(page, "web1").locator(".smsst")).to_have_text("on")


def test_it_flips_the_sms_toggle_in_place(page: Any, gw: Daemon) -> None:
    button = row(page, "web1").locator("button.tg")
    expect(button).to_have_text("Turn SMS off")
    page.evaluate("window.__sameDocument = true")
    button.click()
    expect(button).to_have_text("Turn SMS on")
    expect(row(page, "web1").locator(".smsst")).to_have_text("off")
    wait_for(lambda: show(gw, "web1")["sms_enabled"] is False, what="SMS off in the store")
    assert page.evaluate("window.__sameDocument") is True  # no full page reload
    button.click()
    expect(button).to_have_text("Turn SMS off")
    wait_for(lambda: show(gw, "web1")["sms_enabled"] is True, what="SMS on again")


def test_it_refreshes_the_table_without_reloading(page: Any, gw: Daemon) -> None:
    expect(row(page, "backup")).to_have_class("new")
    page.evaluate("window.__sameDocument = true")
    ping(gw, "backup")
    page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")  # the 15 s timer, now
    expect(row(page, "backup")).to_have_class("up")
    assert page.evaluate("window.__sameDocument") is True


def test_it_deletes_a_server_after_confirmation(page: Any, gw: Daemon) -> None:
    row(page, "trash").get_by_role("link", name="Delete").click()
    expect(page).to_have_url(gw.url + "/checks/trash/delete")
    expect(page.get_by_role("heading")).to_have_text("Delete trash?")
    assert show(gw, "trash")["name"] == "trash"  # nothing happens before confirming
    page.get_by_role("button", name="Delete this server").click()
    expect(page).to_have_url(gw.url + "/")
    expect(row(page, "trash")).to_have_count(0)
    names = [c["name"] for c in hbgw_json("check", "list", config=gw.cfg)]  # type: ignore[attr-defined]
    assert "trash" not in names and "web1" in names


def test_it_opens_a_check_page(page: Any, gw: Daemon) -> None:
    page.get_by_role("link", name="db1", exact=True).click()
    expect(page).to_have_url(gw.url + "/checks/db1")
    expect(page.get_by_role("heading", level=1)).to_have_text("db1")
    expect(page.locator(".head .badge")).to_have_text("down")
    log = page.locator("table.log tbody tr")
    expect(log.first).to_contain_text("fail")
    expect(log.first).to_contain_text("pg_dump: error: connection refused")
    expect(log.first).to_contain_text("curl/8.0 (test)")
    token = show(gw, "db1")["ping_url"].rsplit("/", 1)[1]
    expect(page.locator("#snip-curl")).to_contain_text(f"curl -fsS -m 10 --retry 3 -o /dev/null {gw.url}/ping/{token}")
    expect(page.locator("#snip-wget")).to_contain_text("wget -q")
    expect(page.locator("#snip-email")).to_contain_text(f"{token}@")
    expect(page.locator(".timeline")).to_contain_text("down")
    # edit with a bad value: the form comes back with the error next to the field
    page.get_by_label("Expected every").fill("every now and then")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#e-period")).to_contain_text("duration")
    expect(page.get_by_label("Expected every")).to_have_value("every now and then")
    page.get_by_label("Expected every").fill("30m")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_have_text("Saved.")
    assert show(gw, "db1")["period"] == 1800


def test_it_replaces_a_leaked_ping_url(page: Any, gw: Daemon) -> None:
    page.get_by_role("link", name="backup", exact=True).click()
    old = show(gw, "backup")["ping_url"].rsplit("/", 1)[1]
    button = page.get_by_role("button", name="Make a new ping URL")
    expect(button).to_be_hidden()  # folded away: not a button to press by accident
    page.get_by_text("Replace the ping URL…").click()
    button.click()
    expect(page.get_by_role("status")).to_contain_text("The old ones answer 404 now")
    new = show(gw, "backup")["ping_url"].rsplit("/", 1)[1]
    assert new != old
    expect(page.locator("#snip-url")).to_have_text(f"{gw.url}/ping/{new}")
    expect(page.locator("#snip-curl")).to_contain_text(f"{gw.url}/ping/{new}")
    expect(page.locator(".timeline")).to_contain_text("ping URL replaced")
    assert WebClient(gw.url).get(f"/ping/{old}").status == 404
    assert WebClient(gw.url).get(f"/ping/{new}").status == 200


@pytest.mark.parametrize("name", XSS)
def test_it_shows_hostile_names_as_text(page: Any, gw: Daemon, name: str) -> None:
    link = page.get_by_role("link", name=name, exact=True)
    expect(link).to_have_text(name)
    assert page.locator("table.checks img, table.checks script").count() == 0
    link.click()
    expect(page.get_by_role("heading", level=1)).to_have_text(name)
    # no element the name could have injected (the status badge is the page's own image, by its id)
    assert page.locator("main img:not(#badge-img), main script").count() == 0
    assert page.locator("#badge-img").get_attribute("alt") == f"{name} status badge"


def test_it_works_without_javascript(browser: Any, gw: Daemon) -> None:
    ctx = browser.new_context(java_script_enabled=False)
    try:
        page = ctx.new_page()
        login(page, gw)
        button = row(page, "backup").locator("button.tg")
        expect(button).to_have_text("Turn SMS off")
        button.click()
        expect(page).to_have_url(gw.url + "/")
        expect(row(page, "backup").locator("button.tg")).to_have_text("Turn SMS on")
        assert show(gw, "backup")["sms_enabled"] is False
    finally:
        ctx.close()


@pytest.mark.parametrize("width", [1280, 360])
def test_it_fits_the_screen_and_saves_screenshots(browser: Any, gw: Daemon, width: int) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    ctx = browser.new_context(viewport={"width": width, "height": 800}, device_scale_factor=2 if width < 500 else 1)
    try:
        page = ctx.new_page()
        watch = Watch(page)
        login(page, gw)
        for path, shot in (("/", "index"), ("/checks/db1", "check"), ("/modem", "modem"), ("/settings", "settings")):
            page.goto(gw.url + path)
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"{path} scrolls sideways by {overflow}px at {width}px"
            page.screenshot(path=str(SCREENSHOTS / f"{shot}-{width}.png"), full_page=True)
        assert not watch.problems, watch.problems
    finally:
        ctx.close()
