"""Maintenance windows, snoozes and tag selectors: the pure rules in tables (and a hypothesis
property), then in-process on clocks the test moves (tests/support/clockrig.py): a window
holds what a check's outage would send until it ends, then the owner hears it once."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from gateway.model import Check, PingKind, Schedule, Status
from gateway.quiet import WindowRequest
from gateway.rules import lifecycle, policy
from gateway.rules import maintenance as mt
from gateway.rules.maintenance import MaintenanceError, Window
from gateway.rules.settings import Settings
from tests.support.browser import WebClient
from tests.support.clockrig import T0, Clocks, Gateway
from tests.support.curl import curl
from tests.support.daemon import Daemon, hbgw, hbgw_json, wait_for, write_config

ME = "+15551230001"
H = 3600.0


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> float:
    return dt.datetime(year, month, day, hour, minute, tzinfo=dt.UTC).timestamp()


def check(**kw: object) -> Check:
    base = Check(
        id=1,
        name="web1",
        token="t" * 20,
        schedule=Schedule(60.0, 60.0),
        status=Status.UP,
        anchor=T0,
        last_ping=T0,
        last_start=None,
        last_failed=False,
        last_exit_status=None,
        next_deadline=T0 + 60,
        sms_enabled=True,
        email_enabled=True,
        created=T0 - 86400,
        n_pings=1,
        tags="office nas",
    )
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


ONE_OFF = Window(1, "checks:1", start=T0, end=T0 + H)
SUNDAYS = Window(2, "tag:office", cron="0 3 * * 0", tz="Europe/Paris", duration=1800.0)


# ------------------------------------------------------------------------------ pure: windows


@pytest.mark.parametrize(
    ("w", "now", "end"),
    [
        (ONE_OFF, T0 - 1, None),
        (ONE_OFF, T0, T0 + H),
        (ONE_OFF, T0 + H - 1, T0 + H),
        (ONE_OFF, T0 + H, None),
        (dataclasses.replace(ONE_OFF, ended_early=T0 + 600), T0 + 599, T0 + 600),
        (dataclasses.replace(ONE_OFF, ended_early=T0 + 600), T0 + 600, None),
        # Europe/Paris, Sundays 03:00 local for 30 min: CET (UTC+1) before 28 March 2027...
        (SUNDAYS, utc(2027, 3, 21, 1, 59), None),
        (SUNDAYS, utc(2027, 3, 21, 2, 0), utc(2027, 3, 21, 2, 30)),
        (SUNDAYS, utc(2027, 3, 21, 2, 29), utc(2027, 3, 21, 2, 30)),
        (SUNDAYS, utc(2027, 3, 21, 2, 30), None),
        # ... CEST (UTC+2) from the spring change that same night: 03:00 local is 01:00 UTC
        (SUNDAYS, utc(2027, 3, 28, 1, 0), utc(2027, 3, 28, 1, 30)),
        (SUNDAYS, utc(2027, 3, 28, 2, 0), None),
        # and back to CET after the autumn change (31 October 2027)
        (SUNDAYS, utc(2027, 10, 31, 1, 15), None),
        (SUNDAYS, utc(2027, 10, 31, 2, 15), utc(2027, 10, 31, 2, 30)),
        (dataclasses.replace(SUNDAYS, ended_early=utc(2027, 3, 1)), utc(2027, 3, 21, 2, 0), None),
    ],
)
def test_it_knows_when_a_window_is_open(w: Window, now: float, end: float | None) -> None:
    assert mt.open_until(w, now) == end


@pytest.mark.parametrize(
    ("scope", "covered"),
    [
        ("all", True),
        ("tag:office", True),
        ("tag:nas", True),
        ("tag:lab", False),
        ("checks:1,3", True),
        ("checks:2", False),
    ],
)
def test_it_covers_the_checks_of_its_scope(scope: str, covered: bool) -> None:
    w = dataclasses.replace(ONE_OFF, scope=scope)
    assert (mt.active_end([w], check(), T0) is not None) is covered


def test_the_latest_of_overlapping_windows_wins() -> None:
    later = Window(3, "all", start=T0 + 60, end=T0 + 2 * H)
    assert mt.active_end([ONE_OFF, later], check(), T0 + 120) == T0 + 2 * H


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, T0),
        ("now", T0),
        ("09:00", T0 + H),  # T0 is 08:00 UTC
        ("07:30", T0 + 23.5 * H),  # passed today, and over: tomorrow's
        ("2027-01-16T02:00", utc(2027, 1, 16, 2)),
        ("2027-01-16T02:00+01:00", utc(2027, 1, 16, 1)),
    ],
)
def test_it_reads_when_a_window_starts(text: str | None, expected: float) -> None:
    assert mt.parse_start(text, "UTC", T0, 1800) == expected


def test_a_window_running_since_a_time_of_day_today_starts_then() -> None:
    assert mt.parse_start("07:30", "UTC", T0, H) == T0 - 1800


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: mt.one_off("all", T0, 30, T0), "for"),
        (lambda: mt.one_off("all", T0 - 2 * H, H, T0), "from"),
        (lambda: mt.recurring("all", "0 3 * * 0", "Europe/Paris", 8 * 86400, T0), "for"),
        (lambda: mt.recurring("all", "0 25 * * 0", "UTC", H, T0), "cron"),
        (lambda: mt.recurring("all", "0 3 * * 0", "Mars/Olympus", H, T0), "tz"),
        (lambda: mt.parse_start("25:00", "UTC", T0, H), "from"),
        (lambda: mt.parse_start("tomorrow", "UTC", T0, H), "from"),
        (lambda: mt.parse_scope(), "scope"),
        (lambda: mt.parse_scope(all_checks=True, tag="x"), "scope"),
        (lambda: mt.parse_scope(tag="two words"), "tag"),
    ],
)
def test_it_refuses_windows_that_cannot_work(make: object, field: str) -> None:
    with pytest.raises(MaintenanceError) as e:
        make()  # type: ignore[operator]
    assert e.value.field == field


# ------------------------------------------------------------------------------ pure: policy

S = Settings(sms_to=(ME,), repeat=900.0, coalesce=0.0)


def test_it_holds_the_down_alert_inside_a_window_and_reminds_when_it_ends() -> None:
    s = dataclasses.replace(S, maintenance=(ONE_OFF,))
    before = check(status=Status.LATE)
    d = lifecycle.transition(before, before.evolve(status=Status.DOWN), T0 + 120, "deadline", s)
    assert d.flip is not None and d.alerts == ()
    assert d.check is not None and d.check.alert_at == T0 + H  # the window's end, not 15 min on
    d = lifecycle.advance(d.check, T0 + H, s)
    assert [a.kind for a in d.alerts] == ["reminder"]


def test_a_window_that_ends_before_the_repeat_interval_still_reminds_at_its_end() -> None:
    s = dataclasses.replace(S, maintenance=(ONE_OFF,))
    before = check(status=Status.LATE)
    d = lifecycle.transition(before, before.evolve(status=Status.DOWN), T0 + H - 60, "deadline", s)
    assert d.check is not None and d.check.alert_at == T0 + H


def test_a_window_holds_the_reminders_of_an_outage_told_before_it() -> None:
    s = dataclasses.replace(S, maintenance=(Window(5, "all", start=T0 + 300, end=T0 + H),))
    down = check(status=Status.DOWN, down_since=T0, last_alert=T0)
    assert policy.next_reminder(down, T0, s) == T0 + H  # T0+15 min falls in the window


@settings(max_examples=200, deadline=None)
@given(
    start=hs.floats(0, 3 * H),
    length=hs.floats(60, 3 * H),
    down_at=hs.floats(0, 6 * H),
    steps=hs.lists(hs.floats(1, 1200), min_size=1, max_size=40),
)
def test_no_alert_is_decided_inside_a_window_and_one_is_after_it(
    start: float, length: float, down_at: float, steps: list[float]
) -> None:
    """Whatever the window and the moment the check goes down: no alert row is decided while the
    window is open, and a check down at its end gets exactly one row then (one recipient)."""
    w = Window(1, "all", start=T0 + start, end=T0 + start + length)
    s = dataclasses.replace(S, repeat=100 * H, maintenance=(w,))
    c = check(status=Status.LATE, anchor=T0 - 10 * H, last_ping=T0 - 10 * H, next_deadline=None)
    t = T0 + down_at
    d = lifecycle.transition(c, c.evolve(status=Status.DOWN), t, "deadline", s)
    inside = w.start is not None and w.end is not None and w.start <= t < w.end
    assert (d.alerts == ()) is inside
    told = len(d.alerts)
    assert d.check is not None
    c = d.check
    for step in steps:
        t += step
        if c.alert_at is None or c.alert_at > t:
            continue
        d = lifecycle.advance(c, t, s)
        assert d.check is not None
        if w.start <= t < w.end:  # type: ignore[operator]
            assert d.alerts == ()
        told += len(d.alerts)
        c = d.check
    if inside and t >= (w.end or 0):
        assert told == 1


# ------------------------------------------------------------------------------ in-process


def add_window(g: Gateway, **kw: object) -> Window:
    return g.service.quiet.add(WindowRequest(**kw), "test")  # type: ignore[arg-type]


def test_a_check_down_at_the_end_of_a_window_alerts_then_once(tmp_path: Path) -> None:
    with Gateway(tmp_path, alerts={"repeat": "15m"}) as g:
        g.add("web1", period=60, grace=60)
        g.ping("web1")
        add_window(g, length=H, checks=("web1",))
        g.tick(120)  # down, inside the window
        assert g.service.get_check("web1").status is Status.DOWN
        for _ in range(28):
            g.tick(120)  # up to T0 + 58 min: still inside
        assert g.sms.sent == []
        g.tick(120)  # T0 + 1 h: the window ends
        assert len(g.sms.sent) == 1 and g.sms.texts()[0].startswith("STILL DOWN web1")
        g.tick(600)
        assert len(g.sms.sent) == 1  # the next reminder keeps its interval


def test_a_check_that_recovers_during_a_window_sends_nothing(tmp_path: Path) -> None:
    with Gateway(tmp_path, alerts={"repeat": "15m"}) as g:
        g.add("web1", period=60, grace=60)
        g.ping("web1")
        add_window(g, length=H, all_checks=True)
        g.tick(600)  # down
        for _ in range(100):  # up again, and pinging past the window's end
            g.ping("web1")
            g.tick(60)
        g.ping("web1")
        assert g.service.get_check("web1").status is Status.UP
        assert g.sms.sent == [] and g.email.sent == []


def test_a_restart_inside_a_window_keeps_it(tmp_path: Path) -> None:
    clocks = Clocks()
    with Gateway(tmp_path, alerts={"repeat": "15m"}, clocks=clocks) as g:
        g.service.add_check("web1", period=60, grace=60, tags="office")
        g.ping("web1")
        add_window(g, length=H, tag="office")
        g.tick(600)  # down, silently
    with Gateway(tmp_path, alerts={"repeat": "15m"}, clocks=clocks) as g:
        g.tick(1200)
        assert g.sms.sent == []
        g.tick(H - 1800)  # the window's end
        assert [t.split(" for ")[0] for t in g.sms.texts()] == ["STILL DOWN web1"]


def test_a_recurring_window_follows_local_time_across_the_spring_change(tmp_path: Path) -> None:
    clocks = Clocks()
    clocks.wall = utc(2027, 3, 28, 0, 50)  # 01:50 CET; at 02:00 the clocks go to 03:00 CEST
    with Gateway(tmp_path, alerts={"repeat": "1h", "tz": "Europe/Paris"}, clocks=clocks) as g:
        g.add("web1", period=60, grace=60)
        add_window(g, length=1800, all_checks=True, cron="0 3 * * 0", tz="Europe/Paris")
        g.ping("web1")
        g.tick(15 * 60)  # 01:05 UTC = 03:05 CEST: inside the window (in CET it would not be)
        assert g.service.get_check("web1").status is Status.DOWN
        assert g.sms.sent == []
        g.tick(25 * 60)  # 01:30 UTC, the window's end
        assert len(g.sms.sent) == 1


def test_ending_a_window_early_lets_the_held_alert_go_now(tmp_path: Path) -> None:
    with Gateway(tmp_path, alerts={"repeat": "15m"}) as g:
        g.add("web1", period=60, grace=60)
        g.ping("web1")
        w = add_window(g, length=2 * H, checks=("web1",))
        g.tick(600)  # down
        g.tick(600)
        assert g.sms.sent == []
        g.service.quiet.end(w.id, "test")
        g.tick(0)
        assert len(g.sms.sent) == 1
        assert g.service.quiet.windows() == []


def test_it_answers_maint_and_tag_commands_by_sms(tmp_path: Path) -> None:
    with Gateway(tmp_path, alerts={"repeat": "15m"}, security={"sms_allow": [ME]}) as g:
        g.service.add_check("web1", period=60, grace=60, tags="office")
        g.service.add_check("db1", period=60, grace=60, tags="office")
        g.add("nas", period=60, grace=60)
        g.ping("web1", "db1", "nas")
        g.receive(ME, "MAINT web1 1h")
        g.dispatch()
        assert g.sms.texts()[-1] == "MAINT web1: maintenance until 09:00, alerts wait until then"
        g.receive(ME, "mute tag:office 2h")
        g.dispatch()
        assert g.sms.texts()[-1] == "MUTE tag:office: 2 checks, no reminders for 2 h"
        assert all(g.service.get_check(n).muted_until == T0 + 2 * H for n in ("web1", "db1"))
        assert g.service.get_check("nas").muted_until is None
        g.receive(ME, "MUTE tag:lab 2h")
        g.dispatch()
        assert g.sms.texts()[-1] == "No check has tag 'lab'. Tags: office."
        g.receive(ME, "UNMUTE tag:office")
        g.dispatch()
        assert g.service.get_check("db1").muted_until is None
        g.tick(180)  # all three down; only nas alerts
        assert g.sms.texts()[-1] == "DOWN db1. DOWN nas"  # web1 is in its window
        g.receive(ME, "ACK tag:office")
        g.dispatch()
        assert g.sms.texts()[-1] == "ACK tag:office: 2 checks acknowledged, no more reminders until they recover"
        assert g.service.get_check("web1").acked and g.service.get_check("db1").acked


def test_a_snooze_until_up_ends_at_the_first_good_ping(tmp_path: Path) -> None:
    with Gateway(tmp_path, alerts={"repeat": "15m"}) as g:
        g.add("web1", period=60, grace=60)
        g.ping("web1")
        g.service.quiet.snooze("web1", 1800, True, "test")
        g.tick(300)  # the reboot takes long enough to be down: silent
        assert g.sms.sent == []
        g.ping("web1", kind=PingKind.FAIL)  # a failure does not end it
        assert g.service.get_check("web1").snooze_until_up
        g.ping("web1")
        c = g.service.get_check("web1")
        assert c.muted_until is None and not c.snooze_until_up
        assert "unsnoozed" in [e.kind for e in g.events("web1")]
        g.tick(180)  # down again: heard at once
        assert [t.split(":")[0] for t in g.sms.texts()] == ["DOWN web1"]


# ------------------------------------------------------------------------------ end to end

PASSWORD = "maintenance-test-password"


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    root = tmp_path_factory.mktemp("maint")
    data = root / "data"
    cfg = write_config(root / "hbgw.toml", data)
    hbgw("passwd", "--password-stdin", config=cfg, input=PASSWORD + "\n")
    hbgw("check", "add", "web1", "--period", "1h", config=cfg)
    hbgw("check", "add", "db1", "--period", "1h", "--tags", "office", config=cfg)
    with Daemon(data, config=cfg) as d:
        d.cfg = cfg  # type: ignore[attr-defined]
        yield d


def show(gw: Daemon, name: str) -> dict[str, Any]:
    cfg = gw.cfg  # type: ignore[attr-defined]
    return dict(hbgw_json("check", "show", name, config=cfg))


def ping_url(gw: Daemon, name: str) -> str:
    """The check's ping URL on the running daemon (the CLI does not know its port)."""
    return gw.url + urlsplit(str(show(gw, name)["ping_url"])).path


