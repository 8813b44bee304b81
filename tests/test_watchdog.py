"""The watchdog flips checks on time, the history survives restarts, and a gateway that was
itself offline gives checks a fresh period instead of a false DOWN.

What the watchdog decides runs in-process on clocks the test moves (tests/support/clockrig.py);
the daemon as a subprocess (``slow``) shows the flips happen on time in real time, across
restarts and kill -9, and for checks another process changed.
"""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

import pytest

from gateway.model import PingKind, Status
from tests.support.clockrig import T0, Gateway
from tests.support.daemon import Daemon, hbgw, hbgw_json, wait_for, write_config


def events(data: Path, name: str) -> list[tuple[str, str, str, float]]:
    con = sqlite3.connect(f"file:{data / 'hbgw.sqlite3'}?mode=ro", uri=True)
    try:
        return con.execute(
            "SELECT e.old_status, e.new_status, e.detail, e.at FROM events e JOIN checks c"
            " ON c.id = e.check_id WHERE c.name = ? AND e.kind = 'flip' ORDER BY e.id",
            (name,),
        ).fetchall()
    finally:
        con.close()


def ping(d: Daemon, cfg: Path, name: str) -> None:
    url = hbgw_json("check", "show", name, config=cfg)["ping_url"]
    subprocess.run(
        ["curl", "-fsS", "-m", "5", "-o", "/dev/null", url.replace(url.split("/ping/")[0], d.url)],
        check=True,
        timeout=10,
    )


def flips(g: Gateway, name: str) -> list[tuple[str | None, str | None, str | None]]:
    """(old, new, reason) of each status change of ``name``, oldest first."""
    return [(e.old_status, e.new_status, e.detail) for e in g.events(name) if e.kind == "flip"]


def notes(g: Gateway) -> list[str]:
    return [e.detail or "" for e in g.events() if e.kind == "note"]


# ------------------------------------------------------------------------------ in-process


def test_it_recovers_on_the_next_ping(tmp_path: Path) -> None:
    with Gateway(tmp_path) as g:
        g.add("web1", period=1, grace=0)
        g.ping("web1")
        assert g.tick(0.999) == []
        g.tick(0.001)
        assert g.service.get_check("web1").status is Status.DOWN
        g.clocks.run(30)
        g.ping("web1")
        assert g.service.get_check("web1").status is Status.UP
        assert flips(g, "web1") == [("new", "up", "ping"), ("up", "down", "deadline"), ("down", "up", "ping")]
        g.dispatch()
        assert [t.split(":")[0] for t in g.sms.texts()] == ["DOWN web1", "UP web1 after 30 s"]


def test_it_gives_a_fresh_period_after_the_gateway_was_offline(tmp_path: Path) -> None:
    with Gateway(tmp_path) as g:
        g.add("web1", period=4, grace=2)
        g.add("gone", period=1, grace=0)
        g.ping("web1", "gone")
        g.ping("gone", kind=PingKind.FAIL)
        g.dispatch()
        sent = len(g.sms.sent)  # the FAIL
        g.clocks.run(6.5)  # the gateway is off (since T0) for longer than web1's period + grace
        reset = g.service.fresh_start(offline_since=T0)
        assert [c.name for c in reset] == ["web1"]
        web1 = g.service.get_check("web1")
        assert g.service.status_of(web1) is Status.UP  # not a false DOWN
        assert (web1.anchor, web1.next_deadline) == (g.clocks(), g.clocks() + 4)
        assert g.describe("web1")["down_at"] == "2027-01-15T08:00:12Z"  # now (T0 + 6.5 s) + period + grace
        assert g.service.get_check("gone").status is Status.DOWN  # stays down
        assert g.tick() == []  # the watchdog's first look
        [note] = notes(g)
        assert note.startswith("gateway was offline from ")
        assert len(g.sms.sent) == sent + 1 and g.sms.texts()[-1].startswith("hbgw was offline from ")
        assert flips(g, "web1") == [("new", "up", "ping")]
        assert g.tick(3.999) == []
        assert [(f.old, f.new) for f in g.tick(0.001)] == [(Status.UP, Status.LATE)]  # on the fresh deadline


# ------------------------------------------------------------------------------ end to end


