"""TLS reverse proxy: Debian's nginx with the server block from docs/reverse-proxy.md in front of
``hbgw serve``, pinged with the real curl over HTTPS.

Clients connect from 127.0.0.2 (``curl --interface``; all of 127/8 is loopback), so "the real
client" (127.0.0.2) and "the proxy" (nginx, 127.0.0.1) are different addresses.
"""

from __future__ import annotations

import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import nginx
from tests.support.daemon import Daemon, hbgw, hbgw_json, write_config

pytestmark = pytest.mark.skipif(not nginx.available(), reason="needs nginx and openssl (./bootstrap installs them)")

CLIENT = "127.0.0.2"
FORGED = "203.0.113.9"


def curl(url: str, *args: str) -> tuple[int, str]:
    out = subprocess.run(
        ["curl", "-sS", "-m", "10", "--interface", CLIENT, "-o", "-", "-w", "\n%{http_code}", *args, url],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert out.returncode == 0, out.stderr
    body, _, code = out.stdout.rpartition("\n")
    return int(code), body


def sources(data_dir: Path, name: str) -> list[str]:
    con = sqlite3.connect(f"file:{data_dir / 'hbgw.sqlite3'}?mode=ro", uri=True)
    try:
        return [
            r[0]
            for r in con.execute(
                "SELECT remote_addr FROM pings JOIN checks ON checks.id = pings.check_id"
                " WHERE checks.name = ? ORDER BY pings.id",
                (name,),
            )
        ]
    finally:
        con.close()


class Setup:
    def __init__(self, root: Path, trusted: bool) -> None:
        self.data = root / "data"
        self.trusted = trusted
        http = 'trusted_proxies = ["127.0.0.1"]\n' if trusted else ""
        self.cfg = write_config(root / "hbgw.toml", self.data, http=http)
        hbgw("check", "add", "web1", "--period", "1h", config=self.cfg)
        self.token = hbgw_json("check", "show", "web1", config=self.cfg)["ping_url"].rsplit("/", 1)[1]
        self.daemon = Daemon(self.data, config=self.cfg)
        self.proxy: nginx.Nginx | None = None

    def __enter__(self) -> Setup:
        self.daemon.start()
        try:
            self.proxy = nginx.Nginx(self.data.parent / "nginx", self.daemon.port).start()
        except BaseException:
            self.daemon.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proxy is not None:
            self.proxy.stop()
        self.daemon.stop()

    def via_proxy(self, *args: str, path: str = "") -> tuple[int, str]:
        assert self.proxy is not None
        url = self.proxy.url + (path or f"/ping/{self.token}")
        return curl(url, "--cacert", str(self.proxy.cert), *args)

    def direct(self, *args: str) -> tuple[int, str]:
        return curl(f"{self.daemon.url}/ping/{self.token}", *args)


@pytest.fixture(scope="module", params=[True, False], ids=["trusted", "untrusted"])
def setup(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    with Setup(tmp_path_factory.mktemp("proxy"), trusted=request.param) as s:
        yield s


def test_it_stores_pings_through_nginx_over_https_with_the_right_client_address(setup: Setup) -> None:
    assert setup.via_proxy() == (200, "OK\n")
    # a client that forges the header gains nothing: nginx replaces it with the real address
    assert setup.via_proxy("-H", f"X-Forwarded-For: {FORGED}") == (200, "OK\n")
    # direct to hbgw (not through the trusted proxy), the forged header is ignored
    assert setup.direct("-H", f"X-Forwarded-For: {FORGED}") == (200, "OK\n")

    proxied = CLIENT if setup.trusted else "127.0.0.1"
    assert sources(setup.data, "web1")[-3:] == [proxied, proxied, CLIENT]
    assert hbgw_json("check", "show", "web1", config=setup.cfg)["status"] == "up"


def test_it_keeps_the_web_admin_off_the_internet_and_rejects_plain_http(setup: Setup) -> None:
    # the documented block serves /ping/ to anyone but the web page only to the home network
    code, _ = setup.via_proxy(path="/login")
    assert code == 403
    assert setup.via_proxy(path="/ping/" + "x" * 24)[0] == 404  # unknown token: hbgw's own reply
    # TLS is checked: without the CA file curl refuses the self-signed certificate
    assert setup.proxy is not None
    out = subprocess.run(
        ["curl", "-sS", "-m", "10", f"{setup.proxy.url}/ping/{setup.token}"], capture_output=True, text=True, timeout=20
    )
    assert out.returncode != 0
