"""The command line's traps, through the real ``hbgw``: a mistyped --data-dir (or --demo with no
demo) never makes a new database, durations need a unit, a closed pipe gives no traceback, a
mistyped check name gets "did you mean", only working addresses are printed, cron fields are
checked, and every command works against the demo with --demo."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.errors import ValidationError
from gateway.rules import commands
from gateway.rules.durations import parse_duration
from gateway.service import parse_duration_field
from tests.support.daemon import HBGW, Daemon, _env, hbgw, hbgw_json, wait_for, write_config

SMTP_ON = '[smtp]\nlisten = "127.0.0.1:0"\n'


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    """A config (no daemon, no email listener) with the check web1."""
    path = write_config(tmp_path / "hbgw.toml", tmp_path / "data")
    hbgw("check", "add", "web1", "--period", "15m", config=path)
    return path


# ------------------------------------------------------------------ no database made by mistake

MANAGEMENT = [
    ("check", "add", "web1"),
    ("check", "list"),
    ("check", "show", "web1"),
    ("check", "set", "web1", "--tags", "x"),
    ("check", "rm", "web1"),
    ("check", "pause", "web1"),
    ("check", "resume", "web1"),
    ("check", "new-url", "web1"),
    ("check", "pings", "web1"),
    ("apikey", "add", "ansible"),
    ("apikey", "list"),
    ("apikey", "rm", "1"),
    ("ack", "web1"),
    ("mute", "web1", "2h"),
    ("unmute",),
    ("status",),
    ("sms", "outbox"),
    ("sms", "inbox"),
    ("passwd", "--password-stdin"),
    ("import", "healthchecks", "--file", "/nonexistent/checks.json"),
]


@pytest.mark.parametrize("args", MANAGEMENT, ids=" ".join)
def test_it_never_makes_a_database_in_a_mistyped_data_dir(tmp_path: Path, args: tuple[str, ...]) -> None:
    typo = tmp_path / "dtaa"
    r = hbgw(*args, data_dir=typo, input="a-long-enough-password\n", check=False)
    assert r.returncode == 2, r.stderr
    assert r.stderr == f"hbgw: no database at {typo}: is --data-dir right? (hbgw init creates one)\n"
    assert not typo.exists()


def test_it_never_makes_a_database_for_backup_or_restore(tmp_path: Path) -> None:
    typo = tmp_path / "dtaa"
    r = hbgw("backup", str(tmp_path / "b.sqlite3"), data_dir=typo, check=False)
    assert r.returncode == 2 and "no database at" in r.stderr
    (tmp_path / "b.sqlite3").write_bytes(b"")
    r = hbgw("restore", str(tmp_path / "b.sqlite3"), data_dir=typo, check=False)
    assert r.returncode == 2 and f"no data dir at {typo}" in r.stderr
    assert not typo.exists()


@pytest.mark.parametrize("where", ["before", "after"])
def test_it_says_how_to_start_the_demo_when_it_never_ran(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    args = ("--demo", "check", "list") if where == "before" else ("check", "list", "--demo")
    r = hbgw(*args, check=False)
    assert r.returncode == 2
    assert r.stderr.startswith(f"hbgw: no demo database at {tmp_path / 'state' / 'hbgw-demo'}: start the demo first")
    assert "./bootstrap demo" in r.stderr
    assert not (tmp_path / "state").exists()


def test_it_still_creates_the_database_for_serve_and_init(tmp_path: Path) -> None:
    hbgw("init", "--config", str(tmp_path / "hbgw.toml"), "--data-dir", str(tmp_path / "data"))
    assert hbgw_json("check", "list", config=tmp_path / "hbgw.toml") == []
    with Daemon(tmp_path / "served"):
        pass
    assert hbgw_json("check", "list", data_dir=tmp_path / "served") == []


# ------------------------------------------------------------------ durations need a unit


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("check", "add", "x", "--period", "10"), '--period: "10" needs a unit, e.g. 10s or 10m'),
        (("check", "add", "x", "--grace", "5"), '--grace: "5" needs a unit, e.g. 5s or 5m'),
        (("check", "set", "web1", "--period", "1.5"), '--period: "1.5" needs a unit, e.g. 1.5s or 1.5m'),
        (("mute", "web1", "2"), 'duration: "2" needs a unit, e.g. 2s or 2m'),
        (("check", "add", "x", "--period", "soon"), "--period: 'soon' is not a duration (use e.g. 90s, 15m"),
    ],
)
def test_it_refuses_a_duration_without_a_unit(cfg: Path, args: tuple[str, ...], message: str) -> None:
    r = hbgw(*args, config=cfg, check=False)
    assert r.returncode == 2
    assert r.stderr.startswith(f"hbgw: {message}")
    assert [c["name"] for c in hbgw_json("check", "list", config=cfg)] == ["web1"]


def test_it_reads_durations_with_units_the_same_everywhere(cfg: Path) -> None:
    hbgw("check", "add", "x", "--period", "1h30", "--grace", "2 min", config=cfg)
    x = hbgw_json("check", "show", "x", config=cfg)
    assert (x["period"], x["grace"]) == (5400, 120)
    # one parser: the CLI, the page and the API's strings, and the SMS commands
    for text in ("10s", "15m", "1h30m", "1h30", "2 hours", "1,5h", "1w"):
        assert commands.parse_duration(text) == parse_duration(text) == parse_duration_field("period", text)
    assert commands.parse_duration("10") is None
    assert parse_duration("10", unit_required=False) == 10.0
    with pytest.raises(ValidationError, match='"10" needs a unit'):
        parse_duration_field("period", "10")
    assert parse_duration_field("period", 900) == 900.0  # a JSON number is seconds: typed, not ambiguous


# ------------------------------------------------------------------ closed pipes

PRINTING = [
    ("check", "list"),
    ("check", "list", "--json"),
    ("check", "show", "web1"),
    ("check", "pings", "web1"),
    ("check", "pause", "web1"),
    ("apikey", "list"),
    ("status",),
    ("sms", "outbox"),
    ("--help",),
]


@pytest.mark.parametrize("args", PRINTING, ids=" ".join)
def test_it_exits_quietly_when_the_reader_goes_away(cfg: Path, args: tuple[str, ...]) -> None:
    """``hbgw ... | head -1``: the read end is closed before hbgw writes its first byte."""
    proc = subprocess.Popen(
        [*HBGW, *args, "--config", str(cfg)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(),
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    try:
        err = proc.stderr.read().decode()
        proc.wait(timeout=30)
    finally:
        proc.stderr.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "Traceback" not in err and "Exception ignored" not in err and "BrokenPipe" not in err, err
    assert proc.returncode in (0, 1, 2, 3)  # status: 1, nothing runs here


# ------------------------------------------------------------------ did you mean


@pytest.mark.parametrize(
    "args",
    [
        ("check", "show", "webl"),
        ("check", "set", "webl", "--tags", "x"),
        ("check", "rm", "webl"),
        ("check", "pause", "webl"),
        ("check", "resume", "webl"),
        ("check", "new-url", "webl"),
        ("check", "pings", "webl"),
        ("ack", "webl"),
        ("mute", "webl", "2h"),
        ("unmute", "webl"),
    ],
    ids=" ".join,
)
def test_it_suggests_the_check_that_was_meant(cfg: Path, args: tuple[str, ...]) -> None:
    hbgw("check", "add", "db-primary", config=cfg)
    r = hbgw(*args, config=cfg, check=False)
    assert (r.returncode, r.stderr) == (1, "hbgw: no check named 'webl' (did you mean web1?)\n")


def test_it_suggests_nothing_when_nothing_is_close(cfg: Path) -> None:
    r = hbgw("check", "pause", "zzzz", config=cfg, check=False)
    assert (r.returncode, r.stderr) == (1, "hbgw: no check named 'zzzz'\n")
    assert commands.closest_name("WEB1 please", ["web1", "db1"]) == "web1"  # the SMS parser's matcher


# ------------------------------------------------------------------ only addresses that work


def test_it_prints_the_email_address_only_when_email_is_listened_for(tmp_path: Path) -> None:
    off = write_config(tmp_path / "off.toml", tmp_path / "off")
    out = hbgw("check", "add", "web1", config=off).stdout
    assert "@" not in out and "email" not in out
    shown = hbgw("check", "show", "web1", config=off).stdout
    assert "@hbgw.local" not in shown and "\nemail:" not in shown and "mail -s ok" not in shown
    on = write_config(tmp_path / "on.toml", tmp_path / "on", extra=SMTP_ON)
    out = hbgw("check", "add", "web1", config=on).stdout
    email = hbgw_json("check", "show", "web1", config=on)["email"]
    assert f"email:    {email}" in out
    shown = hbgw("check", "show", "web1", config=on).stdout
    assert f"email:            {email}" in shown and f"mail -s ok {email}" in shown


def test_it_prints_a_slug_url_only_for_a_check_with_a_slug(cfg: Path) -> None:
    assert "slug ping URL:" in hbgw("check", "show", "web1", config=cfg).stdout
    hbgw("check", "set", "web1", "--slug", "", config=cfg)
    assert "slug ping URL:" not in hbgw("check", "show", "web1", config=cfg).stdout
    out = hbgw("check", "add", "db1", "--slug", "", config=cfg).stdout
    assert "slug URL:" not in out


def test_it_says_when_urls_use_the_bare_host_name_and_uses_base_url_when_set(tmp_path: Path) -> None:
    bare = write_config(tmp_path / "bare.toml", tmp_path / "bare")
    out = hbgw("check", "add", "web1", config=bare).stdout
    assert "note:     [http] base_url is not set, so these URLs use '127.0.0.1'" in out
    assert "[http] base_url is not set" in hbgw("check", "show", "web1", config=bare).stdout
    based = write_config(tmp_path / "based.toml", tmp_path / "based", http='base_url = "https://alarm.example.net"\n')
    out = hbgw("check", "add", "web1", config=based).stdout
    assert "ping URL: https://alarm.example.net/ping/" in out and "base_url" not in out
    shown = hbgw("check", "show", "web1", config=based).stdout
    assert "curl -fsS -m 10 --retry 3 -o /dev/null https://alarm.example.net/ping/" in shown
    assert "base_url" not in shown


# ------------------------------------------------------------------ cron fields


@pytest.mark.parametrize(
    ("cron", "message"),
    [
        ("*/61 * * * *", "a step in the cron minute field must be 1 to 60, not '61'"),
        ("*/0 * * * *", "a step in the cron minute field must be 1 to 60, not '0'"),
        ("60 * * * *", "the cron minute field takes 0-59, not 60"),
        ("* 24 * * *", "the cron hour field takes 0-23, not 24"),
        ("0 0 32 * *", "the cron day of month field takes 1-31, not 32"),
        ("0 0 0 * *", "the cron day of month field takes 1-31, not 0"),
        ("0 0 1 13 *", "the cron month field takes 1-12, not 13"),
        ("0 0 * * 8", "the cron day of week field takes 0-7, not 8"),
        ("0 0-25 * * *", "the cron hour field takes 0-23, not 25"),
        ("0 0 * * 5#6", "in the cron day of week field, #6 must be #1 to #5"),
        ("* * * *", "is not a 5-field cron expression"),
    ],
)
def test_it_names_the_cron_field_out_of_range(cfg: Path, cron: str, message: str) -> None:
    r = hbgw("check", "add", "nightly", "--cron", cron, config=cfg, check=False)
    assert r.returncode == 2
    assert r.stderr.startswith("hbgw: cron: ") and message in r.stderr, r.stderr
    r = hbgw("check", "set", "web1", "--cron", cron, config=cfg, check=False)
    assert r.returncode == 2 and message in r.stderr


@pytest.mark.parametrize(
    "cron", ["*/15 * * * *", "*/60 * * * *", "0 0 * * 7", "0 0 * * sun,7", "30 2 1-31/2 jan-dec mon-fri", "0 0 L * *"]
)
def test_it_takes_the_cron_fields_that_are_in_range(cfg: Path, cron: str) -> None:
    hbgw("check", "add", "nightly", "--cron", cron, config=cfg)
    assert hbgw_json("check", "show", "nightly", config=cfg)["cron"] == cron


# ------------------------------------------------------------------ the demo


@pytest.fixture
def demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Daemon]:
    """``hbgw serve --demo`` on its own data dir (XDG_STATE_HOME), free ports."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    d = Daemon(tmp_path / "state" / "hbgw-demo", args=["--demo", "--smtp", "127.0.0.1:0"])
    with d:
        yield d


