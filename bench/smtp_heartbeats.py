"""Benchmark: email heartbeats per second through ``hbgw serve``'s SMTP listener.

Run from the repository root:
``.venv/bin/python bench/smtp_heartbeats.py [-n 3000] [--checks 200] [--quick]``.

It creates the checks directly in a temporary data dir (period and grace 1 h, so nothing flips
during the run), starts ``hbgw serve`` on 127.0.0.1 with ``[smtp] listen`` on port 0, mails every
check once (the new -> up flips), then drives the listener with 8 concurrent asyncio SMTP clients
on loopback, in two phases of ``-n`` messages each:

- ``per-connection``: connect, EHLO, MAIL, RCPT, DATA, QUIT for every message, as
  ``echo ok | msmtp ADDR`` from cron does;
- ``sessions``: each client keeps one connection and sends its share of the messages over it
  (MAIL/RCPT/DATA in lockstep: aiosmtpd does not offer PIPELINING), as a relay (Postfix with a
  queue) does.

Every message is a ~600-byte cron-style mail to a different check, round-robin. Verification:
a message is counted only when DATA was answered 250, and after each phase the growth of
``sum(checks.n_pings)`` must equal the number of 250s exactly (a 250 means committed).

The final line is ``RESULT smtp_heartbeats: <n>/s``, the per-connection rate (the slower, usual
case). For comparison, Healthchecks' smtpd (asyncore + Django ORM) does 130-180/s on the 2-core
box this was written on.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Daemon, create_checks, db_scalar, machine_info, percentile, result, temp_dir

from gateway.model import Schedule

CLIENTS = 8
DOMAIN = "bench.example"


@dataclass
class Phase:
    name: str
    ok: int = 0
    refused: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)  # per message, MAIL to the 250 after DATA
    stored: int = 0


class SmtpError(Exception):
    pass


def mail(token: str, i: int) -> bytes:
    return (
        f"From: Cron Daemon <root@client{i % 50}.example>\r\n"
        f"To: {token}@{DOMAIN}\r\n"
        f"Subject: Cron <root@client{i % 50}> /usr/local/bin/backup.sh\r\n"
        f"Date: Tue, 24 Nov 2026 03:14:{i % 60:02d} +0000\r\n"
        f"Message-ID: <bench.{i}@client.example>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\n"
        "rsync: sent 1,234,567 bytes  received 8,901 bytes  2,480,000 bytes/sec\r\n"
        f"backup finished in 42 s, run {i}\r\n"
    ).encode()


async def _reply(reader: asyncio.StreamReader) -> int:
    while True:
        line = await reader.readline()
        if not line:
            raise SmtpError("connection closed")
        if line[3:4] != b"-":
            return int(line[:3])


async def _expect(reader: asyncio.StreamReader, code: int) -> None:
    got = await _reply(reader)
    if got != code:
        raise SmtpError(f"expected {code}, got {got}")


async def _session(host: str, port: int, jobs: list[tuple[str, bytes]], phase: Phase) -> None:
    """One connection sending ``jobs`` (address, message) in turn."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        await _expect(reader, 220)
        writer.write(b"EHLO client.example\r\n")
        await _expect(reader, 250)
        for address, message in jobs:
            t0 = time.perf_counter()
            writer.write(b"MAIL FROM:<root@client.example>\r\n")
            await _expect(reader, 250)
            writer.write(f"RCPT TO:<{address}>\r\n".encode())
            code = await _reply(reader)
            if code != 250:
                phase.refused += 1
                writer.write(b"RSET\r\n")
                await _expect(reader, 250)
                continue
            writer.write(b"DATA\r\n")
            await _expect(reader, 354)
            writer.write(message + b".\r\n")
            code = await _reply(reader)
            if code == 250:
                phase.ok += 1
                phase.latencies.append(time.perf_counter() - t0)
            else:
                phase.refused += 1
        writer.write(b"QUIT\r\n")
        await _expect(reader, 221)
    finally:
        await close(writer)


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass


