"""How long the server takes to render the status page ``/`` with 1,000 checks, and how heavy it is.

Builds a data dir with 1,000 checks and a day of pings (every check every 30 minutes, some
failing, some silent, some paused) through the service, then calls the real WSGI app in-process
with a logged-in session and times whole requests (routing, authentication, the queries, the
template, gzip). Targets: < 100 ms per render, < 150 kB sent.

    .venv/bin/python bench/render_index.py [--checks 1000] [--runs 30]
"""

from __future__ import annotations

import argparse
import gzip
import io
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import machine_line, percentile, result, temp_dir, verdict
from gateway.config import Config
from gateway.model import PingKind, PingMeta
from gateway.passwords import hash_password
from gateway.service import Service
from gateway.store import Store
from web.app import create_app

TARGET_MS, TARGET_KB = 100.0, 150.0


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def populate(service: Service, clock: Clock, n: int) -> None:
    """``n`` checks with 24 h of history: every 30 min a ping from each live check."""
    start = clock.t
    names = [f"server-{i:04d}.example.net" for i in range(n)]
    tokens = [service.add_check(name, period=1800, grace=900).token for name in names]
    meta = PingMeta(source="http", remote_addr="192.0.2.10", method="GET", user_agent="curl/8.5.0")
    with ThreadPoolExecutor(32) as pool:  # concurrent writers: the store commits them in groups
        for step in range(48):
            clock.t = start + step * 1800

            def one(i: int, step: int = step) -> None:
                if i % 50 == 7 and step > 40:
                    return  # went silent: late or down now
                kind = PingKind.FAIL if (i % 97 == 3 and step % 12 == 0) else PingKind.SUCCESS
                service.record_ping(tokens[i], kind, None, meta)

            list(pool.map(one, range(n)))
    clock.t = start + 48 * 1800
    for i in range(0, n, 100):
        service.pause(names[i])


def request(app: Any, cookie: str, *, gzip_ok: bool) -> tuple[float, int, bytes]:
    """One GET / through the WSGI app: (seconds, status, body as sent)."""
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/",
        "QUERY_STRING": "",
        "SERVER_NAME": "bench",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "bench",
        "HTTP_COOKIE": cookie,
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(),
        "wsgi.errors": sys.stderr,
        "wsgi.version": (1, 0),
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    if gzip_ok:
        environ["HTTP_ACCEPT_ENCODING"] = "gzip, deflate, br"
    status: list[str] = []
    t0 = time.perf_counter()
    body = b"".join(app(environ, lambda s, h, e=None: status.append(s)))
    return time.perf_counter() - t0, int(status[0].split()[0]), body


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checks", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    print(machine_line())
    with temp_dir() as tmp:
        config = Config(data_dir=Path(tmp))
        clock = Clock(time.time() - 48 * 1800)
        store = Store(config.db_path).open()
        try:
            service = Service(store, config, clock=clock)
            t0 = time.perf_counter()
            populate(service, clock, args.checks)
            print(f"setup: {args.checks} checks, {store.total_pings()} pings in {time.perf_counter() - t0:.1f} s")
            store.set_setting("admin_password", hash_password("bench-password"))
            session = service.accounts.login("bench-password", "127.0.0.1")
            app = create_app(service, config)
            cookie = f"hbgw_session={session.token}"
            # the first render compiles the templates and reads the 23 past hours of pings
            first, status, _ = request(app, cookie, gzip_ok=True)
            assert status == 200, status
            times = [request(app, cookie, gzip_ok=True)[0] * 1000 for _ in range(args.runs)]
            _, _, plain = request(app, cookie, gzip_ok=False)
            _, _, packed = request(app, cookie, gzip_ok=True)
        finally:
            store.close()
    assert gzip.decompress(packed) == plain
    rows = plain.count(b"<tr class=")
    med, p95 = statistics.median(times), percentile(times, 95)
    sent_kb, raw_kb = len(packed) / 1000, len(plain) / 1000
    print(
        f"render / with {rows} rows: median {med:.1f} ms, p95 {p95:.1f} ms over {args.runs} runs"
        f" (target < {TARGET_MS:.0f} ms) {verdict(p95 < TARGET_MS)}"
    )
    print(f"first render after start (templates compiled, past hours' pings read once an hour): {first * 1000:.1f} ms")
    print(
        f"page weight: {sent_kb:.1f} kB sent (gzip), {raw_kb:.1f} kB uncompressed"
        f" (target < {TARGET_KB:.0f} kB) {verdict(sent_kb < TARGET_KB)}"
    )
    print("the page also loads app.css and app.js once (cached for a year by their hashed URLs)")
    result("render_index_ms", f"median {med:.1f} ms, p95 {p95:.1f} ms ({rows} checks)")
    result("render_index_kb", f"{sent_kb:.1f} kB gzip, {raw_kb:.1f} kB raw")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
