"""Run every benchmark in ``bench/`` and print one table of their results.

Run from the repository root: ``.venv/bin/python bench/run_all.py [--full] [--only NAME ...]``.

Each ``bench/<name>.py`` (not ``_*.py``, not this file) runs as its own process, one after the
other, with its quick options (``--quick`` when the script has it, or the entry in ``QUICK``;
``--full`` runs the full-length versions). A benchmark reports by printing lines
``RESULT <name>: <value>``; one without such a line contributes its last output line. A script
that fails or times out is reported as such and the others still run. Exit status 0 unless
``--strict`` is given and a benchmark failed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_info

BENCH = Path(__file__).resolve().parent
# Quick options for scripts that have no --quick; full runs use no options.
QUICK: dict[str, list[str]] = {
    "pdu_codec": ["--seconds", "0.1"],
    "sms_overhead": ["-n", "100"],
    "render_index": ["--runs", "5"],
}
ORDER = ["ping_throughput", "detection_latency", "memory"]  # then the others, by name
TIMEOUT = 900.0


def scripts(only: list[str]) -> list[Path]:
    found = {p.stem: p for p in BENCH.glob("*.py") if not p.name.startswith("_") and p.stem != "run_all"}
    names = [n for n in ORDER if n in found] + sorted(n for n in found if n not in ORDER)
    if only:
        names = [n for n in names if n in only]
    return [found[n] for n in names]


def options(path: Path, full: bool) -> list[str]:
    if full:
        return []
    if "--quick" in path.read_text(errors="replace"):
        return ["--quick"]
    return QUICK.get(path.stem, [])


def run(path: Path, opts: list[str]) -> tuple[list[tuple[str, str]], float, str]:
    """Run one benchmark; returns its (name, value) results, seconds taken, and a status."""
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, str(path), *opts], capture_output=True, text=True, timeout=TIMEOUT, cwd=BENCH.parent
        )
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        sys.stdout.write(out)
        return [(path.stem, f"timed out after {TIMEOUT:.0f} s")], time.perf_counter() - start, "timeout"
    seconds = time.perf_counter() - start
    sys.stdout.write(proc.stdout)
    if proc.returncode != 0:
        sys.stdout.write(proc.stderr)
    found = []
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT ") and ":" in line:
            name, _, value = line[len("RESULT ") :].partition(":")
            found.append((name.strip(), value.strip()))
    if not found:
        lines = [ln.strip() for ln in proc.stdout.splitlines() if ln.strip()]
        found = [(path.stem, lines[-1] if lines else "(no output)")]
    status = "ok" if proc.returncode == 0 else f"exit {proc.returncode}"
    return found, seconds, status


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="full-length runs (no --quick)")
    parser.add_argument("--only", nargs="*", default=[], metavar="NAME", help="run only these benchmarks")
    parser.add_argument("--strict", action="store_true", help="exit 1 if a benchmark failed")
    args = parser.parse_args()

    info = machine_info()
    started = dt.datetime.now(dt.UTC)
    rows: list[tuple[str, str, str, float]] = []
    for path in scripts(args.only):
        opts = options(path, args.full)
        print(f"=== {path.name} {' '.join(opts)}".rstrip(), flush=True)
        found, seconds, status = run(path, opts)
        rows.extend((name, value, status, seconds) for name, value in found)
        print(flush=True)

    print("=" * 100)
    print(f"heartbeat-gateway benchmarks, {started:%Y-%m-%d %H:%M} UTC ({'full' if args.full else 'quick'})")
    print(f"machine: {info['nproc']} CPUs, {info['cpu']}, Python {info['python']}, Linux {info['kernel']}")
    width = max((len(r[0]) for r in rows), default=10)
    print(f"{'benchmark':{width}}  {'status':7}  {'time':>6}  result")
    for name, value, status, seconds in rows:
        print(f"{name:{width}}  {status:7}  {seconds:5.0f}s  {value}")
    failed = any(r[2] != "ok" for r in rows)
    return 1 if failed and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
