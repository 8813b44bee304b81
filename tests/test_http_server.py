"""The HTTP server itself (uvicorn + the ping API on its loop + Bottle through a2wsgi), spoken to
over raw sockets on loopback where curl would hide what the server does: idle and trickling
clients, stalled bodies, oversized admin bodies, garbage, pipelining. Plus the pure ping router."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.model import PingKind
from tests.support.daemon import Daemon, hbgw, hbgw_json, write_config
from tests.support.db import pings_of
from web.ping import NOT_FOUND, PingRequest, Reply, route

KEY = "site-key-0123456789"


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    root = tmp_path_factory.mktemp("http")
    data = root / "data"
    cfg = write_config(
        root / "hbgw.toml",
        data,
        http='idle_timeout = "1s"\nmax_body = 4096\n',
        extra=f'[security]\nping_key = "{KEY}"\n',
    )
    hbgw("check", "add", "web1", "--period", "1h", "--grace", "1h", config=cfg)
    with Daemon(data, config=cfg) as d:
        d.cfg = cfg  # type: ignore[attr-defined]
        yield d


def token(gw: Daemon) -> str:
    return str(hbgw_json("check", "show", "web1", config=gw.cfg)["ping_url"].rsplit("/", 1)[1])  # type: ignore[attr-defined]


def connect(gw: Daemon) -> socket.socket:
    return socket.create_connection(("127.0.0.1", gw.port), timeout=10)


def read_all(s: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    out = b""
    while chunk := s.recv(65536):
        out += chunk
    return out


def closed_within(s: socket.socket, seconds: float) -> float | None:
    """Seconds until the server closed ``s`` (reading and discarding), or None if it did not."""
    t0 = time.monotonic()
    s.settimeout(0.2)
    while time.monotonic() - t0 < seconds:
        try:
            if s.recv(65536) == b"":
                return time.monotonic() - t0
        except TimeoutError:
            continue
        except ConnectionResetError:
            return time.monotonic() - t0
    return None


def test_a_client_that_connects_and_says_nothing_is_disconnected(gw: Daemon) -> None:
    with connect(gw) as s:
        took = closed_within(s, 8)
    assert took is not None and took >= 0.5  # idle_timeout = 1s


def test_a_client_trickling_its_request_head_is_cut_off(gw: Daemon) -> None:
    with connect(gw) as s:
        t0 = time.monotonic()
        for ch in b"GET /ping/" + token(gw).encode() + b" HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200:
            try:
                s.sendall(bytes([ch]))
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(0.05)
            if time.monotonic() - t0 > 8:
                break
        took = closed_within(s, 3)
    assert took is not None
    assert time.monotonic() - t0 < 8  # each byte came well inside the timeout: only a head deadline stops it


def test_a_stalled_ping_body_gets_408_and_nothing_is_stored(gw: Daemon) -> None:
    before = len(pings_of(gw.data_dir, "web1"))
    with connect(gw) as s:
        s.sendall(f"POST /ping/{token(gw)} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly part".encode())
        s.settimeout(10)
        reply = s.recv(65536)
    assert reply.startswith(b"HTTP/1.1 408 ")
    assert len(pings_of(gw.data_dir, "web1")) == before


def test_pipelined_keep_alive_pings_each_get_an_answer_in_order(gw: Daemon) -> None:
    tok = token(gw)
    before = len(pings_of(gw.data_dir, "web1"))
    requests = (
        f"GET /ping/{tok} HTTP/1.1\r\nHost: x\r\n\r\n" * 5
        + "GET /ping/ZZZZZZZZZZZZZZZZZZZZ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    with connect(gw) as s:
        s.sendall(requests.encode())
        reply = read_all(s)
    statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", reply)
    assert statuses == [b"200"] * 5 + [b"404"]
    assert len(pings_of(gw.data_dir, "web1")) == before + 5


def test_ping_replies_carry_the_documented_headers_and_no_server_banner(gw: Daemon) -> None:
    with connect(gw) as s:
        s.sendall(f"HEAD /ping/{token(gw)} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        reply = read_all(s).decode()
    head, _, body = reply.partition("\r\n\r\n")
    headers = {k.lower(): v for k, _, v in (line.partition(": ") for line in head.split("\r\n")[1:])}
    assert head.startswith("HTTP/1.1 200 ")
    assert body == ""  # HEAD: no body, but the length of the GET reply
    assert headers["content-length"] == "3"
    assert headers["ping-body-limit"] == "4096"
    assert headers["cache-control"] == "no-store"
    assert headers["x-content-type-options"] == "nosniff"
    assert "server" not in headers


@pytest.mark.parametrize("chunked", [False, True])
def test_an_oversized_body_to_the_web_pages_is_refused_before_the_app_sees_it(gw: Daemon, chunked: bool) -> None:
    big = b"x" * 20_000  # over max_body + 1 kB
    if chunked:
        payload = (
            b"".join(b"%x\r\n%s\r\n" % (len(big[i : i + 4000]), big[i : i + 4000]) for i in range(0, len(big), 4000))
            + b"0\r\n\r\n"
        )
        framing = b"Transfer-Encoding: chunked\r\n"
    else:
        payload, framing = big, b"Content-Length: %d\r\n" % len(big)
    with connect(gw) as s:
        s.sendall(
            b"POST /login HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n" + framing + b"\r\n"
        )
        try:
            s.sendall(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass
        reply = read_all(s)
    assert reply.startswith(b"HTTP/1.1 413 "), reply[:200]
    assert b"Traceback" not in reply


def test_a_stalled_body_to_the_web_pages_gets_408_without_holding_a_page_thread(gw: Daemon) -> None:
    with connect(gw) as s:
        s.sendall(
            b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: 100\r\n\r\npassword="
        )
        s.settimeout(10)
        reply = s.recv(65536)
    assert reply.startswith(b"HTTP/1.1 408 ")


def test_garbage_gets_400_and_the_server_keeps_serving(gw: Daemon) -> None:
    with connect(gw) as s:
        s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http at all\r\n\r\n")
        reply = read_all(s)
    assert reply == b"" or reply.startswith(b"HTTP/1.1 400 ")
    assert b"Traceback" not in reply
    with connect(gw) as s:
        s.sendall(f"GET /ping/{token(gw)} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        assert read_all(s).startswith(b"HTTP/1.1 200 ")
    assert "Traceback" not in gw.log()


def test_the_web_pages_still_work_behind_the_ping_front(gw: Daemon) -> None:
    with connect(gw) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        reply = read_all(s)
    assert reply.startswith(b"HTTP/1.1 200 ") and reply.endswith(b"\r\n\r\nok\n")
    with connect(gw) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        reply = read_all(s)
    assert reply.startswith(b"HTTP/1.1 303 ") or reply.startswith(b"HTTP/1.1 302 ")  # to the login page


@pytest.mark.parametrize("path", ["/", "/ping/{token}"])
def test_a_websocket_upgrade_is_answered_as_plain_http(gw: Daemon, path: str) -> None:
    with connect(gw) as s:
        s.sendall(
            (
                f"GET {path.format(token=token(gw))} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        s.settimeout(10)
        head = s.recv(65536)
    assert not head.startswith(b"HTTP/1.1 101") and head.startswith(b"HTTP/1.1 ")
    assert b"Traceback" not in head and "Traceback" not in gw.log()


# --------------------------------------------------------------------------------- the pure router


def is_key(k: str) -> bool:
    return k == KEY


@pytest.mark.parametrize(
    ("method", "path", "want"),
    [
        ("GET", "/ping/abcdefgh", PingRequest("abcdefgh", None, PingKind.SUCCESS, None)),
        ("POST", "/ping/abcdefgh/start", PingRequest("abcdefgh", None, PingKind.START, None)),
        ("HEAD", "/ping/abcdefgh/fail", PingRequest("abcdefgh", None, PingKind.FAIL, None)),
        ("GET", "/ping/abcdefgh/log", PingRequest("abcdefgh", None, PingKind.LOG, None)),
        ("GET", "/ping/abcdefgh/0", PingRequest("abcdefgh", None, PingKind.SUCCESS, 0)),
        ("GET", "/ping/abcdefgh/255", PingRequest("abcdefgh", None, PingKind.FAIL, 255)),
        ("GET", "/ping/abcdefgh/256", Reply(400, "bad request: exit status must be 0-255")),
        ("GET", "/ping/abcdefgh/٣", NOT_FOUND),  # a non-ASCII digit is not an exit status
        ("GET", f"/ping/{KEY}/web 1", PingRequest(KEY, "web 1", PingKind.SUCCESS, None)),
        ("GET", f"/ping/{KEY}/web1/7", PingRequest(KEY, "web1", PingKind.FAIL, 7)),
        ("GET", f"/ping/{KEY}/web1/bogus", Reply(400, "bad request: unknown action")),
        ("GET", "/ping/wrong-key-12345/web1", NOT_FOUND),
        ("GET", "/ping/wrong-key-12345/web1/fail", NOT_FOUND),
        ("GET", "/ping/short", Reply(400, "bad request: malformed token")),
        ("GET", "/ping/bad token!", Reply(400, "bad request: malformed token")),
        ("PUT", "/ping/abcdefgh", Reply(400, "bad request: use GET, POST or HEAD")),
        ("GET", "/ping", NOT_FOUND),
        ("GET", "/ping/", NOT_FOUND),
        ("GET", "/ping/abcdefgh/", NOT_FOUND),
        ("GET", "/ping//abcdefgh", NOT_FOUND),
        ("GET", "/ping/a/b/c/d", NOT_FOUND),
    ],
)
def test_route(method: str, path: str, want: Reply | PingRequest) -> None:
    assert route(method, path, is_key) == want


def test_route_never_raises_on_any_path() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as hs

    @settings(deadline=None)  # a busy CI machine must not turn a pause into a failure
    @given(hs.sampled_from(["GET", "POST", "HEAD", "PUT", "get"]), hs.text(max_size=60))
    def check(method: str, tail: str) -> None:
        got = route(method, "/ping/" + tail, is_key)
        assert isinstance(got, (Reply, PingRequest))
        if isinstance(got, Reply):
            assert got.status in (400, 404) and "\n" not in got.text

    check()


def test_idle_timeout_is_configurable_and_checked(tmp_path: Path) -> None:
    from gateway.config import ConfigError, load

    cfg = write_config(tmp_path / "c.toml", tmp_path / "d", http='idle_timeout = "2m"\n')
    assert load(cfg).http.idle_timeout == 120.0
    bad = write_config(tmp_path / "bad.toml", tmp_path / "d", http='idle_timeout = "0s"\n')
    with pytest.raises(ConfigError, match="idle_timeout"):
        load(bad)
