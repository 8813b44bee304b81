"""A check's alert lifecycle: what a ping, a passing deadline, an owner's action or a gateway
restart does to a stored check, and which alerts that decides.

Pure: every function takes the check as loaded, ``now`` and the :class:`Settings` in force, and
returns a :class:`Decision`: the check to save, the flip (if the status changed), the event rows
and the outbox rows to write. The store runs a decision inside the transaction that loaded the
check (load → decide → save), so a flip and the alerts it causes are written together or not at
all; nothing here reads the clock or touches the database.

Outage bookkeeping lives here: ``down_since`` and ``last_alert`` are set when a check goes down,
an acknowledgement and a mute end with the outage, the escalation ladder's ``ladder_step``
counts the steps taken, and ``alert_at`` (the next reminder or ladder step, indexed for the
watchdog) follows every change.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

from gateway.model import Check, Flip, PingKind, Status, iso
from gateway.rules import dependencies as deps
from gateway.rules import escalation, policy
from gateway.rules import status as st
from gateway.rules.policy import Outgoing
from gateway.rules.settings import Settings

POISON_RETRY = 3600.0  # a check that cannot be evaluated is looked at again after this long


@dataclass(frozen=True)
class Note:
    """An event row to write: a note about the gateway (``check_id`` None) or an owner's action."""

    kind: str
    detail: str | None = None
    check_id: int | None = None


@dataclass(frozen=True)
class Decision:
    """What to write for one check (``check`` is None for a decision about no check)."""

    check: Check | None
    flip: Flip | None = None
    events: tuple[Note, ...] = ()
    alerts: tuple[Outgoing, ...] = ()
    wait: float = 0.0  # seconds the alerts wait for others to the same recipient (coalescing)
    error: str | None = field(default=None, compare=False)  # a check that could not be evaluated
    # what the flip does to the check's children (gateway.rules.dependencies), for the store to
    # write in the same transaction: ("down", since): children down since then fall silent
    # behind it; ("up", now): children still down and never told alert after their own grace
    children: tuple[str, float] | None = None


Parents = tuple[deps.Parent, ...]


def transition(
    before: Check,
    after: Check,
    now: float,
    reason: str,
    s: Settings,
    body: str | None = None,
    parents: Parents = (),
) -> Decision:
    """``before`` becomes ``after`` at ``now`` (``reason``: ping, fail, deadline, or an owner's
    action). Keeps the outage bookkeeping right and decides the alerts a status change causes.
    ``parents``: the check's parents and their status now (loaded only for a check that is
    down after the change); a check going down behind a down parent tells nobody."""
    went_down = after.status is Status.DOWN and before.status is not Status.DOWN
    recovered = before.status is Status.DOWN and after.status is not Status.DOWN
    behind = deps.is_behind(parents)
    if went_down:
        silent = _silent_flip(after, now, s) or behind
        first = escalation.first_steps(policy.ladder(after, s)) if not silent else 0
        after = after.evolve(
            down_since=now,
            last_alert=now,
            acked=False,
            acked_by=None,
            acked_at=None,
            ladder_step=first,
            outage_told=not silent,
        )
    elif recovered:
        after = after.evolve(
            down_since=None,
            acked=False,
            acked_by=None,
            acked_at=None,
            muted_until=None,
            snooze_until_up=False,
            ladder_step=0,
        )
    alert_at = _alert_at(before, after, now, s, parents, went_down)
    if after.alert_at != alert_at:  # skip a copy when nothing changes (the ping path)
        after = after.evolve(alert_at=alert_at)
    if before.status is after.status:
        return Decision(after)
    flip = Flip(check_id=after.id, at=now, old=before.status, new=after.status, reason=reason)
    down_since = before.down_since if recovered else now
    # A ping resumes a paused check ("pings resume it"): one that reports a failure starts an
    # outage at once, and that outage is announced like any other (its reminders and UP follow).
    told = before
    if before.status is Status.PAUSED and reason in ("ping", "fail"):
        told = before.evolve(status=Status.NEW)
    alerts = policy.alerts_for_flip(
        told, after, flip, key=flip_key(flip, after.n_pings), down_since=down_since, body=body, s=s, now=now
    )
    wait = s.coalesce
    if went_down and behind:
        alerts = []  # the parent's messages tell it ("DOWN router (1 behind it silent: web1)")
    elif went_down and parents:
        wait = max(wait, s.dependency_window)  # a parent going down soon makes this one silent
    children: tuple[str, float] | None = None
    if went_down:
        children = ("down", now - s.dependency_window)
    elif recovered:
        children = ("up", now)
    return Decision(after, flip, alerts=tuple(alerts), wait=wait, children=children)