@pytest.mark.slow
def test_it_goes_late_then_down_on_time(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cfg = write_config(tmp_path / "hbgw.toml", data)
    hbgw("check", "add", "web1", "--period", "1s", "--grace", "1s", config=cfg)
    with Daemon(data, config=cfg) as d:
        ping(d, cfg, "web1")
        assert hbgw_json("check", "show", "web1", config=cfg)["status"] == "up"
        wait_for(lambda: len(events(data, "web1")) >= 3, timeout=10, what="late and down flips")
        assert hbgw_json("check", "show", "web1", config=cfg)["status"] == "down"
        listed = {c["name"]: c["status"] for c in hbgw_json("check", "list", config=cfg)}
        assert listed == {"web1": "down"}
    flips = events(data, "web1")
    assert [(o, n, r) for o, n, r, _ in flips] == [
        ("new", "up", "ping"),
        ("up", "late", "deadline"),
        ("late", "down", "deadline"),
    ]
    pinged_at = flips[0][3]
    # Each flip is recorded at (not before) its deadline and well within a second of it; the
    # precise latency distribution is bench/detection_latency's job, not a test's.
    # (the generous upper bounds only catch a watchdog that waits for something else, such as
    # its 30 s re-check, on a CI machine that may be busy)
    assert 1.0 <= flips[1][3] - pinged_at < 2.5
    assert 2.0 <= flips[2][3] - pinged_at < 3.5


@pytest.mark.slow
def test_it_keeps_history_and_statuses_across_a_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cfg = write_config(tmp_path / "hbgw.toml", data)
    hbgw("check", "add", "web1", "--period", "1h", config=cfg)
    hbgw("check", "add", "web2", "--period", "1h", config=cfg)
    d = Daemon(data, config=cfg).start()
    try:
        for _ in range(3):
            ping(d, cfg, "web1")
        url = hbgw_json("check", "show", "web2", config=cfg)["ping_url"]
        subprocess.run(
            ["curl", "-fsS", "-o", "/dev/null", d.url + "/ping/" + url.rsplit("/", 1)[1] + "/fail"],
            check=True,
            timeout=10,
        )
        before = hbgw_json("check", "list", config=cfg)
    finally:
        assert d.stop() == 0  # SIGTERM: clean exit
    with Daemon(data, config=cfg) as d2:
        after = hbgw_json("check", "list", config=cfg)
        assert [(c["name"], c["status"], c["last_ping"], c["n_pings"]) for c in after] == [
            (c["name"], c["status"], c["last_ping"], c["n_pings"]) for c in before
        ]
        assert [c["status"] for c in after] == ["up", "down"]
        assert d2.info["pid"] != d.info["pid"]


@pytest.mark.slow
def test_it_loses_no_acknowledged_ping_when_killed(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cfg = write_config(tmp_path / "hbgw.toml", data)
    hbgw("check", "add", "web1", config=cfg)
    d = Daemon(data, config=cfg).start()
    tok = hbgw_json("check", "show", "web1", config=cfg)["ping_url"].rsplit("/", 1)[1]
    ok = 0
    try:
        for _ in range(20):
            r = subprocess.run(["curl", "-fsS", "-o", "/dev/null", f"{d.url}/ping/{tok}"], timeout=10)
            ok += r.returncode == 0
    finally:
        d.kill9()
    assert ok == 20
    assert hbgw_json("check", "show", "web1", config=cfg)["n_pings"] == 20


@pytest.mark.slow
def test_it_notices_checks_changed_by_the_cli_while_running(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cfg = write_config(tmp_path / "hbgw.toml", data)
    hbgw("check", "add", "web1", "--period", "1h", config=cfg)
    with Daemon(data, config=cfg) as d:
        ping(d, cfg, "web1")
        hbgw("check", "pause", "web1", config=cfg)
        assert hbgw_json("check", "show", "web1", config=cfg)["status"] == "paused"
        hbgw("check", "add", "quick", "--period", "1s", "--grace", "0s", config=cfg)
        ping(d, cfg, "quick")
        hbgw("check", "pause", "quick", config=cfg)
        hbgw("check", "resume", "quick", config=cfg)  # new deadline set by another process
        wait_for(lambda: events(data, "quick")[-1][1] == "down", timeout=5, what="CLI-resumed check going down")
