"""The modem simulator as a subprocess (``hbgw simulate-modem``) with its control socket."""

from __future__ import annotations

import subprocess
from pathlib import Path

from modem.simulator import SimulatorControl
from tests.support.daemon import HBGW, _env


class SimProcess:
    def __init__(self, link: Path, *extra: str) -> None:
        self.link = link
        self.extra = list(extra)
        self.proc: subprocess.Popen[str] | None = None
        self.control: SimulatorControl | None = None

    def start(self) -> SimProcess:
        self.proc = subprocess.Popen(
            [*HBGW, "simulate-modem", "--pty", str(self.link), "--control", "127.0.0.1:0", *self.extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=_env(),
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # "<device> control=host:port" once ready
        if "control=" not in line:
            self.stop()
            raise AssertionError(f"simulator did not start: {line!r}")
        host, port = line.split("control=")[1].strip().rsplit(":", 1)
        self.control = SimulatorControl(host, int(port))
        return self

    def stop(self) -> None:
        if self.control is not None:
            self.control.close()
            self.control = None
        if self.proc is not None:
            proc, self.proc = self.proc, None
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()

    def __enter__(self) -> SimulatorControl:
        self.start()
        assert self.control is not None
        return self.control

    def __exit__(self, *exc: object) -> None:
        self.stop()
