"""Ways an alert leaves the box: SMS and voice calls through the modem, email through an SMTP
relay, push notifications through apprise (ntfy, Gotify, Telegram, webhooks...).

``send`` returns a delivery reference and raises :class:`ChannelError` whose ``permanent``
says whether retrying the same message can help.
"""

from __future__ import annotations

import asyncio
import logging
import re
import smtplib
import ssl
import threading
from collections.abc import Awaitable, Callable, Mapping
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any, Protocol

from gateway.config import EmailConfig
from modem.driver import ModemKeeper
from modem.errors import ModemError

logger = logging.getLogger(__name__)


class ChannelError(Exception):
    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class Channel(Protocol):
    name: str

    async def send(self, recipient: str, text: str) -> str: ...


class SmsChannel:
    """SMS through the modem the keeper holds (AT or gammu backend)."""

    name = "sms"

    def __init__(self, keeper: ModemKeeper, *, wait: float = 20.0) -> None:
        self.keeper = keeper
        self.wait = wait

    async def send(self, recipient: str, text: str) -> str:
        try:
            # every SMS asks for a delivery report: the outbox shows it when the network sends one
            refs = await self.keeper.send_sms(recipient, text, wait=self.wait, report=True)
        except ModemError as e:
            # the owner reads this in the outbox and in the "SMS is failing" email: add what
            # the code means for them (modem.errors' table of codes seen in the field)
            hint = getattr(e, "hint", None)
            raise ChannelError(f"{e} ({hint})" if hint else str(e), permanent=e.permanent) from None
        return ",".join(str(r) for r in refs)


# What a call that rang out means: the row is done (the ladder went on ringing); the outcome is
# its reference. "answered" may acknowledge the outage (the dispatcher asks the service).
RANG = {"answered": "answered", "no-answer": "no answer", "busy": "busy", "rejected": "rejected"}


class CallChannel:
    """A voice call through the modem: it rings ``ring_for`` seconds and hangs up (the ring is
    the message). A modem or network without voice is reported once (``voice(detail)``: the
    owner's note) and call steps are skipped, as failed, until another modem is connected; a
    call that rings again reports ``voice(None)``."""

    name = "call"

    def __init__(
        self,
        keeper: ModemKeeper,
        *,
        ring_for: float = 30.0,
        wait: float = 20.0,
        voice: Callable[[str | None], Awaitable[None]] | None = None,
    ) -> None:
        self.keeper = keeper
        self.ring_for = ring_for
        self.wait = wait
        self.voice = voice
        self._voiceless: str | None = None  # the modem (its IMEI, or "?") found without voice

    def _modem_id(self) -> str:
        status = self.keeper.health.status
        return (status.imei if status else None) or "?"

    async def send(self, recipient: str, text: str) -> str:
        if self._voiceless is not None and self._voiceless == self._modem_id():
            raise ChannelError("call skipped: this modem or network cannot make voice calls", permanent=True)
        try:
            result = await self.keeper.call(recipient, self.ring_for, wait=self.wait)
        except ModemError as e:
            raise ChannelError(str(e), permanent=e.permanent) from None
        if result.outcome in RANG:
            if self._voiceless is not None:
                self._voiceless = None
                if self.voice is not None:
                    await self.voice(None)
            return RANG[result.outcome]
        detail = f" ({result.detail})" if result.detail else ""
        if result.outcome == "no-voice":
            first = self._voiceless is None
            self._voiceless = self._modem_id()
            if first and self.voice is not None:
                await self.voice(result.detail or "the modem refused to dial")
            raise ChannelError(f"no voice calls on this modem or network{detail}", permanent=True)
        if result.outcome == "invalid":
            raise ChannelError(f"the network cannot call this number{detail}", permanent=True)
        raise ChannelError(f"the call failed{detail}")


