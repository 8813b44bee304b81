"""Use cases of the box as the house's SMS gateway: queue a message something else asked us to
send (mail to ``sms@``, the SMS API, Alertmanager...), and say what became of it.

The rules (who may be texted, how a text is fitted, each sender's share) are in
:mod:`gateway.rules.relay`; this module applies them and writes through the store. A message
accepted here is committed in the outbox (the same guarantee as an alert) before the caller
answers; the dispatcher sends it after our own alerts and never merges it with them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from gateway.model import OutboxRow
from gateway.rules import relay as rules
from gateway.rules.phone import mask

if TYPE_CHECKING:
    from gateway.service import Service

logger = logging.getLogger(__name__)


class RelayOff(Exception):
    """``[relay] enabled`` is false: the gateway texts only its own alerts."""


class Relay:
    def __init__(self, service: Service) -> None:
        self.service = service

    @property
    def rules(self) -> rules.RelayRules:
        return self.service.config.relay

    def prepare(self, to: str | Iterable[str] | None, text: str, subject: str = "") -> tuple[tuple[str, ...], str]:
        """(numbers, text as it will be sent) for a request, or ValidationError naming the
        field ("to" or "text"); RelayOff when relaying is off."""
        if not self.rules.enabled:
            raise RelayOff("relaying is off ([relay] enabled = false)")
        config = self.service.config
        numbers = rules.recipients(
            to,
            owner=self.service.settings.sms_to,
            contacts={c.name: c.phone for c in config.contacts if c.phone},
            allowed=self.rules.allow_numbers,
        )
        return numbers, rules.fit(rules.compose(subject, text), self.rules.max_parts, self.rules.unicode)

    def _room(self, by_origin: int, relayed: int) -> str | None:
        return rules.room(by_origin, relayed, budget=self.service.settings.max_sms_per_hour, rules=self.rules)

    def queue(self, to: str | Iterable[str] | None, text: str, origin: str, subject: str = "") -> list[int]:
        """Queue (and commit) one SMS per recipient; returns the outbox ids. Raises RelayOff,
        ValidationError, or store.Refused (the sender's share or the relayed budget is used up)."""
        numbers, body = self.prepare(to, text, subject)
        ids = self.service.store.queue_relay_now(numbers, body, origin, self.service.clock(), self._room)
        self._queued(ids, numbers, origin)
        return ids

    async def aqueue(self, to: str | Iterable[str] | None, text: str, origin: str, subject: str = "") -> list[int]:
        """:meth:`queue` for async callers (the SMTP listener): awaits the commit."""
        numbers, body = self.prepare(to, text, subject)
        ids = await self.service.store.queue_relay(numbers, body, origin, self.service.clock(), self._room)
        self._queued(ids, numbers, origin)
        return ids

    def _queued(self, ids: list[int], numbers: tuple[str, ...], origin: str) -> None:
        logger.info("relayed SMS queued for %s from %s (outbox %s)", ", ".join(mask(n) for n in numbers), origin, ids)
        self.service.notify_outbox()

    def message(self, outbox_id: int) -> OutboxRow | None:
        """A relayed message by its id (None: no such relayed message)."""
        row = self.service.store.get_message(outbox_id)
        return row if row is not None and row.kind == "relay" else None
