"""Runs SMS commands from allow-listed phones: parse (pure, gateway.rules.commands), then one
service call that does what the command says (the same use cases the web page and the API
use), records who did what and queues the reply. The inbox has already stored the message and
checked the sender against the allow-list."""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable

from gateway.rules import commands as cmds
from gateway.rules.phone import mask
from gateway.service import Service

logger = logging.getLogger(__name__)

REPLIES_PER_HOUR = 20  # per sender: a phone stuck in an auto-reply loop cannot drain the budget


class CommandRunner:
    def __init__(self, service: Service, *, clock: Callable[[], float] = time.time) -> None:
        self.service = service
        self.clock = clock
        self._replies: dict[str, collections.deque[float]] = collections.defaultdict(collections.deque)

    async def __call__(self, sender: str, text: str) -> str | None:
        """Carry out ``text`` from ``sender`` (already allow-listed); returns the reply sent, or
        None when nothing is answered (wrong PIN, reply rate limit)."""
        service = self.service
        checks = service.list_checks()
        tags = sorted({t for c in checks for t in c.tag_list})
        parsed = cmds.parse(text, names=[c.name for c in checks], pin=service.settings.sms_pin, tags=tags)
        reply_to = None if isinstance(parsed, cmds.PinRejected) else sender
        if reply_to is not None and not self._may_reply(sender):
            logger.warning("reply limit reached for %s; not answering", mask(sender))
            reply_to = None
        return await service.answer_command(parsed, mask(sender), reply_to)

    def _may_reply(self, sender: str) -> bool:
        now = self.clock()
        q = self._replies[sender]
        while q and q[0] < now - 3600:
            q.popleft()
        if len(q) >= REPLIES_PER_HOUR:
            return False
        q.append(now)
        return True
