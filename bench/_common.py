"""Shared helpers for the benchmarks: start ``hbgw serve`` on loopback, create checks fast, talk
HTTP with a small asyncio client, percentiles, machine description, ``RESULT`` lines.

Not a test helper: nothing here asserts; the scripts print what they measured. Every process a
benchmark starts is stopped by its PID, and every temporary directory is removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # let `python bench/x.py` import the project without installing it
    sys.path.insert(0, str(ROOT))

from gateway.model import Schedule  # noqa: E402
from gateway.service import new_token  # noqa: E402
from gateway.store import Store  # noqa: E402

DB_NAME = "hbgw.sqlite3"


# ------------------------------------------------------------------------------ reporting


def result(name: str, value: str) -> None:
    """The one line ``bench/run_all.py`` collects from each benchmark."""
    print(f"RESULT {name}: {value}", flush=True)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100, nearest rank) of ``values``; nan when empty."""
    if not values:
        return math.nan
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(q / 100 * len(s)) - 1))
    return s[k]


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, str]:
    return {
        "nproc": str(os.cpu_count() or "?"),
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def machine_line() -> str:
    """``(2 CPUs, <model>, Python 3.x.y)`` for a benchmark's header line."""
    m = machine_info()
    return f"({m['nproc']} CPUs, {m['cpu']}, Python {m['python']})"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


# ------------------------------------------------------------------------------ data dirs


@contextlib.contextmanager
def temp_dir(prefix: str = "hbgw-bench-") -> Iterator[Path]:
    """A fresh directory, removed afterwards (also on error or Ctrl-C)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def create_checks(data_dir: Path, schedules: Sequence[Schedule], *, prefix: str = "bench") -> list[str]:
    """Create ``len(schedules)`` checks named ``<prefix>-00001``... directly in the store (no
    daemon running); returns their ping tokens in order. The inserts are queued all at once so
    the store's writer group-commits them (seconds for 10,000 instead of minutes)."""
    from gateway.store import tx

    data_dir.mkdir(parents=True, exist_ok=True)
    tokens = [new_token() for _ in schedules]
    now = time.time()
    with Store(data_dir / DB_NAME) as store:
        futures = [
            store.submit(tx.add_check, f"{prefix}-{i:05d}", tok, sch, now, None)
            for i, (tok, sch) in enumerate(zip(tokens, schedules, strict=True), 1)
        ]
        for f in futures:
            f.result()
    return tokens


def db_scalar(data_dir: Path, sql: str, args: Sequence[Any] = ()) -> Any:
    """One value from the data dir's database, read-only (safe while the daemon runs)."""
    import sqlite3

    con = sqlite3.connect(f"file:{data_dir / DB_NAME}?mode=ro", uri=True, timeout=10)
    try:
        return con.execute(sql, tuple(args)).fetchone()[0]
    finally:
        con.close()


# ------------------------------------------------------------------------------ the daemon


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("NOTIFY_SOCKET", None)
    env["HBGW_CONFIG"] = "/nonexistent/hbgw.toml"  # never pick up a machine-wide config
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@dataclass
class Daemon:
    """``hbgw serve`` as a subprocess on 127.0.0.1, port 0. ``stop()`` signals its PID only."""

    data_dir: Path
    threads: int | None = None  # [http] threads; None = the gateway's default
    log_level: str = "INFO"
    extra_toml: str = ""  # more TOML tables for the config file
    proc: subprocess.Popen[bytes] | None = None
    host: str = ""
    port: int = 0
    spawned: float = 0.0  # perf_counter at spawn
    run_file_at: float = math.nan  # perf_counter when run.json (with our PID) appeared
    ready_at: float = math.nan  # perf_counter when /healthz first answered 200
    extra: dict[str, Any] = field(default_factory=dict)
    command: list[str] = field(default_factory=lambda: [sys.executable, "-m", "gateway"])

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}-serve.log"

    def config_path(self) -> Path:
        path = self.data_dir.parent / f"{self.data_dir.name}.toml"
        http = f"threads = {self.threads}\n" if self.threads else ""
        path.write_text(f'data_dir = "{self.data_dir}"\n\n[http]\nlisten = "127.0.0.1:0"\n{http}\n' + self.extra_toml)
        return path

    def start(self, timeout: float = 30.0) -> Daemon:
        run_file = self.data_dir / "run.json"
        run_file.unlink(missing_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [*self.command, "--log-level", self.log_level, "serve", "--config", str(self.config_path())]
        with open(self.log_path, "ab") as log:
            self.spawned = time.perf_counter()
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=log, env=_env(), cwd=self.data_dir)
        deadline = self.spawned + timeout
        info: dict[str, Any] | None = None
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"hbgw serve exited {self.proc.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(OSError, ValueError):
                info = json.loads(run_file.read_text())
            if info and info.get("pid") == self.proc.pid:
                self.run_file_at = time.perf_counter()
                break
            time.sleep(0.002)
        else:
            self.stop()
            raise RuntimeError(f"hbgw serve wrote no run.json in {timeout}s:\n{self.log_tail()}")
        assert info is not None
        self.extra = info
        self.host, port = info["http"].rsplit(":", 1)
        self.port = int(port)
        while time.perf_counter() < deadline:
            with contextlib.suppress(OSError), urllib.request.urlopen(self.base + "/healthz", timeout=2) as r:
                if r.status == 200:
                    self.ready_at = time.perf_counter()
                    return self
            time.sleep(0.002)
        self.stop()
        raise RuntimeError(f"hbgw serve did not answer /healthz in {timeout}s:\n{self.log_tail()}")

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM by PID, SIGKILL after ``timeout``; returns the exit code."""
        if self.proc is None:
            return None
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def status_kb(self, key: str = "VmRSS") -> int:
        """A ``/proc/<pid>/status`` value in kB (VmRSS, VmHWM, ...)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        raise KeyError(key)

    def cpu_seconds(self) -> float:
        """User + system CPU time the daemon has used so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def __enter__(self) -> Daemon:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ------------------------------------------------------------------------------ HTTP client


@dataclass
class LoadResult:
    """What a load run saw: status counts, latencies (seconds), errors, wall time."""

    statuses: dict[int, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> int:
        return self.statuses.get(200, 0)

    @property
    def non_2xx(self) -> int:
        return sum(n for s, n in self.statuses.items() if not 200 <= s < 300)

    @property
    def total(self) -> int:
        return sum(self.statuses.values())


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one HTTP/1.1 response; returns (status, server wants to close)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = 0
    close = False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "connection" and value.strip().lower() == "close":
            close = True
    if length:
        await reader.readexactly(length)
    return status, close


async def _worker(
    host: str,
    port: int,
    paths: Sequence[str],
    keepalive: bool,
    stop_at: float,
    sent: list[int],
    limit: int,
    res: LoadResult,
) -> None:
    conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    loop = asyncio.get_running_loop()
    hdr = "keep-alive" if keepalive else "close"
    try:
        while loop.time() < stop_at and sent[0] < limit:
            path = paths[sent[0] % len(paths)]  # shared cursor: each path once per round
            sent[0] += 1
            req = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: {hdr}\r\n\r\n".encode()
            t0 = time.perf_counter()
            try:
                if conn is None:
                    conn = await asyncio.open_connection(host, port)
                conn[1].write(req)
                status, close = await _read_response(conn[0])
            except (OSError, asyncio.IncompleteReadError, ValueError):
                res.errors += 1
                if conn is not None:
                    conn[1].close()
                conn = None
                continue
            res.latencies.append(time.perf_counter() - t0)
            res.statuses[status] = res.statuses.get(status, 0) + 1
            if close or not keepalive:
                conn[1].close()
                with contextlib.suppress(OSError):
                    await conn[1].wait_closed()
                conn = None
    finally:
        if conn is not None:
            conn[1].close()


def http_load(
    host: str,
    port: int,
    paths: Sequence[str],
    *,
    connections: int = 64,
    keepalive: bool = True,
    seconds: float = 15.0,
    max_requests: int | None = None,
) -> LoadResult:
    """GET ``paths`` in order (round-robin) over ``connections`` concurrent clients until ``seconds``
    pass or ``max_requests`` were sent (both bounds always apply); with ``max_requests=len(paths)``
    every path is requested exactly once. One request in flight per connection;
    with ``keepalive=False`` every request opens a new TCP connection (curl-from-cron style)."""
    res = LoadResult()
    limit = max_requests if max_requests is not None else 10**12
    sent = [0]

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop_at = loop.time() + seconds
        await asyncio.gather(
            *(_worker(host, port, paths, keepalive, stop_at, sent, limit, res) for _ in range(connections))
        )

    t0 = time.perf_counter()
    asyncio.run(main())
    res.seconds = time.perf_counter() - t0
    return res


# ------------------------------------------------------------------------------ wrk


WRK_LUA = r"""
-- rotates over the ping paths in PATHS_FILE; counts statuses per thread; done() prints JSON
local paths_file = "@PATHS_FILE@"
limit = @LIMIT@  -- responses per thread, then the thread stops (0: no cap)
local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
  table.insert(threads, thread)