async def _client(host: str, port: int, queue: asyncio.Queue[list[tuple[str, bytes]]], phase: Phase) -> None:
    while True:
        try:
            jobs = queue.get_nowait()
        except asyncio.QueueEmpty:
            return
        try:
            await _session(host, port, jobs, phase)
        except (OSError, SmtpError, asyncio.IncompleteReadError):
            phase.errors += 1


def run_phase(name: str, host: str, port: int, tokens: list[str], n: int, per_session: int, offset: int) -> Phase:
    """Send ``n`` messages in sessions of ``per_session`` over :data:`CLIENTS` connections."""
    phase = Phase(name)
    queue: asyncio.Queue[list[tuple[str, bytes]]] = asyncio.Queue()
    batch: list[tuple[str, bytes]] = []
    for i in range(offset, offset + n):
        tok = tokens[i % len(tokens)]
        batch.append((f"{tok}@{DOMAIN}", mail(tok, i)))
        if len(batch) == per_session:
            queue.put_nowait(batch)
            batch = []
    if batch:
        queue.put_nowait(batch)

    async def main() -> None:
        await asyncio.gather(*(_client(host, port, queue, phase) for _ in range(CLIENTS)))

    t0 = time.perf_counter()
    asyncio.run(main())
    phase.seconds = time.perf_counter() - t0
    return phase


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", "--messages", type=int, default=3000, help="messages per phase")
    ap.add_argument("--checks", type=int, default=200)
    ap.add_argument(
        "--per-session", type=int, default=0, help="messages per connection in the sessions phase (default: n / 8)"
    )
    ap.add_argument("--quick", action="store_true", help="600 messages per phase (bench/run_all.py)")
    args = ap.parse_args()
    if args.quick:
        args.messages = 600

    print("machine:", ", ".join(f"{k}={v}" for k, v in machine_info().items()))
    with temp_dir("hbgw-bench-smtp-") as root:
        data = root / "data"
        tokens = create_checks(data, [Schedule(period=3600, grace=3600)] * args.checks)
        extra = f'[smtp]\nlisten = "127.0.0.1:0"\ndomain = "{DOMAIN}"\n'
        with Daemon(data, log_level="WARNING", extra_toml=extra) as d:
            host, port_s = d.extra["smtp"].rsplit(":", 1)
            port = int(port_s)

            def stored() -> int:
                return int(db_scalar(data, "SELECT coalesce(sum(n_pings), 0) FROM checks"))

            warm = run_phase("first mails (new -> up)", host, port, tokens, len(tokens), 1, 0)
            phases = [warm]
            per_session = args.per_session or max(1, args.messages // CLIENTS)
            offset = len(tokens)
            for name, size in (("per-connection", 1), ("sessions", per_session)):
                before = stored()
                ph = run_phase(name, host, port, tokens, args.messages, size, offset)
                ph.stored = stored() - before
                offset += args.messages
                phases.append(ph)
            cpu = d.cpu_seconds()
            rss = d.status_kb("VmHWM")

    print(f"{CLIENTS} clients, {args.checks} checks, {args.messages} messages per phase")
    print(
        f"{'phase':26} {'ok':>6} {'refused':>7} {'errors':>6} {'rate/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'stored':>7}"
    )
    ok = True
    for ph in phases:
        rate = ph.ok / ph.seconds if ph.seconds else 0.0
        stored_txt = str(ph.stored) if ph is not warm else "-"
        print(
            f"{ph.name:26} {ph.ok:6d} {ph.refused:7d} {ph.errors:6d} {rate:8.0f}"
            f" {percentile(ph.latencies, 50) * 1000:7.1f} {percentile(ph.latencies, 99) * 1000:7.1f}"
            f" {stored_txt:>7}"
        )
        if ph is not warm:
            ok &= ph.stored == ph.ok and ph.refused == 0 and ph.errors == 0
    print(f"daemon: {cpu:.1f} s CPU in all, peak RSS {rss / 1024:.0f} MB")
    print("verification:", "every 250 stored, nothing refused" if ok else "MISMATCH (see table)")
    per_conn = phases[1]
    result("smtp_heartbeats", f"{per_conn.ok / per_conn.seconds:.0f}/s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
