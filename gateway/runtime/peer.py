"""Watching the watcher: the gateway's own heartbeat to a second gateway.

With ``[peer] url = "https://other-gateway:8080/ping/<token>"`` this gateway GETs that URL every
``interval``; the other gateway has a check for this one and alerts its owner when the pings stop
(power cut, dead SD card, crashed box). Two gateways can watch each other. Any
Healthchecks-compatible ping URL works too.

While this gateway knows it cannot alert by SMS (its daily canary did not come back), the ping
goes to ``<url>/fail`` with the reason as its body: the peer tells its owner through its own
modem. One attempt per interval, never a retry storm: a failed ping is simply the peer's missed
heartbeat. The URL holds a secret token, so logs name only the scheme, host and port.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gateway import __version__

if TYPE_CHECKING:
    from gateway.config import Config, PeerConfig
    from gateway.service import Service

logger = logging.getLogger(__name__)

_READ_LIMIT = 4096  # bytes of the reply read: it is "OK\n"


class PeerError(Exception):
    """A peer ping failed; the message never contains the URL's path (its token)."""


def public_part(url: str) -> str:
    """``https://host:8080/ping/<token>`` → ``https://host:8080``: what logs may show."""
    u = urllib.parse.urlsplit(url)
    host = u.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    return f"{u.scheme}://{host}" + (f":{u.port}" if u.port else "")


def _scrub(text: str, url: str) -> str:
    """``text`` with the secret parts of ``url`` (path, query, user info) replaced."""
    u = urllib.parse.urlsplit(url)
    for secret in sorted({url, u.path, u.query, u.username or "", u.password or ""}, key=len, reverse=True):
        if len(secret) > 1:
            text = text.replace(secret, "<hidden>")
    return text


def ping_once(url: str, timeout: float, body: str | None = None) -> int:
    """GET ``url`` once (POST ``body`` when given); returns the HTTP status (2xx). Raises
    PeerError on anything else."""
    headers = {"User-Agent": f"hbgw/{__version__} (peer)"}
    data = None if body is None else body.encode()
    if data is not None:
        headers["Content-Type"] = "text/plain; charset=utf-8"
    req = urllib.request.Request(url, data=data, method="GET" if data is None else "POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            resp.read(_READ_LIMIT)
            status = int(resp.status)
    except urllib.error.HTTPError as e:
        raise PeerError(f"HTTP {e.code}") from None
    except urllib.error.URLError as e:
        raise PeerError(_scrub(str(e.reason), url)) from None
    except (OSError, ssl.SSLError, ValueError) as e:  # timeouts, resets, a malformed reply
        raise PeerError(_scrub(f"{type(e).__name__}: {e}", url)) from None
    if not 200 <= status < 300:
        raise PeerError(f"HTTP {status}")
    return status


def fail_url(url: str) -> str:
    """The failure form of a Healthchecks-style ping URL: ``.../ping/<token>/fail``."""
    u = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(u._replace(path=u.path.rstrip("/") + "/fail"))


async def run(
    peer: PeerConfig,
    *,
    ping: Callable[..., Any] = ping_once,
    trouble: Callable[[], str | None] = lambda: None,
) -> None:
    """Ping ``peer.url`` now and then every ``peer.interval`` (fixed cadence, no drift); while
    ``trouble()`` names a reason this gateway cannot alert, ping its ``/fail`` with that reason.
    Logs when the peer stops answering and when it answers again, not every failure."""
    if not peer.url:
        return
    url, where = peer.url, public_part(peer.url)
    loop = asyncio.get_running_loop()
    timeout = min(peer.timeout, peer.interval)
    healthy: bool | None = None
    due = loop.time()
    logger.info("peer heartbeat to %s every %gs", where, peer.interval)
    while True:
        reason = trouble()
        try:
            if reason is None:
                await asyncio.to_thread(ping, url, timeout)
            else:
                await asyncio.to_thread(ping, fail_url(url), timeout, f"hbgw at {where}: {reason}")
        except PeerError as e:
            if healthy is not False:
                logger.warning(
                    "peer heartbeat to %s failed: %s (trying again every %gs; logged again when it works)",
                    where,
                    e,
                    peer.interval,
                )
            healthy = False
        except Exception:
            logger.exception("peer heartbeat to %s: unexpected error", where)
            healthy = False
        else:
            if healthy is False:
                logger.info("peer heartbeat to %s works again", where)
            healthy = True
        due += peer.interval
        now = loop.time()
        if due < now:  # the ping took longer than an interval: skip the missed slots
            due = now + peer.interval - (now - due) % peer.interval
        await asyncio.sleep(due - now)


def start_tasks(service: Service, config: Config) -> list[asyncio.Task[None]]:
    """The daemon's appliance tasks that are configured: the peer heartbeat and the daily
    summary SMS (queued through the service, which wakes the dispatcher)."""
    from gateway.runtime import summary

    tasks: list[asyncio.Task[None]] = []
    if config.peer.url:
        reason = service.smspath.peer_reason
        tasks.append(asyncio.create_task(run(config.peer, trouble=reason), name="peer"))
    if config.alerts.daily_summary is not None:
        tasks.append(asyncio.create_task(summary.run(service, config, clock=service.clock), name="daily-summary"))
    return tasks