end

function init(args)
  reqs = {}
  for line in io.lines(paths_file) do
    reqs[#reqs + 1] = wrk.format("GET", line)
  end
  n = #reqs
  i = (tid * 7919) % n
  ok = 0
  count = 0
  non2xx = 0
  s404 = 0
  s5xx = 0
end

function request()
  i = i + 1
  if i > n then i = 1 end
  return reqs[i]
end

function response(status, headers, body)
  count = count + 1
  if limit > 0 and count >= limit then wrk.thread:stop() end
  if status == 200 then
    ok = ok + 1
  elseif status < 200 or status > 299 then
    non2xx = non2xx + 1
    if status == 404 then s404 = s404 + 1 end
    if status >= 500 then s5xx = s5xx + 1 end
  end
end

function done(summary, latency, requests)
  local tok, tnon, t404, t5xx = 0, 0, 0, 0
  for _, t in ipairs(threads) do
    tok = tok + t:get("ok")
    tnon = tnon + t:get("non2xx")
    t404 = t404 + t:get("s404")
    t5xx = t5xx + t:get("s5xx")
  end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "ok": %d, "non2xx": %d, "s404": %d, ' ..
    '"s5xx": %d, "connect_errors": %d, "read_errors": %d, "write_errors": %d, ' ..
    '"timeouts": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %.1f}\n',
    summary.requests, summary.duration, tok, tnon, t404, t5xx, e.connect, e.read, e.write,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
"""


def run_wrk(
    base_url: str,
    paths: Sequence[str],
    work: Path,
    *,
    connections: int = 64,
    threads: int = 2,
    seconds: float = 15.0,
    keepalive: bool = True,
    timeout: float = 5.0,
    max_requests: int | None = None,
) -> dict[str, Any]:
    """Run wrk against ``base_url`` rotating over ``paths``; returns the counts from its Lua
    ``done()`` plus ``stdout``. ``keepalive=False`` sends ``Connection: close`` so wrk opens a
    new connection for every request; ``max_requests`` caps the responses (split over the
    threads). Raises FileNotFoundError when wrk is not installed."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise FileNotFoundError("wrk")
    paths_file = work / "paths.txt"
    paths_file.write_text("\n".join(paths) + "\n")
    script = work / "rotate.lua"
    limit = -(-max_requests // threads) if max_requests else 0
    script.write_text(WRK_LUA.replace("@PATHS_FILE@", str(paths_file)).replace("@LIMIT@", str(limit)))
    cmd = [
        wrk,
        "-t",
        str(threads),
        "-c",
        str(connections),
        "-d",
        f"{max(1, round(seconds))}s",
        "--timeout",
        f"{timeout:g}s",
        "--latency",
        "-s",
        str(script),
    ]
    if not keepalive:
        cmd += ["-H", "Connection: close"]
    cmd.append(base_url)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=seconds + 60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    for line in out.splitlines():
        if line.startswith("WRKJSON "):
            data: dict[str, Any] = json.loads(line[len("WRKJSON ") :])
            data["stdout"] = out
            return data
    raise RuntimeError(f"wrk printed no summary (exit {proc.returncode}):\n{out}")


# ------------------------------------------------------------------------------ sampling


class Sampler:
    """Samples a daemon's CPU time and RSS in a background thread while a load runs."""

    def __init__(self, daemon: Daemon, every: float = 0.5) -> None:
        self.daemon = daemon
        self.every = every
        self.max_rss_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.cpu0 = 0.0
        self.cpu1 = 0.0
        self.t0 = 0.0
        self.t1 = 0.0

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            with contextlib.suppress(OSError, KeyError):
                self.max_rss_kb = max(self.max_rss_kb, self.daemon.status_kb("VmRSS"))

    def __enter__(self) -> Sampler:
        self.cpu0, self.t0 = self.daemon.cpu_seconds(), time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.cpu1, self.t1 = self.daemon.cpu_seconds(), time.perf_counter()

    @property
    def cpu_share(self) -> float:
        """Daemon CPU use over the window, in cores (2.0 = both cores of a 2-core box)."""
        return (self.cpu1 - self.cpu0) / max(1e-9, self.t1 - self.t0)
