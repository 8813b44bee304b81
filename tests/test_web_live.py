"""Live pages in a real Chromium: the check page and the banner on top of every page follow the
gateway without a reload (the modem page's own story is in test_web_demo). The modem is the
simulator in its own process (``hbgw simulate-modem``), unplugged through its control socket."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.browser import SCREENSHOTS, WebClient, chromium_path, launch
from tests.support.daemon import Daemon, hbgw, hbgw_json, write_config
from tests.support.sim import SimProcess

pytestmark = pytest.mark.skipif(chromium_path() is None, reason="needs Chromium (Debian: chromium)")

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

PASSWORD = "live-test-password"
RID = "5f0c7a8e-3b1d-4c2a-9e4f-0a1b2c3d4e5f"
LIVE = 30_000  # ms: pages poll every 3-10 s; the modem task notices an unplug within seconds


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, Any]]:
    root = tmp_path_factory.mktemp("live")
    data = root / "data"
    with SimProcess(root / "modem") as control:
        extra = f'[modem]\nbackend = "at"\ndevice = "{root / "modem"}"\n\n[alerts]\nsms_to = ["+15551230000"]\n'
        cfg = write_config(root / "hbgw.toml", data, extra=extra)
        hbgw("passwd", "--password-stdin", config=cfg, input=PASSWORD + "\n")
        hbgw("check", "add", "cron-job", "--period", "1h", "--grace", "5m", config=cfg)
        with Daemon(data, config=cfg) as d:
            d.cfg = cfg  # type: ignore[attr-defined]
            yield d, control


@pytest.fixture(scope="module")
def page(rig: tuple[Daemon, Any]) -> Iterator[Any]:
    gw, _ = rig
    with sync_api.sync_playwright() as p:
        browser = launch(p)
        try:
            ctx = browser.new_context(viewport={"width": 1280, "height": 900})
            page = ctx.new_page()
            page.goto(gw.url + "/login")
            page.get_by_label("Admin password").fill(PASSWORD)
            page.get_by_role("button", name="Log in").click()
            expect(page).to_have_url(gw.url + "/")
            yield page
        finally:
            browser.close()


def token(gw: Daemon, name: str) -> str:
    return str(hbgw_json("check", "show", name, config=gw.cfg)["ping_url"].rsplit("/", 1)[1])  # type: ignore[attr-defined]


def test_the_check_page_shows_pings_and_runs_as_they_come(page: Any, rig: tuple[Daemon, Any]) -> None:
    gw, _ = rig
    page.goto(gw.url + "/checks/cron-job")
    expect(page.locator(".head .badge")).to_have_text("new")
    expect(page.locator(".beats rect:not(.e)")).to_have_count(0)
    page.evaluate("window.__sameDocument = true")
    web = WebClient(gw.url)
    assert web.get(f"/ping/{token(gw, 'cron-job')}/start?rid={RID}").status == 200
    assert web.get(f"/ping/{token(gw, 'cron-job')}?rid={RID}").status == 200
    assert web.get(f"/ping/{token(gw, 'cron-job')}/fail", headers={"User-Agent": "live-test"}).status == 200
    expect(page.locator(".head .badge")).to_have_text("down", timeout=LIVE)
    expect(page.locator(".beats rect.f")).to_have_count(1)
    expect(page.locator(".beats rect.ok")).to_have_count(1)
    expect(page.locator(".beats rect.s")).to_have_count(1)
    expect(page.locator("svg.durations rect")).to_have_count(1)
    expect(page.locator("table.log tbody tr").first).to_contain_text("live-test")
    expect(page.locator(".timeline")).to_contain_text("down")
    expect(page).to_have_title(re.compile(r"^\(1\) cron-job · hbgw$"))
    assert page.evaluate("window.__sameDocument") is True
    # the keyword filters are folded away; the snippets keep --retry whole
    expect(page.get_by_label("Success words")).to_be_hidden()
    curl = page.locator("#snip-curl")
    assert curl.evaluate("e => getComputedStyle(e).whiteSpace") == "pre"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "check-live-1280.png"), full_page=True)
    page.set_viewport_size({"width": 375, "height": 800})
    page.screenshot(path=str(SCREENSHOTS / "check-live-375.png"), full_page=True)
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the check page scrolls sideways by {overflow}px at 375 px"
    page.set_viewport_size({"width": 1280, "height": 900})


@pytest.mark.parametrize("path", ["/modem", "/settings"])
def test_the_banner_comes_when_the_modem_is_unplugged_and_goes_when_it_returns(
    page: Any, rig: tuple[Daemon, Any], path: str
) -> None:
    gw, control = rig
    page.goto(gw.url + path)
    banner = page.locator(".banner")
    expect(banner).to_have_count(0, timeout=LIVE)  # connected: alerts can go out
    page.evaluate("window.__sameDocument = true")
    control.unplug()
    try:
        expect(banner).to_contain_text("Alerts cannot go out", timeout=LIVE)
        expect(banner).to_contain_text("the modem is not connected")
        red = banner.evaluate("e => getComputedStyle(e).backgroundColor")
        assert red == "rgb(253, 236, 235)"
        shot = path.strip("/")
        page.screenshot(path=str(SCREENSHOTS / f"banner-{shot}-1280.png"), full_page=True)
        page.set_viewport_size({"width": 375, "height": 800})
        page.screenshot(path=str(SCREENSHOTS / f"banner-{shot}-375.png"), full_page=True)
        page.set_viewport_size({"width": 1280, "height": 900})
    finally:
        control.replug()
    expect(banner).to_have_count(0, timeout=LIVE)
    assert page.evaluate("window.__sameDocument") is True


def test_every_page_says_how_many_are_down_in_the_tab(page: Any, rig: tuple[Daemon, Any], tmp_path: Path) -> None:
    gw, _ = rig
    for path, title in (("/", "Servers"), ("/modem", "Modem"), ("/settings", "Settings")):
        page.goto(gw.url + path)
        expect(page).to_have_title(f"(1) {title} · hbgw")
