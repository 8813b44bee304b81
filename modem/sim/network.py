"""The fake phone network behind the simulated modem (:class:`Network`).

It decodes and records every SMS the modem submits (multipart reassembled into one
:class:`~modem.sim.records.SentSms`) and delivers injected inbound SMS to the SIM
(store-and-forward while the modem is off, locked or not registered, like a real SMSC).
An SMS to the subscriber's own number comes back to the SIM (the gateway's "canary").
It decides what happens to the status reports a submission asks for (TP-SRR) and to the
voice calls the modem dials, per recipient, and records every call
(:class:`~modem.sim.records.CallRecord`).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from modem.interface import mask_number
from modem.pdu import Submit, encode_deliver, encode_deliver_data
from modem.sim.records import CallRecord, SentSms, SimOptions


class Receiver(Protocol):
    """The modem side the network delivers to (the simulator attaches itself)."""

    def _receive_from_network(self, pdus: list[str]) -> None: ...


# Named as before the split into modules: log filters select "modem.simulator".
logger = logging.getLogger(__name__)

# What the network does with a submission's status report request (TP-SRR), and the TP-ST
# values it reports (23.040 9.2.3.15): "delivered" 0x00 at once; "delayed" a temporary error
# (0x22 "no response from SME", the SC still trying) at once, then 0x00 after the report
# delay; "failed" a permanent error (0x41 "incompatible destination") at once; "never": no
# report at all (some networks and modules never send them).
DELIVERY_OUTCOMES = ("delivered", "delayed", "failed", "never")
DELAYED_STATUS = 0x22
FAILED_STATUS = 0x41
# What a dialled phone does (see modem.sim.calls for the AT dialogue of each).
CALL_OUTCOMES = ("answer", "no-answer", "busy", "reject", "invalid", "no-voice")


def same_number(a: str, b: str) -> bool:
    """Whether two phone numbers are the same subscriber ("+1 555 ..." vs "+1555...")."""
    da = _digits(a)
    return bool(da) and da == _digits(b)


@dataclass
class _PartialSend:
    parts: dict[int, tuple[str, int, str]] = field(default_factory=dict)  # seq -> (text, mr, pdu)
    encoding: str = ""


class Network:
    """The fake phone network: records what the modem sends, delivers what tests inject.

    Thread-safe. Lock order: a simulator's lock may be held while taking the
    network's, never the other way round.
    """

    def __init__(self, *, smsc: str = "+15550000000") -> None:
        self.smsc = smsc
        self._cond = threading.Condition()
        self._sent: list[SentSms] = []
        self._partial: dict[tuple[str, int, int], _PartialSend] = {}
        self._undelivered: deque[list[str]] = deque()  # messages (lists of PDUs) not yet on a SIM
        self._listeners: list[Callable[[SentSms], None]] = []
        self._sim: Receiver | None = None
        self._concat_ref = 0
        self._calls: list[CallRecord] = []
        self.configure(SimOptions())

    def configure(self, options: SimOptions) -> None:
        """Take the subscriber's number and the services' behaviour from ``options`` (a
        :class:`~modem.sim.device.Simulator` does this when it attaches); per-recipient
        settings are cleared."""
        with self._cond:
            self._own_number = options.own_number
            self._loopback_delay = options.loopback_delay
            self._loopback_lost = options.loopback_lost
            self._delivery: dict[str | None, tuple[str, int | None]] = {None: (options.delivery, None)}
            self._report_delay = options.report_delay
            self._call_outcomes: dict[str | None, str] = {None: options.call_outcome}
        _check(options.delivery, DELIVERY_OUTCOMES, "delivery outcome")
        _check(options.call_outcome, CALL_OUTCOMES, "call outcome")

    # -- the test-facing side

    def sent(self) -> list[SentSms]:
        """Every complete message sent so far, oldest first."""
        with self._cond:
            return list(self._sent)

    def wait_for_sent(self, count: int, timeout: float) -> list[SentSms]:
        """Block until at least ``count`` messages were sent; raises ``TimeoutError``."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._sent) >= count, timeout):
                raise TimeoutError(f"{len(self._sent)} of {count} SMS sent after {timeout} s")
            return list(self._sent)

    def clear_sent(self) -> None:
        with self._cond:
            self._sent.clear()
            self._partial.clear()

    def on_sent(self, listener: Callable[[SentSms], None]) -> None:
        """Call ``listener`` (from the modem's thread) for every message recorded."""
        with self._cond:
            self._listeners.append(listener)

    def undelivered(self) -> int:
        """Inbound messages the network still holds (modem off, locked or storage full)."""
        with self._cond:
            return len(self._undelivered)

    def inject(self, sender: str, text: str, *, timestamp: dt.datetime | None = None) -> None:
        """Deliver an SMS from ``sender`` to the SIM (split into parts as needed)."""
        when = timestamp or dt.datetime.now(dt.UTC).replace(microsecond=0)
        with self._cond:
            self._concat_ref = (self._concat_ref + 1) % 256
            ref = self._concat_ref
        pdus = encode_deliver(sender, text, timestamp=when, smsc=self.smsc, concat_ref=ref)
        logger.info("network: inbound SMS from %s, %d part(s)", mask_number(sender), len(pdus))
        self._deliver(list(pdus))

    def inject_data(self, sender: str, data: bytes, *, dcs: int, timestamp: dt.datetime | None = None) -> None:
        """Deliver an SMS from ``sender`` whose user data is ``data`` as-is under TP-DCS ``dcs``:
        a data coding the gateway may not decode (``dcs=0x24``: compressed 8-bit data)."""
        when = timestamp or dt.datetime.now(dt.UTC).replace(microsecond=0)
        pdu = encode_deliver_data(sender, data, dcs=dcs, timestamp=when, smsc=self.smsc)
        logger.info("network: inbound SMS from %s, DCS 0x%02X", mask_number(sender), dcs)
        self._deliver([pdu])

    def inject_pdu(self, hex_pdu: str) -> None:
        """Deliver one raw PDU (hex, with the SMSC field) as-is, even a malformed one."""
        cleaned = hex_pdu.strip().upper()
        try:
            bytes.fromhex(cleaned)
        except ValueError as exc:
            raise ValueError(f"not a hex PDU: {exc}") from None
        self._deliver([cleaned])

    def set_loopback(self, *, delay: float | None = None, lost: bool | None = None) -> None:
        """An SMS to the own number comes back after ``delay`` seconds, or (``lost``) never."""
        with self._cond:
            if delay is not None:
                self._loopback_delay = max(0.0, delay)
            if lost is not None:
                self._loopback_lost = lost

    def set_delivery(
        self, outcome: str, number: str | None = None, *, status: int | None = None, delay: float | None = None
    ) -> None:
        """The status reports of submissions to ``number`` (None: every other recipient):
        one of :data:`DELIVERY_OUTCOMES`. ``status`` replaces the TP-ST of the first report
        ("delayed": temporary, 0x20-0x2F; "failed": permanent, 0x40-0x4F, or 0x60-0x6F);
        ``delay`` the seconds until a "delayed" one's final report (for every recipient).
        Raises ``ValueError``."""
        _check(outcome, DELIVERY_OUTCOMES, "delivery outcome")
        if status is not None and not 0 <= status <= 0xFF:
            raise ValueError(f"TP-ST {status} does not fit one octet")
        with self._cond:
            self._delivery[_key(number)] = (outcome, status)
            if delay is not None:
                self._report_delay = max(0.0, delay)

    def set_call_outcome(self, outcome: str, number: str | None = None) -> None:
        """What the phone at ``number`` (None: every other number) does when the modem calls:
        one of :data:`CALL_OUTCOMES`. Raises ``ValueError``."""
        _check(outcome, CALL_OUTCOMES, "call outcome")
        with self._cond:
            self._call_outcomes[_key(number)] = outcome

    def calls(self) -> list[CallRecord]:
        """Every call the modem dialled, oldest first (the last one may still be going on)."""
        with self._cond:
            return list(self._calls)

    def wait_for_calls(self, count: int, timeout: float, *, ended: bool = False) -> list[CallRecord]:
        """Block until at least ``count`` calls were dialled (with ``ended``: and are over);
        raises ``TimeoutError``."""

        def enough() -> bool:
            return sum(1 for c in self._calls if c.ended or not ended) >= count

        with self._cond:
            if not self._cond.wait_for(enough, timeout):
                raise TimeoutError(f"{len(self._calls)} call(s), not {count}, after {timeout} s")
            return list(self._calls)

    def clear_calls(self) -> None:
        with self._cond:
            self._calls.clear()

    # -- the modem-facing side

    def _delivery_for(self, number: str) -> tuple[str, int | None, float]:
        """(outcome, TP-ST override, report delay) for a submission to ``number``."""
        with self._cond:
            outcome, status = self._delivery.get(_digits(number), self._delivery[None])
            return outcome, status, self._report_delay

    def _call_outcome_for(self, number: str) -> str:
        with self._cond:
            return self._call_outcomes.get(_digits(number), self._call_outcomes[None])

    def _call_started(self, record: CallRecord) -> int:
        """Record a dialled call; its handle for :meth:`_call_changed`."""
        logger.info("network: call to %s (%s)", mask_number(record.number), record.outcome)
        with self._cond:
            self._calls.append(record)
            self._cond.notify_all()
            return len(self._calls) - 1

    def _call_changed(self, handle: int, record: CallRecord) -> None:
        with self._cond:
            if 0 <= handle < len(self._calls) and self._calls[handle].at == record.at:
                self._calls[handle] = record  # (unless clear_calls() dropped it meanwhile)
            self._cond.notify_all()

    def _attach(self, sim: Receiver) -> None:
        with self._cond:
            self._sim = sim

    def _deliver(self, pdus: list[str]) -> None:
        sim = self._sim
        if sim is None:
            with self._cond:
                self._undelivered.append(pdus)
            return
        sim._receive_from_network(pdus)

    def _hold(self, pdus: list[str]) -> None:
        with self._cond:
            self._undelivered.append(pdus)

    def _take_undelivered(self) -> list[list[str]]:
        with self._cond:
            out = list(self._undelivered)
            self._undelivered.clear()
            return out

    def _return_undelivered(self, messages: list[list[str]]) -> None:
        with self._cond:
            self._undelivered.extendleft(reversed(messages))

    def _submit_pdu(self, submit: Submit, mr: int, pdu: str) -> None:
        encoding = str(getattr(submit, "encoding", ""))
        concat = submit.concat
        if concat is None or concat.total <= 1:
            self._record(SentSms(submit.recipient, submit.text, 1, (mr,), _utcnow(), encoding, (pdu,)))
            return
        key = (submit.recipient, concat.ref, concat.total)
        with self._cond:
            partial = self._partial.setdefault(key, _PartialSend(encoding=encoding))
            partial.parts[concat.seq] = (submit.text, mr, pdu)
            if len(partial.parts) < concat.total:
                return
            del self._partial[key]
        ordered = [partial.parts[seq] for seq in sorted(partial.parts)]
        self._record(
            SentSms(
                submit.recipient,
                "".join(p[0] for p in ordered),
                concat.total,
                tuple(p[1] for p in ordered),
                _utcnow(),
                partial.encoding,
                tuple(p[2] for p in ordered),
            )
        )

    def _submit_text(self, number: str, text: str, mr: int) -> None:
        self._record(SentSms(number, text, 1, (mr,), _utcnow(), "text", ()))

    def _record(self, sms: SentSms) -> None:
        logger.info("network: SMS to %s recorded, %d part(s)", mask_number(sms.number), sms.parts)
        with self._cond:
            self._sent.append(sms)
            listeners = list(self._listeners)
            self._cond.notify_all()
        for listener in listeners:
            try:
                listener(sms)
            except Exception:
                logger.exception("network: sent-listener failed")
        self._loop_back(sms)

    def _loop_back(self, sms: SentSms) -> None:
        """An SMS to the subscriber's own number is delivered back to its SIM, from itself."""
        with self._cond:
            own, delay, lost = self._own_number, self._loopback_delay, self._loopback_lost
        if own is None or not same_number(sms.number, own):
            return
        if lost:
            logger.info("network: SMS to the own number lost")
            return
        if delay <= 0:
            self.inject(own, sms.text)  # the modem holds the +CMTI until +CMGS is answered
            return
        timer = threading.Timer(delay, self.inject, (own, sms.text))
        timer.daemon = True
        timer.start()


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _key(number: str | None) -> str | None:
    """Per-number settings are keyed by digits ("+1 555 ..." and "+1555..." are one)."""
    if number is None:
        return None
    digits = _digits(number)
    if not digits:
        raise ValueError(f"not a phone number: {number!r}")
    return digits


def _digits(number: str) -> str:
    return "".join(c for c in number if c.isdigit())


def _check(value: str, allowed: tuple[str, ...], what: str) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r} (known: {', '.join(allowed)})")