def _alert_at(before: Check, after: Check, now: float, s: Settings, parents: Parents, went_down: bool) -> float | None:
    """The next alert time of ``after``: its next reminder or ladder step; for a check behind
    a down parent only the next reminder time (when it looks again; nothing goes out); for a
    child never told of its outage whose parents are all up, the time its parent's recovery set
    (its own grace: :func:`advance` sends its own DOWN then)."""
    if after.status is not Status.DOWN:
        return None
    if deps.is_behind(parents):
        return _look_again(after, after.last_alert or now, s)
    own_time = parents and not went_down and not after.outage_told and before.alert_at is not None
    if own_time and not policy.silenced(after, now, s):
        return before.alert_at
    return policy.next_alert(after, after.last_alert or now, s)


def _silent_flip(after: Check, now: float, s: Settings) -> bool:
    """A DOWN flip that tells nobody (a muted or snoozed check, one in a maintenance window):
    the ladder's first steps are not taken then, so they run when the silence ends."""
    return policy.silenced(after, now, s)


def _look_again(check: Check, t: float, s: Settings) -> float:
    """When a check behind a down parent is looked at again (its reminder time; a reminder
    interval when it has none, say a ladder that has told nobody yet): it says nothing then
    unless its parents are back (their recovery also sets its time, see :class:`Decision`)."""
    return policy.next_reminder(check, t, s) or t + (check.repeat or s.repeat)


def flip_key(flip: Flip, n_pings: int) -> str:
    """The dedupe key of a flip's alerts: a decision retried after a failed commit never doubles
    a row, and two different flips never share one (``n_pings`` tells apart flips that pings
    cause at one timestamp: fail, recover, fail)."""
    return f"flip{flip.check_id}:{flip.old.value}>{flip.new.value}@{flip.at!r}#{n_pings}"


def ping(
    before: Check,
    kind: PingKind,
    exit_status: int | None,
    now: float,
    s: Settings,
    body: str | None,
    rid: str | None = None,
    parents: Parents = (),
) -> Decision:
    """A heartbeat of ``kind`` (with ``exit_status``, ``body``, run id ``rid``) reached ``before``
    at ``now``. ``kind`` is what the ping counts as (:func:`status.effective_kind`)."""
    if kind is PingKind.IGNORED:
        reason = "deadline"  # an ignored ping changes nothing but what time alone changes
    else:
        reason = "fail" if kind is PingKind.FAIL or exit_status not in (None, 0) else "ping"
    after = st.apply_ping(before, kind, exit_status, now, rid)
    good = kind is PingKind.SUCCESS and reason == "ping"
    if before.snooze_until_up and good:
        # a snooze "until up" ends at the first good ping after it (the reboot is over)
        after = after.evolve(muted_until=None, snooze_until_up=False)
        d = transition(before, after, now, reason, s, body, parents)
        return dataclasses.replace(d, events=(Note("unsnoozed", "by a good ping", before.id), *d.events))
    return transition(before, after, now, reason, s, body, parents)


def change(before: Check, after: Check, now: float, event: str | None, s: Settings, parents: Parents = ()) -> Decision:
    """The owner changed ``before`` into ``after`` (pause, resume, ack, mute, edit...): the change,
    an event row saying what they did, and whatever the change does to alerts."""
    if after == before:
        return Decision(before)
    d = transition(before, after, now, event or "update", s, parents=parents)
    if event:
        d = dataclasses.replace(d, events=(Note(event, None, before.id), *d.events))
    return d


