"""Use case: forward an inbound SMS to the owner by email (``[relay] forward_sms``).

The rules (which messages, which addresses, the text) are :mod:`gateway.rules.forward`; this
module applies them to a message the inbox has just stored and writes one outbox row of kind
"forward" per address, so the email is retried like every other. It needs no ``[relay]
enabled``: that switch is about texting for others, this only tells the owner.
"""

from __future__ import annotations

import collections
import logging
from typing import TYPE_CHECKING

from gateway.rules import commands as cmds
from gateway.rules import forward as rules
from gateway.rules import smspath
from gateway.rules.phone import mask

if TYPE_CHECKING:
    from gateway.service import Service

logger = logging.getLogger(__name__)

HOUR = 3600.0


class Forwarder:
    def __init__(self, service: Service) -> None:
        self.service = service
        self._recent: dict[str, collections.deque[float]] = collections.defaultdict(collections.deque)

    async def consider(self, inbox_id: int, sender: str, text: str, allowed: bool) -> int:
        """Forward the stored SMS ``inbox_id`` if the rules want it; returns how many emails
        were queued (committed before it returns)."""
        service = self.service
        mode = service.config.relay.forward_sms
        if mode == "off":
            return 0
        s = service.settings
        parsed = None
        if allowed and mode == "all":
            checks = service.list_checks()
            tags = sorted({t for c in checks for t in c.tag_list})
            parsed = cmds.parse(text, names=[c.name for c in checks], pin=s.sms_pin, tags=tags)
        ours = sender in {service.config.modem.own_number, service.smspath.state().number} - {None}
        canary = smspath.canary_token(text) is not None
        if not rules.wanted(mode, allowed=allowed, parsed=parsed, canary=canary, ours=ours):
            return 0
        to, left_out = rules.recipients(s.email_to, service.config.smtp.domain)
        if left_out:
            logger.warning(
                "not forwarding SMS to %s: on this gateway's own mail domain (it could come back in)",
                ", ".join(mask(a) for a in left_out),
            )
        if not to:
            logger.info("SMS from %s (inbox %d) not forwarded: no email_to address", mask(sender), inbox_id)
            return 0
        now = service.clock()
        if not self._room(sender, now):
            logger.warning(
                "SMS from %s (inbox %d) not forwarded: %d forwarded from it in the last hour",
                mask(sender),
                inbox_id,
                rules.PER_SENDER_PER_HOUR,
            )
            return 0
        body = rules.text(sender, now, text, inbox_id, s)
        for addr in to:
            await service.store.awrite_message("forward", "email", addr, body, now)
        service.notify_outbox()
        logger.info("SMS from %s (inbox %d) forwarded by email to %s", mask(sender), inbox_id, ", ".join(map(mask, to)))
        return len(to)

    def _room(self, sender: str, now: float) -> bool:
        q = self._recent[sender]
        while q and q[0] <= now - HOUR:
            q.popleft()
        if len(q) >= rules.PER_SENDER_PER_HOUR:
            return False
        q.append(now)
        return True
