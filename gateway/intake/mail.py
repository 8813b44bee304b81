"""Email heartbeats: an aiosmtpd listener on the daemon's own asyncio loop.

Addresses (``domain`` is ``[smtp] domain``):

- ``<token>@<domain>``: the check with that ping token;
- ``<ping-key>+<name>@<domain>``: the check called ``name``, created by its first mail when
  ``[security] auto_create`` is on (the same rules as ``/ping/<ping-key>/<name>``).

Anything else is refused at RCPT with one and the same ``550 5.1.1`` (wrong domain, unknown
token, wrong key, unknown name), so the box is never a relay, a typo bounces at once, and the
reply does not tell which part was wrong. Several recipients in one mail are one heartbeat each.

The check's keyword filters (:mod:`gateway.rules.keywords`) decide whether a mail is a success, a
failure or a start; without filters every mail is a success. What is stored with the heartbeat
(:class:`~gateway.model.PingMeta`): ``source="email"``, ``remote_addr`` the SMTP client's IP,
``method="SMTP"``, ``user_agent`` the header From (the envelope sender if there is none), and
``body`` a text excerpt: ``Subject: ...``, a blank line, then the plain-text body (HTML-only
mails reduced to text), at most :data:`gateway.store.BODY_EXCERPT` characters.

Limits: message size (``[smtp] max_size``, 552), recipients per message (``[smtp]
max_recipients``, 452 beyond), header section size and field count (552 5.3.4), line length
(500), invalid recipients per connection (421 and close). A ``MAIL FROM`` or ``RCPT TO``
address that cannot be parsed is a syntax error, ``501 5.1.7`` / ``501 5.1.3``, logged as one
line. A bug answers ``451`` and never sends exception text to the client (aiosmtpd's default
handler does).

Connections (421 and close beyond a cap, checked when the connection is accepted): at most
:data:`MAX_CONNECTIONS` at once; a remote client (an IPv4 address, an IPv6 /64) at most
:data:`MAX_PER_CLIENT`, and remote clients together at most ``MAX_CONNECTIONS -``
:data:`LOCAL_RESERVED`, so the box's own jobs mailing from 127.0.0.1 or ::1 (not capped per
address) always find a slot. A client has :data:`PRE_MAIL_TIMEOUT` seconds from connecting (or
from the end of its last transaction) to send ``MAIL``, whatever else it sends meanwhile; inside
a transaction, :data:`IDLE_TIMEOUT` seconds per command (and for all of DATA). So one client
holding idle connections costs others nothing, and any idle slot is free again within seconds.

Email to SMS (``[relay] enabled``): ``sms@``, ``sms+<number>@``, ``<contact>@`` and
``<relay key>+sms[+<number>]@`` are relay addresses, decided before the heartbeat ones (the shapes,
the precedence and who may relay: :mod:`gateway.intake.mailrelay`). At RCPT a sender who may not
relay gets ``550 5.7.1``, a number that may not be texted ``553 5.1.3`` (both counted as refused
recipients); with relaying off these addresses are simply unknown. At DATA the subject and the
plain-text body (as for heartbeats) are queued, one SMS per number, with the origin ``mail
<sender>`` (``mail key`` for the keyed form). A sender over its hourly share, or relayed mail
over its part of the SMS budget, gets ``451 4.7.1 <reason>, try again later``: the sending MTA
keeps the mail and retries. A mail to heartbeat and relay addresses at once records the
heartbeats first, then queues the SMS; if the SMS is refused (451), the retry records the
heartbeats again (a repeated success changes nothing) rather than losing the SMS.

Privacy: recipients carry tokens and ping keys, so aiosmtpd's own logger (``mail.log``, which
logs every command line and recipient at INFO and message lines at DEBUG) is capped at WARNING,
and this module logs check names and client IPs, never addresses or bodies.
"""

from __future__ import annotations

import asyncio
import email.policy
import ipaddress
import logging
import re
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from email.header import decode_header, make_header
from email.message import Message
from email.parser import BytesParser
from html.parser import HTMLParser
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from gateway.config import Config, parse_hostport
from gateway.errors import ValidationError
from gateway.intake import mailrelay
from gateway.intake.mailrelay import RelayAddress
from gateway.model import Check, PingMeta
from gateway.relay import RelayOff
from gateway.rules import keywords
from gateway.service import PingOutcome, Service
from gateway.store import BODY_EXCERPT, Refused, StoreError

logger = logging.getLogger(__name__)

