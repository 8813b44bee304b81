"""Whether SMS reach people, kept by the service: delivery reports marked on the outbox, the
daily canary's record and the prepaid balance checks (the decisions are
:mod:`gateway.rules.smspath`; the task that runs the canary and the balance check is
:mod:`gateway.runtime.smspath`)."""

from __future__ import annotations

import logging
import secrets
from typing import TYPE_CHECKING

from gateway.rules import smspath
from gateway.rules.phone import mask
from gateway.rules.policy import clock as local_clock

if TYPE_CHECKING:
    from gateway.service import Service

logger = logging.getLogger(__name__)

CANARY_KEY = "canary"  # gateway.rules.smspath.Canary, as JSON
BALANCE_KEY = "balance"  # gateway.rules.smspath.Balance, as JSON


EARLY_REPORT_TTL = 600.0  # a delivery report may come before its SMS is marked sent


class SmsPath:
    """The delivery report, canary and balance use cases (``service.smspath``)."""

    def __init__(self, service: Service) -> None:
        self.service = service
        # Delivery reports that came before their SMS was marked sent: (now, recipient,
        # reference, state, reason, at), applied by sent_with_refs, dropped after a while.
        self._early: list[tuple[float, str, int, str, str, float]] = []

    def peer_reason(self) -> str | None:
        """Why this gateway cannot alert by SMS, for the peer gateway to tell its owner (the
        canary did not come back); None while the path is not known to be broken."""
        c = self.state()
        if not c.broken or c.failed_sent_at is None:
            return None
        sent = local_clock(c.failed_sent_at, self.service.settings)
        return f"the SMS path is broken: its SMS to itself, sent {sent}, did not come back"

    async def record_delivery_report(
        self, recipient: str, reference: int, state: str, reason: str, at: float | None = None
    ) -> int:
        """A delivery report from the network (``state``: delivered | pending | failed): marked
        on the SMS it reports on, shown in the outbox. One for no message we know (yet) changes
        nothing: it is kept a while, since a fast network can report before the dispatcher has
        marked the message sent. A report is a marker, never the only truth: a network that
        sends none leaves the messages as sent."""
        store, now = self.service.store, self.service.clock()
        when = at if at is not None else now
        n = await store.apply_delivery_report(recipient, reference, state, reason, when)
        if n == 0:
            self._early = [r for r in self._early if r[0] > now - EARLY_REPORT_TTL][-99:]
            self._early.append((now, recipient, reference, state, reason, when))
            logger.info("delivery report for an SMS not (yet) known: reference %d to %s", reference, mask(recipient))
        elif state == "failed":
            logger.warning("SMS to %s not delivered: %s", mask(recipient), reason)
        return n

    async def sent_with_refs(self, recipient: str, refs: str) -> None:
        """An SMS to ``recipient`` was marked sent with ``refs``: the reports that came first
        are applied now."""
        parts = set(refs.split(","))
        early = [r for r in self._early if r[1] == recipient and str(r[2]) in parts]
        if not early:
            return
        self._early = [r for r in self._early if r not in early]
        for _, to, ref, state, reason, when in early:
            await self.service.store.apply_delivery_report(to, ref, state, reason, when)

    def state(self) -> smspath.Canary:
        return smspath.Canary.from_json(self.service.store.get_setting(CANARY_KEY))

    async def send_canary(self, number: str, day: str) -> str:
        """Queue the day's canary SMS to the gateway's own ``number`` (its record and the
        message commit together). Returns its token."""
        token = secrets.token_hex(3)
        now = self.service.clock()
        state = smspath.sent(self.state(), token, now, day, number)
        await self.service.store.queue_noted(
            CANARY_KEY, state.to_json(), "canary", "sms", number, smspath.canary_text(token), now
        )
        self.service.notify_outbox()
        return token

    async def canary_back(self, sender: str, text: str) -> bool:
        """An inbound SMS: True when it is one of our canaries (consumed: it is neither a
        command nor a stranger's message), False for anything else."""
        token = smspath.canary_token(text)
        state = self.state()
        if token is None or state.number is None or sender != state.number:
            return False
        now = self.service.clock()
        after, what = smspath.returned(state, token, now)
        if what == "stray":
            logger.info("a canary SMS came back twice, or one we did not send: ignored")
            return True
        await self.service.store.aset_setting(CANARY_KEY, after.to_json())
        trip = f"{after.round_trip:.0f} s round trip" if after.round_trip is not None else "round trip unknown"
        await self.service.store.aadd_event(None, now, "canary", f"SMS path proven ({trip})")
        if what == "late":
            logger.warning("the canary came back late (%s): the SMS path works again", trip)
            await self.service.notify_owner(f"hbgw: the SMS path works again: the canary came back late ({trip}).")
        else:
            logger.info("SMS path proven: the canary came back (%s)", trip)
        return True

    async def canary_overdue(self, timeout: float) -> bool:
        """Give up on the canary in flight once ``timeout`` passed: the owner hears it (email),
        the pages and ``hbgw status`` show it. True when it was given up now."""
        state = self.state()
        after = smspath.lost(state, self.service.clock(), timeout)
        if after is None:
            return False
        await self.service.store.aset_setting(CANARY_KEY, after.to_json())
        sent_at = local_clock(after.failed_sent_at or 0.0, self.service.settings)
        detail = f"the SMS path is broken: sent {sent_at}, not received within {int(timeout // 60)} min"
        logger.error("%s", detail)
        await self.service.store.aadd_event(None, self.service.clock(), "canary", detail)
        await self.service.notify_owner(
            f"hbgw: {detail}. The gateway texted itself and the message did not come back: alerts by SMS"
            " may not arrive (SIM credit, operator, modem?). Check the modem page."
        )
        return True

    def balance(self) -> smspath.Balance:
        return smspath.Balance.from_json(self.service.store.get_setting(BALANCE_KEY))

    async def record_balance(self, answer: str | None, error: str | None) -> smspath.Balance:
        """The result of a balance check (the network's ``answer``, or the ``error``)."""
        before = self.balance()
        pattern = self.service.config.modem.balance_pattern
        amount = smspath.balance_amount(answer, pattern) if answer is not None else None
        after = smspath.Balance(
            asked_at=self.service.clock(),
            answer=answer if answer is not None else before.answer,
            amount=amount if answer is not None else before.amount,
            error=error,
            failures=0 if error is None else before.failures + 1,
        )
        await self.service.store.aset_setting(BALANCE_KEY, after.to_json())
        new = smspath.balance_troubles(
            after, self.service.config.modem.balance_min, self.service.config.modem.balance_ussd
        )
        old = smspath.balance_troubles(
            before, self.service.config.modem.balance_min, self.service.config.modem.balance_ussd
        )
        if new and new != old:
            await self.service.notify_owner(f"hbgw: {new[0]}.")
        return after
