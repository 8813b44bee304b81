"""``hbgw import``: Healthchecks' and Uptime Kuma's checks come over with their ping URLs intact.

Pure mapping first (records → specs), then the readers against a real HTTP server on loopback
and a real SQLite file laid out like Kuma's, then the command end to end with the daemon.
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from gateway.config import Config
from gateway.importer import (
    KUMA_MIN_GRACE,
    Action,
    KumaMonitor,
    RecordError,
    SourceError,
    apply_plan,
    changes_for,
    fetch_healthchecks,
    healthchecks_spec,
    kuma_grace,
    plan_healthchecks,
    plan_kuma,
    read_json_file,
    read_kuma,
    unique_names,
)
from gateway.model import Status
from gateway.service import Service
from gateway.store import Store
from tests.support.daemon import HBGW, Daemon, _env, hbgw, wait_for

UUID1 = "31365bce-8da9-4729-8ff3-aaa71d56b712"
UUID2 = "803f680d-e89b-492b-82ef-2be7b774a92d"
UUID3 = "5a1c2f0e-0b7e-4c1c-9d55-3e1f0c9a7b21"
PUSH1 = "Xq7rT2mKpL9wZ4vB8nC3dF6hJ1sA5gE0"  # Kuma's default: 32 letters and digits
PUSH2 = "aB3dE5fG7hJ9"
PUSH3 = "kuma-push-inactive"


def hc_simple(**kw: Any) -> dict[str, Any]:
    """A simple check as Healthchecks' API v3 lists it (read-write key), per its docs."""
    d: dict[str, Any] = {
        "name": "Filesystem Backup",
        "slug": "filesystem-backup",
        "tags": "backup fs",
        "desc": "Runs incremental backup every hour",
        "grace": 600,
        "n_pings": 1,
        "status": "up",
        "started": False,
        "last_ping": "2020-03-24T14:02:03+00:00",
        "next_ping": "2020-03-24T15:02:03+00:00",
        "manual_resume": False,
        "methods": "",
        "badge_url": "https://hc.example.org/b/2/1b9d0386.svg",
        "uuid": UUID1,
        "ping_url": f"https://hc-ping.example.org/{UUID1}",
        "update_url": f"https://hc.example.org/api/v3/checks/{UUID1}",
        "pause_url": f"https://hc.example.org/api/v3/checks/{UUID1}/pause",
        "resume_url": f"https://hc.example.org/api/v3/checks/{UUID1}/resume",
        "channels": "",
        "timeout": 3600,
    }
    d.update(kw)
    return d


def hc_cron(**kw: Any) -> dict[str, Any]:
    d = hc_simple(
        name="Database Backup",
        slug="database-backup",
        tags="production db",
        desc="Runs ~/db-backup.sh",
        grace=1200,
        status="down",
        uuid=UUID2,
        ping_url=f"https://hc-ping.example.org/{UUID2}",
        schedule="15 5 * * *",
        tz="Europe/Riga",
    )
    del d["timeout"]
    d.update(kw)
    return d


def readonly(record: dict[str, Any]) -> dict[str, Any]:
    """What a read-only key shows of ``record``: no uuid or URLs, a unique_key instead."""
    drop = {"uuid", "ping_url", "update_url", "pause_url", "resume_url", "channels"}
    return {k: v for k, v in record.items() if k not in drop} | {"unique_key": "a6c7b0a8a66bed0df66abfdab3c7773"}


def kuma(id: int, name: str, **kw: Any) -> KumaMonitor:
    base: dict[str, Any] = dict(
        type="push", active=True, interval=60, retry_interval=60, maxretries=0, push_token=f"token{id:04d}xyz"
    )
    base.update(kw)
    return KumaMonitor(id=id, name=name, **base)


# ------------------------------------------------------------------ Healthchecks mapping


