"""Inbound SMS: every message is stored; only allow-listed numbers (with the PIN, if set) may
command the gateway. Messages from anyone else are shown in the web inbox and never answered."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable

from gateway.service import Service
from modem.driver import InboundSms

logger = logging.getLogger(__name__)


def normalize_number(number: str, country_code: str | None) -> str:
    """A sender as E.164 where possible: ``+...`` stays, ``00...`` → ``+...``, a national
    ``0...`` gets ``+<country_code>``; anything else (alphanumeric senders) is returned as is."""
    n = re.sub(r"[\s().-]", "", number)
    if re.fullmatch(r"\+\d{6,15}", n):
        return n
    if re.fullmatch(r"00\d{6,15}", n):
        return "+" + n[2:]
    if country_code and re.fullmatch(r"0\d{5,14}", n):
        return f"+{country_code}{n[1:]}"
    if country_code and re.fullmatch(rf"{country_code}\d{{6,13}}", n):
        return "+" + n
    return number


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

    async def __call__(self, sms: InboundSms) -> None:
        sender = normalize_number(sms.sender, self.country)
        text = sms.text if sms.complete else sms.text + " [incomplete]"
        inbox_id, allowed = await self.service.record_inbound_sms(sender, text)
        if not allowed:
            logger.info("SMS from a number not on the allow-list stored (id %d), not answered", inbox_id)
            return
        if self.run_command is None:
            return
        reply = await self.run_command(sender, text)
        await self.service.mark_inbox_handled(inbox_id, reply)
