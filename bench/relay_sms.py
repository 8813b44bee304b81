"""Benchmark: the box as an SMS gateway. Email-to-SMS messages accepted per second by ``hbgw
serve``'s SMTP listener, and the time from a mail's ``250`` (the SMS committed in the outbox) to
the SMS in the modem's hands (the simulator's ``+CMGS``, zero network latency).

    .venv/bin/python bench/relay_sms.py [-n 2000] [--probes 20] [--quick]

Two phases against one daemon driving the simulator through the real AT driver on a pty:

- ``latency``: ``--probes`` mails sent one at a time to ``sms@`` on an idle gateway; for each,
  the time from the ``250`` to the simulator's record of the SMS;
- ``accept``: ``-n`` mails from 8 concurrent SMTP clients, one message per connection (as
  ``mail``/``msmtp`` from a NAS or a cron job send them). A mail counts when DATA was answered
  ``250``, and afterwards the outbox must hold exactly that many relayed rows (a 250 means
  committed). The modem then works through the backlog at its own pace (not measured).

The last lines are ``RESULT relay_accept: <n>/s`` and ``RESULT relay_to_modem: p50/p99``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from deadline_to_sms import sent, sim_start, ts, wait_sms
from smtp_heartbeats import CLIENTS, SmtpError, _expect, _reply, close

from bench._common import Daemon, db_scalar, machine_line, percentile, result, temp_dir

OWNER = "+15551230000"
DOMAIN = "bench.example"


def mail(i: int) -> bytes:
    return (
        f"From: UPS daemon <upsd@nas{i % 20}.example>\r\n"
        f"To: sms@{DOMAIN}\r\n"
        f"Subject: UPS event {i}\r\n"
        f"Message-ID: <relay.{i}@nas.example>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\n"
        f"UPS on battery, runtime left 12 min (event {i})\r\n"
    ).encode()


async def send_one(host: str, port: int, i: int) -> float | None:
    """One connection, one mail; the time of its 250 (None: refused)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        await _expect(reader, 220)
        writer.write(b"EHLO nas.example\r\nMAIL FROM:<upsd@nas.example>\r\n")
        await _expect(reader, 250)
        await _expect(reader, 250)
        writer.write(f"RCPT TO:<sms@{DOMAIN}>\r\nDATA\r\n".encode())
        if await _reply(reader) != 250:
            return None
        await _expect(reader, 354)
        writer.write(mail(i) + b".\r\nQUIT\r\n")
        code = await _reply(reader)
        at = time.time()
        return at if code == 250 else None
    finally:
        await close(writer)


def accept_phase(host: str, port: int, n: int, offset: int) -> tuple[int, int, float]:
    """(accepted, errors, seconds) for ``n`` mails over CLIENTS concurrent connections."""
    accepted = errors = 0
    todo = iter(range(offset, offset + n))

    async def client() -> None:
        nonlocal accepted, errors
        for i in todo:
            try:
                if await send_one(host, port, i) is not None:
                    accepted += 1
            except (OSError, SmtpError, asyncio.IncompleteReadError):
                errors += 1

    async def main() -> None:
        await asyncio.gather(*(client() for _ in range(CLIENTS)))

    t0 = time.perf_counter()
    asyncio.run(main())
    return accepted, errors, time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--messages", type=int, default=2000)
    ap.add_argument("--probes", type=int, default=20)
    ap.add_argument("--quick", action="store_true", help="500 messages, 10 probes")
    a = ap.parse_args()
    if a.quick:
        a.messages, a.probes = 500, 10
    print(machine_line())
    with temp_dir("hbgw-bench-relay-") as root:
        link, log = root / "modem", root / "sent.jsonl"
        sim = sim_start(link, log)
        try:
            data = root / "data"
            toml = (
                f'[smtp]\nlisten = "127.0.0.1:0"\ndomain = "{DOMAIN}"\n\n'
                f'[modem]\nbackend = "at"\ndevice = "{link}"\n\n'
                f'[alerts]\nsms_to = ["{OWNER}"]\nmax_sms_per_hour = 10000\n\n'
                '[relay]\nenabled = true\nallow_from = ["127.0.0.0/8"]\nshare = 1.0\n'
                "per_sender_per_hour = 10000\n"
            )
            with Daemon(data, extra_toml=toml, log_level="WARNING") as d:
                host, port_s = d.extra["smtp"].rsplit(":", 1)
                port = int(port_s)
                latencies = []
                for i in range(a.probes):
                    before = len(sent(log))
                    accepted_at = asyncio.run(send_one(host, port, i))
                    assert accepted_at is not None, "a probe mail was refused"
                    [sms] = wait_sms(log, before + 1, timeout=30)[before:]
                    latencies.append((ts(sms["at"]) - accepted_at) * 1000)
                accepted, errors, seconds = accept_phase(host, port, a.messages, a.probes)
                stored = db_scalar(data, "SELECT count(*) FROM outbox WHERE kind = 'relay'") - a.probes
                rss = d.status_kb("VmHWM")
        finally:
            sim.terminate()
            sim.wait(timeout=10)
            if sim.stdout:
                sim.stdout.close()
    rate = accepted / seconds
    print(f"latency: mail accepted (250) -> SMS at the modem, {a.probes} probes on an idle gateway:")
    print(
        f"  p50 {percentile(latencies, 50):.0f} ms, p99 {percentile(latencies, 99):.0f} ms, max {max(latencies):.0f} ms"
        f" (the first, {latencies[0]:.0f} ms, is the first SMS since start; the rest: p99"
        f" {percentile(latencies[1:], 99):.0f} ms)"
    )
    print(f"accept: {CLIENTS} SMTP clients, one mail per connection, {a.messages} mails:")
    print(f"  {accepted} accepted ({errors} errors) in {seconds:.1f} s: {rate:.0f}/s; {stored} relayed rows stored")
    print(f"  daemon peak RSS {rss / 1024:.1f} MB")
    if stored != accepted:
        print(f"MISMATCH: {accepted} mails answered 250 but {stored} rows stored")
        return 1
    result("relay_accept", f"{rate:.0f}/s")
    result("relay_to_modem", f"p50 {percentile(latencies, 50):.0f} ms, p99 {percentile(latencies, 99):.0f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