def test_it_maps_a_simple_healthchecks_check() -> None:
    spec = healthchecks_spec(hc_simple(), "hc 1")
    assert (spec.token, spec.name, spec.period, spec.grace, spec.cron, spec.tz) == (
        UUID1,
        "Filesystem Backup",
        3600.0,
        600.0,
        None,
        "UTC",
    )
    assert (spec.slug, spec.tags, spec.desc, spec.paused) == (
        "filesystem-backup",
        "backup fs",
        "Runs incremental backup every hour",
        False,
    )


def test_it_maps_a_cron_healthchecks_check_with_its_time_zone() -> None:
    spec = healthchecks_spec(hc_cron(), "hc 2")
    assert (spec.period, spec.grace, spec.cron, spec.tz, spec.token) == (
        None,
        1200.0,
        "15 5 * * *",
        "Europe/Riga",
        UUID2,
    )


@pytest.mark.parametrize(
    ("changes", "field", "expected"),
    [
        ({"tags": "  prod  db prod "}, "tags", "prod db"),
        ({"slug": ""}, "slug", ""),
        ({"name": "", "slug": "nightly"}, "name", "nightly"),
        ({"name": "web/backup"}, "name", "web-backup"),
        ({"status": "paused"}, "paused", True),
        ({"manual_resume": True, "methods": "POST"}, "methods", "POST"),
        ({"grace": 0}, "grace", 0.0),
        ({"timeout": 31536000}, "period", 31536000.0),
        ({"uuid": None}, "token", UUID1),  # API v1/v2: taken from ping_url
    ],
)
def test_it_keeps_healthchecks_fields(changes: dict[str, Any], field: str, expected: Any) -> None:
    assert getattr(healthchecks_spec(hc_simple(**changes), "hc"), field) == expected


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (hc_simple(timeout=0), "timeout: timeout 0s is outside 1s to 365 days"),
        (hc_simple(timeout=31536001), "timeout: timeout 3.1536e+07s is outside"),
        (hc_simple(grace=-1), "grace: grace -1s is outside 0s to 365 days"),
        (hc_simple(grace="600"), "grace: expected a number of seconds, got '600'"),
        (hc_simple(timeout=True), "timeout: expected a number of seconds"),
        (hc_cron(schedule="*-*~1 12:00"), "only 5-field cron expressions can come over (not OnCalendar)"),
        (hc_cron(schedule="61 * * * *"), "the cron minute field takes 0-59"),
        (hc_cron(tz="Mars/Olympus"), "unknown time zone 'Mars/Olympus'"),
        (hc_simple(methods="PUT"), 'methods: either "" (HEAD, GET and POST) or "POST"'),
        (hc_simple(slug="Not A Slug"), "slug: lower-case a-z 0-9 _ - only"),
        (hc_simple(uuid=None, ping_url=None), "no uuid and no ping_url"),
        (hc_simple(uuid="-bad"), "token: 8-128 characters"),
        ("not an object", "expected a JSON object, got str"),
    ],
)
def test_it_refuses_a_bad_healthchecks_record_clearly(record: Any, message: str) -> None:
    with pytest.raises(RecordError) as e:
        healthchecks_spec(record, "hc")
    assert message in str(e.value)


def test_it_takes_the_api_answer_or_just_its_list_and_reports_bad_records_apart() -> None:
    records = [hc_simple(), hc_cron(), hc_simple(uuid=UUID3, name="Broken", timeout=-5)]
    for data in ({"checks": records}, records):
        plan = plan_healthchecks(data)
        assert [s.name for s in plan.specs] == ["Filesystem Backup", "Database Backup"]
        [failed] = plan.outcomes
        assert (failed.action, failed.name, failed.origin) == (Action.FAILED, "Broken", "Healthchecks check 3")
        assert "timeout" in failed.detail


def test_it_refuses_a_read_only_api_key_listing() -> None:
    with pytest.raises(SourceError, match=r"read-only API key: they have no UUIDs.*use a read-write API key"):
        plan_healthchecks({"checks": [readonly(hc_simple()), readonly(hc_cron())]})


