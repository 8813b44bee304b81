"""Serving a simulated modem to a host: on a pseudo-terminal (:class:`PtyModem`) or a
loopback TCP port (:class:`TcpModem`), from one background thread, with USB-style
unplug/replug."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import pty
import select
import socket
import threading
import tty
from types import TracebackType

from modem.sim.device import Simulator

# Named as before the split into modules: log filters select "modem.simulator".
logger = logging.getLogger(__name__)

_MAX_PENDING_WRITE = 1 << 16


class _Transport:
    """Serves one :class:`Simulator` from one background thread (select loop)."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._wake_r = -1
        self._wake_w = -1
        self._state_lock = threading.Lock()
        self._started = False
        self._plugged = False

    # -- public lifecycle

    def start(self) -> _Transport:
        with self._state_lock:
            if not self._started:
                self._started = True
                self._plug()
        return self

    def unplug(self) -> None:
        """Like pulling the USB cable: the port vanishes and the modem loses power."""
        with self._state_lock:
            if self._plugged:
                self.sim.power_off()
                self._unplug()
                logger.info("simulator: unplugged")

    def replug(self) -> None:
        """The port comes back (a fresh power-up: PIN and SIM-busy phase again, storage kept)."""
        with self._state_lock:
            if self._started and not self._plugged:
                self._plug()
                self.sim.power_on()
                logger.info("simulator: replugged")

    def stop(self) -> None:
        """Idempotent: stops the thread and closes every descriptor."""
        with self._state_lock:
            if self._plugged:
                self._unplug()
            self._started = False

    @property
    def plugged(self) -> bool:
        return self._plugged

    def __enter__(self) -> _Transport:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- plumbing

    def _plug(self) -> None:
        self._open_endpoint()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._stopping = False
        self.sim.set_waker(self._wake)
        self._thread = threading.Thread(target=self._run, name=type(self).__name__, daemon=True)
        self._thread.start()
        self._plugged = True

    def _unplug(self) -> None:
        self._stopping = True
        self._wake()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.sim.set_waker(None)
        os.close(self._wake_r)
        os.close(self._wake_w)
        self._wake_r = self._wake_w = -1
        self._close_endpoint()
        self._plugged = False

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # pipe full (already awake) or closed (stopping)
            os.write(self._wake_w, b"\0")

    def _run(self) -> None:
        pending = bytearray()
        try:
            while not self._stopping:
                data, wait = self.sim.read_output()
                out_fd = self._out_fd()
                if data and out_fd is not None and len(pending) < _MAX_PENDING_WRITE:
                    pending += data
                if out_fd is None:
                    pending.clear()
                readers = [self._wake_r, *self._in_fds()]
                writers = [out_fd] if pending and out_fd is not None else []
                readable, writable, _ = select.select(readers, writers, [], wait)
                if self._wake_r in readable:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_r, 4096)
                if writable and pending:
                    sent = self._write(bytes(pending))
                    del pending[:sent]
                for fd in readable:
                    if fd != self._wake_r:
                        self._on_readable(fd)
        except Exception:
            logger.exception("simulator: transport thread crashed")

    # -- per-transport hooks

    def _open_endpoint(self) -> None:
        raise NotImplementedError

    def _close_endpoint(self) -> None:
        raise NotImplementedError

    def _in_fds(self) -> list[int]:
        raise NotImplementedError

    def _out_fd(self) -> int | None:
        raise NotImplementedError

    def _on_readable(self, fd: int) -> None:
        raise NotImplementedError

    def _write(self, data: bytes) -> int:
        raise NotImplementedError


class PtyModem(_Transport):
    """Serves a simulator on a pseudo-terminal. Open :attr:`device` with pyserial or gammu.

    We keep the slave side open ourselves so hosts can open and close the
    device repeatedly (and reads on the master never see EIO between hosts).
    """

    def __init__(self, sim: Simulator, link: str | None = None) -> None:
        super().__init__(sim)
        self.link = link
        self._master = -1
        self._slave = -1
        self._tty_name = ""

    @property
    def device(self) -> str:
        """The path a driver opens: the link if one was given, else the slave tty."""
        return self.link if self.link else self._tty_name

    def start(self) -> PtyModem:
        super().start()
        return self

    def __enter__(self) -> PtyModem:
        return self.start()

    def _open_endpoint(self) -> None:
        self._master, self._slave = pty.openpty()
        # Raw, so the line discipline neither echoes our output back to us nor rewrites CR/LF.
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self._tty_name = os.ttyname(self._slave)
        if self.link:
            tmp = f"{self.link}.tmp{os.getpid()}"
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            os.symlink(self._tty_name, tmp)
            os.replace(tmp, self.link)

    def _close_endpoint(self) -> None:
        if self.link:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.link)
        for fd in (self._master, self._slave):
            if fd >= 0:
                os.close(fd)
        self._master = self._slave = -1

    def _in_fds(self) -> list[int]:
        return [self._master]

    def _out_fd(self) -> int | None:
        return self._master

    def _on_readable(self, fd: int) -> None:
        try:
            data = os.read(self._master, 4096)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno != errno.EIO:
                raise
            return
        self.sim.feed(data)

    def _write(self, data: bytes) -> int:
        try:
            return os.write(self._master, data)
        except BlockingIOError:
            return 0


class TcpModem(_Transport):
    """Serves a simulator on a TCP port (``socket://host:port`` for pyserial), one host at a time.

    A new connection replaces the previous one, like ser2net with a stale
    client. ``unplug`` drops the connection and refuses new ones until ``replug``.
    """

    def __init__(self, sim: Simulator, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(sim)
        self.host = host
        self.port = port
        self._listener: socket.socket | None = None
        self._client: socket.socket | None = None

    @property
    def url(self) -> str:
        return f"socket://{self.host}:{self.port}"

    @property
    def device(self) -> str:
        return self.url

    def start(self) -> TcpModem:
        super().start()
        return self

    def __enter__(self) -> TcpModem:
        return self.start()

    def _open_endpoint(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self.host, self.port))
            listener.listen(4)
            listener.setblocking(False)
        except OSError:
            listener.close()
            raise
        self.port = listener.getsockname()[1]
        self._listener = listener

    def _close_endpoint(self) -> None:
        self._drop_client()
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def _drop_client(self) -> None:
        if self._client is not None:
            with contextlib.suppress(OSError):
                self._client.shutdown(socket.SHUT_RDWR)
            self._client.close()
            self._client = None

    def _in_fds(self) -> list[int]:
        fds = [self._listener.fileno()] if self._listener is not None else []
        if self._client is not None:
            fds.append(self._client.fileno())
        return fds

    def _out_fd(self) -> int | None:
        return self._client.fileno() if self._client is not None else None

    def _on_readable(self, fd: int) -> None:
        if self._listener is not None and fd == self._listener.fileno():
            try:
                conn, _ = self._listener.accept()
            except BlockingIOError:
                return
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._drop_client()
            self._client = conn
            return
        if self._client is None or fd != self._client.fileno():
            return
        try:
            data = self._client.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._drop_client()
            return
        self.sim.feed(data)

    def _write(self, data: bytes) -> int:
        if self._client is None:
            return len(data)
        try:
            return self._client.send(data)
        except BlockingIOError:
            return 0
        except OSError:
            self._drop_client()
            return len(data)