MAX_CONNECTIONS = 100  # concurrent SMTP sessions; more are answered 421 and closed
# Per remote client (IPv4 address or IPv6 /64): Postfix's default per-destination concurrency,
# so a well-behaved relay never meets it. (Would be [smtp] max_connections_per_client.)
MAX_PER_CLIENT = 20
# Slots only 127.0.0.1 and ::1 may take: a remote flood never starves the box's own jobs' mail.
LOCAL_RESERVED = 10
IDLE_TIMEOUT = 60.0  # seconds per command inside a transaction (and for all of DATA)
# Seconds from connecting (or from the end of the last transaction) to MAIL FROM, not reset by
# EHLO, NOOP or RSET: a real client sends MAIL within a few round trips; a client that only
# holds the connection gives its slot back this soon. (Would be [smtp] idle_timeout_before_mail.)
PRE_MAIL_TIMEOUT = 10.0
LINE_LIMIT = 8192  # bytes per line. RFC 5321 says 1000, but msmtp passes a cron job's long
# output lines through unfolded, and a heartbeat lost to a pedantic limit is a false alarm.
HEADER_LIMIT = 64 * 1024  # bytes of header section
MAX_HEADER_FIELDS = 500
MAX_MIME_BOUNDARIES = 50  # more boundary lines in a multipart mail: its body is kept as raw text
BAD_RCPT_LIMIT = 20  # refused recipients per connection before we hang up (no address guessing)
COMMAND_LIMITS = {"*": 10_000, "NOOP": 50, "HELP": 20, "VRFY": 20, "EXPN": 20}
SENDER_MAX = 200  # characters of the From header kept as the heartbeat's user agent

# Replies. The refusal of a recipient is one string whatever was wrong with it (no oracle).
NO_SUCH_ADDRESS = "550 5.1.1 No such heartbeat address"
TOO_MANY_RECIPIENTS = "452 4.5.3 Too many recipients"
RECIPIENT_OK = "250 2.1.5 OK"
RECORDED = "250 2.0.0 OK: heartbeat recorded"
CHECK_LIMIT = "550 5.7.1 Check limit reached"
HEADER_TOO_LARGE = "552 5.3.4 Message header too large"
MALFORMED = "554 5.6.0 Malformed message"
STORAGE_FAILED = "451 4.3.0 Temporary storage failure, try again later"
INTERNAL_ERROR = "451 4.3.0 Internal error, try again later"
TOO_MANY_BAD = "421 4.7.0 Too many invalid recipients, closing connection"
BAD_SENDER_SYNTAX = "501 5.1.7 Bad sender address syntax"
BAD_RECIPIENT_SYNTAX = "501 5.1.3 Bad recipient address syntax"
RELAY_DENIED = "550 5.7.1 Relaying denied: this sender may not send SMS through this gateway"
SMS_QUEUED = "250 2.0.0 OK: SMS queued"
RECORDED_AND_QUEUED = "250 2.0.0 OK: heartbeat recorded, SMS queued"
BUSY = b"421 4.7.0 Too many connections, try again later\r\n"
BUSY_CLIENT = b"421 4.7.0 Too many connections from your address, try again later\r\n"