@pytest.mark.parametrize("data", [{"nope": []}, "checks", 3, {"checks": {"a": 1}}])
def test_it_refuses_what_is_not_a_check_list(data: Any) -> None:
    with pytest.raises(SourceError, match="expected Healthchecks' check list"):
        plan_healthchecks(data)


def test_it_makes_repeated_names_unique_and_refuses_a_repeated_token() -> None:
    plan = plan_healthchecks(
        [hc_simple(name="backup"), hc_simple(uuid=UUID2, name="Backup"), hc_simple(uuid=UUID1, name="other")]
    )
    assert [s.name for s in plan.specs] == ["backup", "Backup (2)"]
    [dup] = plan.outcomes
    assert dup.action is Action.FAILED and dup.detail == "the same ping token as Healthchecks check 1"


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["a", "b"], ["a", "b"]),
        (["a", "a", "a"], ["a", "a (2)", "a (3)"]),
        (["a", "a (2)", "a"], ["a", "a (2)", "a (3)"]),
        (["Web", "web"], ["Web", "web (2)"]),
    ],
)
def test_it_numbers_repeated_names(names: list[str], expected: list[str]) -> None:
    assert unique_names(names) == expected


# ------------------------------------------------------------------ Uptime Kuma mapping


@pytest.mark.parametrize(
    ("interval", "retry_interval", "maxretries", "grace"),
    [
        (60, 60, 0, KUMA_MIN_GRACE),  # Kuma: DOWN at once; we allow a minute of slack
        (300, 60, 3, 180.0),
        (300, 0, 2, 600.0),  # retry_interval 0: Kuma retries every interval
        (20, 20, 1, KUMA_MIN_GRACE),
        (3600, 600, None, KUMA_MIN_GRACE),
        (86400, 86400, 1000, 365 * 86400.0),  # our maximum
    ],
)
def test_it_derives_grace_from_kuma_retries(
    interval: int, retry_interval: int, maxretries: int | None, grace: float
) -> None:
    assert kuma_grace(interval, retry_interval, maxretries) == grace
    spec = plan_kuma([kuma(1, "m", interval=interval, retry_interval=retry_interval, maxretries=maxretries)]).specs[0]
    assert (spec.period, spec.grace) == (float(interval), grace)


def test_it_maps_kuma_push_monitors_and_skips_the_others_by_type() -> None:
    monitors = [
        kuma(1, "nightly backup", tags=(("env", "prod"), ("team ops", None)), description="rsync to NAS"),
        kuma(2, "website", type="http", push_token=None),
        kuma(3, "nightly backup", active=False),
        kuma(4, "dns", type="dns", push_token=None),
        kuma(5, "api", type="http", push_token=None),
        kuma(6, "no token", push_token=None),
        kuma(7, "bad interval", interval=0),
    ]
    plan = plan_kuma(monitors)
    a, b = plan.specs
    assert (a.name, a.slug, a.tags, a.desc, a.paused, a.token) == (
        "nightly backup",
        "nightly-backup",
        "env:prod team-ops",
        "rsync to NAS",
        False,
        "token0001xyz",
    )
    assert (b.name, b.slug, b.paused) == ("nightly backup (2)", "nightly-backup-2", True)
    assert plan.skipped_types == {"http": 2, "dns": 1}
    got = {(o.origin, o.action, o.detail) for o in plan.outcomes}
    assert ("Uptime Kuma monitor 2", Action.SKIPPED, "type http: only push monitors can come over") in got
    assert ("Uptime Kuma monitor 6", Action.FAILED, "push monitor without a push token") in got
    assert ("Uptime Kuma monitor 7", Action.FAILED, "interval: 0 is not 1 second to 365 days") in got


