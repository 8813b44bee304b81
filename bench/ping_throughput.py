"""Benchmark: HTTP ping ingest of ``hbgw serve`` (DESIGN §8: >= 3,000 pings/s stored, p99 < 50 ms
at 64 connections, 1,000 checks, load generator on the same box).

Run from the repository root: ``.venv/bin/python bench/ping_throughput.py [--duration 15] [--quick]``.

It creates the checks directly in a temporary data dir (period and grace 1 h, so nothing flips
during the run), starts ``hbgw serve`` on 127.0.0.1 (port 0), pings every check once (the
new -> up flips are the expensive kind; measured apart as "first pings"), then drives it with
wrk (64 connections, 2 threads, a Lua script rotating over the 1,000 ping URLs and counting
statuses), first with keep-alive, then with ``Connection: close`` (a new TCP connection per
ping, like curl from cron). Without wrk it falls back to a Python asyncio client.

Verification: every ping answered 200 must be in the store. After each phase the bench waits
for the writer to settle and compares the growth of ``sum(checks.n_pings)`` (and of the pings
table) with the number of 200s: stored >= acknowledged, and the surplus is at most the requests
still in flight when wrk stopped (<= connections + socket errors).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    Daemon,
    Sampler,
    create_checks,
    db_scalar,
    http_load,
    machine_line,
    percentile,
    result,
    run_wrk,
    temp_dir,
    verdict,
)

from gateway.model import Schedule

TARGET_RATE = 3000.0
TARGET_P99_MS = 50.0


@dataclass
class Phase:
    name: str
    client: str
    seconds: float
    ok: int
    non_2xx: int
    errors: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    stored: int
    rows: int
    cpu_cores: float
    rss_mb: float
    connections: int

    @property
    def rate(self) -> float:
        """Acknowledged (200) pings per second."""
        return self.ok / self.seconds

    @property
    def verified(self) -> bool:
        surplus = self.stored - self.ok
        return self.rows == self.stored and 0 <= surplus <= self.connections + self.errors


def stored_counts(data_dir: Path, settle: float = 0.3, timeout: float = 30.0) -> tuple[int, int]:
    """(sum of n_pings, rows in pings) once they stop changing: the writer has drained."""
    last = (-1, -1)
    deadline = time.monotonic() + timeout
    while True:
        now = (
            int(db_scalar(data_dir, "SELECT coalesce(sum(n_pings), 0) FROM checks")),
            int(db_scalar(data_dir, "SELECT count(*) FROM pings")),
        )
        if now == last or time.monotonic() > deadline:
            return now
        last = now
        time.sleep(settle)


def run_phase(
    name: str, daemon: Daemon, paths: list[str], work: Path, *, keepalive: bool, args: argparse.Namespace
) -> Phase:
    before = stored_counts(daemon.data_dir)
    seconds: float = args.duration if keepalive else args.close_duration
    client = "python"
    with Sampler(daemon) as sampler:
        if not args.python_client:
            try:
                w = run_wrk(
                    daemon.base,
                    paths,
                    work,
                    connections=args.connections,
                    threads=args.wrk_threads,
                    seconds=seconds,
                    keepalive=keepalive,
                    max_requests=args.max_requests,
                )
                client = "wrk"
            except FileNotFoundError:
                print("  (wrk not found: using the Python client)")
        if client == "python":
            r = http_load(
                daemon.host,
                daemon.port,
                paths,
                connections=args.connections,
                keepalive=keepalive,
                seconds=seconds,
                max_requests=args.max_requests,
            )
    after = stored_counts(daemon.data_dir)
    if client == "wrk":
        seconds = w["duration_us"] / 1e6
        ok, non_2xx = int(w["ok"]), int(w["non2xx"])
        errors = int(w["connect_errors"] + w["read_errors"] + w["write_errors"] + w["timeouts"])
        p50, p99, worst = w["p50_us"] / 1e3, w["p99_us"] / 1e3, w["max_us"] / 1e3
    else:
        seconds, ok, non_2xx, errors = r.seconds, r.ok, r.non_2xx, r.errors
        p50, p99, worst = (percentile(r.latencies, q) * 1e3 for q in (50, 99, 100))
    return Phase(
        name,
        client,
        seconds,
        ok,
        non_2xx,
        errors,
        p50,
        p99,
        worst,
        after[0] - before[0],
        after[1] - before[1],
        sampler.cpu_share,
        sampler.max_rss_kb / 1024,
        args.connections,
    )


def report(p: Phase) -> None:
    print(f"  {p.name} ({p.client}, {p.connections} connections, {p.seconds:.1f} s):")
    print(f"    acknowledged (200)  {p.ok:8d}   = {p.rate:7.0f} pings/s")
    print(
        f"    stored              {p.stored:8d}   (pings rows {p.rows};"
        f" {p.stored - p.ok} more than acknowledged: in flight at stop)"
    )
    print(f"    non-2xx / errors    {p.non_2xx:8d} / {p.errors}")
    print(f"    latency ms          p50 {p.p50_ms:.1f}   p99 {p.p99_ms:.1f}   max {p.max_ms:.1f}")
    print(f"    daemon              {p.cpu_cores:.2f} cores, peak RSS {p.rss_mb:.1f} MB")
    print(f"    verify              {'OK: every acknowledged ping is stored' if p.verified else 'FAILED'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--duration", type=float, default=15.0, help="seconds of keep-alive load")
    parser.add_argument(
        "--close-duration", type=float, default=10.0, help="seconds of Connection: close load (0 skips it)"
    )
    parser.add_argument("--max-requests", type=int, default=500_000, help="cap per phase")
    parser.add_argument(
        "--http-threads", type=int, default=None, help="the daemon's [http] threads (default: the gateway's default)"
    )
    parser.add_argument("--python-client", action="store_true", help="use the asyncio client, not wrk")
    parser.add_argument("--quick", action="store_true", help="5 s + 3 s instead of 15 s + 10 s")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.close_duration = 5.0, min(args.close_duration, 3.0)

    print(f"ping_throughput: {args.checks} checks, {args.connections} connections {machine_line()}")
    with temp_dir() as work:
        data = work / "data"
        t0 = time.perf_counter()
        tokens = create_checks(data, [Schedule(period=3600.0, grace=3600.0)] * args.checks)
        print(f"  created {args.checks} checks in {time.perf_counter() - t0:.2f} s")
        paths = [f"/ping/{t}" for t in tokens]
        with Daemon(data, threads=args.http_threads, log_level="WARNING") as daemon:
            first = http_load(
                daemon.host,
                daemon.port,
                paths,
                connections=min(16, args.connections),
                max_requests=len(paths),
                seconds=120,
            )
            print(
                f"  first pings (new -> up flips): {first.ok} in {first.seconds:.2f} s = "
                f"{first.ok / first.seconds:.0f}/s, p99 {percentile(first.latencies, 99) * 1e3:.1f} ms,"
                f" non-2xx {first.non_2xx}"
            )
            phases = [run_phase("keep-alive", daemon, paths, work, keepalive=True, args=args)]
            report(phases[0])
            if args.close_duration > 0:
                phases.append(run_phase("new connection per ping", daemon, paths, work, keepalive=False, args=args))
                report(phases[1])
            code = daemon.stop()
        total, rows = stored_counts(data)
        expected = first.ok + sum(p.stored for p in phases)
        consistent = total == expected and rows == total
        print(
            f"  after stop (exit {code}): sum(n_pings) {total}, pings rows {rows} "
            f"({'consistent' if consistent else 'INCONSISTENT'})"
        )

    ka = phases[0]
    ok = ka.rate >= TARGET_RATE and ka.p99_ms < TARGET_P99_MS
    all_verified = all(p.verified for p in phases) and consistent and all(p.non_2xx == 0 for p in phases)
    print(
        f"  target: >= {TARGET_RATE:.0f} pings/s stored and p99 < {TARGET_P99_MS:.0f} ms at "
        f"{args.connections} connections: {verdict(ok)}"
    )
    summary = f"{ka.rate:.0f} pings/s, p99 {ka.p99_ms:.1f} ms (keep-alive, {ka.connections} conn)"
    if len(phases) > 1:
        summary += f"; {phases[1].rate:.0f}/s, p99 {phases[1].p99_ms:.1f} ms (conn per ping)"
    summary += f"; non-2xx {sum(p.non_2xx for p in phases)}; verify {'OK' if all_verified else 'FAILED'}"
    summary += f" [{verdict(ok)}]"
    result("ping_throughput", summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