@pytest.mark.slow
def test_a_script_snoozes_its_check_with_curl_until_the_next_good_ping(gw: Daemon) -> None:
    before = show(gw, "web1")
    url = ping_url(gw, "web1")
    assert curl(url + "/snooze?for=30m&until_up=1", "-X", "POST") == (200, "OK")
    after = show(gw, "web1")
    assert after["muted_until"] is not None and after["snooze_until_up"] is True
    assert after["n_pings"] == before["n_pings"]  # not a heartbeat
    admin = WebClient(gw.url)
    assert admin.login(PASSWORD).status == 303
    assert "ends at the first good ping" in admin.get("/checks/web1").text
    assert curl(url)[0] == 200  # the reboot is over
    after = show(gw, "web1")
    assert after["muted_until"] is None and after["snooze_until_up"] is False


@pytest.mark.slow
@pytest.mark.parametrize(
    ("suffix", "status"),
    [
        ("/snooze", 400),
        ("/snooze?for=30", 400),
        ("/snooze?for=8d", 400),
        ("/snooze?for=30m&until_up=maybe", 400),
    ],
)
def test_it_refuses_a_snooze_it_cannot_do(gw: Daemon, suffix: str, status: int) -> None:
    assert curl(ping_url(gw, "web1") + suffix)[0] == status