def test_it_refuses_a_kuma_push_token_our_urls_cannot_carry() -> None:
    [failed] = plan_kuma([kuma(1, "short", push_token="abc")]).outcomes
    assert failed.action is Action.FAILED and failed.detail.startswith("token: 8-128 characters")


# ------------------------------------------------------------------ applying


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    config = Config(data_dir=tmp_path)
    with Store(config.db_path) as store:
        yield Service(store, config)


def test_it_creates_then_updates_then_leaves_alone(service: Service) -> None:
    records = [hc_simple(), hc_cron(), hc_simple(uuid=UUID3, name="Paused one", status="paused")]
    report = apply_plan(service, plan_healthchecks(records))
    assert report.ok and report.counts()["created"] == 3
    check = service.find_check_by_token(UUID2)
    assert check is not None
    assert (check.name, check.schedule.cron, check.schedule.tz, check.tags) == (
        "Database Backup",
        "15 5 * * *",
        "Europe/Riga",
        "production db",
    )
    assert service.get_check("Paused one").status is Status.PAUSED
    assert service.get_check("Filesystem Backup").status is Status.NEW

    again = apply_plan(service, plan_healthchecks(records))
    assert again.counts() == {"created": 0, "updated": 0, "unchanged": 3, "skipped": 0, "failed": 0}

    records[0] = hc_simple(tags="backup", timeout=7200, slug="fs")
    changed = apply_plan(service, plan_healthchecks(records))
    [updated] = [o for o in changed.outcomes if o.action is Action.UPDATED]
    assert updated.detail == "period, slug, tags"
    check = service.find_check_by_token(UUID1)
    assert check is not None and (check.name, check.period, check.tags, check.slug) == (
        "Filesystem Backup",
        7200.0,
        "backup",
        "fs",
    )
    assert len(service.list_checks()) == 3


def test_it_renames_a_check_renamed_at_the_source(service: Service) -> None:
    apply_plan(service, plan_healthchecks([hc_simple()]))
    changed = apply_plan(service, plan_healthchecks([hc_simple(name="FS Backup")]))
    [updated] = changed.outcomes
    assert (updated.action, updated.detail) == (Action.UPDATED, "name (was 'Filesystem Backup')")
    check = service.find_check_by_token(UUID1)
    assert check is not None and check.name == "FS Backup"


def test_it_reports_a_name_taken_by_another_check_and_goes_on(service: Service) -> None:
    service.add_check("Filesystem Backup", period=60)
    report = apply_plan(service, plan_healthchecks([hc_simple(), hc_cron()]))
    assert not report.ok
    failed, created = report.outcomes
    assert (failed.action, failed.name) == (Action.FAILED, "Filesystem Backup")
    assert failed.detail == (
        "a check named 'Filesystem Backup' exists here with another ping URL; rename one of them and import again"
    )
    assert created.action is Action.CREATED
    assert service.find_check_by_token(UUID1) is None


def test_it_writes_nothing_on_a_dry_run(service: Service) -> None:
    service.add_check("Database Backup", period=60)
    report = apply_plan(service, plan_healthchecks([hc_simple(), hc_cron()]), dry_run=True)
    assert [o.action for o in report.outcomes] == [Action.CREATED, Action.FAILED]
    assert [c.name for c in service.list_checks()] == ["Database Backup"]


def test_it_compares_only_what_the_source_sets(service: Service) -> None:
    spec = plan_healthchecks([hc_cron()]).specs[0]
    apply_plan(service, plan_healthchecks([hc_cron()]))
    check = service.find_check_by_token(UUID2)
    assert check is not None
    assert changes_for(check, spec) == {}  # the cron check's default period is not a difference
    service.patch_check(check.name, sms_enabled=False, desc="mine")
    assert changes_for(service.get_check(check.name), spec) == {"desc": "Runs ~/db-backup.sh"}


# ------------------------------------------------------------------ sources: HTTP, files, SQLite


