"""Demo mode in a real Chromium: the login page shows the demo password, the modem page shows the
simulated modem and a phone that receives the gateway's SMS and replies as the owner."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.browser import SCREENSHOTS, chromium_path, launch
from tests.support.daemon import Daemon, hbgw, hbgw_json, wait_for, write_config

pytestmark = pytest.mark.skipif(chromium_path() is None, reason="needs Chromium (Debian: chromium)")

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

OWNER = "+15551230000"  # the demo's owner phone (config.demo)
LIVE = 20_000  # ms: the modem page polls every 3 s; sending through the simulator takes a moment


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    root = tmp_path_factory.mktemp("demo")
    data = root / "data"
    cfg = write_config(root / "hbgw.toml", data, extra='[smtp]\nlisten = "127.0.0.1:0"\n')
    with Daemon(data, config=cfg, args=["--demo"]) as d:
        yield d


@pytest.fixture(scope="module")
def page(gw: Daemon) -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        browser = launch(p)
        try:
            ctx = browser.new_context(viewport={"width": 1280, "height": 900})
            yield ctx.new_page()
        finally:
            browser.close()


def test_it_shows_the_demo_password_and_logs_in_with_it(page: Any, gw: Daemon) -> None:
    page.goto(gw.url + "/")
    password = page.locator("code.pw").inner_text()
    assert len(password) >= 20
    page.get_by_label("Admin password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(gw.url + "/")
    expect(page.locator(".summary")).to_contain_text("signal")


def test_it_sends_a_test_sms_to_the_simulated_phone_and_takes_a_reply(page: Any, gw: Daemon) -> None:
    page.goto(gw.url + "/modem")
    expect(page.locator(".facts")).to_contain_text("connected")
    expect(page.locator(".facts")).to_contain_text(re.compile(r"Radio\s*on"))
    expect(page.locator(".facts")).to_contain_text(re.compile(r"SIM messages\s*\d+ of \d+ slots in use"))
    page.get_by_label("To").fill(OWNER)
    page.get_by_label("Text").fill("hello from the test")
    page.get_by_role("button", name="Send test SMS").click()
    expect(page.get_by_role("status")).to_contain_text("Queued")
    page.evaluate("window.__sameDocument = true")
    # the outbox sends it through the simulated modem; the page updates itself
    bubble = page.locator(".phone .bubble.in", has_text="hello from the test")
    expect(bubble).to_have_count(1, timeout=LIVE)
    expect(page.locator("#outbox tr", has_text="hello from the test").locator(".state")).to_have_text(
        "sent", timeout=LIVE
    )

    page.get_by_label("Reply").fill("STATUS")
    page.locator(".phone").get_by_role("button", name="Send").click()
    expect(page.get_by_label("Reply")).to_have_value("")  # sent in place, the page stays
    inbox = page.locator("#inbox tr", has_text="STATUS")
    expect(inbox).to_have_count(1, timeout=LIVE)
    expect(page.locator(".phone .bubble.in")).to_have_count(2, timeout=LIVE)
    assert page.evaluate("window.__sameDocument") is True
    expect(page.locator(".phone .bubble.out", has_text="STATUS")).to_have_count(1)
    expect(page.locator(".phone .bubble.in").last).not_to_contain_text("hello from the test")

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "modem-demo-1280.png"), full_page=True)
    page.set_viewport_size({"width": 375, "height": 800})
    page.screenshot(path=str(SCREENSHOTS / "modem-demo-375.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})


def test_the_demo_story_plays_without_a_reload(page: Any, gw: Daemon) -> None:
    """A server goes down, the DOWN SMS arrives on the demo phone, the owner replies ACK and
    the gateway's answer arrives: all on the open modem page, which is never reloaded."""
    cfg = gw.config
    assert cfg is not None
    hbgw("check", "add", "story", "--period", "1s", "--grace", "0s", config=cfg)
    token = hbgw_json("check", "show", "story", config=cfg)["ping_url"].rsplit("/", 1)[1]
    page.goto(gw.url + "/modem")
    page.evaluate("window.__sameDocument = true")
    page.request.get(gw.url + f"/ping/{token}")  # its one ping; then it goes quiet
    expect(page.locator(".phone .bubble.in", has_text="DOWN story")).to_have_count(1, timeout=LIVE)
    expect(page).to_have_title(re.compile(r"^\(\d+\) Modem"))  # the down count, live
    page.get_by_label("Reply").fill("ACK story")
    page.locator(".phone").get_by_role("button", name="Send").click()
    expect(page.locator(".phone .bubble.out", has_text="ACK story")).to_have_count(1, timeout=LIVE)
    answer = page.locator(".phone .bubble.in").last
    expect(answer).to_contain_text("story", timeout=LIVE)
    expect(answer).not_to_contain_text("DOWN story")
    wait_for(lambda: hbgw_json("check", "show", "story", config=cfg)["acked"], what="the ack")
    assert page.evaluate("window.__sameDocument") is True
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "demo-story-1280.png"), full_page=True)
    page.goto(gw.url + "/")
    expect(page.locator("tr.down", has_text="story")).to_contain_text("acknowledged by")
    page.screenshot(path=str(SCREENSHOTS / "demo-overview-1280.png"), full_page=True)
    page.set_viewport_size({"width": 375, "height": 800})
    page.screenshot(path=str(SCREENSHOTS / "demo-overview-375.png"), full_page=True)
    page.goto(gw.url + "/checks/story")
    page.screenshot(path=str(SCREENSHOTS / "demo-check-375.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})


def test_the_outbox_shows_the_delivery_report(page: Any, gw: Daemon) -> None:
    """The simulated network reports every SMS delivered: the outbox's Delivery column says so."""
    page.goto(gw.url + "/modem")
    row = page.locator("#outbox tr", has_text="hello from the test")
    expect(row.locator(".dlv.delivered")).to_contain_text("delivered")


LADDER = f"""
[alerts]
call_answer_acks = true

[contacts]
owner = {{ phone = "{OWNER}" }}

[[alerts.escalation]]
after = "0m"
sms = ["owner"]
[[alerts.escalation]]
after = "2s"
call = ["owner"]
"""


def test_the_demo_phone_rings_when_nobody_acknowledges_and_answering_acknowledges(
    page: Any, gw: Daemon, tmp_path: Path
) -> None:
    """The demo's ladder (here with its call after 2 s, not 2 min): the DOWN SMS, then the phone
    rings on the modem page; answering it acknowledges the outage."""
    data = tmp_path / "data"
    cfg = write_config(tmp_path / "hbgw.toml", data, extra='[smtp]\nlisten = "127.0.0.1:0"\n' + LADDER)
    with Daemon(data, config=cfg, args=["--demo"]) as d:
        hbgw("check", "add", "flaky", "--period", "1s", "--grace", "0s", config=cfg)
        token = hbgw_json("check", "show", "flaky", config=cfg)["ping_url"].rsplit("/", 1)[1]
        page.goto(d.url + f"/ping/{token}")
        page.goto(d.url + "/")
        password = page.locator("code.pw").inner_text()
        page.get_by_label("Admin password").fill(password)
        page.get_by_role("button", name="Log in").click()
        page.goto(d.url + "/modem")
        ringing = page.locator(".phone .ringing")
        # DOWN after 1 s, the SMS, then the call 2 s later: the page shows it ringing by itself
        expect(ringing).to_contain_text("Incoming call", timeout=LIVE)
        expect(page.locator(".phone .bubble.in", has_text="DOWN flaky")).to_have_count(1)
        ringing.get_by_role("button", name="Answer").click()
        wait_for(lambda: hbgw_json("check", "show", "flaky", config=cfg)["acked"], what="the ack")
        assert hbgw_json("check", "show", "flaky", config=cfg)["acked_by"] == "call +155***00"
        page.goto(d.url + "/")
        expect(page.locator("tr.down", has_text="flaky")).to_contain_text("acknowledged by call +155***00")
