"""``AtModem``: the :class:`~modem.interface.Modem` interface over AT commands in PDU mode
(pyserial, through :class:`~modem.at.AtChannel`): open and init, sending, status, recovery
steps and URC routing. Its inbound side (reading, reassembling, handing over and deleting
stored SMS, status reports) is :class:`~modem.atinbound.InboundReader`; voice calls, USSD and
the own number are :class:`~modem.atcall.VoiceServices`."""

from __future__ import annotations

import asyncio
import logging
import random
import re
from typing import Any

from modem.at import (
    SIM_BUSY_CME,
    SIM_BUSY_CMS,
    AtChannel,
    Registration,
    RegistrationSummary,
    Urc,
    access_technology,
    combine_registrations,
    info_text,
    parse_cmgs,
    parse_cmti,
    parse_cops,
    parse_cpin,
    parse_csca,
    parse_csq,
    parse_registration,
    rssi_to_dbm,
    storage_full_report,
)
from modem.atcall import VoiceServices
from modem.atinbound import REFUSED, InboundReader, storage_fill
from modem.errors import CmeError, CmsError, CommandError, ModemError, ModemTimeout, PortGone, SimError
from modem.interface import (
    CallResult,
    InboundHandler,
    Modem,
    ModemStatus,
    ReportHandler,
    SimAbsent,
    mask_number,
)
from modem.pdu import encode_submit

logger = logging.getLogger(__name__)


PART_TRIES = 3  # tries for each later part of a multipart SMS (AtModem.send_sms)