_TOKEN = re.compile(r"[A-Za-z0-9_-]{8,128}")
_KEY = re.compile(r"[A-Za-z0-9_-]{16,128}")
# A name in an address: dot-atom characters (RFC 5322 atext and "."), minus "/" which names
# cannot contain. Names with spaces are reached through their token address.
_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+=?^_`{|}~.-]{1,200}")
_HEADER_FIELD = re.compile(rb"[\x21-\x39\x3b-\x7e]+:")
# Characters never stored: C0 controls but tab and newline, DEL, C1 controls, and lone
# surrogates (left by undecodable bytes; SQLite cannot store them).
_UNSTORABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


# ------------------------------------------------------------------------------ pure helpers


@dataclass(frozen=True)
class Address:
    """A recipient we may accept: by ``token``, or by ``key`` and ``name``."""

    token: str | None = None
    key: str | None = None
    name: str | None = None


def parse_address(address: str, domain: str) -> Address | None:
    """The heartbeat ``address`` names, or None if it cannot be one of ours.

    ``domain`` is compared case-insensitively (a trailing dot allowed); the local part is
    case-sensitive, as tokens are. Only the syntax is checked here, not the token or key.
    """
    local, at, dom = address.rpartition("@")
    if not at or dom.lower().rstrip(".") != domain.lower():
        return None
    key, plus, name = local.partition("+")
    if plus:
        if _KEY.fullmatch(key) and _NAME.fullmatch(name):
            return Address(key=key, name=name)
        return None
    if _TOKEN.fullmatch(local):
        return Address(token=local)
    return None


@dataclass(frozen=True)
class MailText:
    """What a message says, as text: decoded subject, From header, and the body as plain text."""

    subject: str
    sender: str
    body: str

    def excerpt(self, limit: int = BODY_EXCERPT) -> str | None:
        """The text stored with the heartbeat: the subject line, a blank line, the body."""
        text = (f"Subject: {self.subject}\n\n" if self.subject else "") + self.body
        return text[:limit] or None


class MailRejected(Exception):
    """A message we refuse; ``reply`` is the SMTP reply line."""

    def __init__(self, reply: str) -> None:
        super().__init__(reply)
        self.reply = reply


def check_header_section(content: bytes) -> None:
    """Raise MailRejected when the header section is over :data:`HEADER_LIMIT` bytes or
    :data:`MAX_HEADER_FIELDS` fields. The section ends at the first line that is empty or is
    neither a header field nor a continuation (as the parser sees it)."""
    size = fields = 0
    pos = 0
    while pos < len(content):
        end = content.find(b"\n", pos)
        end = len(content) if end < 0 else end + 1
        line = content[pos:end]
        if line in (b"\r\n", b"\n"):
            return
        if line[:1] in (b" ", b"\t"):
            pass
        elif _HEADER_FIELD.match(line):
            fields += 1
        else:
            return
        size += len(line)
        if size > HEADER_LIMIT or fields > MAX_HEADER_FIELDS:
            raise MailRejected(HEADER_TOO_LARGE)
        pos = end


def read_message(content: bytes) -> MailText:
    """Parse a message (bytes as received after DATA) into :class:`MailText`.

    Lenient on purpose: a heartbeat that arrives should count. Undecodable bytes, unknown
    charsets, broken MIME, a missing header/body separator (``echo ok | msmtp addr``) and
    multipart mails with more than :data:`MAX_MIME_BOUNDARIES` boundary lines (kept as raw text,
    not parsed) all give some text. Raises MailRejected only for an oversized header section
    (552) or a message the parser cannot handle at all (554).
    """
    check_header_section(content)
    # The compat32 policy: the modern one parses every header into objects, ten times slower
    # (about 2 ms for a cron mail), and its get_body()/get_content() add as much again.
    many = content.count(b"\n--") > MAX_MIME_BOUNDARIES
    try:
        msg = BytesParser(policy=email.policy.compat32).parsebytes(content, headersonly=many)
        if many and msg.get_content_maintype() == "multipart":
            # MIME parsing time grows faster than linearly with the number of parts (5,000
            # parts: seconds of CPU). No heartbeat needs that many: keep the raw text.
            payload = msg.get_payload()
            body = _clean(payload).strip() if isinstance(payload, str) else ""
        else:
            body = _body(msg)
    except Exception:  # the stdlib parser on hostile input
        raise MailRejected(MALFORMED) from None
    return MailText(subject=_header(msg, "subject"), sender=_header(msg, "from")[:SENDER_MAX], body=body)


def _clean(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _UNSTORABLE.sub(lambda m: "" if m.group() < "\x20" else "\ufffd", text)


def _decode(payload: bytes, charset: str | None) -> str:
    """Text from ``payload`` in ``charset``; unlabelled (or "ASCII") 8-bit text, common in cron
    mail, is read as UTF-8, else Latin-1; an unknown charset as UTF-8 with replacements."""
    charset = (charset or "").lower()
    if charset in ("", "us-ascii", "ascii"):
        try:
            return payload.decode("utf-8")
        except UnicodeDecodeError:
            return payload.decode("latin-1")
    try:
        return payload.decode(charset, "replace")
    except LookupError:
        return payload.decode("utf-8", "replace")


def _header(msg: Message, name: str) -> str:
    """A header decoded (RFC 2047 encoded words, 8-bit bytes), unfolded, one line."""
    raw = msg.get(name)
    if raw is None:
        return ""
    try:
        # Undeclared 8-bit bytes come back as "unknown-8bit": read them as the body's are.
        parts = [
            (_decode(b, None).encode(), "utf-8") if c == "unknown-8bit" and isinstance(b, bytes) else (b, c)
            for b, c in decode_header(raw)
        ]
        value = str(make_header(parts))
    except Exception:  # bad encoded words, unknown charsets: use it as it came
        value = str(raw)
    return " ".join(_clean(value).split())


def _body(msg: Message) -> str:
    """The first text/plain part that is not an attachment, else the first text/html part as
    text, else ""."""
    plain: Message | None = None
    html: Message | None = None
    for part in msg.walk():
        if part.is_multipart():
            continue
        if str(part.get("content-disposition", "")).strip().lower().startswith("attachment"):
            continue
        ctype = part.get_content_type()
        if ctype == "text/plain" and plain is None:
            plain = part
        elif ctype == "text/html" and html is None:
            html = part
    chosen = plain if plain is not None else html  # not `or`: a Message without headers is falsy
    if chosen is None:
        return ""
    payload = chosen.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    text = _decode(payload, chosen.get_content_charset())
    if chosen is html:
        text = html_to_text(text)
    return _clean(text).strip()


class _TextExtractor(HTMLParser):
    _BLOCK = frozenset(
        (
            "address",
            "article",
            "aside",
            "blockquote",
            "br",
            "dd",
            "div",
            "dl",
            "dt",
            "fieldset",
            "figcaption",
            "figure",
            "footer",
            "form",
            "h1",
            "h2",
            "h3",
            "h4",
            "h5",
            "h6",
            "header",
            "hr",
            "li",
            "main",
            "nav",
            "ol",
            "p",
            "pre",
            "section",
            "table",
            "tbody",
            "td",
            "tfoot",
            "th",
            "thead",
            "tr",
            "ul",
        )
    )
    _HIDDEN = frozenset(("script", "style", "head", "title", "template"))

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._HIDDEN:
            self._hidden += 1
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._HIDDEN:
            self._hidden = max(0, self._hidden - 1)
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    """The visible text of an HTML document: tags dropped, entities decoded, script/style
    skipped, one line per block element, runs of spaces and blank lines collapsed."""
    parser = _TextExtractor()
    try:
        parser.feed(html)
        parser.close()
    except Exception:  # HTMLParser is lenient, but never let markup fail a heartbeat
        return re.sub(r"<[^>]*>", " ", html)
    lines = (" ".join(line.split()) for line in "".join(parser.parts).splitlines())
    return "\n".join(line for line in lines if line)


# ------------------------------------------------------------------------------ the SMTP side


@dataclass(frozen=True)
class _Target:
    """An accepted recipient: what to record and with which filters."""

    address: Address
    check: Check | None  # None: a named check its first ping will create

    @property
    def key(self) -> tuple[str, str]:
        if self.check is not None:
            return ("id", str(self.check.id))
        return ("name", (self.address.name or "").casefold())


class _Session(Session):
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.bad_recipients = 0


@dataclass(frozen=True)
class _RelayTarget:
    """An accepted relay recipient: to whom (as :func:`gateway.rules.relay.recipients` takes
    it: "" for the owner), on whose share (``origin``)."""

    to: str
    origin: str


class _Envelope(Envelope):
    def __init__(self) -> None:
        super().__init__()
        self.targets: list[_Target] = []
        self.relays: list[_RelayTarget] = []


class _SMTP(SMTP):
    """aiosmtpd's SMTP with our session/envelope records, address syntax errors answered 501,
    two idle timeouts (before MAIL, inside a transaction) and a hook to count connections."""

    line_length_limit = LINE_LIMIT

    def __init__(self, handler: _Handler, on_lost: Any, *, pre_mail_timeout: float, **kw: Any) -> None:
        super().__init__(handler, **kw)
        self._handler = handler
        self._on_lost = on_lost
        self._pre_mail_timeout = pre_mail_timeout
        self._pre_mail_clock = False  # the pre-MAIL timer is running: commands do not reset it
        self._syntax_logged = False

    def _create_session(self) -> Session:
        return _Session(self.loop)

    def _create_envelope(self) -> Envelope:
        return _Envelope()

    def connection_lost(self, error: Exception | None) -> None:
        try:
            super().connection_lost(error)
        finally:
            self._on_lost(self)

    @property
    def handler_task(self) -> asyncio.Task[None] | None:
        task: asyncio.Task[None] | None = getattr(self, "_handler_coroutine", None)
        return task

    # -- timeouts

    def _in_transaction(self) -> bool:
        envelope = getattr(self, "envelope", None)
        return envelope is not None and bool(envelope.mail_from)

    def _reset_timeout(self, duration: float | None = None) -> None:
        """aiosmtpd calls this on connecting and before every command. Outside a transaction
        the pre-MAIL timer is started once and left running, so EHLO, NOOP or RSET buy no time."""
        if duration is None and not self._in_transaction():
            if self._pre_mail_clock:
                return
            self._pre_mail_clock = True
            duration = self._pre_mail_timeout
        super()._reset_timeout(duration)

    def _set_post_data_state(self) -> None:
        ended = self._in_transaction()
        super()._set_post_data_state()  # type: ignore[no-untyped-call]
        if ended:  # DATA answered, RSET, or EHLO in a transaction: a new window to send MAIL
            self._pre_mail_clock = False
            self._reset_timeout()

    def _timeout_cb(self) -> None:
        logger.debug(
            "SMTP client %s timed out (%s)",
            _peer_ip(self.session),
            "in a transaction" if self._in_transaction() else "before MAIL",
        )
        super()._timeout_cb()  # type: ignore[no-untyped-call]

    # -- address syntax

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """aiosmtpd's parser, except that input on which the stdlib parser crashes (``<``,
        ``<a@``, ``a@[``, a lone quote: IndexError, AttributeError, UnboundLocalError) is a
        malformed address rather than a bug."""
        try:
            return super()._getaddr(arg)
        except Exception:  # whatever a private parser raises on truncated input: not our bug
            return None, None

    async def _refuse_bad_address(self, arg: str | None, keyword: str, reply: str) -> bool:
        """Answer ``reply`` (501) and return True when the command's address cannot be parsed.
        Anything else, including the errors aiosmtpd checks first (no HELO, RCPT before MAIL, no
        address at all), is left to aiosmtpd."""
        assert self.session is not None
        if arg is None or not self.session.host_name:
            return False
        if keyword == "TO:" and not self._in_transaction():
            return False
        stripped = self._strip_command_keyword(keyword, arg)
        if not stripped or self._getaddr(stripped)[0] is not None:
            return False
        # One line, without the address (it may hold a token); at INFO once per connection.
        log = logger.debug if self._syntax_logged else logger.info
        self._syntax_logged = True
        log(
            "refused a malformed %s address from %s",
            "sender" if keyword == "FROM:" else "recipient",
            _peer_ip(self.session),
        )
        if keyword == "TO:" and self._handler.count_bad_recipient(self, self.session):
            await self.push(TOO_MANY_BAD)
        else:
            await self.push(reply)
        return True

    async def smtp_MAIL(self, arg: str | None) -> None:
        if await self._refuse_bad_address(arg, "FROM:", BAD_SENDER_SYNTAX):
            return
        await super().smtp_MAIL(arg)
        if self._in_transaction():
            self._reset_timeout()  # from the pre-MAIL timer to the transaction's

    async def smtp_RCPT(self, arg: str | None) -> None:
        if await self._refuse_bad_address(arg, "TO:", BAD_RECIPIENT_SYNTAX):
            return
        await super().smtp_RCPT(arg)


class _Door(asyncio.Protocol):
    """The first protocol of every accepted connection: asks ``admit`` about the peer's address,
    then hands the transport to the SMTP session it returns, or writes the 421 line it returns
    and hangs up. (The protocol factory of ``create_server`` is not told the peer's address.)"""

    def __init__(self, admit: Callable[[Any], _SMTP | bytes]) -> None:
        self._admit = admit

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        admitted = self._admit(transport.get_extra_info("peername"))
        if isinstance(admitted, bytes):
            transport.write(admitted)
            transport.close()
            return
        transport.set_protocol(admitted)
        admitted.connection_made(transport)


def _peer_ip(session: Session | None) -> str | None:
    peer: Any = session.peer if session is not None else None  # typed str; a (host, port, ...) tuple for TCP
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return None


_LOCAL = (ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"))


def client_of(peername: Any) -> tuple[str, bool]:
    """The client a connection counts against, from its ``peername``: ``(key, local)``. The key
    is the IPv4 address (IPv4-mapped IPv6 included) or the IPv6 /64, since one host commonly
    holds a whole /64. ``local`` is True for 127.0.0.1 and ::1 only: other 127/8 addresses are
    counted like remote clients."""
    try:
        ip = ipaddress.ip_address(str(peername[0]).partition("%")[0])
    except (TypeError, IndexError, ValueError):
        return "?", False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if isinstance(ip, ipaddress.IPv6Address) and ip not in _LOCAL:
        return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64))), False
    return str(ip), ip in _LOCAL


class _Handler:
    """The aiosmtpd hooks: validate at RCPT, record at DATA. Heartbeats are awaited on the store
    writer's commit, the same path HTTP pings take; only the parsing of a message runs in a
    worker thread (a large one must not stall the loop the watchdog shares)."""

    def __init__(self, service: Service, domain: str, max_recipients: int) -> None:
        self.service = service
        self.domain = domain
        self.max_recipients = max_recipients
        self.in_flight = 0  # DATA deliveries being recorded right now
        self.idle = asyncio.Event()
        self.idle.set()

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        assert isinstance(envelope, _Envelope) and isinstance(session, _Session)
        if len(envelope.rcpt_tos) >= self.max_recipients:
            return TOO_MANY_RECIPIENTS
        relay = self._relay_address(address)
        if relay is not None:
            return self._relay_rcpt(server, session, envelope, address, rcpt_options, relay)
        parsed = parse_address(address, self.domain)
        target = None if parsed is None else self._resolve(parsed)  # one indexed read
        if target is None:
            logger.debug("refused a recipient from %s", _peer_ip(session))
            return TOO_MANY_BAD if self.count_bad_recipient(server, session) else NO_SUCH_ADDRESS
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        if all(t.key != target.key for t in envelope.targets):  # the same check twice: one ping
            envelope.targets.append(target)
        return RECIPIENT_OK

    def _relay_address(self, address: str) -> RelayAddress | None:
        """The relay recipient ``address`` names, while relaying is on (None: not one)."""
        rules = self.service.relay.rules
        if not rules.enabled:
            return None
        contacts = (c.name for c in self.service.config.contacts if c.phone)
        return mailrelay.parse_relay_address(address, self.domain, key=rules.key, contacts=contacts)

    def _relay_rcpt(
        self,
        server: SMTP,
        session: _Session,
        envelope: _Envelope,
        address: str,
        rcpt_options: list[str],
        relay: RelayAddress,
    ) -> str:
        """RCPT of a relay address: who may relay, then whether the number may be texted (the
        text is not known yet: a placeholder stands for it). Never logs the address."""
        peer = _peer_ip(session)
        origin = mailrelay.origin(relay, envelope.mail_from or "", peer, self.service.relay.rules.allow_from)
        if origin is None:
            logger.info("refused an SMS relay recipient from %s: the sender may not relay", peer)
            return TOO_MANY_BAD if self.count_bad_recipient(server, session) else RELAY_DENIED
        try:
            self.service.relay.prepare(relay.to, ".")
        except RelayOff:
            return TOO_MANY_BAD if self.count_bad_recipient(server, session) else NO_SUCH_ADDRESS
        except ValidationError as e:
            logger.info("refused an SMS relay recipient from %s: %s", peer, e.field)
            reason = " ".join(str(e).split())  # one line: it goes into the reply
            return TOO_MANY_BAD if self.count_bad_recipient(server, session) else f"553 5.1.3 {reason}"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        target = _RelayTarget(relay.to or "", origin)
        if target not in envelope.relays:
            envelope.relays.append(target)
        return RECIPIENT_OK

    def count_bad_recipient(self, server: SMTP, session: Session) -> bool:
        """Count a refused (unknown or malformed) recipient; at :data:`BAD_RCPT_LIMIT`, close the
        connection once the reply is written and return True (the caller answers 421)."""
        assert isinstance(session, _Session)
        session.bad_recipients += 1
        if session.bad_recipients < BAD_RCPT_LIMIT:
            return False
        logger.info("closing SMTP connection from %s: too many invalid recipients", _peer_ip(session))
        transport = server.transport
        if transport is not None:
            server.loop.call_soon(transport.close)  # after the reply is written
        return True

    def _resolve(self, addr: Address) -> _Target | None:
        if addr.token is not None:
            check = self.service.find_check_by_token(addr.token)
            return None if check is None else _Target(addr, check)
        assert addr.key is not None and addr.name is not None
        ok, check = self.service.accepts_named_ping(addr.key, addr.name)
        return _Target(addr, check) if ok else None

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope, _Envelope)
        content = envelope.original_content or b""
        sender = envelope.mail_from or ""
        self.in_flight += 1
        self.idle.clear()
        try:
            return await self._deliver(
                list(envelope.targets), content, _peer_ip(session), sender, list(envelope.relays)
            )
        finally:
            self.in_flight -= 1
            if not self.in_flight:
                self.idle.set()

    async def _deliver(
        self,
        targets: list[_Target],
        content: bytes,
        peer: str | None,
        envelope_sender: str,
        relays: list[_RelayTarget] | None = None,
    ) -> str:
        """Parse the message, record one heartbeat per target, then queue the SMS of the relay
        recipients; answers once they are committed."""
        try:
            text = await asyncio.to_thread(read_message, content)
        except MailRejected as e:
            logger.info("refused a message from %s: %s", peer, e.reply)
            return e.reply
        if not relays:
            return await self._record(targets, text, peer, envelope_sender)
        if targets:
            reply = await self._record(targets, text, peer, envelope_sender)
            if not reply.startswith("250"):
                return reply  # the MTA retries (451) or bounces (5xx) the whole mail, SMS included
            queued = await self._queue_relays(relays, text, peer)
            return RECORDED_AND_QUEUED if queued == SMS_QUEUED else queued
        return await self._queue_relays(relays, text, peer)

    async def _queue_relays(self, relays: list[_RelayTarget], text: MailText, peer: str | None) -> str:
        """Queue the message for the relay recipients, one call (one transaction) per origin."""
        by_origin: dict[str, list[str]] = {}
        for r in relays:
            by_origin.setdefault(r.origin, []).append(r.to)
        body = text.body[:BODY_EXCERPT]
        try:
            for origin, tos in by_origin.items():
                await self.service.relay.aqueue(tos, body, origin, subject=text.subject)
        except Refused as e:
            logger.info("SMS relay from %s deferred: %s", peer, e)
            return f"451 4.7.1 {' '.join(str(e).split())}, try again later"
        except RelayOff:
            return NO_SUCH_ADDRESS
        except ValidationError as e:
            if e.field == "text":
                return "554 5.6.0 Nothing to send: the message has no subject and no text"
            return f"553 5.1.3 {' '.join(str(e).split())}"
        except StoreError as e:
            logger.error("cannot queue a relayed SMS: %s", e)
            return STORAGE_FAILED
        logger.debug("email from %s queued as SMS", peer)
        return SMS_QUEUED

    async def _record(self, targets: list[_Target], text: MailText, peer: str | None, envelope_sender: str) -> str:
        """Record one heartbeat per target; answers once they are committed."""
        sender = text.sender or envelope_sender.strip("<>")
        meta = PingMeta(
            source="email", remote_addr=peer, method="SMTP", user_agent=sender[:SENDER_MAX] or None, body=text.excerpt()
        )
        outcomes = []
        try:
            for t in targets:
                kind = keywords.classify(_filters(t.check), text.subject, text.body)
                if t.address.token is not None:
                    stored = self.service.submit_ping(t.address.token, None, kind, None, meta)
                else:
                    assert t.address.key is not None and t.address.name is not None
                    stored = self.service.submit_ping(t.address.key, t.address.name, kind, None, meta)
                outcome = await asyncio.wrap_future(stored)
                outcomes.append(outcome)
                logger.debug(
                    "email heartbeat (%s) for %r from %s: %s",
                    kind.value,
                    t.check.name if t.check else t.address.name,
                    peer,
                    outcome.value,
                )
        except StoreError as e:
            logger.error("cannot store an email heartbeat: %s", e)
            return STORAGE_FAILED
        if PingOutcome.OK in outcomes or PingOutcome.CREATED in outcomes:
            return RECORDED
        if PingOutcome.LIMIT in outcomes:
            return CHECK_LIMIT
        return NO_SUCH_ADDRESS  # every check went away between RCPT and DATA

    async def handle_exception(self, error: Exception) -> str:
        """A bug: log where (the type and the stack, not the message, which could quote an
        address), answer a transient error, keep serving."""
        frames = "".join(traceback.format_tb(error.__traceback__))
        logger.error("unexpected %s in the SMTP listener:\n%s", type(error).__name__, frames)
        return INTERNAL_ERROR


def _filters(check: Check | None) -> keywords.Filters | None:
    if check is None:
        return None
    try:
        return keywords.loads(check.filters)
    except keywords.FilterError as e:
        logger.warning("ignoring the unusable keyword filters of check %r: %s", check.name, e)
        return None


class SmtpListener:
    """The listening socket and its sessions. Create it with :func:`start_smtp`."""

    def __init__(
        self,
        handler: _Handler,
        config: Config,
        *,
        timeout: float,
        pre_mail_timeout: float,
        max_connections: int,
        max_per_client: int,
        local_reserved: int,
    ) -> None:
        self._handler = handler
        self._config = config
        self._timeout = timeout
        self._pre_mail_timeout = pre_mail_timeout
        self._max_connections = max_connections
        self._max_per_client = max_per_client
        self._max_remote = max_connections - local_reserved
        self._sessions: dict[_SMTP, str] = {}  # open session -> its remote client key ("": local)
        self._per_client: dict[str, int] = {}  # open sessions by remote client
        self._remote = 0  # open sessions from remote clients
        self._refusing: set[str] = set()  # clients (or "*": the pool) refused since last logged
        self._server: asyncio.Server | None = None
        self._closed = False

    async def _listen(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Door(self._admit), host, port, reuse_address=True, backlog=128)

    def _admit(self, peername: Any) -> _SMTP | bytes:
        """A new session for a connection from ``peername``, or the 421 line to refuse it with."""
        if self._closed:
            return BUSY
        key, local = client_of(peername)
        if local:
            if len(self._sessions) >= self._max_connections:
                return self._refuse("*", BUSY)
        else:
            if self._per_client.get(key, 0) >= self._max_per_client:
                return self._refuse(key, BUSY_CLIENT)
            if self._remote >= self._max_remote or len(self._sessions) >= self._max_connections:
                return self._refuse("*", BUSY)
            self._per_client[key] = self._per_client.get(key, 0) + 1
            self._remote += 1
        session = _SMTP(
            self._handler,
            self._lost,
            pre_mail_timeout=self._pre_mail_timeout,
            data_size_limit=self._config.smtp.max_size,
            hostname=self._config.smtp.domain,
            ident="hbgw",
            timeout=self._timeout,
            enable_SMTPUTF8=False,
            decode_data=False,
            command_call_limit=COMMAND_LIMITS,
            loop=asyncio.get_running_loop(),
        )
        self._sessions[session] = "" if local else key
        return session

    def _refuse(self, key: str, reply: bytes) -> bytes:
        # One log line when refusing starts, not one per refused connection of a flood.
        if key not in self._refusing:
            self._refusing.add(key)
            if key == "*":
                logger.warning("SMTP connections at their limit: refusing new ones")
            else:
                logger.info("SMTP client %s holds %d connections: refusing more", key, self._max_per_client)
        return reply

    def _lost(self, session: _SMTP) -> None:
        key = self._sessions.pop(session, None)
        self._refusing.discard("*")
        if not key:  # a local session (or one already counted out)
            return
        self._remote -= 1
        left = self._per_client.pop(key) - 1
        if left:
            self._per_client[key] = left
        self._refusing.discard(key)

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port): the real port when started on port 0."""
        assert self._server is not None and self._server.sockets
        name = self._server.sockets[0].getsockname()
        return str(name[0]), int(name[1])

    @property
    def connections(self) -> int:
        return len(self._sessions)

    async def close(self, grace: float = 5.0) -> None:
        """Stop accepting; let messages being recorded finish (up to ``grace`` seconds); hang
        up on every session and wait for them to end. Idempotent."""
        if self._server is None or self._closed:
            return
        self._closed = True
        self._server.close()
        try:
            await asyncio.wait_for(self._handler.idle.wait(), grace)
        except TimeoutError:
            logger.warning("closing SMTP with %d message(s) still being stored", self._handler.in_flight)
        tasks = []
        for s in list(self._sessions):
            if s.transport is not None:
                s.transport.close()
            if s.handler_task is not None:
                tasks.append(s.handler_task)
        if tasks:
            await asyncio.wait(tasks, timeout=grace)
        await self._server.wait_closed()

    async def serve(self) -> None:
        """Serve until cancelled, then close: the daemon runs this as a task and cancels its
        tasks on shutdown (before it closes the store)."""
        try:
            await asyncio.Event().wait()
        finally:
            await self.close()


async def start_smtp(
    service: Service,
    config: Config,
    *,
    timeout: float = IDLE_TIMEOUT,
    pre_mail_timeout: float = PRE_MAIL_TIMEOUT,
    max_connections: int = MAX_CONNECTIONS,
    max_per_client: int = MAX_PER_CLIENT,
    local_reserved: int = LOCAL_RESERVED,
) -> SmtpListener:
    """Listen for email heartbeats on ``config.smtp.listen`` (port 0: any free port) on the
    running loop. Raises OSError when the address cannot be bound, ValueError when
    ``config.smtp.listen`` is unset or ``local_reserved`` leaves remote clients no slot."""
    if not config.smtp.listen:
        raise ValueError("[smtp] listen is not set")
    if not 0 <= local_reserved < max_connections:
        raise ValueError("local_reserved must leave remote clients at least one connection")
    # aiosmtpd logs recipients (tokens, ping keys) at INFO and message lines at DEBUG.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    host, port = parse_hostport(config.smtp.listen)
    handler = _Handler(service, config.smtp.domain, config.smtp.max_recipients)
    listener = SmtpListener(
        handler,
        config,
        timeout=timeout,
        pre_mail_timeout=min(pre_mail_timeout, timeout),  # never longer than inside a transaction
        max_connections=max_connections,
        max_per_client=max_per_client,
        local_reserved=local_reserved,
    )
    await listener._listen(host, port)
    logger.info("email heartbeats on smtp://%s:%d for <token>@%s", *listener.address, config.smtp.domain)
    return listener