def advance(before: Check, now: float, s: Settings, parents: Parents = ()) -> Decision:
    """The watchdog reached ``before``'s deadline or reminder time: flip it late or down, queue
    the reminder that is due, and set the next times. Never leaves a time at or before ``now``
    (the watchdog would spin on the row); a check that cannot be evaluated (say, a cron
    expression a library upgrade no longer accepts) is pushed an hour out with ``error`` set,
    so one poison row cannot crash-loop the watchdog. ``parents``: as for :func:`transition`;
    a check behind a down parent sends no reminder and takes no ladder step, and a child never
    told of its outage sends its own DOWN once its parents are up and its time has come."""
    try:
        d = transition(before, st.refresh(before, now), now, "deadline", s, parents=parents)
        after = d.check
        assert after is not None
        if after.alert_at is not None and after.alert_at <= now and deps.is_behind(parents):
            after = after.evolve(last_alert=now)  # nothing to say: look again a reminder later
            after = after.evolve(alert_at=_look_again(after, now, s))
            d = dataclasses.replace(d, check=after)
        elif (
            after.alert_at is not None
            and after.alert_at <= now
            and parents
            and not after.outage_told
            and after.status is Status.DOWN
            and not policy.silenced(after, now, s)
        ):
            # its parent is back and it is not: a real problem of its own, told now
            own, first = policy.own_down(after, s, now)
            after = after.evolve(last_alert=now, outage_told=True, ladder_step=first)
            after = after.evolve(alert_at=policy.next_alert(after, now, s))
            d = dataclasses.replace(d, check=after, alerts=(*d.alerts, *own), wait=s.coalesce)
        elif after.alert_at is not None and after.alert_at <= now:
            due: list[policy.Outgoing] = []
            reminder = policy.next_reminder(after, after.last_alert or now, s)
            if reminder is not None and reminder <= now:
                due += policy.reminders(after, down_since=after.down_since or now, s=s, now=now)
                after = after.evolve(last_alert=now)
            steps, taken = policy.escalations(after, s, now)
            if taken:
                due += steps
                after = after.evolve(ladder_step=after.ladder_step + taken, last_alert=now)
            if due and not after.outage_told:
                after = after.evolve(outage_told=True)  # the owner hears of the outage now
            after = after.evolve(alert_at=policy.next_alert(after, after.last_alert or now, s))
            d = dataclasses.replace(d, check=after, alerts=(*d.alerts, *due), wait=s.coalesce)
    except Exception as e:
        after = before.evolve(
            next_deadline=now + POISON_RETRY,
            alert_at=now + POISON_RETRY if before.alert_at else None,
        )
        d = Decision(after, error=f"{type(e).__name__}: {e}")
    if after.next_deadline is not None and after.next_deadline <= now:
        after = after.evolve(next_deadline=now + 1)
    if after.alert_at is not None and after.alert_at <= now:
        after = after.evolve(alert_at=now + 1)
    return dataclasses.replace(d, check=after)


def fresh_start(
    due: Sequence[Check], now: float, offline_since: float | None, s: Settings, clock_step: bool = False
) -> list[Decision]:
    """The gateway was not running (or the clock jumped forward) from ``offline_since`` to
    ``now``: each check in ``due`` (its deadline at or before ``now``) whose down time fell in
    that gap gets a fresh period + grace from ``now`` instead of a false DOWN; one note (and one
    message to the owner) says so. Checks that went down while the gateway ran are left to the
    watchdog."""
    out: list[Decision] = []
    for before in due:
        try:
            ev = st.evaluate(before, now)
            after = st.apply_fresh_start(before, now)
        except Exception:
            continue  # a poison check: advance() pushes it out and says so
        if ev.down_at is None or (offline_since is not None and ev.down_at < offline_since):
            continue
        if after != before:
            out.append(Decision(after))
    if not out:
        return out
    n = len(out)
    gap = f"from {iso(offline_since) or '?'} to {iso(now)}; {n} check(s) given a fresh period"
    if clock_step and offline_since is not None:
        detail, alerts = f"the clock jumped forward {gap}", policy.clock_note(offline_since, now, n, s)
    else:
        detail, alerts = f"gateway was offline {gap}", policy.offline_note(offline_since, now, n, s)
    out.append(Decision(None, events=(Note("note", detail),), alerts=tuple(alerts)))
    return out


def clock_back(candidates: Sequence[Check], now: float, expected: float, s: Settings) -> list[Decision]:
    """The clock went back from ``expected`` to ``now``: heartbeats it stamped ahead of the
    corrected time would push deadlines late by the same amount, so checks anchored in the
    future start a fresh period; a down check alerted "in the future" counts its next reminder
    from now. ``candidates``: checks anchored or alerted after ``now``."""
    out: list[Decision] = []
    reset = 0
    for before in candidates:
        after = before
        if before.anchor is not None and before.anchor > now:
            try:
                after = st.apply_fresh_start(after, now)
            except Exception:
                continue  # a poison check: advance() pushes it out and says so
        if after.status is Status.DOWN and after.last_alert is not None and after.last_alert > now:
            after = after.evolve(last_alert=now, alert_at=policy.next_alert(after, now, s))
        if after != before:
            out.append(Decision(after))
            if after.anchor != before.anchor:
                reset += 1
    detail = f"the clock went back from {iso(expected)} to {iso(now)}; {reset} check(s) given a fresh period"
    out.append(Decision(None, events=(Note("note", detail),)))
    return out
