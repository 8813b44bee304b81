"""Sends what the outbox holds: claims due rows, merges those for one recipient into one message,
sends, and marks them sent only after the channel confirmed (the modem's ``+CMGS``).

At-least-once: a row is claimed with a lease; if the process dies before marking it sent, the
next start releases the lease and sends it again (one duplicate at most, the one in flight).
Retries back off; after ``fallback_after`` failed attempts of an alert (each row counts its own,
whatever it was merged with), or at once on a permanent error, an SMS goes by email instead and
the owner is told by email that SMS is failing. A push notification that gives up goes to
``email_to`` the same way (a ladder step may push and nothing else: its alert must not be
lost; where email carried it already, the owner gets it twice, as with a failed SMS). At most
``max_sms_per_hour`` SMS leave per hour; beyond that one notice SMS, the rest by email.
Relayed messages (gateway.relay) go after the alerts, one SMS each, and wait while the budget
is used up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from gateway.config import Config
from gateway.model import OutboxRow, Status
from gateway.rules import dependencies as deps
from gateway.rules import policy
from gateway.rules.phone import mask
from gateway.runtime.channels import Channel, ChannelError
from gateway.service import Service

logger = logging.getLogger(__name__)

LEASE = 300.0  # longer than any send (modem wait + 60 s per part)
HOUR = 3600.0
RELAY_WAIT = 600.0  # a relayed message over the SMS budget looks again after this
RELAY_PATIENCE = 86400.0  # and gives up after this
RELAY_ATTEMPTS = 5  # failed sends of a relayed message before it fails for good


class Dispatcher:
    def __init__(
        self, service: Service, channels: dict[str, Channel], config: Config, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.service = service
        self.store = service.store
        self.channels = channels
        self.config = config
        self.clock = clock
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._budget_notice_at = -HOUR
        self._modem_alert_at = -HOUR
        self._stopping = False
        self.idle = True  # waiting, nothing claimed (tests wait for it; the daemon does not care)

    def nudge(self) -> None:
        """New rows may be due. Safe to call from any thread."""
        loop = self._loop
        if loop is not None:
            try:
                loop.call_soon_threadsafe(self._wake.set)
            except RuntimeError:
                pass

    def request_stop(self) -> None:
        """Finish the sends in flight, claim nothing new, then return from run()."""
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        released = await self.store.release_leases()
        if released:
            logger.warning("%d message(s) were being sent when the gateway stopped: sending again", released)
        while not self._stopping:
            self._wake.clear()
            self.idle = False
            try:
                groups = await self.store.claim_due(self.clock(), LEASE)
            except Exception:
                logger.exception("cannot read the outbox; retrying in 1 s")
                await asyncio.sleep(1)
                continue
            if groups:
                # Our own alerts first; then what others asked us to relay, one message each
                # (never merged with alerts), so a flood of relayed mail never delays an alert.
                alerts = [a for a in ([r for r in g if r.kind != "relay"] for g in groups) if a]
                await asyncio.gather(*(self._send_group(g) for g in alerts))
                for row in (r for g in groups for r in g if r.kind == "relay"):
                    await self._send_group([row])
                continue
            self.idle = True
            nxt = self.store.next_due_message()  # a read: one indexed row, no writer wait
            timeout = 60.0 if nxt is None else max(0.0, min(60.0, nxt - self.clock()))
            try:  # not wait_for: on 3.11 it can swallow the cancellation that stops this loop
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def _send_group(self, rows: list[OutboxRow]) -> None:
        try:
            await self._send(rows)
        except Exception:
            # Our own bug, not the channel's: keep the rows (they come back after the lease)
            logger.exception("dispatch failed for outbox rows %s", [r.id for r in rows])

    async def _send(self, rows: list[OutboxRow]) -> None:
        if rows[0].kind == "relay":
            await self._relay(rows[0])
            return
        now = self.clock()
        channel_name, recipient = rows[0].channel, rows[0].recipient
        ids = [r.id for r in rows]
        settings = self.service.settings
        email_to, budget = settings.email_to, settings.max_sms_per_hour
        if (
            channel_name == "sms"
            and policy.counts_against_budget(r.kind for r in rows)
            and self._over_budget(now, budget)
        ):
            await self._budget_notice(recipient, now, budget)
            n = await self.store.mark_failed(ids, f"SMS budget of {budget}/h reached", email_to, now)
            logger.warning("SMS budget reached: %d message(s) to email instead", n)
            self.nudge()
            return
        behind: list[int] = []  # rows of checks behind a down parent: told by the parent's row
        text = self._text(rows, full=channel_name in ("email", "push"), behind=behind)
        if not text:
            # Every row is stale (a reminder for a server up again, an UP for one down again):
            # the owner already knows the state now, so nothing is sent.
            await self.store.mark_superseded(ids, self.clock())
            logger.info(
                "%d alert(s) to %s superseded by the checks' state now: nothing sent", len(ids), mask(recipient)
            )
            return
        channel = self.channels.get(channel_name)
        try:
            if channel is None:
                raise ChannelError(f"no {channel_name} channel configured", permanent=True)
            ref = await channel.send(recipient, text)
        except ChannelError as e:
            await self._failed(rows, e)
            return
        await self.store.mark_sent([i for i in ids if i not in behind], ref, self.clock())
        if behind:
            await self.store.mark_superseded(behind, self.clock())
        logger.info("sent %s to %s (%d alert(s) in one message)", channel_name, mask(recipient), len(rows))
        if channel_name == "sms":
            await self.service.smspath.sent_with_refs(recipient, ref)
        if channel_name == "call" and ref == "answered":
            await self.service.call_answered([r.check_name for r in rows if r.check_name], recipient)

    async def _relay(self, row: OutboxRow) -> None:
        """Send one relayed message as it is. Over the SMS budget it waits (our alerts keep
        their share); a message that could not go within RELAY_PATIENCE fails, visibly, with no
        email fallback (it was not ours to begin with; its sender sees the state in the API)."""
        now = self.clock()
        budget = self.service.settings.max_sms_per_hour
        if self._over_budget(now, budget):
            if now - row.created > RELAY_PATIENCE:
                await self.store.mark_failed([row.id], f"SMS budget of {budget}/h used up for a day", (), now)
            else:
                await self.store.mark_retries({row.id: now + RELAY_WAIT}, f"waiting for the SMS budget ({budget}/h)")
            return
        channel = self.channels.get("sms")
        try:
            if channel is None:
                raise ChannelError("no sms channel configured", permanent=True)
            ref = await channel.send(row.recipient, row.text)
        except ChannelError as e:
            tries = row.attempts + 1
            if policy.give_up(e.permanent, tries, RELAY_ATTEMPTS):
                await self.store.mark_failed([row.id], str(e), (), self.clock())
                logger.error("relayed SMS %d to %s failed for good: %s", row.id, mask(row.recipient), e)
            else:
                await self.store.mark_retries({row.id: self.clock() + policy.retry_delay(tries)}, str(e))
            return
        await self.store.mark_sent([row.id], ref, self.clock())
        logger.info("sent relayed SMS %d to %s (from %s)", row.id, mask(row.recipient), row.origin)
        await self.service.smspath.sent_with_refs(row.recipient, ref)

    async def _failed(self, rows: list[OutboxRow], e: ChannelError) -> None:
        """A send failed. Attempts belong to each alert, not to the message that merged them:
        a row whose own attempts reached ``fallback_after`` (or every row, on a permanent error)
        goes by email; the others wait for a retry, each after its own backoff."""
        channel_name, recipient = rows[0].channel, rows[0].recipient
        settings = self.service.settings
        error = str(e)
        now = self.clock()
        tries = {r.id: r.attempts + 1 for r in rows}  # r.attempts: those made before this claim
        done = [r.id for r in rows if policy.give_up(e.permanent, tries[r.id], settings.fallback_after)]
        again = {r.id: now + policy.retry_delay(tries[r.id]) for r in rows if r.id not in done}
        if done:
            n = await self.store.mark_failed(done, error, settings.email_to, now)
            logger.error(
                "%s to %s failed for good for outbox row(s) %s (attempts %s): %s; %d by email",
                channel_name,
                mask(recipient),
                done,
                [tries[i] for i in done],
                error,
                n,
            )
            if channel_name == "sms" and not e.permanent:
                await self._modem_failing(error)
            self.nudge()
        if again:
            await self.store.mark_retries(again, error)
            logger.warning(
                "%s to %s failed, retrying outbox row(s) %s (attempts %s, next in %.0f s): %s",
                channel_name,
                mask(recipient),
                list(again),
                [tries[i] for i in again],
                min(again.values()) - now,
                error,
            )

    def _text(self, rows: list[OutboxRow], *, full: bool, behind: list[int] | None = None) -> str:
        """One message for the rows, describing the checks' state now ("" when there is nothing
        left to say); ``full`` (email) adds every alert's own text below the summary line, since
        an email (or a push notification) has no 160-character limit. ``behind`` gets the ids
        of the rows left out because their check is behind a down parent."""
        named = {r.check_id: r.check_name for r in rows if r.check_id is not None and r.check_name}
        now = self.store.check_statuses(list(named))
        statuses = {name: Status(now[i]) for i, name in named.items() if i in now}
        pending = self._pending(rows, {i: Status(v) for i, v in now.items()}, behind if behind is not None else [])
        headline = policy.merge(pending, watched=self.store.count_watched(), s=self.service.settings, statuses=statuses)
        if not full or not headline or len(rows) == 1:
            return headline
        return headline + "\n\n" + "\n".join(p.text for p in pending if not p.sent)

    def _pending(self, rows: list[OutboxRow], now: dict[int, Status], skipped: list[int]) -> list[policy.Pending]:
        """The rows as the merge sees them, with the checks' dependencies as they are now
        (gateway.rules.dependencies): a row of a check behind a down parent is superseded (the
        parent's messages tell it), and a parent's rows name the children silent behind it."""
        alerts = [r for r in rows if r.check_id is not None and r.kind in policy.ALERT_KINDS]
        alert_ids = {r.id for r in alerts}
        behind = self.store.behind_map() if alerts else {}
        kids = self.store.children_of(sorted({r.check_id for r in alerts if r.check_id is not None}))
        out = []
        for r in rows:
            text, done = r.text, r.state == "sent"
            cid = r.check_id
            if cid is not None and r.id in alert_ids:
                if not done and deps.superseded(r.kind, now.get(cid), behind.get(cid, ())):
                    done = True
                    skipped.append(r.id)
                elif cid in kids and r.check_name:
                    children = [deps.Child(n, Status(st), inv) for n, st, inv in kids[cid]]
                    if r.kind == "up":
                        text = deps.up_text(text, children)
                    elif r.kind in ("down", "fail", "reminder", "escalation"):
                        text = deps.down_text(text, r.check_name, children)
            out.append(policy.Pending(r.kind, r.check_name, text, r.created, done))
        return out

    def _over_budget(self, now: float, budget: int) -> bool:
        return self.store.sms_sent_since(now - HOUR) >= budget

    async def _budget_notice(self, recipient: str, now: float, budget: int) -> None:
        """Queue one SMS per hour saying the budget is used up (it is exempt from the budget)."""
        if now - self._budget_notice_at < HOUR:
            return
        self._budget_notice_at = now
        text = policy.budget_notice_text(budget, now + HOUR, self.service.settings)
        await self.store.awrite_message("budget", "sms", recipient, text, now)

    async def _modem_failing(self, error: str) -> None:
        now = self.clock()
        if now - self._modem_alert_at < HOUR or not self.service.settings.email_to:
            return
        self._modem_alert_at = now
        text = policy.sms_failing_text(error)
        for addr in self.service.settings.email_to:
            await self.store.awrite_message("modem", "email", addr, text, now)
