"""Configuration errors name the file and key; the CLI's init/check commands work as documented."""

from __future__ import annotations

import dataclasses
import json
import os
import stat
import tomllib
from pathlib import Path

import pytest

from gateway import config as cfgmod
from gateway.config import ConfigError
from tests.support.daemon import hbgw, hbgw_json, write_config


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("colour = 1\n", "colour: unknown key"),
        ("[http]\nlisten = '127.0.0.1:8080'\nport = 1\n", "[http] port: unknown key"),
        ("[nosuch]\n", "nosuch: unknown key"),
        ("[http]\nlisten = 'nope'\n", "[http] listen: 'nope' is not a HOST:PORT"),
        ("[http]\nlisten = '1.2.3.4:99999'\n", "out of range"),
        ("[modem]\nbackend = 'carrier-pigeon'\n", "[modem] backend: 'carrier-pigeon' is not one of at, gammu"),
        ("[modem]\npin = '12'\n", "[modem] pin: a SIM PIN is 4 to 8 digits"),
        ("[alerts]\nsms_to = ['0612345678']\n", "[alerts] sms_to: '0612345678' is not an E.164 number"),
        ("[alerts]\nrepeat = 'often'\n", "[alerts] repeat: 'often' is not a duration"),
        ("[alerts]\nrepeat = 15\n", '[alerts] repeat: 15 needs a unit, e.g. "15s" or "15m"'),
        ("[alerts]\nrepeat = '15'\n", '[alerts] repeat: "15" needs a unit, e.g. 15s or 15m'),
        ("[alerts]\ncoalesce = 3\n", '[alerts] coalesce: 3 needs a unit, e.g. "3s" or "3m"'),
        ("[alerts]\nmax_sms_per_hour = 0\n", "must be between 1 and 10000"),
        ("[security]\nauto_create = 'yes'\n", "[security] auto_create: expected true or false, got str"),
        ("[security]\nmax_checks = true\n", "expected an integer, got a boolean"),
        ("[security]\nping_key = 'short'\n", "[security] ping_key: must be 16-128 characters"),
        ("[defaults]\nperiod = '0s'\n", "[defaults] period: must be at least 1s"),
        ("http = 3\n", "[http] must be a table"),
        ("data_dir = [\n", "not valid TOML"),
    ],
)
def test_it_names_the_file_and_key_of_a_bad_config(tmp_path: Path, toml: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as e:
        cfgmod.load(path)
    assert str(e.value).startswith(f"{path}: ")
    assert message in str(e.value)


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (
            "[http]\nlisen = '127.0.0.1:8080'\n",
            "[http] lisen: unknown key (did you mean 'listen'?); "
            "[http] takes trusted_proxies, listen, base_url, max_body, threads, idle_timeout",
        ),
        ("[htp]\n", "htp: unknown key (did you mean '[http]'?); the top level takes [http], [smtp],"),
        ("datadir = '/x'\n", "(did you mean 'data_dir'?)"),
        ("[alerts]\nzzz = 1\n", "[alerts] zzz: unknown key; [alerts] takes sms_to,"),
    ],
)
def test_it_suggests_the_key_that_was_meant(toml: str, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        cfgmod.parse(tomllib.loads(toml), "hbgw.toml")
    assert str(e.value).startswith("hbgw.toml: ") and message in str(e.value)


@pytest.mark.parametrize("table", [t for t in cfgmod.TABLES if t != "contacts"])  # names of one's choosing
def test_it_lists_every_setting_of_a_table_when_a_key_is_unknown(table: str) -> None:
    """The list comes from the keys the parser asked for: none may be read only sometimes."""
    with pytest.raises(ConfigError) as e:
        cfgmod.parse({table: {"no_such_setting": 1}})
    listed = str(e.value).split(" takes ")[1].split(", ")
    fields = {f.name for f in dataclasses.fields(getattr(cfgmod.Config(), table))}
    fields -= {"maintenance"}  # [alerts]' maintenance windows live in the database, not the file
    assert {"from" if k == "sender" else k for k in fields} == set(listed)
    assert len(listed) == len(set(listed))


def test_it_exits_2_with_a_clear_message_for_a_bad_or_missing_config(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[http]\nlisen = '0.0.0.0:80'\n")
    for path in (bad, tmp_path / "missing.toml"):
        r = hbgw("serve", "--config", str(path), check=False)
        assert r.returncode == 2
        assert str(path) in r.stderr and "Traceback" not in r.stderr
    unreadable = tmp_path / "dir.toml"
    unreadable.mkdir()
    r = hbgw("check", "list", "--config", str(unreadable), check=False)
    assert r.returncode == 2 and "is a directory" in r.stderr


def test_it_reads_a_full_config(tmp_path: Path) -> None:
    path = tmp_path / "hbgw.toml"
    path.write_text(cfgmod.render_template(tmp_path / "data", "p" * 32))
    c = cfgmod.load(path)
    assert c.data_dir == tmp_path / "data"
    assert c.alerts.repeat == 900 and c.alerts.coalesce == 3
    assert c.security.ping_key == "p" * 32 and c.security.auto_create is False
    assert "p" * 32 not in repr(c)  # secrets stay out of reprs (and so out of logs)


def test_it_initialises_a_config_with_fresh_secrets_and_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "hbgw.toml"
    r = hbgw("init", "--config", str(path), "--data-dir", str(tmp_path / "data"))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    password = r.stdout.split("password")[-1].split(":", 1)[1].strip()
    assert len(password) >= 20
    key = cfgmod.load(path).security.ping_key
    assert key and len(key) >= 22
    # a second init refuses to overwrite, a second file gets different secrets
    assert hbgw("init", "--config", str(path), check=False).returncode == 1
    other = tmp_path / "other.toml"
    hbgw("init", "--config", str(other), "--data-dir", str(tmp_path / "d2"))
    assert cfgmod.load(other).security.ping_key != key
    # the password hash is stored, the password is not
    stored = b"".join(f.read_bytes() for f in (tmp_path / "data").iterdir() if f.is_file())
    assert password.encode() not in stored and b"scrypt$" in stored


def test_it_adds_lists_shows_pauses_resumes_and_removes_checks(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "hbgw.toml", tmp_path / "data", extra='[smtp]\nlisten = "127.0.0.1:0"\n')
    out = hbgw("check", "add", "web1", "--period", "15m", "--grace", "5m", config=cfg).stdout
    assert "/ping/" in out and "@hbgw.local" in out
    hbgw("check", "add", "nightly", "--cron", "30 2 * * *", "--tz", "Europe/Paris", config=cfg)
    listed = hbgw_json("check", "list", config=cfg)
    assert [c["name"] for c in listed] == ["nightly", "web1"]
    web1 = hbgw_json("check", "show", "web1", config=cfg)
    for key in ("name", "status", "last_ping", "period", "grace", "sms_enabled", "email_enabled", "ping_url", "email"):
        assert key in web1
    assert (web1["status"], web1["period"], web1["grace"], web1["last_ping"]) == ("new", 900, 300, None)
    assert web1["ping_url"].split("/ping/")[1] in out
    nightly = hbgw_json("check", "show", "nightly", config=cfg)
    assert (nightly["cron"], nightly["tz"]) == ("30 2 * * *", "Europe/Paris")
    text = hbgw("check", "show", "web1", config=cfg).stdout
    assert "curl -fsS" in text and "wget -q" in text and web1["email"] in text
    for row in (
        "status:           new",
        "last ping:        never",
        "schedule:         every 15m, grace 5m",
        "last exit status: -",
        "SMS alerts:       on",
        f"ping URL:         {web1['ping_url']}",
        "hbgw-ping@web1.timer.d/interval.conf",
    ):
        assert row in text, row
    text = hbgw("check", "show", "nightly", config=cfg).stdout
    assert "schedule:         cron 30 2 * * * (Europe/Paris), grace " in text
    assert "CRON_TZ=Europe/Paris\n  30 2 * * * curl -fsS" in text
    hbgw("check", "pause", "web1", config=cfg)
    assert hbgw_json("check", "show", "web1", config=cfg)["status"] == "paused"
    hbgw("check", "resume", "web1", config=cfg)
    assert hbgw_json("check", "show", "web1", config=cfg)["status"] == "new"
    assert "web1" in hbgw("check", "list", config=cfg).stdout
    out = hbgw("check", "new-url", "web1", config=cfg).stdout
    renewed = hbgw_json("check", "show", "web1", config=cfg)
    assert renewed["ping_url"] != web1["ping_url"] and renewed["email"] != web1["email"]
    assert renewed["ping_url"] in out and renewed["email"] in out and "404" in out
    assert renewed["status"] == "new" and renewed["period"] == 900  # nothing else changed
    hbgw("check", "rm", "web1", config=cfg)
    assert [c["name"] for c in hbgw_json("check", "list", config=cfg)] == ["nightly"]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("check", "add", "web1"), 1, "exists"),
        (("check", "add", "x", "--period", "soon"), 2, "--period: 'soon' is not a duration"),
        (("check", "add", "x", "--cron", "every day"), 2, "cron"),
        (("check", "add", "x", "--cron", "* * * * *", "--tz", "Nowhere/City"), 2, "time zone"),
        (("check", "add", "a/b"), 2, "cannot contain '/'"),
        (("check", "add", "x" * 201), 2, "at most 200"),
        (("check", "show", "ghost"), 1, "no check named"),
        (("check", "rm", "ghost"), 1, "no check named"),
        (("check", "pause", "ghost"), 1, "no check named"),
        (("check", "new-url", "ghost"), 1, "no check named"),
    ],
)
def test_it_explains_cli_mistakes(tmp_path: Path, args: tuple[str, ...], code: int, message: str) -> None:
    cfg = write_config(tmp_path / "hbgw.toml", tmp_path / "data")
    hbgw("check", "add", "web1", config=cfg)
    r = hbgw(*args, config=cfg, check=False)
    assert r.returncode == code, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr
    assert [c["name"] for c in json.loads(hbgw("check", "list", "--json", config=cfg).stdout)] == ["web1"]


def test_it_refuses_to_guess_a_data_dir(tmp_path: Path) -> None:
    r = hbgw("check", "list", check=False)
    assert r.returncode == 2 and "hbgw init" in r.stderr
