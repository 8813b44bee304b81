"""The HTTP server itself (uvicorn + the ping API on its loop + Bottle through a2wsgi), spoken to
over raw sockets on loopback where curl would hide what the server does: idle and trickling
clients, stalled bodies, oversized admin bodies and heads, garbage, pipelining, connection floods
(from 127.0.0.2: all of 127/8 is loopback, but only 127.0.0.1 is exempt from the per-address cap).
Plus the pure ping router."""

from __future__ import annotations

import re
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.model import PingKind
from tests.support.daemon import Daemon, hbgw, hbgw_json, wait_for, write_config
from tests.support.db import pings_of
from web.ping import NOT_FOUND, PingRequest, Reply, route

KEY = "site-key-0123456789"
# The documented limits (README, Ping API), spelled out rather than imported from web.server so
# that these tests also run, and fail, against a server without them.
HEAD_MAX = 16 * 1024
HEAD_FIELDS_MAX = 100
PER_ADDRESS_MAX = 64


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


def connect(gw: Daemon, source: str = "127.0.0.1") -> socket.socket:
    return socket.create_connection(("127.0.0.1", gw.port), timeout=10, source_address=(source, 0))


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


def statuses_of(reply: bytes) -> list[bytes]:
    return re.findall(rb"HTTP/1\.1 (\d{3}) ", reply)


def ping_head(tok: str, fields: int = 2, pad: int = 0) -> bytes:
    """A ping's request head with ``fields`` header fields (``Connection: close`` among them),
    ``pad`` bytes in the value of one of them."""
    head = f"GET /ping/{tok} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n".encode()
    if pad:
        head += b"X-Pad: " + b"a" * pad + b"\r\n"
    head += b"X-F: 1\r\n" * (fields - 2 - (1 if pad else 0))
    return head + b"\r\n"


def sized_head(tok: str, size: int) -> bytes:
    """A ping's request head of exactly ``size`` bytes."""
    head = ping_head(tok, 3, pad=size - len(ping_head(tok, 3, pad=1)) + 1)
    assert len(head) == size
    return head


@pytest.mark.parametrize(
    ("what", "make", "status"),
    [
        ("head of exactly the limit", lambda t: sized_head(t, HEAD_MAX), b"200"),
        ("head one byte over", lambda t: sized_head(t, HEAD_MAX + 1), b"431"),
        ("the limit of fields", lambda t: ping_head(t, HEAD_FIELDS_MAX), b"200"),
        ("one field over", lambda t: ping_head(t, HEAD_FIELDS_MAX + 1), b"431"),
    ],
)
def test_it_bounds_the_request_head_with_431(gw: Daemon, what: str, make: Any, status: bytes) -> None:
    """Fails on the server before the limits: every one of these was answered 200."""
    before = len(pings_of(gw.data_dir, "web1"))
    with connect(gw) as s:
        s.sendall(make(token(gw)))
        reply = read_all(s)  # and then the server closes (Connection: close, or after the 431)
    assert statuses_of(reply) == [status], (what, reply[:200])
    if status == b"431":
        assert b"connection: close" in reply.lower() and b"header fields too large" in reply
    assert len(pings_of(gw.data_dir, "web1")) == before + (status == b"200")


