"""A check's status at a given moment, and the transitions pings and the owner cause.

Pure: every function takes ``now``; nothing here reads the clock or does I/O, so the watchdog,
the ping handlers and the tests all agree on one definition.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from gateway.model import Check, PingKind, Status
from gateway.rules import schedule as sched


@dataclass(frozen=True)
class Evaluation:
    status: Status
    late_at: float | None  # when it was/will be late (None: not applicable)
    down_at: float | None
    next_change: float | None  # when the status changes next without any ping


_QUIET = {Status.PAUSED, Status.DOWN}


def evaluate(check: Check, now: float) -> Evaluation:
    """The status of ``check`` at ``now`` from its stored facts.

    paused stays paused; a failed last ping is down; otherwise the deadlines decide:
    before ``late_at`` up (new if never pinged), then late until ``down_at``, then down.
    """
    if check.status is Status.PAUSED:
        return Evaluation(Status.PAUSED, None, None, None)
    if check.last_failed:
        return Evaluation(Status.DOWN, None, None, None)
    marks = sched.deadlines(check.schedule, check.anchor, check.last_start)
    if marks is None:
        return Evaluation(Status.NEW, None, None, None)
    late_at, down_at = marks
    if now >= down_at:
        return Evaluation(Status.DOWN, late_at, down_at, None)
    if now >= late_at:
        return Evaluation(Status.LATE, late_at, down_at, down_at)
    fresh = Status.NEW if check.anchor is None else Status.UP
    return Evaluation(fresh, late_at, down_at, late_at)


def refresh(check: Check, now: float) -> Check:
    """``check`` with ``status`` and ``next_deadline`` brought up to ``now``."""
    ev = evaluate(check, now)
    if ev.status is check.status and ev.next_change == check.next_deadline:
        return check
    return check.evolve(status=ev.status, next_deadline=ev.next_change)


def effective_kind(check: Check, kind: PingKind, method: str | None) -> PingKind:
    """What a ping of ``kind`` counts as for ``check``: ignored (recorded, nothing else) when the
    check takes POST only and this came by another method, or when it is paused until resumed
    by hand (Healthchecks' ``methods`` and ``manual_resume``)."""
    if check.methods == "POST" and method is not None and method != "POST":
        return PingKind.IGNORED
    if check.manual_resume and check.status is Status.PAUSED:
        return PingKind.IGNORED
    return kind


def apply_ping(check: Check, kind: PingKind, exit_status: int | None, now: float, rid: str | None = None) -> Check:
    """The check after a ping of ``kind`` at ``now`` (a non-zero exit status is a failure).

    Any success or failure resumes a paused check ("pings resume it"). ``rid`` pairs a /start
    with its success or fail, as Healthchecks does: a matching pair sets ``last_duration``; a
    success with another run's id leaves that run started; a failure or a success without an id
    ends it.
    """
    if kind is PingKind.IGNORED:
        return refresh(check.evolve(n_pings=check.n_pings + 1), now)
    if kind is PingKind.SUCCESS and exit_status not in (None, 0):
        kind = PingKind.FAIL
    base = check.evolve(last_ping=now, n_pings=check.n_pings + 1)
    if kind is PingKind.LOG:
        return base
    if kind is PingKind.START:
        return refresh(base.evolve(last_start=now, last_start_rid=rid), now)
    last_start, start_rid, duration = check.last_start, check.last_start_rid, None
    if last_start is not None:
        if start_rid == rid:
            duration = max(0.0, now - last_start)
            last_start = start_rid = None
        elif kind is PingKind.FAIL or rid is None:
            last_start = start_rid = None
    resumed = Status.NEW if check.status is Status.PAUSED else check.status
    changed = base.evolve(
        status=resumed,
        anchor=now,
        last_start=last_start,
        last_start_rid=start_rid,
        last_duration=duration,
        last_failed=kind is PingKind.FAIL,
        last_exit_status=exit_status,
    )
    return refresh(changed, now)


def apply_pause(check: Check) -> Check:
    return check.evolve(status=Status.PAUSED, next_deadline=None, last_start=None, last_start_rid=None)


def apply_resume(check: Check, now: float) -> Check:
    """Resume a paused check with a fresh period + grace from ``now``; never-pinged stays new."""
    if check.status is not Status.PAUSED:
        return check
    anchor = now if check.last_ping is not None else None
    return refresh(check.evolve(status=Status.NEW, anchor=anchor, last_failed=False), now)


def apply_fresh_start(check: Check, now: float) -> Check:
    """After the gateway itself was offline: give the check a fresh period + grace from ``now``.

    Only for checks that were not already down or paused; those keep what they had.
    """
    if check.status in _QUIET or check.last_failed or check.anchor is None:
        return check
    last_start = now if check.last_start is not None else None
    return refresh(check.evolve(anchor=now, last_start=last_start), now)


# Problems first: the order pages, counts and lists use.
STATUS_ORDER = {Status.DOWN: 0, Status.LATE: 1, Status.UP: 2, Status.NEW: 3, Status.PAUSED: 4}


def count_statuses(statuses: Iterable[Status]) -> dict[Status, int]:
    """How many of each status, every status present (zero when none), problems first."""
    counts = {s: 0 for s in STATUS_ORDER}
    for s in statuses:
        counts[s] += 1
    return counts
