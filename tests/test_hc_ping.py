"""Healthchecks' and Uptime Kuma's ping URLs, as their users' cron lines and scripts send them,
with the real curl against ``hbgw serve`` on loopback: UUID tokens, slug URLs and ``?create=1``,
trailing slashes, run ids and durations, truncated bodies, CORS, ``OPTIONS``, POST-only checks,
manual resume, and Kuma's ``/api/push/<token>``."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway import config as cfgmod
from gateway.service import Service
from gateway.store import Store
from tests.support.daemon import Daemon, hbgw_json, write_config
from tests.support.db import query

pytestmark = pytest.mark.skipif(not shutil.which("curl"), reason="needs curl (installed by .ci/run)")

PING_KEY = "p" * 8 + "-hc-compat-ping-key"
UUID1 = "8f57b84b-86c2-4546-8923-03f83d27604a"  # a check brought over from Healthchecks
KUMA = "kUmAPushT0ken0123456789abcdefXYZ"  # an Uptime Kuma push token (32 characters)


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    root = tmp_path_factory.mktemp("hcping")
    data = root / "data"
    cfg = write_config(root / "hbgw.toml", data, extra=f'[security]\nping_key = "{PING_KEY}"\nmax_checks = 20\n')
    store = Store(data / "hbgw.sqlite3").open()
    try:
        service = Service(store, cfgmod.load(cfg))
        service.add_check("Database Backup", token=UUID1, period=3600, grace=3600, tags="db nightly")
        service.add_check("kuma-web", token=KUMA, period=60, grace=60)
        service.add_check("post-only", period=3600, grace=3600, methods="POST")
        service.add_check("held", period=3600, grace=3600, manual_resume=True)
        service.add_check("twin-a", period=3600, grace=3600, slug="twin")
        service.add_check("twin-b", period=3600, grace=3600, slug="twin")
        service.pause("held")
    finally:
        store.close()
    with Daemon(data, config=cfg) as d:
        d.cfg = cfg  # type: ignore[attr-defined]
        yield d


def curl(*args: str) -> tuple[int, dict[str, str], str]:
    """Run curl; returns (HTTP status, headers lower-cased, body)."""
    out = subprocess.run(
        ["curl", "-sS", "-m", "10", "-D", "-", "-o", "-", *args], capture_output=True, timeout=20, check=True
    ).stdout.decode()
    head, _, body = out.partition("\r\n\r\n")
    lines = head.split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def show(gw: Daemon, name: str) -> dict[str, object]:
    d: dict[str, object] = hbgw_json("check", "show", name, config=gw.cfg)  # type: ignore[attr-defined]
    return d


def last_ping(gw: Daemon, name: str) -> tuple[object, ...]:
    rows = query(
        gw.data_dir,
        "SELECT kind, body, rid, duration, method FROM pings JOIN checks ON checks.id = pings.check_id"
        " WHERE checks.name = ? ORDER BY pings.id DESC LIMIT 1",
        (name,),
    )
    return rows[0]


def test_it_answers_a_healthchecks_uuid_url_with_or_without_a_trailing_slash(gw: Daemon) -> None:
    assert curl(f"{gw.url}/ping/{UUID1}")[::2] == (200, "OK\n")
    assert curl(f"{gw.url}/ping/{UUID1}/")[::2] == (200, "OK\n")
    assert curl(f"{gw.url}/ping/{UUID1}/log/")[::2] == (200, "OK\n")
    assert show(gw, "Database Backup")["status"] == "up"
    assert curl(f"{gw.url}/ping/{uuid.uuid4()}")[::2] == (404, "not found\n")


def test_it_finds_a_check_by_its_healthchecks_slug_and_never_creates_a_twin(gw: Daemon) -> None:
    before = len(query(gw.data_dir, "SELECT id FROM checks"))
    status, _, body = curl(f"{gw.url}/ping/{PING_KEY}/database-backup/fail")
    assert (status, body) == (200, "OK\n")
    assert show(gw, "Database Backup")["status"] == "down"
    assert curl(f"{gw.url}/ping/{PING_KEY}/database-backup/0/")[::2] == (200, "OK\n")
    assert show(gw, "Database Backup")["status"] == "up"
    assert len(query(gw.data_dir, "SELECT id FROM checks")) == before


def test_it_creates_a_check_for_a_new_slug_only_with_create_1(gw: Daemon) -> None:
    assert curl(f"{gw.url}/ping/{PING_KEY}/nightly-rsync")[::2] == (404, "not found\n")
    assert curl(f"{gw.url}/ping/{PING_KEY}/nightly-rsync?create=1")[::2] == (201, "Created\n")
    assert curl(f"{gw.url}/ping/{PING_KEY}/nightly-rsync?create=1")[::2] == (200, "OK\n")
    made = show(gw, "nightly-rsync")
    assert made["slug"] == "nightly-rsync" and made["n_pings"] == 2
    # a wrong ping key never creates anything and answers like an unknown slug
    assert curl(f"{gw.url}/ping/wrong-key-000000000/other?create=1")[::2] == (404, "not found\n")


def test_it_refuses_an_ambiguous_slug_with_409_and_records_nothing(gw: Daemon) -> None:
    assert curl(f"{gw.url}/ping/{PING_KEY}/twin")[::2] == (409, "ambiguous slug\n")
    assert query(gw.data_dir, "SELECT sum(n_pings) FROM checks WHERE name LIKE 'twin-%'") == [(0,)]


def test_it_times_a_run_matched_by_rid_and_keeps_the_duration(gw: Daemon) -> None:
    rid = str(uuid.uuid4())
    assert curl(f"{gw.url}/ping/{UUID1}/start?rid={rid}")[0] == 200
    assert show(gw, "Database Backup")["started"] is True
    other = str(uuid.uuid4())
    assert curl(f"{gw.url}/ping/{UUID1}?rid={other}")[0] == 200  # another run's end: this one still runs
    assert show(gw, "Database Backup")["started"] is True
    assert curl(f"{gw.url}/ping/{UUID1}?rid={rid}")[0] == 200
    after = show(gw, "Database Backup")
    assert after["started"] is False
    assert isinstance(after["last_duration"], float) and 0 <= after["last_duration"] < 30
    kind, _, stored_rid, duration, _ = last_ping(gw, "Database Backup")
    assert (kind, stored_rid, duration) == ("success", rid, after["last_duration"])
    assert curl(f"{gw.url}/ping/{UUID1}?rid=nonsense")[::2] == (400, "bad request: rid must be a UUID\n")


def test_it_stores_an_oversized_body_truncated_and_says_how_much_it_keeps(gw: Daemon, tmp_path: Path) -> None:
    big = tmp_path / "log"
    big.write_bytes(b"0123456789" * 5_000)  # 50 kB of job output
    status, headers, body = curl("--data-binary", f"@{big}", f"{gw.url}/ping/{UUID1}/log")
    assert (status, body) == (200, "OK\n")
    assert headers["ping-body-limit"] == "10000"
    stored = last_ping(gw, "Database Backup")[1]
    assert isinstance(stored, str) and stored == ("0123456789" * 1_000)


def test_it_allows_any_origin_and_answers_a_preflight_without_counting_a_ping(gw: Daemon) -> None:
    n = show(gw, "Database Backup")["n_pings"]
    status, headers, body = curl("-X", "OPTIONS", "-H", "Origin: https://status.example", f"{gw.url}/ping/{UUID1}")
    assert (status, body) == (204, "")
    assert headers["access-control-allow-origin"] == "*"
    assert "POST" in headers["access-control-allow-methods"]
    assert show(gw, "Database Backup")["n_pings"] == n
    status, headers, _ = curl(f"{gw.url}/ping/{UUID1}")
    assert status == 200 and headers["access-control-allow-origin"] == "*"


def test_a_post_only_check_records_a_get_as_ignored(gw: Daemon) -> None:
    token = str(show(gw, "post-only")["ping_url"]).rsplit("/", 1)[1]
    assert curl(f"{gw.url}/ping/{token}")[::2] == (200, "OK\n")  # Healthchecks answers OK too
    assert last_ping(gw, "post-only")[0] == "ign"
    assert show(gw, "post-only")["status"] == "new"
    assert curl("-X", "POST", f"{gw.url}/ping/{token}")[0] == 200
    assert last_ping(gw, "post-only")[::4] == ("success", "POST")
    assert show(gw, "post-only")["status"] == "up"


def test_a_check_paused_for_manual_resume_ignores_pings(gw: Daemon) -> None:
    token = str(show(gw, "held")["ping_url"]).rsplit("/", 1)[1]
    assert curl(f"{gw.url}/ping/{token}")[0] == 200
    assert last_ping(gw, "held")[0] == "ign"
    assert show(gw, "held")["status"] == "paused"


def test_it_takes_uptime_kuma_push_urls(gw: Daemon) -> None:
    status, headers, body = curl(f"{gw.url}/api/push/{KUMA}?status=up&msg=OK&ping=")
    assert (status, json.loads(body)) == (200, {"ok": True})
    assert headers["content-type"].startswith("application/json")
    assert show(gw, "kuma-web")["status"] == "up"
    status, _, body = curl(f"{gw.url}/api/push/{KUMA}?status=down&msg=disk%20full&ping=42")
    assert (status, json.loads(body)) == (200, {"ok": True})
    assert show(gw, "kuma-web")["status"] == "down"
    assert last_ping(gw, "kuma-web")[:2] == ("fail", "disk full (ping 42 ms)")
    status, _, body = curl(f"{gw.url}/api/push/{KUMA}?status=sideways")
    assert status == 400 and json.loads(body)["ok"] is False
    status, _, body = curl(f"{gw.url}/api/push/NoSuchPushToken01234")
    assert status == 404 and json.loads(body)["ok"] is False


def test_the_migration_gives_existing_checks_their_healthchecks_slug(tmp_path: Path) -> None:
    """A v6 database (before slugs) opened by this version: every check gets the slug
    Healthchecks would have given it, so its existing slug URLs work at once."""
    from gateway.store.schema import MIGRATIONS

    path = tmp_path / "hbgw.sqlite3"
    con = sqlite3.connect(path)
    for script in MIGRATIONS[:6]:
        con.executescript(script)
    con.execute("PRAGMA user_version = 6")
    con.execute(
        "INSERT INTO checks (name, token, period, grace, created)"
        " VALUES ('Database Backup', 'tok-0123456789', 60, 60, 0)"
    )
    con.commit()
    con.close()
    store = Store(path).open()
    try:
        check = store.get_check("Database Backup")
        assert check is not None and check.slug == "database-backup"
        assert store.get_check_by_slug("database-backup") == check
    finally:
        store.close()
