"""Inbound SMS: every message is stored; only allow-listed numbers (with the PIN, if set) may
command the gateway. Messages from anyone else are shown in the web inbox and never answered;
they are forwarded to the owner by email as ``[relay] forward_sms`` says (gateway.forward)."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from gateway.forward import Forwarder
from gateway.rules.phone import normalize_number
from gateway.service import Service
from modem.driver import InboundSms

logger = logging.getLogger(__name__)


CommandRunner = Callable[[str, str], Awaitable[str | None]]


class Inbox:
    """The modem's inbound handler: store first (so nothing is lost), then act."""

    def __init__(
        self, service: Service, *, run_command: CommandRunner | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.service = service
        self.country = service.config.modem.country_code
        self.run_command = run_command
        self.clock = clock
        self.forwarder = Forwarder(service)

    async def __call__(self, sms: InboundSms) -> None:
        sender = normalize_number(sms.sender, self.country)
        if await self.service.smspath.canary_back(sender, sms.text):
            return  # our own canary, back: proof of the SMS path, not a message for the inbox
        text = sms.text + ("" if sms.complete else " [incomplete]") + (" [damaged]" if sms.damaged else "")
        inbox_id, allowed = await self.service.record_inbound_sms(sender, text)
        await self.forwarder.consider(inbox_id, sender, text, allowed)
        if not allowed:
            logger.info("SMS from a number not on the allow-list stored (id %d), not answered", inbox_id)
            return
        if self.run_command is None:
            return
        reply = await self.run_command(sender, text)
        await self.service.mark_inbox_handled(inbox_id, reply)
