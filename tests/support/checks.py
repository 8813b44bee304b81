"""A stored check built by hand, for the pure rules' tests (no database)."""

from __future__ import annotations

from typing import Any

from gateway.model import Check, Schedule, Status


def make_check(**kw: Any) -> Check:
    """A check as stored: new, never pinged, every period 15 min with 15 min grace; ``kw``
    replaces any field."""
    base: dict[str, Any] = dict(
        id=1,
        name="web1",
        token="t" * 24,
        schedule=Schedule(period=900, grace=900),
        status=Status.NEW,
        anchor=None,
        last_ping=None,
        last_start=None,
        last_failed=False,
        last_exit_status=None,
        next_deadline=None,
        sms_enabled=True,
        email_enabled=True,
        created=0.0,
        n_pings=0,
    )
    base.update(kw)
    return Check(**base)
