"""``VoiceServices``: the circuit-switched side of :class:`~modem.atmodem.AtModem` besides SMS:
voice calls (``ATD<number>;``, followed with ``AT+CLCC``), USSD (``AT+CUSD``) and the SIM's
own number (``AT+CNUM``). What the modem says is read by the pure functions of
:mod:`modem.voice` and :mod:`modem.ussd`; this module does the talking and the waiting.

AtModem holds its lock around each method (nothing else is sent during a call or while a
USSD answer is awaited; inbound ``+CMTI`` are queued as usual and read afterwards) and hands
every URC to :meth:`VoiceServices.on_urc` first.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

from modem.at import CALL_RESULT_WORDS, AtChannel, CallEnded, Urc
from modem.errors import CmeError, CmsError, CommandError, ModemError, ModemTimeout
from modem.interface import CallResult, mask_number
from modem.pdu import encode_gsm7, pack_septets
from modem.ussd import CUSD_ERRORS, UssdReply, parse_cusd
from modem.voice import (
    CLCC_ACTIVE,
    CLCC_ALERTING,
    dial_error_outcome,
    dial_number,
    ended_outcome,
    our_call,
    parse_ceer,
    parse_clcc,
    parse_clcc_line,
    parse_cnum,
)

logger = logging.getLogger(__name__)

REFUSED = (CmeError, CmsError, CommandError)
_USSD_CODE = re.compile(r"[0-9*#+]{1,160}")
_CALL_URCS = frozenset({"+CLCC", "+COLP", *CALL_RESULT_WORDS})
_EMPTY_POLLS = 3  # AT+CLCC listing no call this often before ever listing ours: it is over


@dataclass
class _Call:
    """What we know of the call going on (times are the loop's clock)."""

    started: float
    alerted_at: float | None = None
    answered_at: float | None = None
    seen: bool = False  # AT+CLCC listed it at least once
    empty_polls: int = 0

    def update(self, stat: int, now: float) -> None:
        self.seen = True
        if stat == CLCC_ALERTING and self.alerted_at is None:
            self.alerted_at = now
        elif stat == CLCC_ACTIVE and self.answered_at is None:
            self.answered_at = now
            if self.alerted_at is None:
                self.alerted_at = now

    def ringing(self, now: float, *, rang_unseen: bool = False) -> float:
        since = self.alerted_at if self.alerted_at is not None else (self.started if rang_unseen else now)
        return round(max(0.0, now - since), 3)


class VoiceServices:
    """Calls, USSD and the own number over the channel ``channel()`` returns (it raises
    PortGone when the modem is not open). ``command_timeout`` bounds each command;
    ``dial_timeout`` the wait for ``ATD``'s final result; ``poll_interval`` the ``AT+CLCC``
    polls; ``answered_hold`` how long an answered call stays up before we hang up;
    ``url`` names the modem in logs."""

    def __init__(
        self,
        url: str,
        *,
        channel: Callable[[], AtChannel],
        command_timeout: float,
        dial_timeout: float = 30.0,
        poll_interval: float = 1.0,
        answered_hold: float = 1.0,
    ) -> None:
        self._url = url
        self._channel = channel
        self._command_timeout = command_timeout
        self._dial_timeout = dial_timeout
        self._poll_interval = poll_interval
        self._answered_hold = answered_hold
        self._call_events: asyncio.Queue[Urc] | None = None
        self._ussd_events: asyncio.Queue[Urc] | None = None

    def on_urc(self, urc: Urc) -> bool:
        """Take the URCs of a call or a USSD answer (True when taken). Outside a call or a
        USSD request they are dropped here (a late ``NO CARRIER`` after our hang-up)."""
        if urc.name == "+CUSD":
            if self._ussd_events is not None:
                self._ussd_events.put_nowait(urc)
            else:
                logger.debug("+CUSD with no USSD request waiting: ignored")
            return True
        if urc.name in _CALL_URCS:
            if self._call_events is not None:
                self._call_events.put_nowait(urc)
            else:
                logger.debug("%s with no call going on: ignored", urc.name)
            return True
        return False

    # -- voice calls -------------------------------------------------------------------------

    async def call(self, number: str, ring_for: float) -> CallResult:
        """Dial ``number``, follow the call, hang up once answered (after ``answered_hold``)
        or after ``ring_for`` seconds of ringing; see :mod:`modem.voice` for the outcomes.
        Raises PortGone only (the caller holds the modem lock)."""
        dial = dial_number(number)
        if dial is None:
            return CallResult("invalid", "not a phone number (E.164 or digits)")
        ch = self._channel()
        loop = asyncio.get_running_loop()
        masked = mask_number(dial)
        events: asyncio.Queue[Urc] = asyncio.Queue()
        self._call_events = events
        call = _Call(loop.time())
        logger.info("modem %s: calling %s (ringing up to %g s)", self._url, masked, ring_for)
        try:
            try:
                await ch.command(f"ATD{dial};", timeout=self._dial_timeout, expect_prefix=None)
            except CallEnded as exc:
                result = await self._ended(ch, exc.result, call, loop.time())
            except CmeError as exc:
                result = CallResult(dial_error_outcome(cme=exc.code, plain_error=False), str(exc))
            except CommandError as exc:
                result = CallResult(dial_error_outcome(cme=None, plain_error=True), str(exc))
            except ModemTimeout:
                await self._hang_up(ch)
                result = CallResult("failed", f"no final result to ATD within {self._dial_timeout:g} s")
            else:
                result = await self._follow(ch, call, events, ring_for)
        finally:
            self._call_events = None
        logger.info("modem %s: call to %s: %s (%s)", self._url, masked, result.outcome, result.detail or "-")
        return result

    async def _follow(self, ch: AtChannel, call: _Call, events: asyncio.Queue[Urc], ring_for: float) -> CallResult:
        loop = asyncio.get_running_loop()
        clcc = True  # the modem answers AT+CLCC
        next_poll = loop.time()
        while True:
            now = loop.time()
            if call.answered_at is not None:
                if now >= call.answered_at + self._answered_hold:
                    await self._hang_up(ch)
                    return CallResult("answered", "answered; we hung up", call.ringing(loop.time()))
                limit = call.answered_at + self._answered_hold
            else:
                limit = (call.alerted_at if call.alerted_at is not None else call.started) + ring_for
                if now >= limit:
                    await self._hang_up(ch)
                    if call.alerted_at is not None or not clcc:
                        return CallResult(
                            "no-answer",
                            f"nobody answered within {ring_for:g} s; we hung up",
                            call.ringing(now, rang_unseen=True),
                        )
                    return CallResult("failed", f"the call did not ring within {ring_for:g} s; we hung up")
            if clcc and now >= next_poll:
                next_poll = now + self._poll_interval
                try:
                    lines = await ch.command("AT+CLCC", timeout=self._command_timeout)
                except CallEnded as exc:  # the call's end came while AT+CLCC ran
                    return await self._ended(ch, exc.result, call, loop.time())
                except REFUSED as exc:
                    logger.info(
                        "modem %s refused AT+CLCC (%s): following the call by its reports alone", self._url, exc
                    )
                    clcc = False
                    continue
                except ModemTimeout:
                    await self._hang_up(ch)
                    return CallResult("failed", "the modem stopped answering during the call")
                # URCs that came before this reply are queued already: they come first.
                while not events.empty():
                    result = await self._event(ch, call, events.get_nowait())
                    if result is not None:
                        return result
                ours = our_call(parse_clcc(lines))
                now = loop.time()
                if ours is not None:
                    call.update(ours.stat, now)
                    continue
                call.empty_polls += 1
                if call.seen or call.empty_polls >= _EMPTY_POLLS:
                    # Gone without a word (some modems drop the NO CARRIER).
                    return await self._ended(ch, "NO CARRIER", call, now, said=False)
                continue
            wake = min(limit, next_poll) if clcc else limit
            try:
                async with asyncio.timeout(max(0.0, wake - now)):
                    urc = await events.get()
            except TimeoutError:
                continue
            result = await self._event(ch, call, urc)
            if result is not None:
                return result

    async def _event(self, ch: AtChannel, call: _Call, urc: Urc) -> CallResult | None:
        """A URC during the call; the result when it ended the call."""
        now = asyncio.get_running_loop().time()
        if urc.name == "+CLCC":
            line = parse_clcc_line(urc.line)
            if line is not None and line.outgoing and line.voice:
                call.update(line.stat, now)
            return None
        if urc.name == "+COLP":
            call.update(CLCC_ACTIVE, now)
            return None
        return await self._ended(ch, urc.name, call, now)

    async def _ended(self, ch: AtChannel, word: str, call: _Call, now: float, *, said: bool = True) -> CallResult:
        """The network ended the call with ``word``: ask ``AT+CEER`` why, unless answered."""
        cause: str | None = None
        if call.answered_at is None and word in ("NO CARRIER", "BUSY"):
            cause = await self._release_cause(ch)
        outcome = ended_outcome(
            word, alerted=call.alerted_at is not None, answered=call.answered_at is not None, cause=cause
        )
        detail = word if said else "the call ended without a result code"
        if cause:
            detail = f"{detail}: {cause}"
        return CallResult(outcome, detail, call.ringing(now))

    async def _release_cause(self, ch: AtChannel) -> str | None:
        try:
            return parse_ceer(await ch.command("AT+CEER", timeout=self._command_timeout))
        except (*REFUSED, ModemTimeout) as exc:
            logger.debug("AT+CEER: %s", exc)
            return None

    async def _hang_up(self, ch: AtChannel) -> None:
        """``ATH``, else ``AT+CHUP`` (27.007's, for modems whose ``ATH`` ends data calls only).
        A modem that does not answer is left to the keeper (its next check)."""
        for cmd in ("ATH", "AT+CHUP"):
            try:
                await ch.command(cmd, timeout=self._command_timeout, expect_prefix=None)
                return
            except CallEnded:
                return  # "NO CARRIER" as its answer (some modems): the call is over
            except REFUSED as exc:
                logger.info("modem %s refused %s (%s)", self._url, cmd, exc)
            except ModemTimeout as exc:
                logger.warning("modem %s: hanging up failed: %s", self._url, exc)
                return

    # -- USSD --------------------------------------------------------------------------------

    async def ussd(self, code: str, timeout: float) -> str:
        """Send USSD ``code`` and return the answer text (see :mod:`modem.ussd`). Raises
        ModemError (the network refused or ended it; permanent for an unknown code or a
        modem without USSD), ModemTimeout (no answer within ``timeout``: the session is
        cancelled with ``AT+CUSD=2``), PortGone."""
        if not _USSD_CODE.fullmatch(code):
            raise ModemError("not a USSD code (digits, * and #)", permanent=True)
        ch = self._channel()
        events: asyncio.Queue[Urc] = asyncio.Queue()
        self._ussd_events = events
        try:
            lines = await self._ussd_request(ch, code)
            reply = next((r for r in map(parse_cusd, lines) if r is not None), None)
            try:
                async with asyncio.timeout(timeout):
                    while reply is None:
                        reply = parse_cusd((await events.get()).line)
            except TimeoutError:
                await self._ussd_cancel(ch)
                raise ModemTimeout(f"no USSD answer within {timeout:g} s (session cancelled)") from None
        finally:
            self._ussd_events = None
        return await self._ussd_answer(ch, reply)

    async def _ussd_request(self, ch: AtChannel, code: str) -> list[str]:
        t = self._command_timeout
        try:
            return await ch.command(f'AT+CUSD=1,"{code}",15', timeout=t)
        except CmeError as exc:
            if exc.code != 3:
                raise
            # "operation not allowed": a session is still open (a menu, an earlier request
            # nobody answered). End it and ask once more.
            await self._ussd_cancel(ch)
            return await ch.command(f'AT+CUSD=1,"{code}",15', timeout=t)
        except CommandError as exc:
            if "not supported" in str(exc):
                raise ModemError("the modem does not support USSD", permanent=True) from exc
            # Huawei sticks want the code as packed GSM-7 in hex.
            packed = pack_septets(encode_gsm7(code)).hex().upper()
            return await ch.command(f'AT+CUSD=1,"{packed}",15', timeout=t)

    async def _ussd_answer(self, ch: AtChannel, reply: UssdReply) -> str:
        text = reply.decoded
        if reply.m in (0, 1) or (reply.m == 2 and text):
            if reply.m == 1:
                await self._ussd_cancel(ch)  # a menu waits for our reply: we give none
            if text is None:
                raise ModemError("the USSD answer carried no text")
            return text
        message = CUSD_ERRORS.get(reply.m, f"USSD failed (+CUSD: {reply.m})")
        raise ModemError(message, permanent=reply.m == 4)

    async def _ussd_cancel(self, ch: AtChannel) -> None:
        try:
            await ch.command("AT+CUSD=2", timeout=self._command_timeout)
        except (*REFUSED, ModemTimeout) as exc:
            logger.info("modem %s: ending the USSD session failed: %s", self._url, exc)

    # -- own number --------------------------------------------------------------------------

    async def own_number(self) -> str | None:
        """``AT+CNUM``: the SIM's number, None when refused or not stored. Raises
        ModemTimeout, PortGone."""
        try:
            lines = await self._channel().command("AT+CNUM", timeout=self._command_timeout)
        except REFUSED as exc:
            logger.info("modem %s: own number unknown (%s)", self._url, exc)
            return None
        return parse_cnum(lines)
