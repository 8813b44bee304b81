"""The daily "all is well" SMS: when it is due and what it says. Pure (``now`` and the facts
come in as arguments); the task that queues it is :mod:`gateway.runtime.summary`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from gateway.model import ModemReport, Status
from gateway.rules.status import count_statuses

SMS_LIMIT = 160  # one GSM-7 message


def next_run(now: float, minute_of_day: int, zone: dt.tzinfo) -> float:
    """The first moment strictly after ``now`` when the local time in ``zone`` is
    ``minute_of_day``. On a day whose clock skips that time (DST), it is the moment the same
    offset from midnight lands on; when the time happens twice, the first one."""
    day = dt.datetime.fromtimestamp(now, zone).date()
    at = dt.time(minute_of_day // 60, minute_of_day % 60)
    while True:
        t = dt.datetime.combine(day, at, tzinfo=zone).timestamp()
        if t > now:
            return t
        day += dt.timedelta(days=1)


def summary_text(statuses: Mapping[str, Status], modem: str | None) -> str:
    """The SMS: ``"hbgw daily: 6 up, 0 down, modem ok. All is well."``.

    ``statuses``: every check's status by name; ``modem``: ``"ok"``, ``"offline"`` or None (no
    modem configured). Down and late checks are named, as many as fit in one GSM-7 SMS.
    """
    count = count_statuses(statuses.values())
    parts = [f"{count[Status.UP]} up", f"{count[Status.DOWN]} down"] if statuses else ["no checks yet"]
    parts += [f"{count[s]} {s.value}" for s in (Status.LATE, Status.PAUSED, Status.NEW) if count[s]]
    if modem is not None:
        parts.append(f"modem {modem}")
    head = "hbgw daily: " + ", ".join(parts) + "."
    troubled = sorted(
        (n for n, s in statuses.items() if s in (Status.DOWN, Status.LATE)),
        key=lambda n: (statuses[n] != Status.DOWN, n.casefold()),
    )
    if not troubled:
        return head + (" All is well." if modem in (None, "ok") else " Check the modem.")
    names: list[str] = []
    for i, name in enumerate(troubled):
        left = len(troubled) - i - 1
        line = f"{head} Not OK: {', '.join([*names, name])}{f' +{left} more' if left else ''}."
        if names and len(line) > SMS_LIMIT:
            break
        names.append(name)
    more = len(troubled) - len(names)
    return f"{head} Not OK: {', '.join(names)}{f' +{more} more' if more else ''}."


def modem_word(status: ModemReport | None) -> str | None:
    """``"ok"`` / ``"offline"`` from the daemon's modem description, None without a modem."""
    if status is None:
        return None
    return "ok" if status.connected else "offline"
