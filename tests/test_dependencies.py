"""Check dependencies: the pure rules in tables (gateway.rules.dependencies), then in-process
on clocks the test moves (tests/support/clockrig.py): a router's outage is one SMS that names
the servers silent behind it, its recovery leaves the servers that stay down to alert on their
own after their grace, and a hypothesis property over random DAGs and outages."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

from gateway.errors import ValidationError
from gateway.model import Check, Schedule, Status
from gateway.rules import dependencies as deps
from gateway.rules import lifecycle
from gateway.rules.dependencies import Child, Parent
from gateway.rules.escalation import Contact, Step
from gateway.rules.settings import Settings
from tests.support.browser import WebClient
from tests.support.clockrig import T0, Gateway
from tests.support.curl import curl
from tests.support.daemon import Daemon, hbgw, hbgw_json, wait_for, write_config
from tests.support.rig import Rig, rig

D, U, P = Status.DOWN, Status.UP, Status.PAUSED

# ------------------------------------------------------------------------------ pure rules


@pytest.mark.parametrize(
    ("child", "parents", "graph", "cycle"),
    [
        ("web1", ["router"], {}, None),
        ("web1", ["web1"], {}, ["web1", "web1"]),
        ("router", ["web1"], {"web1": ["router"]}, ["router", "web1", "router"]),
        ("a", ["b"], {"b": ["c"], "c": ["a"]}, ["a", "b", "c", "a"]),
        ("a", ["b", "x"], {"b": ["c"], "c": [], "x": ["a"]}, ["a", "x", "a"]),
        ("a", ["b"], {"b": ["c"], "c": ["d"]}, None),
        ("Router", ["WEB1"], {"web1": ["router"]}, ["Router", "WEB1", "router"]),  # names without case
        ("web1", [], {"router": ["web1"]}, None),
        ("web1", ["router"], {"web1": ["web1"]}, None),  # its old parents are replaced
    ],
)
def test_it_finds_cycles(child: str, parents: list[str], graph: dict[str, list[str]], cycle: list[str] | None) -> None:
    assert deps.find_cycle(child, parents, graph) == cycle


def test_it_refuses_a_cycle_naming_the_path() -> None:
    with pytest.raises(deps.CycleError) as e:
        deps.check_parents("router", ["web1"], {"web1": ["router"]})
    assert str(e.value) == "a dependency cycle: router → web1 → router"
    assert deps.check_parents("web1", [" router", "", "switch", "router"], {}) == ("router", "switch")


@pytest.mark.parametrize(
    ("value", "names"),
    [
        (None, ()),
        ("", ()),
        ("router", ("router",)),
        ("router, switch,", ("router", "switch")),
        (["a", " b"], ("a", "b")),
    ],
)
def test_it_parses_lists(value: Any, names: tuple[str, ...]) -> None:
    assert deps.parse_list(value) == names


@pytest.mark.parametrize(
    ("parents", "behind", "label"),
    [
        ((), (), "down"),
        ((Parent("router", U),), (), "down"),
        ((Parent("router", D),), ("router",), "down (behind router)"),
        ((Parent("router", D), Parent("sw", P), Parent("ups", D)), ("router", "ups"), "down (behind router, ups)"),
    ],
)
def test_it_says_who_is_behind_whom(parents: tuple[Parent, ...], behind: tuple[str, ...], label: str) -> None:
    assert deps.behind(parents) == behind
    assert deps.is_behind(parents) is bool(behind)
    assert deps.label(D, behind) == label
    assert deps.label(U, behind) == "up"


@pytest.mark.parametrize(
    ("kind", "status", "behind", "superseded"),
    [
        ("down", D, ["router"], True),
        ("reminder", D, ["router"], True),
        ("escalation", D, ["router"], True),
        ("call", D, ["router"], True),
        ("up", U, ["router"], False),
        ("down", D, [], False),
        ("down", U, ["router"], False),  # back: the merge folds it as it does today
        ("note", None, ["router"], False),
    ],
)
def test_it_supersedes_rows_behind_a_down_parent(
    kind: str, status: Status | None, behind: list[str], superseded: bool
) -> None:
    assert deps.superseded(kind, status, behind) is superseded


DOWN = "DOWN router: no heartbeat since 08:07 (1 min). Reply ACK router to silence."


@pytest.mark.parametrize(
    ("text", "children", "out"),
    [
        (DOWN, [], DOWN),
        (DOWN, [Child("web1", U)], DOWN),
        (
            DOWN,
            [Child("web1", D), Child("db1", D), Child("nas", D)],
            "DOWN router (3 behind it silent: web1, db1, nas): no heartbeat since 08:07 (1 min)."
            " Reply ACK router to silence.",
        ),
        (
            "STILL DOWN router for 15 min (since 08:07). Reply ACK router to silence.",
            [Child("web1", D)],
            "STILL DOWN router (1 behind it silent: web1) for 15 min (since 08:07). Reply ACK router to silence.",
        ),
    ],
)
def test_it_names_the_children_in_a_parents_down(text: str, children: list[Child], out: str) -> None:
    assert deps.down_text(text, "router", children) == out


def test_a_parents_down_stays_one_sms() -> None:
    many = [Child(f"server-{i:02d}.example", D) for i in range(40)]
    text = deps.down_text(DOWN, "router", many)
    assert len(text) <= 160 and "40 behind it silent" in text and "more" in text


@pytest.mark.parametrize(
    ("children", "out"),
    [
        ([], "UP router after 12 min"),
        ([Child("web1", U, involved=False)], "UP router after 12 min"),
        (
            [Child("web1", U), Child("db1", U), Child("nas", D)],
            "UP router after 12 min; web1, db1 back; nas still silent",
        ),
        ([Child("nas", D)], "UP router after 12 min; nas still silent"),
    ],
)
def test_it_names_the_children_in_a_parents_up(children: list[Child], out: str) -> None:
    assert deps.up_text("UP router after 12 min", children) == out


@given(hs.lists(hs.text("abcdefghijklmnopqrstuvwxyz0123456789-.", min_size=1, max_size=40), max_size=60))
def test_texts_fit_one_sms(names: list[str]) -> None:
    kids = [Child(n, D if i % 2 else U) for i, n in enumerate(names)]
    assert len(deps.down_text(DOWN, "router", kids)) <= 160
    assert len(deps.up_text("UP router after 12 min", kids)) <= 160


S = Settings(sms_to=("+15551230001",), coalesce=0.0)


def _down_child() -> Check:
    return Check(
        id=2,
        name="web1",
        token="t",
        schedule=Schedule(period=300, grace=60),
        status=Status.UP,
        anchor=T0,
        last_ping=T0,
        next_deadline=T0 + 360,
        created=T0 - 10,
        last_start=None,
        last_failed=False,
        last_exit_status=None,
        sms_enabled=True,
        email_enabled=True,
        n_pings=1,
    )


def test_a_check_going_down_behind_a_down_parent_tells_nobody() -> None:
    d = lifecycle.advance(_down_child(), T0 + 360, S, (Parent("router", D),))
    assert d.check is not None and d.check.status is D and d.flip is not None
    assert d.alerts == () and d.check.outage_told is False and d.check.ladder_step == 0
    assert d.children == ("down", T0 + 360 - S.dependency_window)


def test_a_check_going_down_before_its_parent_waits_the_window() -> None:
    d = lifecycle.advance(_down_child(), T0 + 360, S, (Parent("router", U),))
    assert d.alerts and d.wait == S.dependency_window
    alone = lifecycle.advance(_down_child(), T0 + 360, S)
    assert alone.alerts and alone.wait == 0.0


def test_a_child_silent_behind_its_parent_alerts_when_its_own_time_comes() -> None:
    d = lifecycle.advance(_down_child(), T0 + 360, S, (Parent("router", D),))
    assert d.check is not None
    # still behind at its next look: nothing, and it looks again a reminder later
    later = lifecycle.advance(d.check.evolve(alert_at=T0 + 1300), T0 + 1300, S, (Parent("router", D),))
    assert later.alerts == () and later.check is not None and later.check.alert_at == T0 + 1300 + S.repeat
    # the router's recovery set its time (the store's cross-check write): its own DOWN
    own = lifecycle.advance(later.check.evolve(alert_at=T0 + 1400), T0 + 1400, S, (Parent("router", U),))
    assert [a.kind for a in own.alerts] == ["down"] and own.check is not None and own.check.outage_told


def test_a_child_behind_a_down_parent_never_escalates() -> None:
    owner, boss = Contact("owner", phone="+15550000001"), Contact("boss", phone="+15550000002")
    ladder = (Step(0, sms=(owner,)), Step(600, sms=(boss,), call=(boss,)))
    s = Settings(sms_to=("+15550000001",), escalation=ladder, repeat=3600, coalesce=0.0)
    behind = (Parent("router", D),)
    d = lifecycle.advance(_down_child(), T0 + 360, s, behind)
    assert d.alerts == () and d.check is not None and d.check.ladder_step == 0
    c = d.check
    for t in (T0 + 400, T0 + 1000, T0 + 5000):  # its look-agains: never a step, never a call
        c = c.evolve(alert_at=t)
        d = lifecycle.advance(c, t, s, behind)
        assert d.alerts == () and d.check is not None and d.check.ladder_step == 0
        assert d.check.alert_at is not None and d.check.alert_at > t
        c = d.check
    # the router is back and its grace passed: its own DOWN takes the first step
    own = lifecycle.advance(c.evolve(alert_at=T0 + 6000), T0 + 6000, s, (Parent("router", U),))
    assert {(a.kind, a.recipient) for a in own.alerts} == {("down", "+15550000001")}
    assert own.check is not None and own.check.ladder_step == 1


# ------------------------------------------------------------------------------ in process

MIN = 60.0
SERVERS = ("srv1", "srv2", "srv3")


def _network(g: Gateway, graces: tuple[float, ...] = (60.0, 60.0, 60.0)) -> None:
    g.add("router", 5 * MIN, MIN)
    for name, grace in zip(SERVERS, graces, strict=True):
        g.add(name, 5 * MIN, grace)
        g.depends_on(name, "router")
    g.ping("router", *SERVERS)


def _outage(g: Gateway) -> None:
    """srv3 goes silent a minute before the router, srv1 and srv2 after it."""
    g.tick(MIN)
    g.ping("router", "srv1", "srv2")  # srv3 silent from T0
    g.tick(MIN)
    g.ping("srv1", "srv2")  # the router silent from T0+60
    g.tick(MIN)
    g.ping("srv2")  # srv1 silent from T0+120, srv2 from T0+180
    for _ in range(16):  # to T0+660: every deadline passed
        g.tick(30)


def test_it_sends_one_sms_for_a_router_and_the_servers_behind_it(tmp_path: Path) -> None:
    with Gateway(tmp_path) as g:
        _network(g)
        _outage(g)
        assert g.sms.texts() == [
            "DOWN router (1 behind it silent: srv3): no heartbeat since 08:01 (6 min). Reply ACK router to silence."
        ]
        assert all(g.describe(n)["status"] == "down" for n in ("router", *SERVERS))
        # srv3's own DOWN waited its window and was dropped: its row says so, no SMS refs
        srv3 = [r for r in g.outbox() if r["check"] == "srv3"]
        assert srv3 and all(r["refs"] is None and "superseded" in (r["error"] or "") for r in srv3)
        assert g.describe("srv1")["behind"] == ["router"] and g.describe("srv1")["depends_on"] == ["router"]
        # the router's reminder carries the count; the servers' reminders never go out
        g.tick(11 * MIN)  # to 08:22, 15 min after the router went down
        assert g.sms.texts()[1:] == [
            "STILL DOWN router (3 behind it silent: srv1, srv2, srv3) for 15 min (since 08:07)."
            " Reply ACK router to silence."
        ]


def test_servers_still_down_after_the_router_recovers_alert_after_their_grace(tmp_path: Path) -> None:
    with Gateway(tmp_path) as g:
        _network(g, graces=(60.0, 120.0, 180.0))
        _outage(g)
        g.ping("router")
        g.dispatch()
        assert g.sms.texts()[1:] == ["UP router after 4 min; srv1, srv2, srv3 still silent"]
        for _ in range(8):
            g.tick(30)
        assert g.sms.texts()[2:] == [
            "DOWN srv1: no heartbeat since 08:02 (10 min). Reply ACK srv1 to silence.",  # 08:12
            "DOWN srv2: no heartbeat since 08:03 (10 min). Reply ACK srv2 to silence.",  # 08:13
            "DOWN srv3: no heartbeat since 08:00 (14 min). Reply ACK srv3 to silence.",  # 08:14
        ]


def test_a_router_and_its_servers_recovering_are_one_up(tmp_path: Path) -> None:
    with Gateway(tmp_path, alerts={"coalesce": "3s"}) as g:
        _network(g)
        _outage(g)
        g.tick(3)
        g.ping("router", *SERVERS)
        g.tick(3)
        assert g.sms.texts()[1:] == ["UP router after 4 min; srv1, srv2, srv3 back"]
        for _ in range(10):
            g.tick(30)
        assert len(g.sms.texts()) == 2


def test_a_server_that_comes_back_before_its_grace_never_alerts(tmp_path: Path) -> None:
    with Gateway(tmp_path) as g:
        _network(g, graces=(60.0, 60.0, 120.0))
        _outage(g)
        g.ping("router")
        g.tick(30)
        g.ping("srv3")
        for _ in range(6):
            g.tick(30)
        texts = g.sms.texts()[1:]
        assert texts[0] == "UP router after 4 min; srv1, srv2, srv3 still silent"
        assert not any("srv3" in t for t in texts[1:])
        assert any(t.startswith("DOWN srv1") or "srv1" in t for t in texts[1:])


def test_it_refuses_cycles_and_unknown_parents(tmp_path: Path) -> None:
    with Gateway(tmp_path) as g:
        _network(g)
        with pytest.raises(ValidationError, match="router → srv1 → router"):
            g.depends_on("router", "srv1")
        with pytest.raises(ValidationError, match="srv1 → srv1"):
            g.depends_on("srv1", "srv1")
        with pytest.raises(ValidationError, match="nope"):
            g.depends_on("srv1", "nope")
        g.service.deps.set("srv1", "")
        assert g.describe("srv1")["depends_on"] == []
        g.service.remove_check("router")
        assert g.describe("srv2")["depends_on"] == []


# ------------------------------------------------------------------------------ property


@hs.composite
def _plans(draw: hs.DrawFn) -> tuple[list[list[int]], list[tuple[int | None, int | None]], list[int]]:
    n = draw(hs.integers(3, 6))
    parents = [sorted(draw(hs.sets(hs.integers(0, i - 1), max_size=2))) if i else [] for i in range(n)]
    outages = []
    for _ in range(n):
        start = draw(hs.one_of(hs.none(), hs.integers(0, 20)))  # in ticks of 30 s
        end = None if start is None else draw(hs.one_of(hs.none(), hs.integers(start + 1, 40)))
        outages.append((start, end))
    graces = [draw(hs.sampled_from([30, 60, 120])) for _ in range(n)]
    return parents, outages, graces


TICK = 30.0


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_plans())
def test_one_alert_per_root_cause_and_no_child_left_silent(
    tmp_path_factory: pytest.TempPathFactory,
    plan: tuple[list[list[int]], list[tuple[int | None, int | None]], list[int]],
) -> None:
    parents, outages, graces = plan
    names = [f"c{i}" for i in range(len(parents))]
    with Gateway(tmp_path_factory.mktemp("deps")) as g:
        for name, grace in zip(names, graces, strict=True):
            g.add(name, 60, grace)
        for i, ps in enumerate(parents):
            if ps:
                g.depends_on(names[i], *(names[p] for p in ps))
        free_since: dict[str, float] = {}  # down with no parent down, since
        seen = 0
        for step in range(60):
            alive = [
                n
                for n, (start, end) in zip(names, outages, strict=True)
                if start is None or step < start or (end is not None and step >= end)
            ]
            if alive:
                g.ping(*alive)
            g.tick(TICK)
            now = g.clocks()
            status = {n: g.describe(n)["status"] for n in names}
            rows = g.outbox()
            texts, seen = g.sms.texts()[seen:], len(g.sms.texts())
            for i, n in enumerate(names):
                parent_down = any(status[names[p]] == "down" for p in parents[i])
                # never an alert of its own while a parent is down (the parent's names it)
                if parent_down:
                    assert not [t for t in texts if re.search(rf"\bDOWN {n}\b", t)], (n, step, texts)
                if status[n] != "down" or parent_down:
                    free_since.pop(n, None)
                    continue
                since = free_since.setdefault(n, now)
                if now - since >= max(graces[i], 120) + 2 * TICK:
                    down_since = g.describe(n)["down_since"]
                    told = [
                        r
                        for r in rows
                        if r["check"] == n
                        and r["kind"] in ("down", "reminder")
                        and r["refs"]
                        and (r["created"] or "") >= down_since
                    ]
                    assert told, (n, step, "silent with no parent down")


# ------------------------------------------------------------------------------ the edges

PASSWORD = "dependencies-test-password"


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    root = tmp_path_factory.mktemp("deps")
    data = root / "data"
    cfg = write_config(root / "hbgw.toml", data)
    hbgw("passwd", "--password-stdin", config=cfg, input=PASSWORD + "\n")
    for name in ("router", "web1", "db1"):
        hbgw("check", "add", name, "--period", "1h", config=cfg)
    with Daemon(data, config=cfg) as d:
        d.cfg = cfg  # type: ignore[attr-defined]
        yield d


@pytest.mark.slow
def test_the_cli_the_api_and_the_pages_set_and_show_dependencies(gw: Daemon) -> None:
    cfg = gw.cfg  # type: ignore[attr-defined]
    got = hbgw_json("check", "set", "web1", "--depends-on", "router", "--json", config=cfg)
    assert got["depends_on"] == ["router"]
    bad = hbgw("check", "set", "router", "--depends-on", "web1", config=cfg, check=False)
    assert bad.returncode != 0 and "router → web1 → router" in bad.stderr
    admin = WebClient(gw.url)
    assert admin.login(PASSWORD).status == 303
    assert admin.post("/settings/api-keys", {"csrf": admin.csrf(), "label": "deps"}).status == 303
    key = re.search(r'<pre id="new-key">([^<]+)</pre>', admin.get("/settings").text)
    assert key is not None
    auth = ["-H", f"Authorization: Bearer {key.group(1)}", "-H", "Content-Type: application/json"]
    code, body = curl(gw.url + "/api/v1/checks/db1", *auth, "-X", "PATCH", "-d", '{"depends_on": ["router"]}')
    assert code == 200 and json.loads(body)["depends_on"] == ["router"]
    code, body = curl(gw.url + "/api/v1/checks/router", *auth, "-X", "PATCH", "-d", '{"depends_on": ["db1"]}')
    assert code == 400 and "router → db1 → router" in body
    # router and web1 report failures: web1 is down behind the router
    for name in ("router", "web1"):
        url = gw.url + urlsplit(str(hbgw_json("check", "show", name, config=cfg)["ping_url"])).path
        assert curl(url + "/fail")[0] == 200
    assert hbgw_json("check", "show", "web1", config=cfg)["behind"] == ["router"]
    shown = hbgw("check", "show", "web1", config=cfg).stdout
    assert "down (behind router)" in shown and "router" in shown.split("depends on")[1].splitlines()[0]
    assert "down (behind router)" in hbgw("check", "list", config=cfg).stdout
    assert "(behind router)" in admin.get("/").text
    page = admin.get("/checks/web1").text
    assert "down (behind router)" in page and 'id="depends-on"' in page
    # the page's field (in the folded section) clears it
    form = {"csrf": admin.csrf(), "period": "1h", "grace": "1h", "tz": "UTC", "sms": "1", "email": "1"}
    assert admin.post("/checks/db1", {**form, "depends_on": ""}).status == 303
    assert hbgw_json("check", "show", "db1", config=cfg)["depends_on"] == []
    bad_page = admin.post("/checks/router", {**form, "depends_on": "web1"})
    assert bad_page.status == 400 and "router → web1 → router" in bad_page.text


@pytest.mark.slow
def test_over_the_simulated_modem_a_router_outage_is_one_sms_and_one_up(tmp_path: Path) -> None:
    checks = [("router", "3s", "1s"), ("srv1", "5s", "1s"), ("srv2", "5s", "1s"), ("srv3", "2s", "1s")]
    alerts = 'coalesce = "2s"\ndependency_window = "5s"'
    with rig(tmp_path, checks, alerts=alerts, start=False) as r:
        for name in ("srv1", "srv2", "srv3"):
            hbgw("check", "set", name, "--depends-on", "router", config=r.cfg)
        r.daemon.start()
        r.ping("srv3")  # silent from now: down a couple of seconds before the router
        time.sleep(1)
        r.ping("router", "srv1", "srv2")  # all silent from now, the router first down
        wait_for(lambda: all(_status(r, n) == "down" for n in ("router", "srv1", "srv2", "srv3")), timeout=20)
        time.sleep(6)  # srv3's DOWN waited its window; nothing else goes out
        texts = r.texts()
        # the servers behind it that are down when it leaves (coalesce: 2 s) are named in it
        assert len(texts) == 1 and re.match(
            r"DOWN router \([123] behind it silent: [^)]*srv3[^)]*\): no heart", texts[0]
        )
        r.ping("router", "srv1", "srv2", "srv3")
        wait_for(lambda: len(r.texts()) == 2, timeout=15, what="the UP")
        assert r.texts()[1].startswith("UP router after ") and r.texts()[1].endswith("; srv1, srv2, srv3 back")
        for name in ("router", "srv1", "srv2", "srv3"):
            hbgw("check", "pause", name, config=r.cfg)
        assert len(r.texts()) == 2


def _status(r: Rig, name: str) -> str:
    return str(hbgw_json("check", "show", name, config=r.cfg)["status"])
