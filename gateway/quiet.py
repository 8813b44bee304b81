"""Quiet times the owner plans: maintenance windows, a snooze any script can call, and the tag
selectors of the owner's actions (``MUTE tag:office 2h``). Kept by the service
(``service.quiet``); the rules are :mod:`gateway.rules.maintenance` and
:func:`gateway.rules.policy.silence_end`.

A window is a computed mute: the windows in force ride in the :class:`Settings` the lifecycle
receives, so they are put in force again (:meth:`Service.load_owner_settings`) whenever one is
added or ended, here or (with a SIGHUP to the daemon) by the command line, and the next alert
times of the checks that are down are worked out again then."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from gateway.errors import ValidationError
from gateway.model import Check, Status, iso
from gateway.rules import commands as cmds
from gateway.rules import lifecycle, policy
from gateway.rules import maintenance as mt
from gateway.rules.durations import format_duration
from gateway.rules.maintenance import MaintenanceError, Window
from gateway.store import DecideAll, NotFound

if TYPE_CHECKING:
    from gateway.service import Service

logger = logging.getLogger(__name__)

SNOOZE_MIN = 60.0
SNOOZE_MAX = 7 * 86400.0


class UnknownTag(ValidationError):
    """No check carries the tag named."""

    def __init__(self, tag: str) -> None:
        super().__init__("tag", f"no check has the tag {tag!r}")


@dataclasses.dataclass(frozen=True)
class WindowRequest:
    """A window to add, as the edges give it: exactly one of ``checks`` (names), ``tag`` and
    ``all_checks``; then ``start`` ("02:00", ISO, None for now) or ``cron`` (with ``tz``), and
    ``length`` seconds."""

    length: float
    checks: tuple[str, ...] = ()
    tag: str | None = None
    all_checks: bool = False
    start: str | None = None
    cron: str | None = None
    tz: str | None = None


class Quiet:
    """Maintenance windows, snoozes and tag selectors (``service.quiet``)."""

    def __init__(self, service: Service) -> None:
        self.service = service

    # ------------------------------------------------------------------ tags

    def tagged(self, tag: str) -> list[Check]:
        """The checks carrying ``tag`` ("office" or "tag:office"). Raises UnknownTag."""
        tag = tag[4:] if tag.casefold().startswith("tag:") else tag
        found = [c for c in self.service.list_checks() if tag in c.tag_list]
        if not found:
            raise UnknownTag(tag)
        return found

    def tags(self) -> list[str]:
        return sorted({t for c in self.service.list_checks() for t in c.tag_list})

    # ------------------------------------------------------------------ windows

    def windows(self, *, all_windows: bool = False) -> list[Window]:
        """The windows in force (newest first); ``all_windows``: ended and past ones too."""
        store = self.service.store
        return store.list_windows() if all_windows else store.list_windows(self.service.clock())

    def check_names(self) -> dict[int, str]:
        return {c.id: c.name for c in self.service.list_checks()}

    def open_for(self, check: Check, now: float | None = None) -> float | None:
        """The end of the maintenance window ``check`` is in now, or None."""
        now = self.service.clock() if now is None else now
        return mt.active_end(self.service.settings.maintenance, check, now)

    def _window(self, req: WindowRequest) -> tuple[Window, str]:
        """The validated window for ``req`` and the words that describe it. Raises
        ValidationError, NotFound (a check name), UnknownTag."""
        now, s = self.service.clock(), self.service.settings
        ids = [self.service.get_check(n).id for n in req.checks]
        if req.tag is not None:
            self.tagged(req.tag)
        try:
            scope = mt.parse_scope(all_checks=req.all_checks, tag=req.tag, check_ids=ids)
            tz = req.tz or s.tz
            if req.cron:
                if req.start:
                    raise MaintenanceError("from", "give a start (--from) or a cron schedule, not both")
                w = mt.recurring(scope, req.cron, tz, req.length, now)
            else:
                start = mt.parse_start(req.start, tz, now, req.length)
                w = mt.one_off(scope, start, req.length, now)
        except MaintenanceError as e:
            raise ValidationError(e.field, str(e)) from None
        names = {c.id: c.name for c in self.service.list_checks()}
        return w, f"{mt.describe_scope(w, names)}, {mt.describe_when(w, s.zone)}"

    def add(self, req: WindowRequest, by: str) -> Window:
        """Add a window (the CLI, the page, the API). Raises ValidationError, NotFound."""
        w, detail = self._window(req)
        w = self.service.store.add_window(w, f"{detail} (by {by})")
        logger.info("maintenance window %d added: %s", w.id, detail)
        self._put_in_force()
        return w

    async def aadd(self, req: WindowRequest, by: str) -> Window:
        """:meth:`add` for async callers (the SMS commands)."""
        w, detail = self._window(req)
        w = await self.service.store.aadd_window(w, f"{detail} (by {by})")
        logger.info("maintenance window %d added: %s", w.id, detail)
        await self._aput_in_force()
        return w

    def end(self, wid: int, by: str) -> Window:
        """End window ``wid`` now: checks still down in it alert now. Raises NotFound."""
        w = self.service.store.end_window(wid, self.service.clock(), by)
        if w is None:
            raise NotFound(f"maintenance window {wid}")
        self._put_in_force()
        return w

    def _retime(self, now: float) -> DecideAll:
        s = self.service.settings

        def decide(down: Sequence[Check]) -> list[lifecycle.Decision]:
            out: list[lifecycle.Decision] = []
            for c in down:
                at = policy.next_alert(c, c.last_alert or now, s)
                if at != c.alert_at:
                    out.append(lifecycle.Decision(c.evolve(alert_at=at)))
            return out

        return decide

    def _put_in_force(self) -> None:
        self.service.load_owner_settings()
        now = self.service.clock()
        self._retimed(self.service.store.retime_down(now, self._retime(now)))

    async def _aput_in_force(self) -> None:
        self.service.load_owner_settings()
        now = self.service.clock()
        self._retimed(await self.service.store.aretime_down(now, self._retime(now)))

    def _retimed(self, decisions: list[lifecycle.Decision]) -> None:
        for d in decisions:
            if d.check is not None:
                self.service._changed(d.check, [])

    # ------------------------------------------------------------------ snooze

    @staticmethod
    def _snoozing(seconds: float, until_up: bool, now: float) -> tuple[float, str]:
        if not SNOOZE_MIN <= seconds <= SNOOZE_MAX:
            raise ValidationError("for", "a snooze lasts from 1m to 7d")
        event = f"snoozed for {format_duration(seconds)}" + (", until the first good ping" if until_up else "")
        return now + seconds, event

    def snooze(self, name: str, seconds: float, until_up: bool, by: str) -> Check:
        """Mute ``name`` for ``seconds``; with ``until_up`` the first good ping ends it. Raises
        ValidationError, NotFound."""
        until, event = self._snoozing(seconds, until_up, self.service.clock())
        return self.service._update(
            name, lambda c: c.evolve(muted_until=until, snooze_until_up=until_up), f"{event} by {by}"
        )

    async def snooze_by_token(self, token: str, seconds: float, until_up: bool) -> Check | None:
        """:meth:`snooze` for the ping URL's ``/snooze`` (the token authenticates): the check
        snoozed, or None for an unknown token. Not a heartbeat. Raises ValidationError."""
        until, event = self._snoozing(seconds, until_up, self.service.clock())
        check = self.service.find_check_by_token(token)
        if check is None:
            return None
        try:
            return await self.service._aupdate(
                check.name, lambda c: c.evolve(muted_until=until, snooze_until_up=until_up), f"{event} by ping URL"
            )
        except NotFound:
            return None

    # ------------------------------------------------------------------ tag selectors

    def ack_tag(self, tag: str, by: str) -> list[Check]:
        """Acknowledge the outage of every check with ``tag`` that is down. Raises UnknownTag."""
        return [self.service.ack(c.name, by) for c in self.tagged(tag) if c.status is Status.DOWN]

    def mute_tag(self, tag: str, seconds: float, by: str) -> list[Check]:
        return [self.service.mute(c.name, seconds, by) for c in self.tagged(tag)]

    def unmute_tag(self, tag: str, by: str) -> list[Check]:
        return [self.service.unmute(c.name, by) for c in self.tagged(tag)]

    async def carry_out(self, c: cmds.Command, by: str) -> tuple[str, str | None]:
        """An SMS command with ``tag:NAME`` (ACK, MUTE, UNMUTE) or MAINT: the reply, and the
        check it named (None for a tag or all)."""
        service, now = self.service, self.service.clock()
        if c.verb is cmds.Verb.MAINT:
            req = WindowRequest(
                length=c.duration or 3600.0,
                checks=(c.name,) if c.name else (),
                tag=c.tag,
                all_checks=c.name is None and c.tag is None,
            )
            try:
                w = await self.aadd(req, by)
            except (ValidationError, NotFound) as e:
                return cmds.render_failed(c, str(e)), c.name
            return cmds.render_maint(c, policy.clock(w.end or now, service.settings)), c.name
        assert c.tag is not None
        checks = [k for k in service.list_checks() if c.tag in k.tag_list]
        if c.verb is cmds.Verb.ACK:
            checks = [k for k in checks if k.status is Status.DOWN and not k.acked]
        if c.verb is cmds.Verb.MUTE:
            until = now + (c.duration or 3600.0)

            def change(k: Check) -> Check:
                return k.evolve(muted_until=until, snooze_until_up=False)

            event = f"muted by {by}"
        elif c.verb is cmds.Verb.UNMUTE:

            def change(k: Check) -> Check:
                return k.evolve(muted_until=None, snooze_until_up=False)

            event = f"unmuted by {by}"
        else:

            def change(k: Check) -> Check:
                if k.status is not Status.DOWN or k.acked:
                    return k
                return k.evolve(acked=True, acked_by=by, acked_at=now)

            event = f"acked by {by}"
        done = 0
        for k in checks:
            try:
                await service._aupdate(k.name, change, event)
                done += 1
            except NotFound:
                continue  # removed between parsing and now
        return cmds.render_tagged(c, done), None

    # ------------------------------------------------------------------ views

    def describe(self, w: Window, names: dict[int, str] | None = None) -> dict[str, Any]:
        """A window as the CLI's --json, the API and the page show it."""
        now, s = self.service.clock(), self.service.settings
        names = self.check_names() if names is None else names
        return {
            "id": w.id,
            "scope": w.scope,
            "applies_to": mt.describe_scope(w, names),
            "when": mt.describe_when(w, s.zone),
            "recurring": w.recurring,
            "start": iso(w.start),
            "end": iso(w.end),
            "cron": w.cron,
            "tz": w.tz if w.recurring else None,
            "duration": w.duration,
            "open_until": iso(mt.open_until(w, now)),
            "next_opening": iso(mt.next_opening(w, now)),
            "ended_early": iso(w.ended_early),
            "in_force": mt.in_force(w, now),
            "created": iso(w.created),
        }