@pytest.mark.slow
def test_an_unknown_token_cannot_snooze(gw: Daemon) -> None:
    assert curl(gw.url + "/ping/" + "x" * 24 + "/snooze?for=30m")[0] == 404


@pytest.mark.slow
def test_the_cli_adds_lists_and_ends_a_window_the_daemon_puts_in_force(gw: Daemon) -> None:
    cfg = gw.cfg  # type: ignore[attr-defined]
    admin = WebClient(gw.url)
    assert admin.login(PASSWORD).status == 303
    w = hbgw_json("maintenance", "add", "--tag", "office", "--for", "1h", config=cfg)
    assert w["applies_to"] == "tag office" and w["open_until"] is not None
    assert [x["id"] for x in hbgw_json("maintenance", "list", config=cfg)] == [w["id"]]
    # the daemon got a SIGHUP: its pages show the window
    wait_for(lambda: "Maintenance until" in admin.get("/checks/db1").text, what="the window on the check page")
    assert "maintenance until" in admin.get("/").text
    assert "Maintenance until" not in admin.get("/checks/web1").text
    assert show(gw, "db1")["maintenance_until"] is not None
    assert "ended" in hbgw("maintenance", "end", str(w["id"]), config=cfg).stdout
    assert hbgw_json("maintenance", "list", config=cfg) == []
    wait_for(lambda: "Maintenance until" not in admin.get("/checks/db1").text, what="the window gone from the page")
    bad = hbgw("maintenance", "add", "--tag", "nosuch", "--for", "1h", config=cfg, check=False)
    assert bad.returncode == 2 and "no check has the tag 'nosuch'" in bad.stderr
    bad = hbgw("maintenance", "end", "999", config=cfg, check=False)
    assert bad.returncode == 1


