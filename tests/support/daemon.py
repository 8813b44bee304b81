"""Run the real ``hbgw`` as a subprocess on loopback, with its own temp data dir and config."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HBGW = [sys.executable, "-m", "gateway"]


def hbgw(
    *args: str,
    data_dir: Path | None = None,
    config: Path | None = None,
    input: str | None = None,
    check: bool = True,
    timeout: float = 30,
) -> subprocess.CompletedProcess[str]:
    """Run one ``hbgw`` CLI command and return its result (stdout/stderr as text)."""
    cmd = [*HBGW, *args]
    if config is not None:
        cmd += ["--config", str(config)]
    elif data_dir is not None:
        cmd += ["--data-dir", str(data_dir)]
    proc = subprocess.run(cmd, capture_output=True, text=True, input=input, timeout=timeout, env=_env())
    if check and proc.returncode != 0:
        raise AssertionError(f"hbgw {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
    return proc


def hbgw_json(*args: str, **kw: Any) -> Any:
    return json.loads(hbgw(*args, "--json", **kw).stdout)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("NOTIFY_SOCKET", None)
    env["HBGW_CONFIG"] = "/nonexistent/hbgw.toml"  # never pick up a machine-wide config
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    return env


def write_config(path: Path, data_dir: Path, extra: str = "", http: str = "") -> Path:
    """A minimal config: loopback HTTP on a free port, the given data dir, ``http`` lines added to
    the [http] table, then ``extra`` TOML tables."""
    path.write_text(f'data_dir = "{data_dir}"\n\n[http]\nlisten = "127.0.0.1:0"\n{http}\n' + extra)
    return path


class Daemon:
    """``hbgw serve`` in a subprocess. ``start()`` waits until it answers; ``stop()`` by PID."""

    def __init__(self, data_dir: Path, *, config: Path | None = None, args: Sequence[str] = ()) -> None:
        self.data_dir = data_dir
        self.config = config
        self.args = list(args)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / f"{data_dir.name}-serve.log"
        self.info: dict[str, Any] = {}

    @property
    def url(self) -> str:
        return f"http://{self.info['http']}"

    @property
    def port(self) -> int:
        return int(self.info["http"].rsplit(":", 1)[1])

    def start(self, timeout: float = 20) -> Daemon:
        run_file = self.data_dir / "run.json"
        run_file.unlink(missing_ok=True)
        cmd = [*HBGW, "serve"]
        cmd += (
            ["--config", str(self.config)]
            if self.config
            else ["--data-dir", str(self.data_dir), "--http", "127.0.0.1:0"]
        )
        cmd += self.args
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the child's lifetime
        try:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=log, env=_env())
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"hbgw serve exited {self.proc.returncode}:\n{self.log()}")
            try:
                info = json.loads(run_file.read_text())
            except (OSError, ValueError):
                info = None
            if info and info.get("pid") == self.proc.pid:
                self.info = info
                return self
            time.sleep(0.02)
        self.stop()
        raise AssertionError(f"hbgw serve did not become ready:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int | None:
        """Stop the daemon by its PID and return its exit code."""
        if self.proc is None:
            return None
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    def kill9(self) -> None:
        self.stop(signal.SIGKILL)

    def __enter__(self) -> Daemon:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_for(predicate: Any, timeout: float = 10.0, interval: float = 0.02, what: str = "condition") -> Any:
    """Poll ``predicate()`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
