"""Debian's nginx as a TLS reverse proxy in a subprocess, with a throwaway self-signed certificate.

The server block is the one docs/reverse-proxy.md tells people to use (read from that file), with
only the addresses, the certificate paths and the upstream port filled in for the test.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "reverse-proxy.md"


def available() -> bool:
    return bool(shutil.which("nginx") or Path("/usr/sbin/nginx").exists()) and bool(shutil.which("openssl"))


def nginx_binary() -> str:
    return shutil.which("nginx") or "/usr/sbin/nginx"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost; returns (cert, key)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return cert, key


def documented_server_block() -> str:
    """The first ```nginx block of docs/reverse-proxy.md."""
    m = re.search(r"```nginx\n(.*?)```", DOC.read_text(), re.S)
    if not m:
        raise AssertionError(f"no ```nginx block in {DOC}")
    return m.group(1)


def adapt(block: str, *, listen: str, cert: Path, key: Path, upstream: int) -> str:
    """The documented block with the test's addresses and files (nothing else changes)."""
    out = re.sub(r"\n[ \t]*listen \[::\][^;]*;", "", block)  # one listen line is enough here
    out, n = re.subn(r"listen [^;]+;", f"listen {listen} ssl;", out)
    out = re.sub(r"server_name [^;]+;", "server_name localhost;", out)
    out = re.sub(r"ssl_certificate [^;]+;", f"ssl_certificate {cert};", out)
    out = re.sub(r"ssl_certificate_key [^;]+;", f"ssl_certificate_key {key};", out)
    out = re.sub(r"proxy_pass http://127\.0\.0\.1:\d+;", f"proxy_pass http://127.0.0.1:{upstream};", out)
    if n == 0 or f":{upstream};" not in out:
        raise AssertionError("the documented server block has no listen / proxy_pass line to adapt")
    return out


class Nginx:
    """``nginx -p DIR -c nginx.conf -g 'daemon off;'`` proxying https://127.0.0.1:<port> to
    ``upstream`` (a port on 127.0.0.1). ``start()`` waits until it accepts connections."""

    def __init__(self, directory: Path, upstream: int) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.upstream = upstream
        self.port = free_port()
        self.cert, self.key = make_certificate(self.dir)
        self.proc: subprocess.Popen[bytes] | None = None

    def config(self) -> str:
        d = self.dir
        server = adapt(
            documented_server_block(),
            listen=f"127.0.0.1:{self.port}",
            cert=self.cert,
            key=self.key,
            upstream=self.upstream,
        )
        # Run as root in CI: keep the workers root too, so they can use the temp dirs below.
        user = "user root;\n" if os.geteuid() == 0 else ""
        temps = "".join(
            f"  {kind}_temp_path {d}/{kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        return (
            f"{user}worker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n"
            "events { worker_connections 64; }\n"
            f"http {{\n  access_log {d}/access.log;\n{temps}{server}\n}}\n"
        )

    def start(self, timeout: float = 15) -> Nginx:
        conf = self.dir / "nginx.conf"
        conf.write_text(self.config())
        log = open(self.dir / "stderr.log", "ab")  # noqa: SIM115 - kept open for the child's lifetime
        try:
            self.proc = subprocess.Popen(
                [
                    nginx_binary(),
                    "-p",
                    str(self.dir),
                    "-e",
                    str(self.dir / "error.log"),
                    "-c",
                    str(conf),
                    "-g",
                    "daemon off;",
                ],
                stdout=log,
                stderr=log,
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"nginx exited {self.proc.returncode}:\n{self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise AssertionError(f"nginx did not start listening:\n{self.log()}")

    def log(self) -> str:
        return "\n".join(
            p.read_text(errors="replace") for p in (self.dir / "stderr.log", self.dir / "error.log") if p.exists()
        )

    def stop(self) -> None:
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGQUIT)  # graceful: finish requests, then exit
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def __enter__(self) -> Nginx:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
