"""Benchmark: how soon after a deadline the watchdog records the flip (DESIGN §8: with 10,000
checks, p50 < 100 ms, p99 < 250 ms from the deadline).

Run from the repository root: ``.venv/bin/python bench/detection_latency.py [--checks 10000] [--quick]``.

It creates the checks directly in a temporary data dir with staggered schedules (period uniform
in [--min-period, --max-period] s, grace uniform in [0, --max-grace] s, fixed seed), starts
``hbgw serve``, pings every check once over HTTP, and then, from this process, polls the
database read-only every few milliseconds for new flip events (and, with ``--alerts``, outbox
rows) until every check is down. For each flip it compares two moments with the check's own
deadline (``late_at = anchor + period`` for up -> late, ``down_at = late_at + grace`` for the
flip to down, computed with ``gateway.rules.schedule.deadlines`` from the stored anchor):

* decided: ``events.at``, the ``now`` the watchdog evaluated the check at;
* visible: when this second process first saw the committed row (commit time plus at most
  one poll interval), i.e. what a dispatcher or a status page could act on.

The targets apply to "visible". Checks with grace 0 go up -> down directly.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    DB_NAME,
    Daemon,
    Sampler,
    create_checks,
    http_load,
    machine_line,
    percentile,
    result,
    temp_dir,
    verdict,
)

from gateway.model import Schedule
from gateway.rules import schedule as sched

TARGET_P50_MS = 100.0
TARGET_P99_MS = 250.0
ALERT_NUMBER = "+15550100000"


@dataclass
class Seen:
    """Rows the poller saw, with the wall-clock time it first saw each."""

    # event id -> (check id, events.at, new status, seen at)
    flips: dict[int, tuple[int, float, str, float]] = field(default_factory=dict)
    # outbox id -> (check id, created, kind, seen at)
    outbox: dict[int, tuple[int, float, str, float]] = field(default_factory=dict)
    polls: int = 0
    poll_seconds: float = 0.0


class Poller(threading.Thread):
    """Reads new flip events (and outbox rows) every ``interval`` s over a read-only connection."""

    def __init__(self, db: Path, interval: float, outbox: bool) -> None:
        super().__init__(name="bench-poller", daemon=True)
        self.db = db
        self.interval = interval
        self.with_outbox = outbox
        self.seen = Seen()
        self.stop_event = threading.Event()

    def run(self) -> None:
        con = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10)
        last_event = con.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0]
        last_out = 0
        if self.with_outbox:
            last_out = con.execute("SELECT coalesce(max(id), 0) FROM outbox").fetchone()[0]
        try:
            while not self.stop_event.is_set():
                t0 = time.perf_counter()
                rows = con.execute(
                    "SELECT id, check_id, at, new_status FROM events WHERE id > ? AND kind = 'flip' ORDER BY id",
                    (last_event,),
                ).fetchall()
                now = time.time()
                for rid, check_id, at, new in rows:
                    self.seen.flips[rid] = (check_id, at, new, now)
                    last_event = max(last_event, rid)
                if self.with_outbox:
                    rows = con.execute(
                        "SELECT id, check_id, created, kind FROM outbox WHERE id > ? ORDER BY id", (last_out,)
                    ).fetchall()
                    now = time.time()
                    for rid, check_id, created, kind in rows:
                        self.seen.outbox[rid] = (check_id, created, kind, now)
                        last_out = max(last_out, rid)
                self.seen.polls += 1
                self.seen.poll_seconds += time.perf_counter() - t0
                self.stop_event.wait(self.interval)
        finally:
            con.close()


def stats(values: list[float]) -> str:
    if not values:
        return "n=0"
    ms = [v * 1e3 for v in values]
    return (
        f"n={len(ms):5d}  p50 {percentile(ms, 50):7.1f}  p99 {percentile(ms, 99):7.1f}  "
        f"max {max(ms):7.1f}  min {min(ms):6.1f} ms"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=10_000)
    parser.add_argument("--min-period", type=float, default=5.0)
    parser.add_argument("--max-period", type=float, default=30.0)
    parser.add_argument("--max-grace", type=float, default=2.0)
    parser.add_argument("--poll", type=float, default=0.005, help="poll interval of the observer, s")
    parser.add_argument(
        "--alerts",
        action="store_true",
        help=f"configure [alerts] sms_to = {ALERT_NUMBER} (no modem) and also time the DOWN rows reaching the outbox",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="5,000 checks, periods 5-12 s")
    args = parser.parse_args()
    if args.quick:
        args.checks, args.max_period = min(args.checks, 5000), min(args.max_period, 12.0)

    print(
        f"detection_latency: {args.checks} checks, period {args.min_period:g}-{args.max_period:g} s,"
        f" grace 0-{args.max_grace:g} s {machine_line()}"
    )
    rng = random.Random(args.seed)
    schedules = [
        Schedule(
            period=round(rng.uniform(args.min_period, args.max_period), 3),
            grace=round(rng.uniform(0, args.max_grace), 3),
        )
        for _ in range(args.checks)
    ]
    with temp_dir() as work:
        data = work / "data"
        tokens = create_checks(data, schedules)
        daemon = Daemon(data, log_level="WARNING")
        if args.alerts:
            daemon.extra_toml = f'[alerts]\nsms_to = ["{ALERT_NUMBER}"]\n'
        with daemon:
            poller = Poller(data / DB_NAME, args.poll, args.alerts)
            poller.start()
            t_ping = time.time()
            with Sampler(daemon) as sampler:
                pinged = http_load(
                    daemon.host,
                    daemon.port,
                    [f"/ping/{t}" for t in tokens],
                    connections=16,
                    max_requests=len(tokens),
                    seconds=300,
                )
                t_pinged = time.time()
                print(
                    f"  pinged {pinged.ok} checks in {t_pinged - t_ping:.1f} s "
                    f"(non-2xx {pinged.non_2xx}, errors {pinged.errors})"
                )
                # every check flips to down after at most max_period + max_grace past its ping
                expected_down = pinged.ok
                give_up = t_pinged + args.max_period + args.max_grace + 30
                while time.time() < give_up:
                    downs = sum(1 for f in list(poller.seen.flips.values()) if f[2] == "down")
                    if downs >= expected_down:
                        break
                    time.sleep(0.2)
                time.sleep(0.2)
            poller.stop_event.set()
            poller.join()
            t_done = time.time()
            daemon.stop()
        # deadlines from what the store holds (anchor = the commit time of each check's ping)
        con = sqlite3.connect(f"file:{data / DB_NAME}?mode=ro", uri=True)
        try:
            rows = con.execute("SELECT id, period, grace, cron, tz, anchor FROM checks").fetchall()
        finally:
            con.close()
    marks: dict[int, tuple[float, float]] = {}
    for cid, period, grace, cron, tz, anchor in rows:
        m = sched.deadlines(Schedule(period, grace, cron, tz), anchor, None)
        if m is not None:
            marks[cid] = m
    seen = poller.seen
    decided: dict[str, list[float]] = {"late": [], "down": []}
    visible: dict[str, list[float]] = {"late": [], "down": []}
    during: list[float] = []  # visible delays of deadlines that fell while pings were being sent
    after: list[float] = []
    for check_id, at, new, seen_at in seen.flips.values():
        if new not in decided or check_id not in marks:
            continue
        deadline = marks[check_id][0 if new == "late" else 1]
        decided[new].append(at - deadline)
        visible[new].append(seen_at - deadline)
        (during if deadline < t_pinged else after).append(seen_at - deadline)
    during_pings = len(during)
    out_delay: list[float] = []
    if args.alerts:
        first_down: dict[int, float] = {}
        for check_id, _created, kind, seen_at in seen.outbox.values():
            if kind == "down" and check_id in marks:
                first_down[check_id] = min(first_down.get(check_id, seen_at), seen_at)
        out_delay = [t - marks[c][1] for c, t in first_down.items()]

    n_down = len(visible["down"])
    early = sum(1 for v in decided["late"] + decided["down"] if v < 0)
    print(
        f"  flips seen: {len(visible['late'])} late, {n_down} down of {args.checks} checks"
        f" ({during_pings} deadlines fell while pings were still being sent); "
        f"{early} flips before their deadline"
    )
    print(
        f"  observer: {seen.polls} polls, {seen.poll_seconds / max(1, seen.polls) * 1e3:.2f} ms each;"
        f" daemon {sampler.cpu_share:.2f} cores over {t_done - t_ping:.0f} s"
    )
    print("  delay after the deadline:")
    for kind in ("late", "down"):
        print(f"    {kind:4} decided  {stats(decided[kind])}")
        print(f"    {kind:4} visible  {stats(visible[kind])}")
    if args.alerts:
        print(f"    DOWN row in outbox {stats(out_delay)}")
    print(f"    visible, deadline during the ping phase {stats(during)}")
    print(f"    visible, deadline after it              {stats(after)}")
    both = visible["late"] + visible["down"]
    p50, p99 = percentile(both, 50) * 1e3, percentile(both, 99) * 1e3
    complete = n_down == pinged.ok and early == 0
    ok = complete and p50 < TARGET_P50_MS and p99 < TARGET_P99_MS
    print(
        f"  target: p50 < {TARGET_P50_MS:.0f} ms, p99 < {TARGET_P99_MS:.0f} ms (visible, all flips),"
        f" every check down: {verdict(ok)}"
    )
    down = visible["down"]
    worst = max(both, default=float("nan")) * 1e3
    summary = (
        f"{args.checks} checks: flip visible p50 {p50:.0f} ms, p99 {p99:.0f} ms, max {worst:.0f} ms"
        f" (down p99 {percentile(down, 99) * 1e3:.0f} ms)"
    )
    if not complete:
        summary += f"; only {n_down}/{pinged.ok} down"
    result("detection_latency", f"{summary} [{verdict(ok)}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