class HealthchecksStub:
    """A Healthchecks-format ``GET /api/v3/checks/`` on 127.0.0.1, port 0: answers ``body``
    when the X-Api-Key is ``key``, 401 otherwise; records the keys it got."""

    def __init__(self, body: Any, key: str = "rw-key-123") -> None:
        stub = self
        self.body, self.key, self.keys = body, key, list[str | None]()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                got = self.headers.get("X-Api-Key")
                stub.keys.append(got)
                if self.path != "/api/v3/checks/":
                    code, data = 404, {"error": "not found"}
                elif got != stub.key:
                    code, data = 401, {"error": "missing or invalid API key"}
                else:
                    code, data = 200, stub.body
                payload = json.dumps(data).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> HealthchecksStub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def hc_site() -> Iterator[HealthchecksStub]:
    with HealthchecksStub({"checks": [hc_simple(), hc_cron()]}) as stub:
        yield stub


def test_it_fetches_the_check_list_with_the_api_key(hc_site: HealthchecksStub) -> None:
    data = fetch_healthchecks(hc_site.url + "/", "rw-key-123")
    assert [c["uuid"] for c in data["checks"]] == [UUID1, UUID2]
    assert hc_site.keys == ["rw-key-123"]


def test_it_says_clearly_when_the_key_is_refused(hc_site: HealthchecksStub) -> None:
    with pytest.raises(SourceError) as e:
        fetch_healthchecks(hc_site.url, "wrong")
    assert str(e.value) == (
        f"{hc_site.url}/api/v3/checks/ refused the API key (HTTP 401): use a project's read-write API key"
        " (Project Settings → API Access)"
    )


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://127.0.0.1/", "is not an http:// or https:// URL"),
        ("http://127.0.0.1:9/", "cannot reach http://127.0.0.1:9/api/v3/checks/"),
    ],
)
def test_it_says_clearly_when_the_site_cannot_be_used(url: str, message: str) -> None:
    with pytest.raises(SourceError, match=re.escape(message)):
        fetch_healthchecks(url, "k", timeout=5)


def test_it_reads_a_saved_file_or_says_why_not(tmp_path: Path) -> None:
    path = tmp_path / "export.json"
    path.write_text(json.dumps([hc_simple()]))
    assert read_json_file(path)[0]["uuid"] == UUID1
    path.write_text("{oops")
    with pytest.raises(SourceError, match=r"export\.json is not JSON"):
        read_json_file(path)
    with pytest.raises(SourceError, match=r"cannot read .*missing\.json: No such file"):
        read_json_file(tmp_path / "missing.json")


