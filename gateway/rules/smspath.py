"""Proof that the SMS path works, and that the SIM does not lapse: the daily canary (the gateway
texts its own number and expects the message back) and the prepaid balance asked by USSD.

An alarm whose modem, SIM or operator silently stopped carrying SMS looks healthy until the
night it is needed. The canary proves the whole path once a day (modem, SIM, network, SMS
centre, and back), and is also the outgoing activity that keeps a prepaid SIM from being cut
off after months of silence.

Pure: the state is a small record the service keeps in the settings table; the decisions take
``now``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

CANARY_WORD = "hbgw canary"
_CANARY = re.compile(r"\bhbgw canary ([0-9a-f]{6})\b", re.IGNORECASE)


def canary_text(token: str) -> str:
    return f"{CANARY_WORD} {token}: this SMS went from the gateway to itself, proving the SMS path works."


def canary_token(text: str) -> str | None:
    """The token of a canary SMS, or None when ``text`` is not one."""
    m = _CANARY.search(text)
    return m.group(1).lower() if m else None


def slot(day: dt.date, minute_of_day: int, window: float, zone: dt.tzinfo) -> float:
    """When the canary goes on ``day``: ``minute_of_day`` local time plus an offset within
    ``window`` seconds, the same for the whole day (derived from the date: a restart does not
    move it), different from day to day (the SMS centre sees no fixed pattern)."""
    start = dt.datetime.combine(day, dt.time(minute_of_day // 60, minute_of_day % 60), zone).timestamp()
    if window <= 0:
        return start
    spread = int.from_bytes(hashlib.sha256(day.isoformat().encode()).digest()[:4], "big") / 2**32
    return start + int(spread * window)


def next_send(now: float, minute_of_day: int, window: float, zone: dt.tzinfo, last_day: str | None) -> float:
    """The next canary time: today's slot while today's canary has not gone (``last_day``, ISO
    date; a slot already past means now: a gateway started at 15:00 proves today's path at
    once), else tomorrow's."""
    today = dt.datetime.fromtimestamp(now, zone).date()
    if last_day == today.isoformat():
        return slot(today + dt.timedelta(days=1), minute_of_day, window, zone)
    return slot(today, minute_of_day, window, zone)


@dataclass(frozen=True)
class Canary:
    """The canary's record: the one in flight (``token``, ``sent_at``), the day of the last one
    sent (``day``), the last proof (``proven_at``, ``round_trip``), the last failure
    (``failed_at``, for ``failed_token`` sent at ``failed_sent_at``)."""

    token: str | None = None
    sent_at: float | None = None
    day: str | None = None
    number: str | None = None  # where it went: the SMS from there with its token is the proof
    proven_at: float | None = None
    round_trip: float | None = None
    failed_at: float | None = None
    failed_sent_at: float | None = None
    failed_token: str | None = None

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @staticmethod
    def from_json(raw: str | None) -> Canary:
        if not raw:
            return Canary()
        try:
            data: dict[str, Any] = json.loads(raw)
            return Canary(**{f.name: data.get(f.name) for f in dataclasses.fields(Canary)})
        except (ValueError, TypeError):
            return Canary()  # a damaged record: start over, the next canary writes a good one

    @property
    def broken(self) -> bool:
        """The last canary did not come back, and none came back since."""
        return self.failed_at is not None and (self.proven_at is None or self.proven_at < self.failed_at)

    def deadline(self, timeout: float) -> float | None:
        """When the canary in flight counts as lost; None with none in flight."""
        return None if self.token is None or self.sent_at is None else self.sent_at + timeout


def sent(c: Canary, token: str, now: float, day: str, number: str) -> Canary:
    return dataclasses.replace(c, token=token, sent_at=now, day=day, number=number)


def returned(c: Canary, token: str, now: float) -> tuple[Canary, str]:
    """A canary SMS came back: ``"proven"`` (the one in flight), ``"late"`` (one already given up
    on: the path works again), or ``"stray"`` (a duplicate, or one we never sent)."""
    if c.token is not None and token == c.token and c.sent_at is not None:
        trip = max(0.0, now - c.sent_at)
        return dataclasses.replace(c, token=None, proven_at=now, round_trip=trip), "proven"
    if c.failed_token is not None and token == c.failed_token and c.failed_sent_at is not None:
        trip = max(0.0, now - c.failed_sent_at)
        return dataclasses.replace(c, failed_token=None, proven_at=now, round_trip=trip), "late"
    return c, "stray"


def lost(c: Canary, now: float, timeout: float) -> Canary | None:
    """The canary in flight, given up on at ``now`` (its deadline passed); None otherwise. Its
    token is remembered, so a late return is still recognised as ours."""
    deadline = c.deadline(timeout)
    if deadline is None or now < deadline:
        return None
    return dataclasses.replace(
        c, token=None, sent_at=None, failed_at=now, failed_sent_at=c.sent_at, failed_token=c.token
    )


# ------------------------------------------------------------------------------ balance

DEFAULT_BALANCE_PATTERN = r"(\d+(?:[.,]\d{1,2})?)"


def balance_amount(answer: str, pattern: str) -> float | None:
    """The amount in a USSD answer: the pattern's first group (or whole match), decimal comma
    or point; None when it is not there."""
    m = re.search(pattern, answer)
    if not m:
        return None
    raw = m.group(1) if m.groups() else m.group(0)
    try:
        return float(raw.replace(",", "."))
    except ValueError:
        return None


@dataclass(frozen=True)
class Balance:
    """The last balance check: when, what the network said, the amount read from it, and how
    many checks in a row failed (no answer, an error)."""

    asked_at: float | None = None
    answer: str | None = None
    amount: float | None = None
    error: str | None = None
    failures: int = 0

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @staticmethod
    def from_json(raw: str | None) -> Balance:
        if not raw:
            return Balance()
        try:
            data: dict[str, Any] = json.loads(raw)
            known = {f.name: data[f.name] for f in dataclasses.fields(Balance) if f.name in data}
            return Balance(**known)
        except (ValueError, TypeError):
            return Balance()


def balance_troubles(b: Balance, minimum: float | None, code: str | None) -> list[str]:
    """The trouble lines: a balance below ``minimum``, or a USSD that stopped answering (two
    failed checks in a row; one may be the network's hiccup)."""
    out = []
    if b.failures >= 2:
        out.append(f"the prepaid balance check ({code}) stopped answering: {b.error}")
    elif minimum is not None and b.amount is not None and b.amount < minimum:
        out.append(f"prepaid balance low: {b.amount:.2f} (below {minimum:.2f}); top up the SIM")
    return out