class PeakRss:
    """The peak RSS of process ``pid`` from now on (Linux: clear_refs 5 resets VmHWM)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        self.start = self.kib("VmRSS")

    def kib(self, field: str) -> int:
        with open(f"/proc/{self.pid}/status") as f:
            line = next(line for line in f if line.startswith(field + ":"))
        return int(line.split()[1])

    def growth_mib(self) -> float:
        return (self.kib("VmHWM") - self.start) / 1024


def send_until_answered(s: socket.socket, data: bytes, timeout: float = 60) -> tuple[bytes, int]:
    """Send ``data`` until the server answers (then stop sending) and read until it closes.
    Returns (reply, bytes sent)."""
    s.setblocking(False)
    view, sent, reply = memoryview(data), 0, b""
    deadline = time.monotonic() + timeout
    sending = True
    while time.monotonic() < deadline:
        readable, writable, _ = select.select([s], [s] if sending else [], [], 1.0)
        if readable:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            reply += chunk
            sending = False  # the server has decided
        elif writable:
            try:
                sent += s.send(view[sent : sent + 65536])
            except (BrokenPipeError, ConnectionResetError):
                sending = False
            sending = sending and sent < len(data)
    return reply, sent


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda t: sized_head(t, 16 * 1024 * 1024), id="one 16 MB header"),
        pytest.param(lambda t: ping_head(t, 200_000), id="200,000 header fields"),
        pytest.param(
            lambda t: (
                f"POST /ping/{t} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
                + b"3\r\nabc\r\n0\r\nX-Trailer: "
                + b"a" * 16 * 1024 * 1024
                + b"\r\n\r\n"
            ),
            id="a 16 MB trailer after a chunked body",
        ),
    ],
)
def test_a_huge_request_head_is_cut_off_without_growing_memory(gw: Daemon, make: Any) -> None:
    """Fails on the server before the limits: it read all of it (peak RSS +32 MiB for the 16 MB
    header, +23 MiB for the fields, +45 MiB for the trailer) and answered 200."""
    assert gw.proc is not None
    data = make(token(gw))
    peak = PeakRss(gw.proc.pid)
    with connect(gw) as s:
        reply, sent = send_until_answered(s, data)
    assert peak.growth_mib() < 4, f"peak RSS grew {peak.growth_mib():.1f} MiB after {sent} bytes"
    assert statuses_of(reply) == [b"431"], reply[:200]
    with connect(gw) as s:  # still serving
        s.sendall(f"GET /ping/{token(gw)} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        assert read_all(s).startswith(b"HTTP/1.1 200 ")


@pytest.mark.parametrize(
    ("tail", "status"),
    [
        pytest.param(b"\x16\x03\x01 not http at all\r\n\r\n", b"400", id="garbage"),
        pytest.param(b"GET /ping/x HTTP/1.1\r\n" + b"X-F: 1\r\n" * 200 + b"\r\n", b"431", id="oversized head"),
    ],
)
def test_pipelined_pings_before_a_bad_request_are_all_answered_before_it(
    gw: Daemon, tail: bytes, status: bytes
) -> None:
    """Fails on the server before: the 400 went out at once and closed the connection, so four of
    the five pings were never answered (nor stored)."""
    tok = token(gw)
    before = len(pings_of(gw.data_dir, "web1"))
    with connect(gw) as s:
        s.sendall(f"GET /ping/{tok} HTTP/1.1\r\nHost: x\r\n\r\n".encode() * 5 + tail)
        reply = read_all(s)
    assert statuses_of(reply) == [b"200"] * 5 + [status]
    assert len(pings_of(gw.data_dir, "web1")) == before + 5


@pytest.fixture(scope="module")
def gw30(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """A gateway with the default 30 s idle timeout, so idle connections stay for the whole test."""
    root = tmp_path_factory.mktemp("http30")
    cfg = write_config(root / "hbgw.toml", root / "data")
    hbgw("check", "add", "web1", "--period", "1h", "--grace", "1h", config=cfg)
    with Daemon(root / "data", config=cfg) as d:
        d.cfg = cfg  # type: ignore[attr-defined]
        yield d


def ping_from(gw: Daemon, source: str) -> bytes:
    with connect(gw, source) as s:
        s.sendall(f"GET /ping/{token(gw)} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        return read_all(s)


def test_one_address_holding_1100_idle_connections_cannot_starve_another(gw30: Daemon) -> None:
    """Fails on the server before the per-address cap: the 1,100 idle connections passed the
    global limit (1,000), and the other address's ping was answered 503."""
    held = [connect(gw30, "127.0.0.2") for _ in range(1100)]
    try:
        assert ping_from(gw30, "127.0.0.3").startswith(b"HTTP/1.1 200 ")
        for s in held[PER_ADDRESS_MAX:]:  # refused at once, with a reason, and closed
            reply = read_all(s)
            assert reply.startswith(b"HTTP/1.1 503 ") and b"too many connections" in reply, reply[:200]
        quiet, _, _ = select.select(held[:PER_ADDRESS_MAX], [], [], 0)
        assert quiet == []  # the first 64 are still open, waiting for their request
        with held[0] as s:  # and they are served
            s.sendall(f"GET /ping/{token(gw30)} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            assert read_all(s).startswith(b"HTTP/1.1 200 ")
    finally:
        for s in held:
            s.close()
    # once they are closed, the address gets in again
    wait_for(lambda: ping_from(gw30, "127.0.0.2").startswith(b"HTTP/1.1 200 "), what="127.0.0.2 served again")
    assert "Traceback" not in gw30.log()


def test_loopback_and_trusted_proxies_are_not_capped() -> None:
    """A reverse proxy carries all its clients on one address, and the ping bench drives 64
    connections from 127.0.0.1: neither may be capped. (A plain ASGI app on web.server's server.)"""
    from web.server import HttpServer

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"3")]})
        await send({"type": "http.response.body", "body": b"OK\n"})

    server = HttpServer(app, "127.0.0.1", 0, per_address=3, trusted_proxies=("127.0.0.4/32",)).start()
    host, port = server.address
    held: list[socket.socket] = []
    try:

        def served(source: str) -> bytes:
            s = socket.create_connection((host, port), timeout=10, source_address=(source, 0))
            held.append(s)
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            return s.recv(65536)

        for source in ("127.0.0.1", "127.0.0.4"):
            assert all(served(source).startswith(b"HTTP/1.1 200 ") for _ in range(10)), source
        assert [served("127.0.0.5")[:12] for _ in range(4)] == [b"HTTP/1.1 200"] * 3 + [b"HTTP/1.1 503"]
    finally:
        for s in held:
            s.close()
        server.stop()


