"""Runs SMS commands from allow-listed phones: parse (pure, gateway.rules.commands), one service call
per command (the same calls the web page and the API make), an event row saying who did what,
and the reply through the outbox. The inbox has already stored the message and checked the
sender against the allow-list."""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable

from gateway.rules import commands as cmds
from gateway.rules.commands import Command, ParseError, PinRejected, Verb
from gateway.service import Service
from gateway.store import NotFound

logger = logging.getLogger(__name__)

REPLIES_PER_HOUR = 20  # per sender: a phone stuck in an auto-reply loop cannot drain the budget


class CommandRunner:
    def __init__(self, service: Service, *, clock: Callable[[], float] = time.time) -> None:
        self.service = service
        self.clock = clock
        self._replies: dict[str, collections.deque[float]] = collections.defaultdict(collections.deque)

    async def __call__(self, sender: str, text: str) -> str | None:
        return await asyncio.to_thread(self.run, sender, text)

    def run(self, sender: str, text: str) -> str | None:
        """Carry out ``text`` from ``sender`` (already allow-listed); returns the reply sent, or
        None when nothing is answered (wrong PIN, reply rate limit)."""
        service = self.service
        names = [c.name for c in service.list_checks()]
        pin = service.owner_settings().sms_pin
        result = cmds.parse(text, names=names, pin=pin)
        who = _mask(sender)
        if isinstance(result, PinRejected):
            service.record_command(None, f"SMS from {who} rejected: PIN missing or wrong")
            return None
        if isinstance(result, ParseError):
            reply = result.reply
            service.record_command(None, f"SMS from {who}: not understood ({result.code})")
        else:
            reply, check_name = self._execute(result)
            what = result.verb.value + (f" {check_name}" if check_name else "")
            service.record_command(check_name, f"SMS from {who}: {what}")
        if not self._may_reply(sender):
            logger.warning("reply limit reached for %s; not answering", who)
            return None
        service.send_reply(sender, reply)
        return reply

    def _execute(self, c: Command) -> tuple[str, str | None]:
        s = self.service
        pin_required = s.owner_settings().sms_pin is not None
        if c.verb is Verb.HELP:
            return cmds.render_help(pin_required=pin_required), None
        if c.verb is Verb.STATUS:
            now = self.clock()
            if c.name:
                check = s.get_check(c.name)
                age = now - check.last_ping if check.last_ping is not None else None
                return cmds.render_check(check.name, s.status_of(check, now), age), check.name
            rows = [(k.name, s.status_of(k, now), now - k.last_ping if k.last_ping else None) for k in s.list_checks()]
            return cmds.render_status(rows), None
        if c.verb is Verb.ACK:
            name = c.name
            if name is None:
                last = s.last_alerted_check()
                if last is None:
                    return cmds.render_nothing_to_ack(), None
                name = last.name
            s.ack(name)
            return cmds.render_done(Command(Verb.ACK, name)), name
        targets = [c.name] if c.name else [k.name for k in s.list_checks()]
        for name in targets:
            try:
                if c.verb is Verb.ON:
                    s.set_sms_enabled(name, True)
                elif c.verb is Verb.OFF:
                    s.set_sms_enabled(name, False)
                elif c.verb is Verb.MUTE:
                    s.mute(name, c.duration or 3600.0)
                elif c.verb is Verb.UNMUTE:
                    s.unmute(name)
                elif c.verb is Verb.PAUSE:
                    s.pause(name)
                elif c.verb is Verb.RESUME:
                    s.resume(name)
            except NotFound:
                continue  # removed between parsing and now
        return cmds.render_done(c), c.name

    def _may_reply(self, sender: str) -> bool:
        now = self.clock()
        q = self._replies[sender]
        while q and q[0] < now - 3600:
            q.popleft()
        if len(q) >= REPLIES_PER_HOUR:
            return False
        q.append(now)
        return True


def _mask(number: str) -> str:
    return number[:4] + "***" + number[-2:] if len(number) > 6 else "***"
