"""The ``Modem`` interface every backend implements, and the records it returns.

The gateway talks only to this interface (through :class:`~modem.keeper.ModemKeeper`,
which owns one backend, reconnects it with backoff and reports its health). Backends:
:class:`~modem.atmodem.AtModem` (pyserial) and :class:`~modem.gammu.GammuModem`
(python-gammu). :mod:`modem.driver` re-exports all of these.
"""

from __future__ import annotations

import abc
import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from modem.errors import ModemError, SimError


@dataclass(frozen=True)
class ModemStatus:
    """What ``modem probe`` prints and the web page shows. Unknown values are ``None``."""

    backend: str  # "at" | "gammu"
    port: str  # device path or socket:// URL (never credentials)
    manufacturer: str | None = None
    model: str | None = None
    revision: str | None = None
    imei: str | None = None
    sim: str | None = None  # "READY", "SIM PIN", "SIM PUK", "NOT INSERTED", ...
    registration: str | None = None  # "home" | "roaming" | "searching" | "denied" | "unregistered" | "unknown"
    operator: str | None = None
    signal_dbm: int | None = None  # None when the modem reports 99 (unknown)
    smsc: str | None = None
    # The storage new messages are received into (``AT+CPMS?`` mem3): slots in use, slots in
    # all. A full one makes the network hold every further SMS, the owner's commands too.
    storage_used: int | None = None
    storage_total: int | None = None
    # The radio (``AT+CFUN``): "on", "off", or "refused" when init could not switch it on.
    radio: str | None = None
    # "GSM" | "UMTS" | "LTE" | "NR" of the registered domain (``<AcT>``, else ``+COPS``).
    access_technology: str | None = None
    # Registered, but only for SMS (``+CEREG`` stat 6/7): alerts work, calls do not.
    sms_only: bool | None = None
    # A sentence for the owner when the registration limits alerts ("denied", "SMS only").
    registration_note: str | None = None
    # How often the modem said its message storage was full since it was opened (each
    # time the storage was read and cleared at once); None when the backend cannot tell.
    storage_full_reports: int | None = None


@dataclass(frozen=True)
class InboundSms:
    """One complete inbound message (multipart already reassembled)."""

    sender: str  # "+4915..." (international), national digits, or alphanumeric
    text: str
    sent_at: dt.datetime | None  # SMSC timestamp, timezone-aware
    received_at: dt.datetime  # when the modem layer read it, UTC
    parts: int = 1
    complete: bool = True  # False when parts were missing and the reassembly timed out
    storage: tuple[int, ...] = field(default=(), compare=False)  # SIM indexes, for deletion
    # True when the PDU could not be decoded (a data coding we do not read, broken user data):
    # ``text`` is then "[undecodable SMS, DCS 0x..: <hex excerpt>]" (modem.pdu.unreadable_text),
    # ``sent_at`` None when the header was broken too. Handed over like any other, then deleted.
    undecodable: bool = False
    damaged: bool = False  # decoded as far as its octets went (some were missing or extra)


InboundHandler = Callable[[InboundSms], Awaitable[None]]


#: What :meth:`Modem.call` can end in. "answered": the phone took the call (we hung up after a
#: moment, or it did); "no-answer": it rang until ``ring_for`` passed (or the network gave up);
#: "busy"; "rejected": it rang, then was declined; "invalid": the network knows no such
#: number; "no-voice": this modem or network carries no calls (permanent); "failed": anything
#: else (no network, a modem that did not answer): worth another try later.
CALL_OUTCOMES = ("answered", "no-answer", "busy", "rejected", "invalid", "no-voice", "failed")


@dataclass(frozen=True)
class CallResult:
    """How a voice call (:meth:`Modem.call`) ended."""

    outcome: str  # one of CALL_OUTCOMES
    detail: str = ""  # what the modem/network said ("NO CARRIER", "+CME ERROR 4: ...", AT+CEER text)
    ringing: float = 0.0  # seconds it rang (or was active) before it ended or we hung up


@dataclass(frozen=True)
class DeliveryReport:
    """One SMS-STATUS-REPORT: what became of one part of a message sent with ``report=True``."""

    reference: int  # TP-MR of the part it reports on (what send_sms returned)
    recipient: str  # as in the report ("+1555...")
    state: str  # "delivered" | "pending" | "failed"
    status: int  # TP-ST
    reason: str  # a short sentence for the owner ("delivered", "unknown subscriber")
    discharged_at: dt.datetime | None  # when the SMSC delivered it or gave up, timezone-aware


