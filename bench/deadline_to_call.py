"""Deadline → the owner's phone ringing, with the escalation ladder's first step a call: how
long after a check's deadline the simulated modem receives ``ATD<owner>;``, with 1,000 checks in
the database.

The daemon drives the simulator (its own process, with a control socket) through the real AT
driver on a pty; the simulator records each call with the time it was dialled. The simulated
phone answers "busy" at once, so one probe's call does not hold the modem for the next.

    .venv/bin/python bench/deadline_to_call.py [--checks 1000] [--probes 10] [--quick]
"""

from __future__ import annotations

import argparse
import datetime as dt
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import Daemon, create_checks, db_scalar, http_load, machine_line, percentile, result, temp_dir
from gateway.model import Schedule
from modem.simulator import SimulatorControl

OWNER = "+15551230000"
PROBE_PERIOD = 2.0


def sim_start(link: Path) -> tuple[subprocess.Popen[str], SimulatorControl]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "simulate-modem", "--pty", str(link), "--control", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # "<device> control=host:port"
    host, port = line.split("control=")[1].strip().rsplit(":", 1)
    return proc, SimulatorControl(host, int(port))


def run(checks: int, probes: int) -> dict[str, float]:
    with temp_dir() as root:
        link = root / "modem"
        sim, control = sim_start(link)
        try:
            control.set_call_outcome("busy")
            control.set_call_timing(setup=0.0)
            data = root / "data"
            background = create_checks(data, [Schedule(3600, 3600)] * checks, prefix="bg")
            probe_tokens = create_checks(data, [Schedule(PROBE_PERIOD, 0)] * probes, prefix="probe")
            toml = (
                f'[modem]\nbackend = "at"\ndevice = "{link}"\n\n'
                f'[contacts]\nowner = {{ phone = "{OWNER}" }}\n\n'
                f'[alerts]\ncoalesce = "0s"\nrepeat = "1h"\nmax_sms_per_hour = 10000\n'
                '[[alerts.escalation]]\nafter = "0m"\ncall = ["owner"]\n'
            )
            with Daemon(data, extra_toml=toml, log_level="WARNING") as d:
                load = http_load(
                    d.host, d.port, [f"/ping/{t}" for t in background], max_requests=len(background), seconds=120
                )
                assert load.ok == len(background), load
                time.sleep(0.5)
                lat = []
                for i, tok in enumerate(probe_tokens, 1):
                    http_load(d.host, d.port, [f"/ping/{tok}"], connections=1, max_requests=1)
                    calls = control.wait_calls(i, timeout=PROBE_PERIOD + 30)
                    pinged = db_scalar(
                        data,
                        "SELECT max(p.at) FROM pings p JOIN checks c ON c.id = p.check_id WHERE c.name = ?",
                        (f"probe-{i:05d}",),
                    )
                    dialled = dt.datetime.fromisoformat(calls[i - 1]["at"]).timestamp()
                    lat.append((dialled - (pinged + PROBE_PERIOD)) * 1000)
                    control.wait_calls(i, timeout=30, ended=True)
        finally:
            control.close()
            sim.terminate()
            sim.wait(timeout=10)
            if sim.stdout:
                sim.stdout.close()
    return {"p50": percentile(lat, 50), "p99": percentile(lat, 99), "max": max(lat)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checks", type=int, default=1000)
    ap.add_argument("--probes", type=int, default=30)
    ap.add_argument("--quick", action="store_true", help="10 probes")
    a = ap.parse_args()
    if a.quick:
        a.probes = 10
    print(machine_line())
    r = run(a.checks, a.probes)
    print(
        f"deadline -> ATD (the owner's phone ringing), ladder's first step a call, {a.checks} checks:"
        f" p50 {r['p50']:.0f} ms, p99 {r['p99']:.0f} ms, max {r['max']:.0f} ms ({a.probes} probes)"
    )
    result("deadline_to_call", f"p50 {r['p50']:.0f} ms, p99 {r['p99']:.0f} ms ({a.probes} probes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
