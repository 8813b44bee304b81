"""Watching the modem's health: a row in the modem log when it changes and once a minute (the
modem page's 24 h signal graph, ``hbgw status``), and an email to the owner when the modem has
been unable to send SMS for ``[alerts] modem_alert_after``, then again when it works, and when
its SMS storage was full (at most once a day).

The decisions are :func:`gateway.rules.policy.modem_trouble` and ``modem_spell`` (one note when
it breaks, one when it has really recovered, however often it flaps); the writes are service use
cases. The clock is injected, so a test moves time by hand.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from gateway.readmodels import MODEM_LOG_EVERY
from gateway.rules import policy

if TYPE_CHECKING:
    from gateway.service import Service
    from modem.driver import ModemHealth

logger = logging.getLogger(__name__)

WORKS_AGAIN = "hbgw: the modem works again; SMS alerts resumed."


class HealthSource(Protocol):
    """What the watch needs of :class:`modem.driver.ModemKeeper`."""

    @property
    def health(self) -> ModemHealth: ...

    async def health_changed(self, timeout: float) -> None: ...


class ModemWatch:
    """Looks at ``keeper.health`` whenever it changes, and at least every ``alert_after / 4``
    (0.5 to 60 s). ``clock`` paces the log and times the trouble; the service stamps the rows
    with its own clock (the daemon passes the same one)."""

    def __init__(
        self,
        service: Service,
        keeper: HealthSource,
        *,
        alert_after: float,
        clock: Callable[[], float] = time.time,
        log_every: float = MODEM_LOG_EVERY,
    ) -> None:
        self.service = service
        self.keeper = keeper
        self.alert_after = alert_after
        self.interval = max(0.5, min(60.0, alert_after / 4))
        self.clock = clock
        self.log_every = log_every
        self._spell = policy.ModemSpell()
        self._storage = policy.StorageWatch()
        self._last_log: float | None = None
        self._logged: tuple[bool, str | None, str | None, int | None, str | None] | None = None

    async def run(self) -> None:
        """Watch until cancelled. Never raises: a failed write is logged and tried again."""
        while True:
            await self.look()
            await self.keeper.health_changed(self.interval)

    async def look(self) -> None:
        """One look at the modem's health: alert, recover, log, as due."""
        h = self.keeper.health
        now = self.clock()
        try:
            await self._judge(h, now)
        except Exception as e:
            logger.error("cannot queue the modem note to the owner: %s", e)
        try:
            await self._log(h, now)
        except Exception as e:
            logger.error("cannot record modem health: %s", e)

    async def _judge(self, h: ModemHealth, now: float) -> None:
        st = h.status
        trouble = policy.modem_trouble(
            h.connected, st.sim if st else None, st.registration if st else None, st.radio if st else None
        )
        spell, note = policy.modem_spell(self._spell, trouble is not None, now, self.alert_after)
        if note == "down":
            down = int(now - (self._spell.trouble_since or now))
            detail = f"{trouble}; last error: {h.last_error}" if h.last_error else trouble
            logger.error("modem unusable for %d s: %s", down, trouble)
            await self.service.notify_owner(
                f"hbgw: cannot send SMS for {down} s: {detail}. Alerts go by email meanwhile; check the modem page."
            )
        elif note == "up":
            await self.service.notify_owner(WORKS_AGAIN)
        # Only once the note is committed: a failed write is tried again at the next look.
        self._spell = spell
        storage, tell = policy.storage_full_note(self._storage, st.storage_full_reports if st else None, now)
        if tell:
            logger.warning("the modem's SMS storage was full; the owner is told")
            await self.service.notify_owner(policy.STORAGE_FULL_TEXT)
        self._storage = storage

    async def _log(self, h: ModemHealth, now: float) -> None:
        st = h.status
        state = (
            h.connected,
            st.registration if st else None,
            h.last_error,
            st.storage_used if st else None,
            h.recovery,
        )
        if self._last_log is not None and now - self._last_log < self.log_every and state == self._logged:
            return
        await self.service.record_modem_health(
            connected=h.connected,
            signal_dbm=st.signal_dbm if st else None,
            registration=st.registration if st else None,
            operator=st.operator if st else None,
            error=h.last_error,
            storage_used=st.storage_used if st else None,
            storage_total=st.storage_total if st else None,
            recovery=h.recovery,
        )
        self._last_log, self._logged = now, state