ReportHandler = Callable[[DeliveryReport], Awaitable[None]]


class Modem(abc.ABC):
    """One GSM modem. Methods raise :class:`modem.errors.ModemError` subclasses only.

    Not thread-safe: one asyncio task owns a modem (see :class:`ModemKeeper`).
    """

    backend: str = "?"

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and run the init sequence (PIN, registration, PDU mode, new-SMS
        indications), then hand over messages stored while offline. Raises
        ``SimError`` (permanent) for a wrong PIN / PUK, ``PortGone`` or
        ``ModemTimeout`` when the device is absent or silent."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the port. Idempotent."""

    @abc.abstractmethod
    async def status(self) -> ModemStatus:
        """Query identity, SIM, registration, operator, signal and SMSC."""

    @abc.abstractmethod
    async def send_sms(self, number: str, text: str, *, report: bool = False) -> list[int]:
        """Send ``text`` (split into parts as needed) to ``number``.

        Returns the message references the network confirmed (``+CMGS: <mr>``),
        one per part. With ``report`` every part asks for a status report (TP-SRR); they
        come to the report handler (:meth:`set_report_handler`), one per part, carrying
        these references, if the network and the modem send them at all (some never do:
        a report is a marker, never the only proof). Backends that cannot ask may ignore
        it. Raises ``CmsError`` (``permanent`` says whether a retry can help),
        ``ModemTimeout`` or ``PortGone``.
        """

    @abc.abstractmethod
    def set_inbound_handler(self, handler: InboundHandler) -> None:
        """Called once per complete inbound message. The backend deletes the
        message from modem storage only after the handler returned normally."""

    def set_report_handler(self, handler: ReportHandler) -> None:
        """Called once per status report the modem receives (for any reference: the caller
        decides what it belongs to). The default ignores reports (backends that get none)."""
        return None  # a default that ignores them, not an abstract method

    async def call(self, number: str, ring_for: float) -> CallResult:
        """Call ``number`` and let it ring up to ``ring_for`` seconds; hang up once it is
        answered (there is nothing to say: the call itself is the alarm) or the time passed.
        Never raises for how the call went (see :class:`CallResult`); raises ``PortGone``
        when the port vanished. The default: "no-voice" (the backend cannot call)."""
        return CallResult("no-voice", "this modem backend cannot make calls")

    async def ussd(self, code: str, timeout: float = 30.0) -> str:
        """Send the USSD ``code`` (``*100#``) and return the network's answer text.
        Raises ModemError (the network refused or ended the session), ModemTimeout (no
        answer within ``timeout``), PortGone. The default: not supported (permanent)."""
        raise ModemError("USSD is not supported by this backend", permanent=True)

    async def own_number(self) -> str | None:
        """The SIM's own number (``AT+CNUM``); None when the SIM does not know it or the
        backend cannot tell. Raises ModemTimeout, PortGone."""
        return None

    async def wait_gone(self) -> None:
        """Return when the backend noticed on its own that its device vanished.

        The default never returns (until cancelled): :class:`ModemKeeper` then notices a
        lost device through failing calls and its periodic status refresh. Backends that
        see the port go (``AtModem``'s reader thread) override it.
        """
        await asyncio.Event().wait()

    async def wait_news(self) -> None:
        """Return when the modem reported something its keeper should look at now (it lost
        or found the network, its storage is full); the keeper then refreshes the status.

        The default never returns: the keeper's periodic refresh sees it. ``AtModem``
        overrides it (unsolicited registration and storage reports)."""
        await asyncio.Event().wait()


class SimAbsent(SimError):
    """The SIM is missing or failing and no PIN was sent: safe to try again later
    (someone may insert or reseat it). Any other :class:`SimError` needs a human."""


def mask_number(recipient: str) -> str:
    """Enough of a phone number (or an email address) to tell people apart in logs and event
    rows, not enough to leak it: ``+155***67``, ``ow***@example.net``. The one masker of the
    project: the driver, the simulator and the gateway all use it."""
    if "@" in recipient:
        user, _, domain = recipient.partition("@")
        return user[:2] + "***@" + domain
    return recipient[:4] + "***" + recipient[-2:] if len(recipient) > 6 else "***"