class AtModem(Modem):
    """A GSM modem driven with AT commands in PDU mode over pyserial.

    ``url`` is anything ``serial.serial_for_url`` opens: ``/dev/ttyUSB2``, a pty, or
    ``socket://host:port``. ``command_timeout`` bounds ordinary commands; ``send_timeout``
    the network's answer to each part of an SMS (after the payload); ``list_timeout``
    ``AT+CMGL``; ``multipart_timeout`` how long an incomplete multipart message waits for
    its missing parts before it is handed over with ``complete=False``;
    ``sim_busy_timeout`` how long "SIM busy" answers are waited out during :meth:`open`;
    ``poll_interval`` how often storage is listed when the modem refuses ``AT+CNMI``;
    ``delete_retry_interval`` how often a stored message whose ``AT+CMGD`` was refused is
    deleted again; ``radio_timeout`` each ``AT+CFUN`` of :meth:`radio_cycle`;
    ``registration_wait`` how long init waits for the network after switching the radio on;
    ``dial_timeout`` the wait for ``ATD``'s result, ``call_poll_interval`` the ``AT+CLCC``
    polls during a call, ``answered_hold`` how long an answered call stays up (:meth:`call`).
    Raises ValueError for a PIN that is not 4-8 digits or an SMSC that is not a number.

    One asyncio lock serialises everything that talks to the modem (sends, inbound
    processing, status), so those interleave safely. Inbound messages are processed by
    one task (:class:`~modem.atinbound.InboundReader`, which this composes): ``+CMTI``
    only queues work, the reader thread never waits for it.

    Every message that reaches storage leaves it again, so a full SIM never makes the network
    hold the owner's next command: it is handed to the inbound handler, then deleted. One we
    cannot decode is handed over raw (``InboundSms.undecodable``); a slot that cannot be read
    at all is deleted after one log line; a refused deletion is tried again, never forgotten.
    Only a failing handler keeps a message (read again at the next open).
    """

    backend = "at"

    def __init__(
        self,
        url: str,
        *,
        baudrate: int = 115200,
        pin: str | None = None,
        smsc: str | None = None,
        command_timeout: float = 10.0,
        send_timeout: float = 60.0,
        list_timeout: float = 60.0,
        multipart_timeout: float = 3600.0,
        sim_busy_timeout: float = 30.0,
        poll_interval: float = 60.0,
        part_retry_delay: float = 2.0,
        delete_retry_interval: float = 30.0,
        radio_timeout: float = 15.0,
        registration_wait: float = 30.0,
        dial_timeout: float = 30.0,
        call_poll_interval: float = 1.0,
        answered_hold: float = 1.0,
    ) -> None:
        if pin is not None and not (pin.isdigit() and 4 <= len(pin) <= 8):
            raise ValueError("the SIM PIN must be 4 to 8 digits")  # never echo the value
        if smsc is not None and not re.fullmatch(r"\+?\d{3,20}", smsc):
            raise ValueError("the SMSC must be a phone number (digits, optional leading +)")
        self.url = url
        self._baudrate = baudrate
        self._pin = pin
        self._smsc = smsc
        self._command_timeout = command_timeout
        self._send_timeout = send_timeout
        self._part_retry_delay = part_retry_delay
        self._sim_busy_timeout = sim_busy_timeout
        self._poll_interval = poll_interval
        self._radio_timeout = radio_timeout
        self._registration_wait = registration_wait
        self._channel: AtChannel | None = None
        self._lock = asyncio.Lock()
        self._gone = asyncio.Event()
        # Reading, reassembling, handing over and deleting inbound SMS, and the storage state.
        self._inbound = InboundReader(
            url,
            channel=self._require_channel,
            optional=self._optional,
            lock=self._lock,
            command_timeout=command_timeout,
            list_timeout=list_timeout,
            multipart_timeout=multipart_timeout,
            poll_interval=poll_interval,
            delete_retry_interval=delete_retry_interval,
        )
        self._voice = VoiceServices(
            url,
            channel=self._require_channel,
            command_timeout=command_timeout,
            dial_timeout=dial_timeout,
            poll_interval=call_poll_interval,
            answered_hold=answered_hold,
        )
        self._concat_ref = random.randrange(256)
        self._radio_refused = False  # init could not switch the radio on (AT+CFUN=1 refused)
        # The last unsolicited registration report per domain ("CREG", "CEREG", ...), and the
        # state they add up to: the keeper is woken (wait_news) when it changes.
        self._reg_reports: dict[str, Registration] = {}
        self._reg_state: str | None = None
        self._news = asyncio.Event()
        # Storage-full reports (^SMMEMFULL, +QIND/+CIEV "smsfull") in this session; each
        # one lists and clears the storage at once. ModemStatus carries the count.
        self._storage_full_reports = 0

    def __repr__(self) -> str:
        return f"AtModem({self.url!r})"  # never the PIN

    # -- Modem interface -------------------------------------------------------------------

    def set_inbound_handler(self, handler: InboundHandler) -> None:
        """Called once per complete inbound message; storage is cleaned after it returned."""
        self._inbound.handler = handler

    def set_report_handler(self, handler: ReportHandler) -> None:
        """Called once per status report (``+CDS``, or stored: ``+CDSI`` and listings); the
        stored ones are deleted after it returned (or failed: a report is never kept)."""
        self._inbound.report_handler = handler

    async def open(self) -> None:
        """Open the port and run the init sequence (DESIGN §6), then queue the messages
        stored while offline for the inbound handler.

        Raises SimError when the SIM needs a human (wrong PIN: the PIN is sent at most
        once; PUK; PIN required but not configured), SimAbsent when no usable SIM is
        inserted, PortGone when the device cannot be opened, ModemTimeout when it stays
        silent, CommandError when it refuses PDU mode.
        """
        if self._channel is not None:
            raise RuntimeError("AtModem.open called twice")
        channel = AtChannel(self.url, baudrate=self._baudrate, on_urc=self._on_urc, on_gone=self._on_gone)
        # Fresh loop-bound primitives: the object may be reopened from another event loop.
        self._lock = asyncio.Lock()
        self._inbound.new_session(self._lock)
        self._gone = asyncio.Event()
        self._news = asyncio.Event()
        self._reg_reports.clear()
        self._reg_state = None
        self._storage_full_reports = 0
        await channel.open(timeout=self._command_timeout)
        self._channel = channel
        try:
            async with self._lock:
                await self._initialise(channel)
        except BaseException:
            self._channel = None
            await channel.close()
            raise
        self._inbound.start()

    async def close(self, *, grace: float = 10.0) -> None:
        """Stop inbound processing, let an SMS in flight finish (up to ``grace`` s), close
        the port. Idempotent."""
        await self._inbound.stop()
        channel, self._channel = self._channel, None
        if channel is None:
            return
        acquired = False
        try:
            await asyncio.wait_for(self._lock.acquire(), grace)
            acquired = True
        except TimeoutError:
            logger.warning("closing %s with a command still in flight", self.url)
        try:
            await channel.close()
        finally:
            if acquired:
                self._lock.release()

    async def wait_gone(self) -> None:
        """Return once the port vanished (USB unplug, TCP reset)."""
        await self._gone.wait()

    async def wait_news(self) -> None:
        """Return once the modem reported something its keeper should look at now: a change of
        registration (``+CREG``/``+CEREG``... reports), or a full message storage."""
        await self._news.wait()
        self._news.clear()

    async def send_sms(self, number: str, text: str, *, report: bool = False) -> list[int]:
        """Send ``text`` to ``number``; one ``AT+CMGS`` per part; returns the references.
        With ``report`` every part asks for a status report (TP-SRR).

        Raises PduError (permanent) for a number or text that cannot be encoded, CmsError
        / CmeError / CommandError from the modem (``permanent`` tells whether to retry),
        ModemTimeout, PortGone.

        When a later part of a multipart message is refused with an error that may pass (the
        network busy, a temporary failure), that part alone is tried again, ``PART_TRIES``
        times in all: the same PDU, so the phone still joins it to the parts already sent. Had
        the whole message been sent again instead, the phone would show an orphaned fragment
        next to it. Other failures of a later part leave the sent parts sent.
        """
        self._concat_ref = (self._concat_ref + 1) % 256
        parts = encode_submit(number, text, concat_ref=self._concat_ref, status_report=report)
        refs: list[int] = []
        async with self._lock:
            channel = self._require_channel()
            for i, part in enumerate(parts):
                for attempt in range(1, PART_TRIES + 1):
                    try:
                        lines = await channel.command_with_prompt(
                            f"AT+CMGS={part.tpdu_length}",
                            part.hex,
                            timeout=self._send_timeout,
                            prompt_timeout=self._command_timeout,
                        )
                        break
                    except (CmsError, CmeError) as exc:
                        if i == 0 or exc.permanent or attempt == PART_TRIES:
                            raise  # nothing sent yet, or no use: the caller decides
                        logger.warning("part %d of %d refused (%s); sending it again", i + 1, len(parts), exc)
                        await asyncio.sleep(self._part_retry_delay * attempt)
                mr = parse_cmgs(lines)
                if mr is None:
                    logger.warning("AT+CMGS succeeded without a message reference")
                refs.append(-1 if mr is None else mr)
        logger.info("SMS sent to %s (%d part(s))", mask_number(number), len(parts))
        return refs

    async def call(self, number: str, ring_for: float) -> CallResult:
        """Call ``number``, ringing up to ``ring_for`` s; hang up once answered (see
        :mod:`modem.voice` for the outcomes). Holds the modem for the whole call: sends wait,
        inbound SMS are read after it. Raises PortGone only."""
        async with self._lock:
            return await self._voice.call(number, ring_for)

    async def ussd(self, code: str, timeout: float = 30.0) -> str:
        """``AT+CUSD``: the network's answer to ``code`` (see :meth:`Modem.ussd`)."""
        async with self._lock:
            return await self._voice.ussd(code, timeout)

    async def own_number(self) -> str | None:
        """``AT+CNUM``: the SIM's own number, None when it does not know it."""
        async with self._lock:
            return await self._voice.own_number()

    async def status(self) -> ModemStatus:
        """Identity, SIM, registration, operator, signal and SMSC. A query the modem
        refuses gives None; after one timeout the remaining queries are skipped (None).
        Raises PortGone when the port is gone."""
        async with self._lock:
            channel = self._require_channel()
            timeout = min(self._command_timeout, 5.0)
            stalled = False

            async def ask(cmd: str, **kw: Any) -> list[str] | None:
                nonlocal stalled
                if stalled:
                    return None
                try:
                    return await channel.command(cmd, timeout=timeout, **kw)
                except ModemTimeout:
                    stalled = True
                    return None
                except REFUSED as exc:
                    if isinstance(exc, CmeError) and cmd == "AT+CPIN?":
                        return [f"+CPIN: {_SIM_BY_CME.get(exc.code, 'ERROR')}"]
                    return None

            manufacturer = _info(await ask("AT+CGMI", expect_prefix=None), "+CGMI:")
            model = _info(await ask("AT+CGMM", expect_prefix=None), "+CGMM:")
            revision = _info(await ask("AT+CGMR", expect_prefix=None), "+CGMR:")
            imei = _info(await ask("AT+CGSN", expect_prefix=None), "+CGSN:")
            cpin = await ask("AT+CPIN?", soft_final="+CPIN:")
            cfun = await ask("AT+CFUN?")
            regs = [reg for cmd in _REG_QUERIES for reg in _registrations(await ask(cmd))]
            cops = await ask("AT+COPS?")
            csq = await ask("AT+CSQ")
            csca = await ask("AT+CSCA?")
            cpms = await ask("AT+CPMS?")
        fill = storage_fill(cpms or [])
        if fill is not None:
            self._inbound.check_storage_used(fill[0])
        summary = combine_registrations(regs) if regs else None
        operator = parse_cops(cops) if cops else None
        technology = summary.technology if summary else None
        if technology is None and operator is not None and summary is not None and summary.state in ("home", "roaming"):
            technology = access_technology(operator.act)
        radio = _radio(cfun)
        if radio == "off" and self._radio_refused:
            radio = "refused"
        signal = parse_csq(csq) if csq else None
        return ModemStatus(
            backend=self.backend,
            port=self.url,
            manufacturer=manufacturer,
            model=model,
            revision=revision,
            imei=imei,
            sim=parse_cpin(cpin) if cpin else None,
            registration=summary.state if summary else None,
            operator=operator.name if operator else None,
            signal_dbm=rssi_to_dbm(signal[0]) if signal else None,
            smsc=parse_csca(csca) if csca else None,
            storage_used=fill[0] if fill else None,
            storage_total=fill[1] if fill else None,
            radio=radio,
            access_technology=technology,
            sms_only=summary.sms_only if summary else None,
            registration_note=summary.note if summary else None,
            storage_full_reports=self._storage_full_reports,
        )

    # -- recovery (steps of ModemKeeper's ladder) -------------------------------------------

    async def ping(self) -> None:
        """``AT``: is the modem answering at all? Any final result counts. Raises
        ModemTimeout when it stays silent, PortGone when the port is gone."""
        async with self._lock:
            try:
                await self._require_channel().command("AT", timeout=min(self._command_timeout, 5.0))
            except REFUSED:
                pass

    async def resync(self) -> None:
        """Recovery step 1: ESC (leaves a ``> `` prompt left open) then ``AT``. Raises
        ModemTimeout when the modem still does not answer, PortGone."""
        async with self._lock:
            channel = self._require_channel()
            await channel.abort_prompt()
            await self._wake(channel)

    async def radio_cycle(self, *, full_reset: bool = False) -> None:
        """Recovery step 2: the radio off and on again (``AT+CFUN=4`` then ``AT+CFUN=1``), or,
        with ``full_reset``, ``AT+CFUN=1,1`` (the modem restarts: some re-enumerate on USB, so
        the port may vanish). What helps a modem that lost the network for good
        (home-assistant/core#71162). Raises CommandError/CmeError when refused,
        ModemTimeout, PortGone."""
        t = self._radio_timeout  # switching the radio takes seconds (network search, detach)
        async with self._lock:
            channel = self._require_channel()
            if full_reset:
                await self._busy_retry(channel, "AT+CFUN=1,1", t)
                return
            await self._busy_retry(channel, "AT+CFUN=4", t)
            await self._busy_retry(channel, "AT+CFUN=1", t)
            self._radio_refused = False

    # -- init sequence ---------------------------------------------------------------------

    async def _initialise(self, ch: AtChannel) -> None:
        t = self._command_timeout
        await ch.abort_prompt()  # ESC: leave a "> " prompt a previous run left open
        await self._wake(ch)
        try:
            await ch.command("ATE0", timeout=t)
            ch.expect_echo = False
        except REFUSED:
            logger.info("modem refused ATE0; echoes are stripped instead")
        try:
            await ch.command("AT+CMEE=1", timeout=t)
        except REFUSED:
            logger.info("modem refused AT+CMEE=1; errors will be less specific")
        await self._unlock_sim(ch)
        manufacturer = _info(await self._optional(ch, "AT+CGMI"), "+CGMI:") or ""
        if "huawei" in manufacturer.lower():
            # Huawei sticks report ^RSSI/^MODE/^SRVST/^HCSQ every few seconds unless told not
            # to; they are routed away anyway, this keeps the port quiet (ModemManager does it too).
            await self._optional(ch, "AT^CURC=0")
        switched_on = await self._radio_on(ch)
        await self._report_registration(ch)
        reg = await self._registration(ch)
        if switched_on and (reg is None or reg.state in ("searching", "unregistered", "unknown")):
            reg = await self._await_registration(ch)
        if reg is not None and reg.note:
            logger.warning("modem %s: %s", self.url, reg.note)
        csq = parse_csq(await self._optional(ch, "AT+CSQ") or [])
        await self._optional(ch, "AT+COPS?")
        try:
            await self._busy_retry(ch, "AT+CMGF=0", t)
        except REFUSED as exc:
            raise CommandError("the modem refuses PDU mode (AT+CMGF=0)", permanent=True) from exc
        current = parse_csca(await self._optional(ch, "AT+CSCA?") or [])
        if self._smsc and current != self._smsc:
            toa = 145 if self._smsc.startswith("+") else 129
            if await self._optional(ch, f'AT+CSCA="{self._smsc}",{toa}') is None:
                logger.warning("modem refused the configured SMSC; keeping its own")
        elif not current and not self._smsc:
            logger.warning("no SMSC set on the SIM and none configured: sending will fail")
        await self._inbound.init_storage(ch)
        await self._enable_indications(ch)
        logger.info(
            "modem %s ready: registration %s (%s), signal %s dBm",
            self.url,
            reg.state if reg else "unknown",
            (reg.technology if reg else None) or "technology unknown",
            rssi_to_dbm(csq[0]) if csq else "unknown",
        )

    async def _radio_on(self, ch: AtChannel) -> bool:
        """``AT+CFUN?``; a radio that is off (0 minimum, 4 flight mode: some sticks boot so,
        some fall into it after errors) is switched on with ``AT+CFUN=1``. A modem that
        refuses is logged and remembered (``ModemStatus.radio`` "refused"): init goes on, so
        the owner sees why nothing is sent, and the keeper's reopen tries again. True when it
        switched the radio on."""
        self._radio_refused = False
        state = _radio(await self._optional(ch, "AT+CFUN?"))
        if state != "off":
            return False  # on, or a modem that does not tell (refused AT+CFUN?): leave it alone
        logger.info("modem %s: radio is off (AT+CFUN 0/4); switching it on", self.url)
        try:
            # Switching the radio on can take seconds (the modem searches the network).
            await self._busy_retry(ch, "AT+CFUN=1", max(self._command_timeout, 15.0))
        except REFUSED as exc:
            self._radio_refused = True
            logger.warning("modem %s refused to switch its radio on (AT+CFUN=1: %s): no SMS can be sent", self.url, exc)
            return False
        return True

    async def _report_registration(self, ch: AtChannel) -> None:
        """Ask for unsolicited registration reports in every domain the modem knows (with
        location and access technology, else plain): losing the network is then seen when it
        happens, not at the next status refresh. A modem without the domain says ERROR."""
        for cmd in ("AT+CREG", "AT+CGREG", "AT+CEREG", "AT+C5GREG"):
            for n in (2, 1):
                try:
                    await self._busy_retry(ch, f"{cmd}={n}", self._command_timeout)
                    break
                except REFUSED:
                    continue

    async def _registration(self, ch: AtChannel) -> RegistrationSummary | None:
        regs: list[Registration] = []
        for cmd in _REG_QUERIES:
            regs.extend(_registrations(await self._optional(ch, cmd)))
        if not regs:
            return None
        # What later reports (_registration_report) are compared against.
        self._reg_reports = {r.kind: r for r in regs}
        summary = combine_registrations(regs)
        self._reg_state = summary.state
        return summary

    async def _await_registration(self, ch: AtChannel) -> RegistrationSummary | None:
        """After switching the radio on: the modem searches the network for seconds. Ask once
        a second, up to ``registration_wait``, until registered or denied; what it says then
        is what init reports (a modem still searching is the keeper's to watch)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._registration_wait
        while True:
            reg = await self._registration(ch)
            if (reg is not None and reg.state in ("home", "roaming", "denied")) or loop.time() + 1.0 > deadline:
                return reg
            await asyncio.sleep(1.0)

    async def _wake(self, ch: AtChannel) -> None:
        """``AT`` until the modem answers: a modem just plugged in may need a few seconds.
        Any final result counts (a PIN-locked modem may answer ``+CME ERROR: 11``)."""
        last: ModemTimeout | None = None
        for attempt in range(4):
            try:
                await ch.command("AT", timeout=min(self._command_timeout, 1.0 * 2**attempt))
                return
            except REFUSED:
                return
            except ModemTimeout as exc:
                last = exc
        assert last is not None
        raise last

    async def _sim_state(self, ch: AtChannel) -> str:
        """``AT+CPIN?`` → state, waiting out "SIM busy". Raises SimAbsent for a missing or
        failed SIM."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._sim_busy_timeout
        delay = 0.1
        while True:
            try:
                lines = await ch.command("AT+CPIN?", timeout=self._command_timeout, soft_final="+CPIN:")
            except CmeError as exc:
                if exc.code in SIM_BUSY_CME and loop.time() + delay < deadline:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 2.0)
                    continue
                state = _SIM_BY_CME.get(exc.code)
                if state in ("NOT INSERTED", "SIM FAILURE"):
                    raise SimAbsent(f"SIM unusable: {state.lower()}") from exc
                if state is None:
                    raise
                return state
            except CommandError:
                logger.warning("modem refused AT+CPIN?; assuming the SIM is ready")
                return "READY"
            return parse_cpin(lines) or "READY"

    async def _unlock_sim(self, ch: AtChannel) -> None:
        state = await self._sim_state(ch)
        if state == "SIM PIN":
            if not self._pin:
                raise SimError("the SIM asks for a PIN and none is configured")
            # Sent at most once per open: a second wrong PIN brings the SIM closer to PUK.
            try:
                await ch.command(f'AT+CPIN="{self._pin}"', timeout=max(self._command_timeout, 30.0))
            except (*REFUSED, ModemTimeout) as exc:
                try:
                    state = await self._sim_state(ch)
                except ModemError:
                    state = "UNKNOWN"
                if state != "READY":
                    raise SimError("the SIM did not accept the configured PIN; it will not be sent again") from exc
            else:
                state = await self._sim_state(ch)  # waits out the busy phase after unlocking
                if state == "SIM PIN":
                    raise SimError("PIN accepted but the SIM is still locked; not retrying")
        if state in ("READY", "SIM PIN2", "SIM PUK2"):
            return
        if state == "SIM PUK":
            raise SimError("the SIM is blocked: it needs its PUK")
        raise SimError(f"the SIM is locked ({state})")

    async def _busy_retry(self, ch: AtChannel, cmd: str, timeout: float) -> list[str]:
        """Run ``cmd``, retrying while the SIM reports busy (right after unlocking)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._sim_busy_timeout
        delay = 0.1
        while True:
            try:
                return await ch.command(cmd, timeout=timeout)
            except (CmeError, CmsError) as exc:
                busy = SIM_BUSY_CME if isinstance(exc, CmeError) else SIM_BUSY_CMS
                if exc.code not in busy or loop.time() + delay >= deadline:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _optional(self, ch: AtChannel, cmd: str) -> list[str] | None:
        """A command whose refusal is not fatal: None (logged) when refused."""
        try:
            return await self._busy_retry(ch, cmd, self._command_timeout)
        except REFUSED as exc:
            logger.info("modem refused %s: %s", cmd.split("=")[0], exc)
            return None

    async def _enable_indications(self, ch: AtChannel) -> None:
        for cnmi in ("AT+CNMI=2,1,0,1,0", "AT+CNMI=2,1,0,0,0", "AT+CNMI=1,1,0,0,0", "AT+CNMI=2,1"):
            try:
                await self._busy_retry(ch, cnmi, self._command_timeout)
            except REFUSED:
                continue
            self._inbound.set_polling(False)
            if cnmi != "AT+CNMI=2,1,0,1,0":
                logger.info("modem refused the preferred AT+CNMI; using %s", cnmi)
            return
        logger.warning("modem refuses every AT+CNMI: polling storage every %g s instead", self._poll_interval)
        self._inbound.set_polling(True)

    # -- URCs and port loss (called on the loop by the channel) ----------------------------

    def _on_urc(self, urc: Urc) -> None:
        if self._voice.on_urc(urc):
            return
        if urc.name in ("+CMTI", "+CDSI"):
            where = parse_cmti(urc)
            if where is None:
                logger.warning("malformed %s ignored", urc.name)
                return
            self._inbound.queue_read(*where)
        elif urc.name == "+CMT":
            if urc.pdu:
                self._inbound.queue_pdu(urc.pdu)
        elif urc.name == "+CDS":
            length = urc.args.strip()
            if urc.pdu and length.isdigit():
                self._inbound.queue_report(urc.pdu, int(length))
            else:  # text mode (one line), or a PDU that never came: we read PDU mode only
                logger.warning("malformed +CDS status report ignored")
        elif urc.name in ("+CREG", "+CGREG", "+CEREG", "+C5GREG"):
            self._registration_report(urc)
        elif storage_full_report(urc):
            # The network holds every further SMS (the owner's ACK too) until there is room:
            # read and clear now; the owner hears of it once (ModemStatus.storage_full_reports).
            self._storage_full_reports += 1
            logger.warning("modem %s: its SMS storage is full (%s); reading and clearing it", self.url, urc.name)
            self._inbound.queue_list()
            self._news.set()
        else:
            logger.debug("URC %s", urc.name)

    def _registration_report(self, urc: Urc) -> None:
        """An unsolicited ``+CREG``/``+CEREG``/...: when the domains add up to a new state
        (lost the network, back on it, denied), log it and wake the keeper."""
        reg = parse_registration(urc.line, solicited=False)
        if reg is None:
            logger.debug("malformed registration report ignored")
            return
        self._reg_reports[reg.kind] = reg
        summary = combine_registrations(list(self._reg_reports.values()))
        if summary.state == self._reg_state:
            return
        before, self._reg_state = self._reg_state, summary.state
        if summary.state in ("home", "roaming"):
            logger.info(
                "modem %s: registered (%s, %s)", self.url, summary.state, summary.technology or "technology unknown"
            )
        elif before in ("home", "roaming"):
            logger.warning("modem %s: lost the network (now %s)", self.url, summary.state)
        self._news.set()

    def _on_gone(self, exc: PortGone) -> None:
        self._gone.set()

    def _require_channel(self) -> AtChannel:
        if self._channel is None:
            raise PortGone(f"{self.url}: modem is not open")
        return self._channel


_SIM_BY_CME: dict[int, str] = {
    10: "NOT INSERTED",
    11: "SIM PIN",
    12: "SIM PUK",
    13: "SIM FAILURE",
    14: "BUSY",
    15: "SIM FAILURE",
    262: "SIM PUK",
}


_REG_QUERIES = ("AT+CREG?", "AT+CGREG?", "AT+CEREG?", "AT+C5GREG?")  # ERROR where unknown: fine
_CFUN = re.compile(r"^\+CFUN:\s*(\d+)")


def _registrations(lines: list[str] | None) -> list[Registration]:
    regs = (parse_registration(line, solicited=True) for line in lines or [])
    return [r for r in regs if r is not None]


def _radio(lines: list[str] | None) -> str | None:
    """``+CFUN: <fun>`` → "on" (1), "off" (0 minimum, 4 flight mode); None when not told
    (other values, such as 5-7 vendor modes, are taken as on)."""
    for line in lines or []:
        m = _CFUN.match(line.strip())
        if m:
            return "off" if int(m.group(1)) in (0, 4) else "on"
    return None


def _info(lines: list[str] | None, prefix: str) -> str | None:
    return info_text(lines, prefix) if lines else None