def test_ping_replies_carry_the_documented_headers_and_no_server_banner(gw: Daemon) -> None:
    with connect(gw) as s:
        s.sendall(f"HEAD /ping/{token(gw)} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        reply = read_all(s).decode()
    head, _, body = reply.partition("\r\n\r\n")
    headers = {k.lower(): v for k, _, v in (line.partition(": ") for line in head.split("\r\n")[1:])}
    assert head.startswith("HTTP/1.1 200 ")
    assert body == ""  # HEAD: no body, but the length of the GET reply
    assert headers["content-length"] == "3"
    assert headers["ping-body-limit"] == "10000"  # bytes stored; max_body (4096 here) is what is read
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
        ("GET", "/ping/abcdefgh/", PingRequest("abcdefgh", None, PingKind.SUCCESS, None)),  # Healthchecks: 200
        ("GET", "/ping/abcdefgh/fail/", PingRequest("abcdefgh", None, PingKind.FAIL, None)),
        ("GET", f"/ping/{KEY}/web1/", PingRequest(KEY, "web1", PingKind.SUCCESS, None)),
        ("GET", "/ping/abcdefgh//", NOT_FOUND),
        ("GET", "/ping//abcdefgh", NOT_FOUND),
        ("GET", "/ping/a/b/c/d", NOT_FOUND),
    ],
)
def test_route(method: str, path: str, want: Reply | PingRequest) -> None:
    assert route(method, path, is_key) == want


RID = "5f3c9a4e-2b1d-4c8e-9f7a-0123456789ab"


@pytest.mark.parametrize(
    ("path", "query", "want"),
    [
        ("/ping/abcdefgh/start", f"rid={RID}", PingRequest("abcdefgh", None, PingKind.START, None, rid=RID)),
        ("/ping/abcdefgh", "rid=not-a-uuid", Reply(400, "bad request: rid must be a UUID")),
        (f"/ping/{KEY}/db-backup", "create=1", PingRequest(KEY, "db-backup", PingKind.SUCCESS, None, create=True)),
        (f"/ping/{KEY}/db-backup", "create=yes", PingRequest(KEY, "db-backup", PingKind.SUCCESS, None)),
        ("/ping/abcdefgh", "create=1", PingRequest("abcdefgh", None, PingKind.SUCCESS, None)),  # tokens: no create
        ("/api/push/abcdefgh", "", PingRequest("abcdefgh", None, PingKind.SUCCESS, None, kuma=True)),
        (
            "/api/push/abcdefgh",
            "status=down&msg=disk%20full&ping=12",
            PingRequest("abcdefgh", None, PingKind.FAIL, None, kuma=True, note="disk full (ping 12 ms)"),
        ),
        ("/api/push/abcdefgh", "status=maybe", Reply(400, '{"ok":false,"msg":"status must be up or down"}')),
        ("/api/push/bad!", "", Reply(404, '{"ok":false,"msg":"Monitor not found or not active."}')),
    ],
)
def test_route_reads_the_query(path: str, query: str, want: Reply | PingRequest) -> None:
    assert route("GET", path, is_key, query) == want


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
