"""The fake phone network behind the simulated modem (:class:`Network`).

It decodes and records every SMS the modem submits (multipart reassembled into one
:class:`~modem.sim.records.SentSms`) and delivers injected inbound SMS to the SIM
(store-and-forward while the modem is off, locked or not registered, like a real SMSC).
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
from modem.sim.records import SentSms


class Receiver(Protocol):
    """The modem side the network delivers to (the simulator attaches itself)."""

    def _receive_from_network(self, pdus: list[str]) -> None: ...


# Named as before the split into modules: log filters select "modem.simulator".
logger = logging.getLogger(__name__)


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

    # -- the modem-facing side

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


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
