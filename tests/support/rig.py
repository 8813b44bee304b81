"""A whole gateway for end-to-end tests: the daemon as a subprocess, a simulated modem on a real
pty (its own subprocess, driven through its control socket), and a real SMTP server on loopback
receiving the email channel."""

from __future__ import annotations

import sqlite3
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modem.simulator import SimulatorControl
from tests.support.daemon import Daemon, hbgw, hbgw_json, write_config
from tests.support.sim import SimProcess
from tests.support.smtp_sink import SmtpSink

OWNER = "+15551230000"
EMAIL = "owner@example.test"


@dataclass
class Rig:
    daemon: Daemon
    sim: SimulatorControl
    sink: SmtpSink
    cfg: Path
    data: Path

    def ping(self, *names: str, suffix: str = "") -> None:
        urls = [f"{self.daemon.url}/ping/{self.token(n)}{suffix}" for n in names]
        subprocess.run(["curl", "-fsS", "-o", "/dev/null", *urls], check=True, timeout=20)

    def token(self, name: str) -> str:
        return str(hbgw_json("check", "show", name, config=self.cfg)["ping_url"].rsplit("/", 1)[1])

    def texts(self) -> list[str]:
        return [s["text"] for s in self.sim.sent()]

    def outbox(self) -> list[tuple[Any, ...]]:
        con = sqlite3.connect(f"file:{self.data / 'hbgw.sqlite3'}?mode=ro", uri=True)
        try:
            return con.execute("SELECT channel, state, kind, attempts, error FROM outbox ORDER BY id").fetchall()
        finally:
            con.close()


def config_text(link: Path, sink: SmtpSink, alerts: str, security: str = "", modem: str = "", extra: str = "") -> str:
    return f"""
[modem]
backend = "at"
device = "{link}"
{modem}

[alerts]
sms_to = ["{OWNER}"]
email_to = ["{EMAIL}"]
tz = "UTC"
{alerts}

[email]
host = "127.0.0.1"
port = {sink.port}
tls = "none"
from = "hbgw@example.test"

[security]
{security}

{extra}
"""


@contextmanager
def rig(
    tmp_path: Path,
    checks: list[tuple[str, str, str]],
    alerts: str = 'coalesce = "0s"',
    start: bool = True,
    security: str = "",
    sim_args: Sequence[str] = (),
    modem: str = "",
    extra: str = "",
) -> Iterator[Rig]:
    """A daemon on a simulated modem (``sim_args``: ``hbgw simulate-modem`` options such as
    ``--profile``) and an SMTP sink; ``alerts``, ``security`` and ``modem`` are TOML lines for
    those sections, ``extra`` more TOML at the end ([contacts], [[alerts.escalation]])."""
    data = tmp_path / "data"
    with SmtpSink() as sink, SimProcess(tmp_path / "modem", *sim_args) as sim:
        text = config_text(tmp_path / "modem", sink, alerts, security, modem, extra)
        cfg = write_config(tmp_path / "hbgw.toml", data, extra=text)
        for name, period, grace in checks:
            hbgw("check", "add", name, "--period", period, "--grace", grace, config=cfg)
        d = Daemon(data, config=cfg)
        if start:
            d.start()
        try:
            yield Rig(d, sim, sink, cfg, data)
        finally:
            d.stop()
