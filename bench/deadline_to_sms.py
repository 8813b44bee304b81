"""Deadline → SMS handed to the modem: how long after a check's deadline its DOWN SMS is in the
(zero-latency) simulated modem's hands, with 10,000 checks in the database.

The daemon drives the simulator through the real AT driver on a pty; the simulator writes a
JSON line per SMS it accepted (after ``+CMGS``), with its time. Probes are checks with a 2 s
period pinged one after another, so each goes down on its own; a burst is 100 checks pinged
together, which go down in the same second (one coalesced "servers silent" SMS is expected).

    .venv/bin/python bench/deadline_to_sms.py [--window 0] [--checks 10000] [--quick]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import (
    Daemon,
    create_checks,
    db_scalar,
    http_load,
    machine_line,
    percentile,
    result,
    temp_dir,
)
from gateway.model import Schedule

OWNER = "+15551230000"
PROBE_PERIOD = 2.0


def sim_start(link: Path, sent_log: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "simulate-modem", "--pty", str(link), "--sent-log", str(sent_log)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert proc.stdout is not None
    proc.stdout.readline()  # ready
    return proc


def sent(sent_log: Path) -> list[dict[str, Any]]:
    try:
        return [json.loads(line) for line in sent_log.read_text().splitlines() if line.strip()]
    except OSError:
        return []


def ts(iso: str) -> float:
    return dt.datetime.fromisoformat(iso).timestamp()


def wait_sms(sent_log: Path, count: int, timeout: float) -> list[dict[str, Any]]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        rows = sent(sent_log)
        if len(rows) >= count:
            return rows
        time.sleep(0.01)
    raise RuntimeError(f"expected {count} SMS, got {len(sent(sent_log))}")


def run(checks: int, probes: int, burst: int, window: float) -> dict[str, float]:
    with temp_dir() as root:
        link, log = root / "modem", root / "sent.jsonl"
        sim = sim_start(link, log)
        try:
            data = root / "data"
            background = create_checks(data, [Schedule(3600, 3600)] * checks, prefix="bg")
            probe_tokens = create_checks(data, [Schedule(PROBE_PERIOD, 0)] * probes, prefix="probe")
            burst_tokens = create_checks(data, [Schedule(6.0, 0)] * burst, prefix="burst")
            toml = (
                f'[modem]\nbackend = "at"\ndevice = "{link}"\n\n[alerts]\nsms_to = ["{OWNER}"]\n'
                f'coalesce = "{window}s"\nrepeat = "1h"\nmax_sms_per_hour = 10000\n'
            )
            with Daemon(data, extra_toml=toml, log_level="WARNING") as d:
                # every background check up, with a deadline an hour away
                load = http_load(
                    d.host, d.port, [f"/ping/{t}" for t in background], max_requests=len(background), seconds=120
                )
                assert load.ok == len(background), load
                time.sleep(0.5)
                # probes one by one, each failing on its own
                for tok in probe_tokens:
                    http_load(d.host, d.port, [f"/ping/{tok}"], connections=1, max_requests=1)
                    time.sleep(max(window, 0) + 0.7)
                rows = wait_sms(log, probes, timeout=PROBE_PERIOD + window + 30)
                lat = []
                for i in range(1, probes + 1):
                    name = f"probe-{i:05d}"
                    pinged = db_scalar(
                        data,
                        "SELECT max(p.at) FROM pings p JOIN checks c ON c.id = p.check_id WHERE c.name = ?",
                        (name,),
                    )
                    sms = next(r for r in rows if f" {name}:" in r["text"] or f" {name} " in r["text"])
                    lat.append((ts(sms["at"]) - (pinged + PROBE_PERIOD)) * 1000)
                # the burst: many checks, one deadline second
                before = len(sent(log))
                http_load(d.host, d.port, [f"/ping/{t}" for t in burst_tokens], connections=16, max_requests=burst)
                first_deadline = (
                    db_scalar(
                        data,
                        "SELECT min(p.at) FROM pings p JOIN checks c ON c.id = p.check_id WHERE c.name LIKE 'burst-%'",
                    )
                    + 6.0
                )
                last_deadline = (
                    db_scalar(
                        data,
                        "SELECT max(p.at) FROM pings p JOIN checks c ON c.id = p.check_id WHERE c.name LIKE 'burst-%'",
                    )
                    + 6.0
                )
                rows = wait_sms(log, before + 1, timeout=6 + window + 30)
                time.sleep(window + 2)  # any further burst SMS would have left by now
                burst_rows = sent(log)[before:]
                first = min(ts(r["at"]) for r in burst_rows)
        finally:
            sim.terminate()
            sim.wait(timeout=10)
            if sim.stdout:
                sim.stdout.close()
    return {
        "p50": percentile(lat, 50),
        "p99": percentile(lat, 99),
        "max": max(lat),
        "burst_first_ms": (first - first_deadline) * 1000,
        "burst_after_last_ms": (first - last_deadline) * 1000,
        "burst_spread_ms": (last_deadline - first_deadline) * 1000,
        "burst_sms": float(len(burst_rows)),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checks", type=int, default=10_000)
    ap.add_argument("--probes", type=int, default=30)
    ap.add_argument("--burst", type=int, default=100)
    ap.add_argument("--window", type=float, default=None, help="coalescing window (s); default: 0 and 3")
    ap.add_argument("--quick", action="store_true", help="1,000 checks, 10 probes, window 0 only")
    a = ap.parse_args()
    if a.quick:
        a.checks, a.probes = 1000, 10
    windows = [a.window] if a.window is not None else ([0.0] if a.quick else [0.0, 3.0])
    print(machine_line())
    for w in windows:
        r = run(a.checks, a.probes, a.burst, w)
        print(f"\ncoalesce window {w:g} s, {a.checks} checks in the database:")
        print(
            f"  single DOWN: deadline -> SMS accepted by the modem: p50 {r['p50']:.0f} ms,"
            f" p99 {r['p99']:.0f} ms, max {r['max']:.0f} ms ({a.probes} probes)"
        )
        print(
            f"  {a.burst} checks down within {r['burst_spread_ms']:.0f} ms: {r['burst_sms']:.0f} SMS;"
            f" first {r['burst_first_ms']:.0f} ms after the first deadline"
        )
        result(
            f"deadline_to_sms_window{w:g}s",
            f"p50 {r['p50']:.0f} ms, p99 {r['p99']:.0f} ms;"
            f" burst of {a.burst}: {r['burst_sms']:.0f} SMS after {r['burst_first_ms']:.0f} ms",
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
