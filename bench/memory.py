"""Benchmark: memory of an idle daemon and its start-up time (DESIGN §8: < 40 MB RSS idle with
100 checks, < 80 MB with 10,000; start to ready < 1.5 s).

Run from the repository root: ``.venv/bin/python bench/memory.py [--sizes 100,10000] [--quick]``.

For each size it creates the checks directly in a temporary data dir, then starts
``hbgw serve`` ``--starts`` times and measures, per start, process spawn -> ``run.json`` written
-> first ``/healthz`` 200 ("ready"). On the last start it reads ``VmRSS`` from
``/proc/<pid>/status`` right after ready and after ``--idle`` seconds with no traffic (the
figure the target is about), then pings every check once over HTTP and reads it again after
another idle period ("in service": the web-page threads, the store's connections and caches have
been used), with the peak (``VmHWM``). It also reports the CPU the daemon used while idle (an
idle gateway should use ~0%) and how long SIGTERM takes to stop it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Daemon, create_checks, http_load, machine_line, result, temp_dir, verdict

from gateway.model import Schedule

TARGETS_MB = {100: 40.0, 10_000: 80.0}
TARGET_START = 1.5


def mb(kb: int) -> float:
    return kb / 1024


def measure(n: int, args: argparse.Namespace) -> dict[str, float]:
    with temp_dir() as work:
        data = work / "data"
        tokens = create_checks(data, [Schedule(period=900.0, grace=900.0)] * n)
        starts: list[tuple[float, float]] = []
        out: dict[str, float] = {}
        for k in range(args.starts):
            daemon = Daemon(data, log_level="WARNING")
            with daemon:
                starts.append((daemon.run_file_at - daemon.spawned, daemon.ready_at - daemon.spawned))
                if k < args.starts - 1:
                    continue
                out["rss_ready"] = mb(daemon.status_kb("VmRSS"))
                cpu0 = daemon.cpu_seconds()
                time.sleep(args.idle)
                out["idle_cpu"] = (daemon.cpu_seconds() - cpu0) / args.idle
                out["rss_idle"] = mb(daemon.status_kb("VmRSS"))
                out["threads"] = float(len(list(Path(f"/proc/{daemon.pid}/task").iterdir())))
                load = http_load(
                    daemon.host, daemon.port, [f"/ping/{t}" for t in tokens], connections=8, max_requests=n, seconds=120
                )
                time.sleep(args.idle)
                out["rss_service"] = mb(daemon.status_kb("VmRSS"))
                out["hwm"] = mb(daemon.status_kb("VmHWM"))
                out["pinged"] = float(load.ok)
                t0 = time.perf_counter()
                out["exit"] = float(daemon.stop() or 0)
                out["stop"] = time.perf_counter() - t0
    out["run_file"] = statistics.median(s[0] for s in starts)
    out["ready"] = statistics.median(s[1] for s in starts)
    out["ready_max"] = max(s[1] for s in starts)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,10000", help="comma-separated check counts")
    parser.add_argument("--idle", type=float, default=3.0, help="seconds of idling before reading RSS")
    parser.add_argument("--starts", type=int, default=3, help="starts per size (start time: median)")
    parser.add_argument("--quick", action="store_true", help="1 s idle, 2 starts")
    args = parser.parse_args()
    if args.quick:
        args.idle, args.starts = 1.0, 2
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]

    print(f"memory: idle RSS and start-up time {machine_line()}")
    print(
        f"  {'checks':>7} {'ready RSS':>10} {'idle RSS':>9} {'in service':>10} {'peak':>7} {'threads':>7}"
        f" {'idle CPU':>8} {'run.json':>9} {'ready':>7} {'ready max':>9} {'stop':>6}"
    )
    rows: dict[int, dict[str, float]] = {}
    for n in sizes:
        r = rows[n] = measure(n, args)
        print(
            f"  {n:7d} {r['rss_ready']:8.1f}MB {r['rss_idle']:7.1f}MB {r['rss_service']:8.1f}MB"
            f" {r['hwm']:5.1f}MB {r['threads']:7.0f} {r['idle_cpu'] * 100:7.1f}% {r['run_file']:8.2f}s"
            f" {r['ready']:6.2f}s {r['ready_max']:8.2f}s {r['stop']:5.2f}s"
        )
    ok = True
    parts = []
    for n, r in rows.items():
        target = TARGETS_MB.get(n)
        good = (target is None or r["rss_idle"] < target) and r["ready_max"] < TARGET_START
        ok = ok and good
        parts.append(
            f"{n} checks {r['rss_idle']:.1f} MB idle ({r['rss_service']:.1f} in service),"
            f" ready {r['ready']:.2f} s, idle CPU {r['idle_cpu'] * 100:.0f}%"
        )
        print(
            f"  target {n} checks: idle RSS < {target or float('nan'):.0f} MB, start < {TARGET_START} s:"
            f" {verdict(good)}"
        )
    result("memory", "; ".join(parts) + f" [{verdict(ok)}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
