"""The ping HTTP API, driven by the real curl and wget against ``hbgw serve`` on loopback."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemon import Daemon, hbgw, hbgw_json, write_config
from tests.support.db import pings_of

pytestmark = pytest.mark.skipif(
    not shutil.which("curl") or not shutil.which("wget"), reason="needs curl and wget (installed by .ci/run)"
)

PING_KEY = "k" * 8 + "-test-ping-key-0123"


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    root = tmp_path_factory.mktemp("ping")
    data = root / "data"
    cfg = write_config(
        root / "hbgw.toml",
        data,
        http="max_body = 2048\n",
        extra=f"""
[security]
ping_key = "{PING_KEY}"
auto_create = true
max_checks = 6
""",
    )
    for name in ("web1", "web2", "backup"):
        hbgw("check", "add", name, "--period", "1h", "--grace", "1h", config=cfg)
    with Daemon(data, config=cfg) as d:
        d.cfg = cfg  # type: ignore[attr-defined]
        yield d


def token(gw: Daemon, name: str) -> str:
    return str(hbgw_json("check", "show", name, config=gw.cfg)["ping_url"].rsplit("/", 1)[1])  # type: ignore[attr-defined]


def curl(*args: str) -> tuple[int, str]:
    """Run curl; returns (HTTP status, body)."""
    out = subprocess.run(
        ["curl", "-sS", "-m", "10", "-o", "-", "-w", "\n%{http_code}", *args],
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    ).stdout
    body, _, code = out.rpartition("\n")
    return int(code), body


def pings(gw: Daemon, name: str) -> list[tuple[Any, ...]]:
    return pings_of(gw.data_dir, name)


def test_it_records_a_curl_ping_exactly_as_the_crontab_line_sends_it(gw: Daemon) -> None:
    url = f"{gw.url}/ping/{token(gw, 'web1')}"
    out = subprocess.run(["curl", "-fsS", "-m", "10", "--retry", "3", url], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and out.stdout == "OK\n"
    show = hbgw_json("check", "show", "web1", config=gw.cfg)  # type: ignore[attr-defined]
    assert show["status"] == "up" and show["last_ping"] is not None
    kind, code, source, addr, method, ua, body = pings(gw, "web1")[-1]
    assert (kind, code, source, addr, method, body) == ("success", None, "http", "127.0.0.1", "GET", None)
    assert ua.startswith("curl/")


def test_it_records_a_wget_ping(gw: Daemon) -> None:
    url = f"{gw.url}/ping/{token(gw, 'web2')}"
    out = subprocess.run(["wget", "-q", "-O", "-", url], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and out.stdout == "OK\n"
    assert pings(gw, "web2")[-1][0] == "success"
    assert pings(gw, "web2")[-1][5].lower().startswith("wget")
    assert hbgw_json("check", "show", "web2", config=gw.cfg)["status"] == "up"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("suffix", "kind", "code", "status"),
    [
        ("/start", "start", None, "up"),
        ("/log", "log", None, "up"),
        ("/0", "success", 0, "up"),
        ("/fail", "fail", None, "down"),
        ("", "success", None, "up"),
        ("/3", "fail", 3, "down"),
        ("/255", "fail", 255, "down"),
    ],
)
def test_it_understands_healthchecks_actions(gw: Daemon, suffix: str, kind: str, code: int | None, status: str) -> None:
    tok = token(gw, "backup")
    assert curl(f"{gw.url}/ping/{tok}") == (200, "OK\n")  # start from up
    assert curl(f"{gw.url}/ping/{tok}{suffix}") == (200, "OK\n")
    assert pings(gw, "backup")[-1][:2] == (kind, code)
    assert hbgw_json("check", "show", "backup", config=gw.cfg)["status"] == status  # type: ignore[attr-defined]


def test_it_stores_a_posted_body_and_its_method(gw: Daemon) -> None:
    tok = token(gw, "backup")
    assert curl("-X", "POST", "--data-binary", "rsync: 42 files\nexit 0", f"{gw.url}/ping/{tok}/fail") == (200, "OK\n")
    kind, _, _, _, method, _, body = pings(gw, "backup")[-1]
    assert (kind, method, body) == ("fail", "POST", "rsync: 42 files\nexit 0")


def test_it_answers_head(gw: Daemon) -> None:
    out = subprocess.run(
        ["curl", "-sS", "-I", f"{gw.url}/ping/{token(gw, 'web1')}"], capture_output=True, text=True, timeout=20
    )
    assert out.stdout.startswith("HTTP/1.1 200")
    assert pings(gw, "web1")[-1][4] == "HEAD"


def test_it_pings_by_key_and_name_and_creates_unknown_names(gw: Daemon) -> None:
    assert curl(f"{gw.url}/ping/{PING_KEY}/web1/start") == (200, "OK\n")
    assert pings(gw, "web1")[-1][0] == "start"
    assert curl(f"{gw.url}/ping/{PING_KEY}/newbox") == (201, "Created\n")
    assert hbgw_json("check", "show", "newbox", config=gw.cfg)["status"] == "up"  # type: ignore[attr-defined]


def test_it_caps_auto_created_checks(gw: Daemon) -> None:
    names = [c["name"] for c in hbgw_json("check", "list", config=gw.cfg)]  # type: ignore[attr-defined]
    codes = [curl(f"{gw.url}/ping/{PING_KEY}/auto{i}")[0] for i in range(8 - len(names))]
    assert 403 in codes  # max_checks = 6
    after = hbgw_json("check", "list", config=gw.cfg)  # type: ignore[attr-defined]
    assert len(after) == 6


@pytest.mark.parametrize(
    ("path", "method", "code"),
    [
        ("/ping/ZZZZZZZZZZZZZZZZZZZZZZZZ", "GET", 404),  # well-formed, unknown token
        ("/ping/ZZZZZZZZZZZZZZZZZZZZZZZZ/fail", "GET", 404),
        ("/ping/wrong-key-wrong-key-1/web1", "GET", 404),  # wrong key: same as unknown name
        ("/ping/wrong-key-wrong-key-1/nosuchname", "GET", 404),
        ("/ping/wrong-key-wrong-key-1/web1/fail", "GET", 404),
        ("/ping/bad%20token!", "GET", 400),  # malformed token
        ("/ping/{tok}/256", "GET", 400),  # exit status out of range
        ("/ping/{tok}/99999999999999999999", "GET", 400),
        ("/ping/{tok}", "PUT", 400),  # method
        ("/ping/{tok}", "DELETE", 400),
        (f"/ping/{PING_KEY}/web1/bogus", "GET", 400),
        ("/ping/{tok}/a/b/c", "GET", 404),
        ("/nothing-here", "GET", 404),
    ],
)
def test_it_rejects_bad_requests_and_stores_nothing(gw: Daemon, path: str, method: str, code: int) -> None:
    before = {n: len(pings(gw, n)) for n in ("web1", "web2", "backup")}
    got, body = curl("-X", method, gw.url + path.format(tok=token(gw, "web1")))
    assert got == code
    assert "Traceback" not in body and body.endswith("\n") and len(body) < 100
    assert {n: len(pings(gw, n)) for n in before} == before


def test_it_refuses_an_oversized_body_with_413_and_stores_nothing(gw: Daemon, tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.write_bytes(b"x" * 5000)  # max_body is 2048 in this config
    before = len(pings(gw, "web2"))
    assert curl("--data-binary", f"@{big}", f"{gw.url}/ping/{token(gw, 'web2')}")[0] == 413
    chunked = curl("-H", "Transfer-Encoding: chunked", "--data-binary", f"@{big}", f"{gw.url}/ping/{token(gw, 'web2')}")
    assert chunked[0] == 413
    assert len(pings(gw, "web2")) == before


def test_it_keeps_the_first_10000_bytes_of_a_body_as_ping_body_limit_says(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cfg = write_config(tmp_path / "hbgw.toml", data)
    hbgw("check", "add", "logs", config=cfg)
    body = tmp_path / "body"
    body.write_text("é" * 20_000)  # 40 kB of UTF-8, under the default 1 MB read limit
    with Daemon(data, config=cfg) as d:
        tok = hbgw_json("check", "show", "logs", config=cfg)["ping_url"].rsplit("/", 1)[1]
        assert curl("--data-binary", f"@{body}", f"{d.url}/ping/{tok}") == (200, "OK\n")
        stored = pings(d, "logs")[-1][6]
    assert stored == "é" * 5_000  # 10,000 bytes: Ping-Body-Limit counts bytes, as Healthchecks' does