@pytest.mark.slow
def test_the_page_adds_and_ends_a_window(gw: Daemon) -> None:
    admin = WebClient(gw.url)
    assert admin.login(PASSWORD).status == 303
    form = {"csrf": admin.csrf(), "scope": "checks", "checks": "web1", "start": "", "length": "2h"}
    r = admin.post("/maintenance", form)
    assert r.status == 303
    page = admin.get(r.header("Location") or "/maintenance").text
    assert "web1" in page and "End now" in page
    bad = admin.post("/maintenance", {**form, "checks": "nosuch"})
    assert bad.status == 400 and "no check named" in bad.text
    wid = int(page.split('id="window-')[1].split('"')[0])
    assert admin.post(f"/maintenance/{wid}/end", {"csrf": admin.csrf()}).status == 303
    assert f'id="window-{wid}"' not in admin.get("/maintenance").text


@pytest.mark.slow
def test_the_api_adds_lists_and_ends_windows(gw: Daemon) -> None:
    admin = WebClient(gw.url)
    assert admin.login(PASSWORD).status == 303
    assert admin.post("/settings/api-keys", {"csrf": admin.csrf(), "label": "maint"}).status == 303
    key = re.search(r'<pre id="new-key">([^<]+)</pre>', admin.get("/settings").text)
    assert key is not None
    auth = ["-H", f"Authorization: Bearer {key.group(1)}", "-H", "Content-Type: application/json"]
    code, body = curl(gw.url + "/api/v1/maintenance", *auth, "-d", '{"all": true, "for": "30m"}')
    assert code == 201
    w = json.loads(body)
    assert w["applies_to"] == "all checks"
    code, body = curl(gw.url + "/api/v1/maintenance", *auth)
    assert code == 200 and w["id"] in [x["id"] for x in json.loads(body)["windows"]]
    code, body = curl(gw.url + f"/api/v1/maintenance/{w['id']}/end", *auth, "-X", "POST")
    assert code == 200 and json.loads(body)["ended_early"] is not None
    code, body = curl(gw.url + "/api/v1/maintenance", *auth, "-d", '{"tag": "nosuch", "for": "30m"}')
    assert code == 400 and json.loads(body)["field"] == "tag"


@pytest.mark.slow
def test_the_cli_snoozes_and_acts_on_a_tag(gw: Daemon) -> None:
    cfg = gw.cfg  # type: ignore[attr-defined]
    assert (
        "snoozed db1 for 30m, or until its first good ping"
        in hbgw("snooze", "db1", "30m", "--until-up", config=cfg).stdout
    )
    assert show(gw, "db1")["snooze_until_up"] is True
    assert hbgw("mute", "tag:office", "2h", config=cfg).stdout.strip() == "muted db1 for 2h"
    assert show(gw, "db1")["snooze_until_up"] is False  # a mute replaces the snooze
    assert hbgw("ack", "tag:office", config=cfg).stdout.strip() == "no check tagged office is down"
    assert hbgw("unmute", "tag:office", config=cfg).stdout.strip() == "unmuted db1"
    bad = hbgw("mute", "tag:nosuch", "1h", config=cfg, check=False)
    assert bad.returncode == 2 and "no check has the tag 'nosuch'" in bad.stderr
    bad = hbgw("snooze", "db1", "8d", config=cfg, check=False)
    assert bad.returncode == 2 and "1m to 7d" in bad.stderr