def make_kuma_db(path: Path) -> Path:
    """A database laid out as Uptime Kuma's migrations make it (the columns used here, and a few
    others), with push and other monitors, tags, an inactive monitor and a repeated name."""
    conn = sqlite3.connect(path)
    with conn:
        conn.executescript(
            """
            CREATE TABLE monitor (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                name VARCHAR(150),
                active BOOLEAN NOT NULL DEFAULT 1,
                user_id INTEGER,
                interval INTEGER NOT NULL DEFAULT 20,
                url TEXT,
                type VARCHAR(20),
                weight INTEGER DEFAULT 2000,
                hostname VARCHAR(255),
                port INTEGER,
                created_date DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
                keyword VARCHAR(255),
                maxretries INTEGER NOT NULL DEFAULT 0,
                upside_down BOOLEAN NOT NULL DEFAULT 0,
                retry_interval INTEGER NOT NULL DEFAULT 0,
                push_token VARCHAR(32) DEFAULT NULL,
                method TEXT NOT NULL DEFAULT 'GET',
                description TEXT DEFAULT NULL,
                parent INTEGER REFERENCES monitor (id) ON DELETE SET NULL,
                resend_interval INTEGER NOT NULL DEFAULT 0
            );
            CREATE TABLE tag (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                name VARCHAR(255) NOT NULL,
                color VARCHAR(255) NOT NULL,
                created_date DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP
            );
            CREATE TABLE monitor_tag (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                monitor_id INTEGER NOT NULL REFERENCES monitor (id) ON DELETE CASCADE,
                tag_id INTEGER NOT NULL REFERENCES tag (id) ON DELETE CASCADE,
                value TEXT
            );
            """
        )
        conn.executemany(
            "INSERT INTO monitor (id, name, active, interval, type, url, maxretries, retry_interval, push_token,"
            " description) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (1, "backup", 1, 300, "push", None, 2, 60, PUSH1, "nightly rsync"),
                (2, "homepage", 1, 60, "http", "https://example.org", 0, 60, None, None),
                (3, "backup", 1, 3600, "push", None, 0, 0, PUSH2, None),
                (4, "old cron", 0, 600, "push", None, 1, 0, PUSH3, None),
                (5, "resolver", 1, 60, "dns", None, 0, 60, None, None),
            ],
        )
        conn.executemany("INSERT INTO tag (id, name, color) VALUES (?, ?, ?)", [(1, "env", "#f00"), (2, "nas", "#0f0")])
        conn.executemany(
            "INSERT INTO monitor_tag (monitor_id, tag_id, value) VALUES (?, ?, ?)",
            [(1, 1, "prod"), (1, 2, ""), (3, 1, "test")],
        )
    conn.close()
    return path


def test_it_reads_kuma_monitors_with_their_tags_without_writing(tmp_path: Path) -> None:
    db = make_kuma_db(tmp_path / "kuma.db")
    before = db.read_bytes()
    monitors = read_kuma(db)
    assert db.read_bytes() == before
    assert [(m.id, m.type, m.active, m.push_token) for m in monitors] == [
        (1, "push", True, PUSH1),
        (2, "http", True, None),
        (3, "push", True, PUSH2),
        (4, "push", False, PUSH3),
        (5, "dns", True, None),
    ]
    assert monitors[0].tags == (("env", "prod"), ("nas", ""))
    assert monitors[0].description == "nightly rsync"


