"""The CLI's records: API keys, --json on every command that prints one, the Healthchecks fields
of a check (token, slug, tags, description, manual resume, POST-only) and its ping log."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.rules.durations import run_time
from tests.support.daemon import Daemon, hbgw, hbgw_json, wait_for, write_config

UUID = "123e4567-e89b-12d3-a456-426614174000"
# Service.patch_check(self, name, **changes) takes the check's name as a keyword too, so a
# rename (changes["name"]) is a TypeError; it needs `def patch_check(self, name, /, **changes)`.


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """One daemon for the tests that need HTTP; the CLI works on its data dir beside it."""
    root = tmp_path_factory.mktemp("cli-records")
    cfg = write_config(root / "hbgw.toml", root / "data")
    hbgw("check", "add", "web1", "--period", "1h", config=cfg)
    with Daemon(root / "data", config=cfg) as d:
        d.cfg = cfg  # type: ignore[attr-defined]
        yield d


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    """A config without a daemon, with the check web1."""
    path = write_config(tmp_path / "hbgw.toml", tmp_path / "data")
    hbgw("check", "add", "web1", "--period", "15m", config=path)
    return path


def curl(url: str, *args: str) -> int:
    """The HTTP status of a curl request."""
    r = subprocess.run(
        ["curl", "-sS", "-m", "10", "-o", "/dev/null", "-w", "%{http_code}", *args, url],
        capture_output=True,
        text=True,
        timeout=20,
    )
    return int(r.stdout or 0)


def local(gw: Daemon, url: str) -> str:
    """A URL the CLI printed (with the configured base), aimed at the test daemon."""
    return gw.url + "/ping/" + url.split("/ping/", 1)[1]


# --------------------------------------------------------------------------------- API keys


def test_it_adds_lists_and_revokes_api_keys_and_a_read_only_key_cannot_write(gw: Daemon) -> None:
    cfg: Path = gw.cfg  # type: ignore[attr-defined]
    out = hbgw("apikey", "add", "deploy", config=cfg)
    assert "shown only now" in out.stdout
    human_secret = out.stdout.split(": ")[-1].strip()
    assert human_secret.startswith("hbgw_") and human_secret not in out.stderr
    ro = hbgw_json("apikey", "add", "grafana", "--read-only", config=cfg)
    rw = hbgw_json("apikey", "add", "ansible", config=cfg)
    assert (ro["label"], ro["scope"], rw["scope"]) == ("grafana", "read", "write")
    assert ro["key"].startswith(ro["prefix"]) and ro["revoked"] is None

    def api(key: str, method: str, path: str) -> int:
        return curl(gw.url + path, "-X", method, "-H", f"Authorization: Bearer {key}")

    assert api(ro["key"], "GET", "/api/v1/checks/web1") == 200
    assert api(ro["key"], "POST", "/api/v1/checks/web1/pause") == 401
    assert hbgw_json("check", "show", "web1", config=cfg)["status"] != "paused"
    assert api(rw["key"], "POST", "/api/v1/checks/web1/pause") == 200
    assert hbgw_json("check", "show", "web1", config=cfg)["status"] == "paused"
    assert api(rw["key"], "POST", "/api/v1/checks/web1/resume") == 200

    listed = hbgw("apikey", "list", "--json", config=cfg).stdout
    keys = {k["id"]: k for k in json.loads(listed)}
    assert {ro["id"], rw["id"]} <= set(keys) and keys[ro["id"]]["last_used"] is not None
    text = hbgw("apikey", "list", config=cfg).stdout
    assert "grafana" in text and "read" in text and ro["prefix"] in text
    for secret in (human_secret, ro["key"], rw["key"]):  # only their prefixes, ever
        assert secret not in listed and secret not in text and secret not in gw.log()

    revoked = hbgw_json("apikey", "rm", str(ro["id"]), config=cfg)
    assert revoked["id"] == ro["id"] and revoked["revoked"] is not None
    assert api(ro["key"], "GET", "/api/v1/checks/web1") == 401
    assert api(rw["key"], "GET", "/api/v1/checks/web1") == 200
    for gone in (str(ro["id"]), "9999"):
        r = hbgw("apikey", "rm", gone, config=cfg, check=False)
        assert r.returncode == 1 and f"no API key with id {gone}" in r.stderr and "Traceback" not in r.stderr


# --------------------------------------------------------------------------------- --json


def _named(name: str) -> Callable[[Any], bool]:
    return lambda doc: doc["name"] == name


JSON_COMMANDS: list[tuple[tuple[str, ...], Callable[[Any], bool]]] = [
    (("check", "add", "db1", "--tags", "prod db"), lambda d: d["name"] == "db1" and d["tags"] == ["prod", "db"]),
    (("check", "set", "web1", "--desc", "front"), lambda d: d["name"] == "web1" and d["desc"] == "front"),
    (("check", "pause", "web1"), lambda d: d["status"] == "paused"),
    (("check", "resume", "web1"), lambda d: d["status"] == "new"),
    (("check", "new-url", "web1"), lambda d: d["name"] == "web1" and "/ping/" in d["ping_url"]),
    (("check", "rm", "web1"), _named("web1")),
    (("check", "show", "web1"), _named("web1")),
    (("check", "list"), lambda d: [c["name"] for c in d] == ["web1"]),
    (("check", "pings", "web1"), lambda d: d == {"pings": []}),
    (("ack", "web1"), lambda d: d["name"] == "web1" and d["acked"] is False),
    (("mute", "web1", "2h"), lambda d: d["name"] == "web1" and d["muted_until"] is not None),
    (("unmute", "web1"), lambda d: [c["name"] for c in d] == ["web1"] and d[0]["muted_until"] is None),
    (("unmute",), lambda d: d == []),
    (("apikey", "add", "ci"), lambda d: d["label"] == "ci" and d["key"].startswith("hbgw_")),
    (("apikey", "list"), lambda d: d == []),
    (("sms", "outbox"), lambda d: d == []),
]


@pytest.mark.parametrize(("args", "carries"), JSON_COMMANDS, ids=[" ".join(a) for a, _ in JSON_COMMANDS])
def test_it_prints_one_json_document_with_the_record(
    cfg: Path, args: tuple[str, ...], carries: Callable[[Any], bool]
) -> None:
    r = hbgw(*args, "--json", config=cfg)
    assert carries(json.loads(r.stdout))  # json.loads refuses a second document or trailing text


def test_it_prints_the_revoked_key_and_the_backup_as_json(cfg: Path, tmp_path: Path) -> None:
    key = hbgw_json("apikey", "add", "ci", config=cfg)
    assert hbgw_json("apikey", "rm", str(key["id"]), config=cfg)["label"] == "ci"
    info = hbgw_json("backup", str(tmp_path / "copy.sqlite3"), config=cfg)
    assert (info["checks"], info["path"]) == (1, str(tmp_path / "copy.sqlite3"))


# --------------------------------------------------------------------------------- check fields


def test_it_adds_a_check_with_a_healthchecks_token_and_its_pings_reach_it(gw: Daemon) -> None:
    cfg: Path = gw.cfg  # type: ignore[attr-defined]
    check = hbgw_json("check", "add", "hc-job", "--token", UUID, "--slug", "hc-job-1", config=cfg)
    assert check["ping_url"].endswith(f"/ping/{UUID}") and check["slug"] == "hc-job-1"
    assert curl(f"{gw.url}/ping/{UUID}") == 200
    wait_for(lambda: hbgw_json("check", "show", "hc-job", config=cfg)["n_pings"] == 1, what="the UUID ping")
    text = hbgw("check", "show", "hc-job", config=cfg).stdout
    slug_url = next(line.split(None, 3)[3] for line in text.splitlines() if line.startswith("slug ping URL:"))
    assert slug_url.endswith("/hc-job-1")
    assert curl(local(gw, slug_url)) == 200
    wait_for(lambda: hbgw_json("check", "show", "hc-job", config=cfg)["n_pings"] == 2, what="the slug ping")
    r = hbgw("check", "add", "again", "--token", UUID, config=cfg, check=False)
    assert r.returncode == 1 and "Traceback" not in r.stderr


def test_it_shows_a_runs_duration_from_start_to_success(gw: Daemon) -> None:
    cfg: Path = gw.cfg  # type: ignore[attr-defined]
    token = hbgw_json("check", "add", "backup-job", config=cfg)["ping_url"].rsplit("/", 1)[1]
    rid = str(uuid.uuid4())
    assert curl(f"{gw.url}/ping/{token}/start?rid={rid}") == 200
    wait_for(lambda: hbgw_json("check", "show", "backup-job", config=cfg)["started"], what="the start")
    assert "(running since " in hbgw("check", "show", "backup-job", config=cfg).stdout
    assert curl(f"{gw.url}/ping/{token}?rid={rid}", "-X", "POST", "-d", "done") == 200
    pings = wait_for(
        lambda: [p for p in hbgw_json("check", "pings", "backup-job", config=cfg)["pings"] if p["duration"]],
        what="the success with its duration",
    )
    assert (pings[0]["kind"], pings[0]["rid"], pings[0]["method"]) == ("success", rid, "POST")
    shown = hbgw_json("check", "show", "backup-job", config=cfg)
    assert shown["started"] is False and shown["last_duration"] == pings[0]["duration"]
    text = hbgw("check", "pings", "backup-job", config=cfg).stdout
    lines = text.splitlines()
    assert lines[0].split() == ["TIME", "KIND", "SOURCE", "METHOD", "EXIT", "RUN", "DURATION"]
    success = next(line for line in lines if " success " in line)
    assert rid[:8] in success and rid not in success and run_time(pings[0]["duration"]) in success
    assert any(" start " in line and rid[:8] in line for line in lines)
    show = hbgw("check", "show", "backup-job", config=cfg).stdout
    assert f"last run:         {run_time(shown['last_duration'])}" in show and "running since" not in show
    assert len(hbgw_json("check", "pings", "backup-job", "--limit", "1", config=cfg)["pings"]) == 1


def test_it_sets_and_shows_slug_tags_description_manual_resume_and_post_only(cfg: Path) -> None:
    added = hbgw_json(
        "check",
        "add",
        "nightly",
        "--tags",
        "b a  b",
        "--desc",
        "the nightly dump",
        "--manual-resume",
        "--post-only",
        "--slug",
        "dump",
        config=cfg,
    )
    assert (added["tags"], added["desc"], added["manual_resume"], added["methods"], added["slug"]) == (
        ["b", "a"],
        "the nightly dump",
        True,
        "POST",
        "dump",
    )
    text = hbgw("check", "show", "nightly", config=cfg).stdout
    for row in (
        "slug:             dump",
        "tags:             b a",
        "description:      the nightly dump",
        "manual resume:    on",
        "POST only:        yes",
        "last run:         -",
    ):
        assert row in text, row
    assert "/ping/" in text.split("slug ping URL:")[1].splitlines()[0] and "/dump\n" in text
    listing = hbgw("check", "list", config=cfg).stdout.splitlines()
    assert listing[0].split()[-1] == "TAGS" and listing[1].startswith("nightly") and listing[1].endswith("b a")
    changed = hbgw_json(
        "check", "set", "nightly", "--tags", "x  y x", "--manual-resume", "off", "--methods", "any", config=cfg
    )
    assert (changed["tags"], changed["manual_resume"], changed["methods"]) == (["x", "y"], False, "")
    cleared = hbgw_json("check", "set", "nightly", "--slug", "", "--tags", "", config=cfg)
    assert (cleared["slug"], cleared["tags"]) == ("", [])
    assert "slug ping URL" not in hbgw("check", "show", "nightly", config=cfg).stdout


def test_it_renames_a_check_and_keeps_its_token(cfg: Path) -> None:
    before = hbgw_json("check", "show", "web1", config=cfg)
    out = hbgw("check", "set", "web1", "--name", "web-one", "--tags", "b a b", config=cfg).stdout
    assert "updated web-one (was web1)" in out
    after = hbgw_json("check", "show", "web-one", config=cfg)
    assert (after["ping_url"], after["email"], after["period"]) == (before["ping_url"], before["email"], 900)
    assert after["tags"] == ["b", "a"]
    assert hbgw("check", "show", "web1", config=cfg, check=False).returncode == 1


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("check", "add", "x", "--token=short"), 2, "token: "),
        (("check", "add", "x", "--token", "a/b/c/d/e"), 2, "token: "),
        (("check", "add", "x", "--slug", "Not A Slug"), 2, "slug: "),
        (("check", "add", "x", "--desc", "d" * 10_001), 2, "desc: "),
        (("check", "set", "web1", "--slug", "UPPER"), 2, "slug: "),
        pytest.param(("check", "set", "web1", "--name", "a/b"), 2, "name: "),
        (("check", "set", "web1", "--methods", "get"), 2, "--methods"),
        (("check", "set", "web1", "--manual-resume", "yes"), 2, "--manual-resume"),
        (("check", "pings", "web1", "--limit", "0"), 2, "--limit"),
        (("check", "pings", "ghost"), 1, "no check named 'ghost'"),
        (("apikey", "add", " "), 2, "label: "),
        (("apikey", "rm", "one"), 2, "invalid int"),
    ],
)
def test_it_names_the_field_of_a_bad_value(cfg: Path, args: tuple[str, ...], code: int, message: str) -> None:
    r = hbgw(*args, config=cfg, check=False)
    assert r.returncode == code, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr
    assert r.stdout == ""
    assert [c["name"] for c in hbgw_json("check", "list", config=cfg)] == ["web1"]
    assert hbgw_json("check", "show", "web1", config=cfg)["slug"] == "web1"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.25, "0.25 s"), (3.14159, "3.1 s"), (42, "42 s"), (252, "4 min 12 s"), (240, "4 min"), (3900, "1 h 5 min")],
)
def test_it_says_how_long_a_run_took(seconds: float, text: str) -> None:
    assert run_time(seconds) == text
