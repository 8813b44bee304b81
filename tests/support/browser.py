"""Helpers for the web admin tests: a plain HTTP client with a cookie jar (for route tests) and a
real headless Chromium through Playwright (for end-to-end tests).

Chromium is the system one (Debian's ``/usr/bin/chromium``, or ``$HBGW_CHROMIUM``); Playwright's
own browser download is never used.
"""

from __future__ import annotations

import gzip
import html
import http.client
import json
import os
import re
import shutil
import urllib.parse
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"


def chromium_path() -> str | None:
    """The Chromium to drive, or None when there is none on this machine."""
    path = os.environ.get("HBGW_CHROMIUM") or "/usr/bin/chromium"
    return path if os.path.exists(path) else shutil.which("chromium")


def launch(playwright: Any) -> Any:
    """A headless Chromium browser (close it when done)."""
    return playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def cookies(self) -> list[str]:
        return self.headers.get_all("Set-Cookie") or []


@dataclass
class WebClient:
    """A tiny browser-like HTTP client: keeps cookies, never follows redirects, decodes gzip."""

    base: str
    jar: dict[str, str] = field(default_factory=dict)

    def request(
        self,
        method: str,
        path: str,
        *,
        form: dict[str, str] | None = None,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        url = urllib.parse.urlsplit(self.base)
        conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=15)
        hdrs = {"Accept-Encoding": "gzip"}
        if self.jar:
            hdrs["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.jar.items())
        if form is not None:
            data = urllib.parse.urlencode(form).encode()
            hdrs["Content-Type"] = "application/x-www-form-urlencoded"
        hdrs.update(headers or {})
        try:
            conn.request(method, path, body=data, headers=hdrs)
            resp = conn.getresponse()
            body = resp.read()
        finally:
            conn.close()
        if resp.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        for raw in resp.headers.get_all("Set-Cookie") or []:
            cookie = SimpleCookie()
            cookie.load(raw)
            for name, morsel in cookie.items():
                if morsel["max-age"] and int(morsel["max-age"]) < 0:
                    self.jar.pop(name, None)
                else:
                    self.jar[name] = morsel.value
        return Response(resp.status, resp.headers, body)

    def get(self, path: str, **kw: Any) -> Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, form: dict[str, str] | None = None, **kw: Any) -> Response:
        return self.request("POST", path, form=form if form is not None else {}, **kw)

    def login(self, password: str) -> Response:
        page = self.get("/login")
        return self.post("/login", {"csrf": csrf_of(page.text), "password": password, "next": "/"})

    def csrf(self) -> str:
        """The session's CSRF token, as the pages embed it."""
        return csrf_of(self.get("/settings").text)


def csrf_of(page: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', page)
    assert m, "no CSRF field on the page"
    return html.unescape(m.group(1))
