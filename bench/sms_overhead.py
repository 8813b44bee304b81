"""Benchmark: per-SMS time through our own stack, end to end, with a zero-latency modem.

Run from the repository root: ``.venv/bin/python bench/sms_overhead.py [-n 300] [--text ...]``.

For each transport (a real pty, TCP on 127.0.0.1) it opens an ``AtModem`` on the simulator
(no added latency, echo left at its power-up default until ``ATE0``), then times ``N`` calls
of ``send_sms`` from the call until the simulated network recorded the message
(``Network.sent()``) and ``send_sms`` returned. What is measured is our overhead: PDU
encoding, the ``AT+CMGS`` / ``> `` / payload round trip through the reader thread and the
event loop, the simulator's own parsing, and the kernel pty / socket hops. Real modems add
0.5-5 s of radio time per part on top of this.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run without installing

from modem.driver import AtModem
from modem.simulator import Network, PtyModem, SentSms, SimOptions, Simulator, TcpModem

NUMBER = "+15551230001"
DEFAULT_TEXT = "DOWN: web-1 missed its heartbeat at 03:14 UTC (period 15m, grace 5m)"


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile ``q`` (0-100) of ``values``."""
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[k]


async def measure(url: str, net: Network, count: int, text: str) -> list[float]:
    loop = asyncio.get_running_loop()
    recorded = asyncio.Event()

    def on_sent(_: SentSms) -> None:  # called from the simulator's thread
        loop.call_soon_threadsafe(recorded.set)

    net.on_sent(on_sent)
    modem = AtModem(url)
    await modem.open()
    try:
        for _ in range(5):  # warm-up
            await modem.send_sms(NUMBER, text)
        times: list[float] = []
        for _ in range(count):
            recorded.clear()
            start = time.perf_counter()
            await modem.send_sms(NUMBER, text)
            await recorded.wait()
            times.append(time.perf_counter() - start)
        return times
    finally:
        await modem.close()


def run_one(kind: str, count: int, text: str) -> list[float]:
    net = Network()
    sim = Simulator(net, SimOptions(latency=0.0))
    transport = PtyModem(sim) if kind == "pty" else TcpModem(sim)
    with transport:
        return asyncio.run(measure(transport.device, net, count, text))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--count", type=int, default=300, help="messages per transport")
    parser.add_argument("--text", default=DEFAULT_TEXT, help="message text (default: a 1-part alert)")
    args = parser.parse_args(argv)
    print(f"sms_overhead: {args.count} messages per transport, {len(args.text)} characters each")
    for kind in ("pty", "tcp"):
        times = run_one(kind, args.count, args.text)
        p50, p99 = percentile(times, 50) * 1000, percentile(times, 99) * 1000
        rate = len(times) / sum(times)
        worst = max(times) * 1000
        print(f"  {kind}: p50 {p50:.2f} ms  p99 {p99:.2f} ms  max {worst:.2f} ms  ({rate:.0f} SMS/s)")
        print(f"RESULT sms_overhead_{kind}: p50 {p50:.2f} ms, p99 {p99:.2f} ms", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