def test_it_prints_where_to_open_the_demo_and_every_command_works_with_demo(demo: Daemon, tmp_path: Path) -> None:
    wait_for(lambda: f"hbgw demo: open {demo.url}/ (password on the login page)" in demo.log(), what="the line")
    assert [c["name"] for c in hbgw_json("--demo", "check", "list")] == ["backup", "db1", "web1"]
    for args in (
        ("check", "show", "web1"),
        ("check", "pings", "web1"),
        ("check", "add", "mine", "--period", "1h"),
        ("check", "set", "mine", "--tags", "t"),
        ("check", "pause", "mine"),
        ("check", "resume", "mine"),
        ("check", "new-url", "mine"),
        ("check", "rm", "mine"),
        ("apikey", "add", "k"),
        ("apikey", "list"),
        ("apikey", "rm", "1"),
        ("mute", "web1", "1h"),
        ("unmute", "web1"),
        ("ack", "web1"),
        ("sms", "outbox"),
        ("sms", "inbox"),
        ("backup", str(tmp_path / "demo-backup.sqlite3")),
    ):
        for demo_flag in ((*args, "--demo"), ("--demo", *args)):
            r = hbgw(*demo_flag, check=False)
            if args[:2] == ("check", "add") and demo_flag[0] == "--demo":
                assert r.returncode == 1 and "exists" in r.stderr  # added once already
            elif args[:2] in {("check", "set"), ("check", "pause"), ("check", "resume"), ("check", "new-url")}:
                assert r.returncode in (0, 1), r.stderr
            elif args[:2] == ("check", "rm") and demo_flag[0] == "--demo":
                assert r.returncode == 1 and "no check named 'mine'" in r.stderr
            elif args[:2] == ("apikey", "rm") and demo_flag[0] == "--demo":
                assert r.returncode == 1 and "no API key with id 1" in r.stderr
            else:
                assert r.returncode == 0, (demo_flag, r.stderr)
    status = hbgw("--demo", "status", check=False)
    assert status.returncode in (0, 3) and "running" in status.stdout
    r = hbgw("--demo", "passwd", "--password-stdin", input="a-long-enough-password-1\n")
    assert "admin password changed" in r.stdout
    # shown with its email address (the demo listens for email) and without the base_url note
    shown = hbgw("--demo", "check", "show", "web1").stdout
    assert "@hbgw.local" in shown and "base_url" not in shown
    # --reset refuses while the demo runs
    r = hbgw("serve", "--demo", "--reset", check=False)
    assert r.returncode == 2 and "the demo is running" in r.stderr and "stop it first" in r.stderr


def test_it_resets_the_demo_to_its_story(demo: Daemon) -> None:
    hbgw("--demo", "check", "add", "mine", "--period", "1h")
    hbgw("--demo", "check", "pause", "web1")
    demo.stop()
    demo.args.append("--reset")
    demo.start()
    assert "hbgw demo: reset (deleted" in demo.log()
    checks = {c["name"]: c["status"] for c in hbgw_json("--demo", "check", "list")}
    assert checks == {"backup": "up", "db1": "up", "web1": "up"}


def test_it_resets_only_the_demo(tmp_path: Path) -> None:
    data = tmp_path / "data"
    hbgw("init", "--config", str(tmp_path / "hbgw.toml"), "--data-dir", str(data))
    r = hbgw("serve", "--demo", "--reset", "--data-dir", str(data), check=False)
    assert r.returncode == 2 and "--reset deletes only the demo's own data" in r.stderr
    r = hbgw("serve", "--reset", "--config", str(tmp_path / "hbgw.toml"), check=False)
    assert r.returncode == 2 and "--reset works only with --demo" in r.stderr
    assert (data / "hbgw.sqlite3").exists()
    assert json.loads(hbgw("check", "list", "--json", data_dir=data).stdout) == []
