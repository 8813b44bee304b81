"""The daemon as an operating-system process: the data-dir lock (one daemon per database), the run
file (what ``hbgw status`` reads about the running daemon), and systemd's notify socket.

Nothing here touches the store; ``hbgw status`` and ``hbgw serve`` both use it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
from pathlib import Path
from typing import Any

RUN_FILE = "run.json"


class AlreadyRunning(OSError):
    """Another ``hbgw serve`` holds the data dir."""


class DataDirLock:
    """One daemon per data dir: an exclusive ``flock`` on ``hbgw.lock``, held for the life of
    the process. The kernel drops it when the process ends however it ends (``kill -9``
    included), so a stale lock file is harmless. Two daemons on one database would both flip
    checks and both send every alert, and fight over the modem."""

    NAME = "hbgw.lock"

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / self.NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock and write our PID into it. Raises AlreadyRunning when another process
        holds it, OSError when the file cannot be opened."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = _read_pid(fd)
                raise AlreadyRunning(
                    f"another hbgw serve is running on {self.path.parent}" + (f" (pid {pid})" if pid else "")
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the lock
            self._fd = None

    @classmethod
    def holder(cls, data_dir: Path) -> int | None:
        """The PID of the daemon holding ``data_dir`` (0 if it cannot be read), or None."""
        try:
            fd = os.open(data_dir / cls.NAME, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_pid(fd) or 0
        finally:
            os.close(fd)
        return None


def _read_pid(fd: int) -> int | None:
    text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else None


# ------------------------------------------------------------------------------ the run file


def write_run_file(data_dir: Path, info: dict[str, Any]) -> None:
    """Publish what the running daemon is (pid, bound addresses); replaced atomically."""
    path = data_dir / RUN_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(info) + "\n")
    tmp.replace(path)


def read_run_file(data_dir: Path) -> dict[str, Any] | None:
    """What a running daemon wrote about itself (pid, bound addresses), or None."""
    try:
        info: dict[str, Any] = json.loads((data_dir / RUN_FILE).read_text())
    except (OSError, ValueError):
        return None
    return info


def remove_run_file(data_dir: Path) -> None:
    """Forget the run file (the daemon is stopping); no error when it is already gone."""
    with contextlib.suppress(OSError):
        (data_dir / RUN_FILE).unlink()


# ---------------------------------------------------------------------------------- systemd


def running_daemon(data_dir: Path) -> int | None:
    """The PID of an ``hbgw serve`` running on ``data_dir`` (0 if unknown), or None. The data
    dir's lock says it; the run file (a stale one ignored) when the lock file is not readable
    by this user."""
    holder = DataDirLock.holder(data_dir)
    if holder is not None:
        return holder
    info = read_run_file(data_dir)
    pid = info.get("pid") if info else None
    if not isinstance(pid, int):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return pid if b"hbgw" in cmdline or b"gateway" in cmdline else None


def sd_notify(message: str) -> None:
    """Tell systemd (Type=notify) ``message``; a no-op outside systemd."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.connect(addr)
        s.sendall(message.encode())


def watchdog_every(default: float) -> float:
    """How often to send ``WATCHDOG=1``: ``default``, or twice per ``WatchdogSec=`` when systemd
    set one for this process (``WATCHDOG_USEC``/``WATCHDOG_PID``)."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    if usec.isdigit() and int(usec) > 0 and os.environ.get("WATCHDOG_PID") in (None, str(os.getpid())):
        return min(default, int(usec) / 2e6)
    return default