class EmailChannel:
    """Email through the configured relay (STARTTLS, SSL or plain; optional login)."""

    name = "email"

    def __init__(self, cfg: EmailConfig, *, timeout: float = 30.0) -> None:
        self.cfg = cfg
        self.timeout = timeout

    async def send(self, recipient: str, text: str) -> str:
        if not self.cfg.host:
            raise ChannelError("no email relay configured ([email] host)", permanent=True)
        return await asyncio.to_thread(self._send, recipient, text)

    def _send(self, recipient: str, text: str) -> str:
        cfg = self.cfg
        msg = EmailMessage()
        msg["From"] = cfg.sender
        msg["To"] = recipient
        msg["Subject"] = "[hbgw] " + text.split(". ")[0][:90]
        msg["Date"] = formatdate(localtime=True)
        msg["Message-ID"] = mid = make_msgid(domain="hbgw")
        msg.set_content(text + "\n\n-- \nheartbeat-gateway\n")
        try:
            client: smtplib.SMTP
            if cfg.tls == "ssl":
                client = smtplib.SMTP_SSL(
                    cfg.host or "", cfg.port, timeout=self.timeout, context=ssl.create_default_context()
                )
            else:
                client = smtplib.SMTP(cfg.host or "", cfg.port, timeout=self.timeout)
            with client:
                if cfg.tls == "starttls":
                    client.starttls(context=ssl.create_default_context())
                if cfg.user:
                    client.login(cfg.user, cfg.password or "")
                client.send_message(msg)
        except smtplib.SMTPRecipientsRefused as e:
            raise ChannelError(f"recipient refused: {_first_code(e)}", permanent=True) from None
        except smtplib.SMTPAuthenticationError as e:
            raise ChannelError(f"relay refused the login ({e.smtp_code})", permanent=True) from None
        except smtplib.SMTPNotSupportedError:
            raise ChannelError(
                "relay offers no login on this connection (does it need [email] tls?)", permanent=True
            ) from None
        except ssl.SSLCertVerificationError as e:
            raise ChannelError(f"relay's TLS certificate is not trusted: {e.verify_message}") from None
        except smtplib.SMTPResponseException as e:
            # A relay's 5xx may be a passing policy (greylisting, rate limits) as often as a
            # permanent refusal; retries are bounded by the dispatcher either way.
            raise ChannelError(f"relay answered {e.smtp_code}") from None
        except (smtplib.SMTPException, OSError) as e:
            raise ChannelError(f"relay unreachable: {e.__class__.__name__}") from None
        return mid


def _first_code(e: smtplib.SMTPRecipientsRefused) -> str:
    for code, _ in e.recipients.values():
        return str(code)
    return "?"


class PushChannel:
    """Push notifications through apprise, one URL per outbox row. A row names its URL by its
    :func:`~gateway.rules.settings.push_key` (``targets``: key → URL, from the config), so the
    tokens a URL holds never reach the outbox, the logs or the pages.

    apprise is imported at the first send, never before: it and its plugins cost some 35 MB,
    which a gateway without push targets does not pay (the daemon builds this channel only when
    one is configured). Its calls block, so they run in a worker thread, bounded by
    ``timeout``; apprise's own log lines (which may name a URL) are kept out of ours."""

    name = "push"

    def __init__(self, targets: Mapping[str, str], *, timeout: float = 30.0) -> None:
        self.targets = dict(targets)
        self.timeout = timeout
        # apprise's log capture is per logger, not per call: one notification at a time, so a
        # failure's status code is read from its own log lines
        self._one_at_a_time = threading.Lock()

    async def send(self, recipient: str, text: str) -> str:
        url = self.targets.get(recipient)
        if url is None:
            raise ChannelError("push target no longer in the config", permanent=True)
        try:
            async with asyncio.timeout(self.timeout):
                return await asyncio.to_thread(self._send, url, text)
        except TimeoutError:
            # The worker thread cannot be stopped; apprise's own timeouts end it soon after.
            raise ChannelError(f"push service did not answer within {self.timeout:.0f} s") from None

    def _send(self, url: str, text: str) -> str:
        try:
            apprise = _apprise()
        except ImportError:
            raise ChannelError("apprise is not installed (pip install apprise)", permanent=True) from None
        try:
            notifier = apprise.Apprise()
            if not notifier.add(url):
                raise ChannelError("apprise does not know this kind of URL (check its scheme)", permanent=True)
            with self._one_at_a_time, apprise.LogCapture(level=logging.WARNING, fmt="%(message)s") as captured:
                ok = notifier.notify(title="hbgw: " + text.split(". ")[0][:90], body=text)
        except ChannelError:
            raise
        except Exception as e:
            # apprise's own failure, not ours: retried and bounded like a refused send (the
            # exception's text may hold the URL, so only its class is kept)
            raise ChannelError(f"apprise failed: {e.__class__.__name__}") from None
        if ok:
            return "pushed"
        raise _push_error(captured.getvalue())


def _push_error(log: str) -> ChannelError:
    """What a failed apprise notification means, from its log lines (which are never passed on:
    they may name the URL). An HTTP 4xx other than 408 and 429 is a refusal that a retry of the
    same message cannot change (a bad token, an unknown topic); anything else may pass."""
    m = re.search(r"\berror=([1-5]\d\d)\b", log)  # "Failed to send JSON POST notification: error=403."
    if m is None:
        return ChannelError("push service unreachable or refused the message")
    code = int(m.group(1))
    permanent = 400 <= code < 500 and code not in (408, 429)
    return ChannelError(f"push service answered {code}", permanent=permanent)


def _apprise() -> Any:
    """apprise, imported on first use, its log lines kept from the gateway's own handlers."""
    import apprise

    quiet = logging.getLogger("apprise")
    quiet.propagate = False
    if not quiet.handlers:  # else logging.lastResort would print its warnings to stderr
        quiet.addHandler(logging.NullHandler())
    return apprise