def test_it_says_when_a_file_is_not_a_kuma_database(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE monitor (id INTEGER, name TEXT)")
    conn.close()
    with pytest.raises(SourceError, match=r"other\.db is not an Uptime Kuma database .*lacks active, interval"):
        read_kuma(other)
    with pytest.raises(SourceError, match=r"nope\.db: no such file"):
        read_kuma(tmp_path / "nope.db")
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    with pytest.raises(SourceError, match="no monitor table"):
        read_kuma(empty)


# ------------------------------------------------------------------ end to end


def hbgw_import(*args: str, data_dir: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``hbgw import ARGS --data-dir DIR`` in a subprocess (``env``: added to its environment)."""
    if env is None:
        return hbgw("import", *args, data_dir=data_dir, check=False)
    cmd = [*HBGW, "import", *args, "--data-dir", str(data_dir)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=_env() | env)


def new_database(tmp_path: Path) -> Path:
    """A data dir with an empty database: an import goes only into an existing one."""
    data = tmp_path / "data"
    hbgw("init", "--config", str(tmp_path / "init.toml"), "--data-dir", str(data))
    return data


def test_it_imports_only_into_an_existing_database(tmp_path: Path) -> None:
    saved = tmp_path / "export.json"
    saved.write_text(json.dumps([hc_simple()]))
    proc = hbgw_import("healthchecks", "--file", str(saved), data_dir=tmp_path / "typo")
    assert proc.returncode == 2 and "no database at" in proc.stderr
    assert not (tmp_path / "typo").exists()


def statuses(data_dir: Path) -> dict[str, str]:
    proc = hbgw("check", "list", "--json", data_dir=data_dir)
    return {c["name"]: c["status"] for c in json.loads(proc.stdout)}


def test_it_imports_from_the_api_and_from_kuma_then_the_old_urls_ping(
    tmp_path: Path, hc_site: HealthchecksStub
) -> None:
    data = new_database(tmp_path)
    kuma_db = make_kuma_db(tmp_path / "kuma.db")

    proc = hbgw_import("healthchecks", "--url", hc_site.url, "--api-key", "wrong", data_dir=data)
    assert proc.returncode == 1
    assert "refused the API key (HTTP 401)" in proc.stderr

    proc = hbgw_import("healthchecks", "--url", hc_site.url, data_dir=data)
    assert proc.returncode == 2 and "--url needs --api-key KEY" in proc.stderr

    proc = hbgw_import(
        "healthchecks", "--url", hc_site.url, "--dry-run", data_dir=data, env={"HC_API_KEY": "rw-key-123"}
    )
    assert proc.returncode == 0, proc.stderr
    assert "2 would be created" in proc.stdout and "dry run: nothing was written" in proc.stdout

    proc = hbgw_import("healthchecks", "--url", hc_site.url, "--api-key", "rw-key-123", "--json", data_dir=data)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["counts"] == {"created": 2, "updated": 0, "unchanged": 0, "skipped": 0, "failed": 0}
    assert hc_site.keys == ["wrong", "rw-key-123", "rw-key-123"]

    proc = hbgw_import("uptime-kuma", "--db", str(kuma_db), data_dir=data)
    assert proc.returncode == 0, proc.stderr
    assert "uptime-kuma: 3 created; 2 skipped" in proc.stdout
    assert "not push monitors, so not imported: dns 1, http 1" in proc.stdout

    # Again: nothing new, nothing duplicated.
    proc = hbgw_import("uptime-kuma", "--db", str(kuma_db), "--json", data_dir=data)
    assert json.loads(proc.stdout)["counts"]["unchanged"] == 3
    saved = tmp_path / "export.json"
    saved.write_text(json.dumps({"checks": [hc_simple(), hc_cron()]}))
    proc = hbgw_import("healthchecks", "--file", str(saved), data_dir=data)
    assert proc.returncode == 0 and "healthchecks: 2 unchanged" in proc.stdout

    assert statuses(data) == {
        "Filesystem Backup": "new",
        "Database Backup": "new",
        "backup": "new",
        "backup (2)": "new",
        "old cron": "paused",
    }

    with Daemon(data) as daemon:
        for path in (f"/ping/{UUID1}", f"/ping/{UUID2}", f"/api/push/{PUSH1}", f"/api/push/{PUSH2}?status=up&msg=OK"):
            out = subprocess.run(["curl", "-fsS", daemon.url + path], capture_output=True, text=True, timeout=10)
            assert out.returncode == 0, (path, out.stderr)
        want = {"Filesystem Backup", "Database Backup", "backup", "backup (2)"}
        wait_for(
            lambda: {n for n, s in statuses(data).items() if s == "up"} == want, timeout=15, what="imported checks up"
        )
        assert statuses(data)["old cron"] == "paused"


def test_it_exits_1_and_names_the_failures(tmp_path: Path) -> None:
    data = new_database(tmp_path)
    saved = tmp_path / "export.json"
    saved.write_text(json.dumps([hc_simple(), hc_cron(schedule="*-*~1 12:00")]))
    proc = hbgw_import("healthchecks", "--file", str(saved), data_dir=data)
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["created", "Filesystem", "Backup", "Healthchecks", "check", "1"]
    assert lines[1].startswith("failed   Database Backup    Healthchecks check 2  schedule '*-*~1 12:00'")
    assert lines[1].endswith("only 5-field cron expressions can come over (not OnCalendar)")
    assert lines[-1] == "healthchecks: 1 created; 1 failed"

    saved.write_text(json.dumps({"checks": [readonly(hc_simple())]}))
    proc = hbgw_import("healthchecks", "--file", str(saved), data_dir=data)
    assert proc.returncode == 1 and "read-only API key" in proc.stderr
