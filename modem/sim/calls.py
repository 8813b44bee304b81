"""Voice calls and the subscriber's number in the simulated modem (:class:`CallCommands`).

The model is the one modern modules follow (Quectel, SIMCom with ``AT+COLP=0``, 27.007 6.27
and V.250 6.3.1): ``ATD<number>;`` answers ``OK`` as soon as the call is set up, and the call
goes on in the background. The host follows it with ``AT+CLCC`` (``+CLCC: 1,0,<stat>,0,0,
"<number>",<type>``: stat 2 dialling, 3 alerting, 0 active) or, after ``AT+CLCC=1`` (SIMCom),
with the same line unsolicited at every change, and ends it with ``ATH`` or ``AT+CHUP``
(``OK``; no further result). How the network ends it comes as one unsolicited final result:

=========== ========================================================================
outcome     what the host sees after ``OK``
=========== ========================================================================
answer      alerting, then after ``ring_seconds`` active (``+COLP: "<number>",145``
            first when ``AT+COLP=1``); ``NO CARRIER`` when the phone hangs up
no-answer   alerting until the host hangs up, or ``NO ANSWER`` after ``no_answer_seconds``
busy        ``BUSY`` after the setup time, without alerting
reject      alerting, then ``NO CARRIER`` after ``ring_seconds`` (the callee declined)
invalid     ``NO CARRIER`` after the setup time, without alerting (unassigned number)
no-voice    ``NO CARRIER`` right after ``OK`` (a network without voice for this module:
            LTE with neither VoLTE nor CS fallback)
=========== ========================================================================

``AT+CEER`` then names the release cause. A module without voice at all (``SimOptions.voice``
False: Cat-M/NB-IoT and data-only LTE modules, whose ``ATD`` is refused outright) answers
``ATD<number>;`` with ``+CME ERROR: 4`` (plain ``ERROR`` under ``AT+CMEE=0``). Not registered
on the network: ``NO CARRIER`` at once, instead of ``OK``. ``ATD<number>`` without ``;``
asks for a data call, which the simulator does not carry: ``NO CARRIER``. Real SIMCom parts
with ``AT+COLP=1`` hold ``OK`` until the call is answered; here ``+COLP`` comes unsolicited.
Incoming calls are not simulated (``ATA`` answers ``NO CARRIER``).

``AT+CNUM`` reports ``SimOptions.own_number`` (``ERROR`` when the SIM does not know it).
"""

from __future__ import annotations

import abc
import logging
import time
from dataclasses import dataclass, replace

from modem.interface import mask_number
from modem.sim.machine import _cme, _error, _Final, _Handler, _int_arg, split_args
from modem.sim.network import Network, _utcnow
from modem.sim.records import CallRecord, SimOptions
from modem.sim.ussd import UssdCommands

# Named as before the split into modules: log filters select "modem.simulator".
logger = logging.getLogger(__name__)

_IGNORED_IN_DIAL = set("TPW,@!GgIi ")  # V.250 dial modifiers and 27.007 CLIR/CUG, ignored
_DIALLABLE = set("0123456789*#+ABCD")

# Release causes (24.008 10.5.4.11) as AT+CEER shows them.
_CAUSES = {
    "host": "Normal call clearing",
    "remote": "Normal call clearing",
    "busy": "User busy",
    "rejected": "Call rejected",
    "no-answer": "No answer from user (user alerted)",
    "invalid": "Unassigned (unallocated) number",
    "no-voice": "Bearer capability not presently available",
    "dropped": "Radio link failure",
}


@dataclass
class _Call:
    """The call going on: its state and its entry in the network's record."""

    record: CallRecord
    handle: int  # Network._call_started's
    stat: int = 2  # +CLCC <stat>: 2 dialling, 3 alerting, 0 active
    active_since: float | None = None  # time.monotonic() when answered


class CallCommands(UssdCommands):
    """The voice side of a simulated modem (see the module docstring)."""

    def __init__(self, network: Network, options: SimOptions) -> None:
        super().__init__(network, options)
        self._call: _Call | None = None
        self._last_cause = "No cause information available"
        self._call_timing = (options.call_setup_seconds, options.ring_seconds, options.no_answer_seconds)

    def _reset_settings(self) -> None:
        super()._reset_settings()
        self._colp = 0
        self._clcc_n = 0

    @abc.abstractmethod
    def _eps_stat(self) -> int:
        """The ``+CEREG`` stat now."""

    def set_call_timing(
        self, *, setup: float | None = None, ring: float | None = None, no_answer: float | None = None
    ) -> None:
        """Seconds of dialling before it rings (or fails), of ringing before the phone answers
        or rejects, and before the network gives up on a phone nobody answers."""
        with self._lock:
            old = self._call_timing
            self._call_timing = (
                old[0] if setup is None else max(0.0, setup),
                old[1] if ring is None else max(0.0, ring),
                old[2] if no_answer is None else max(0.0, no_answer),
            )

    def answer_call(self) -> bool:
        """The called phone answers now (the demo phone). False if no call is ringing."""
        with self._lock:
            call = self._call
            if call is None or call.stat not in (2, 3):
                return False
            self._connect(call)
        self._wake()
        return True

    def reject_call(self) -> bool:
        """The called phone declines the call now (``NO CARRIER``). False if none is ringing."""
        with self._lock:
            if self._call is None or self._call.stat not in (2, 3):
                return False
            self._end_call("rejected", "NO CARRIER")
        self._wake()
        return True

    def hangup_call(self) -> bool:
        """The called phone hangs up an answered call (``NO CARRIER``). False if none is active."""
        with self._lock:
            if self._call is None or self._call.stat != 0:
                return False
            self._end_call("remote", "NO CARRIER")
        self._wake()
        return True

    def _drop_call(self) -> None:
        """Power or radio lost: the call ends without a word to the host."""
        if self._call is not None:
            self._end_call("dropped", None)

    # -- the call's progress

    def _dial(self, dial: str) -> list[str]:
        """``ATD<dial>``: ``OK`` for a voice call that goes on (see the module docstring)."""
        voice = dial.endswith(";")
        if not self.options.voice:
            raise _cme(4)
        self._require_sim()
        digits = "".join(c for c in dial.rstrip(";") if c not in _IGNORED_IN_DIAL).upper()
        if not digits or not set(digits) <= _DIALLABLE or "+" in digits[1:]:
            raise _error()  # ATD>mem, letters, an empty number
        if not voice:
            raise _Final("NO CARRIER")  # a data call: none carried here
        if self._call is not None:
            raise _cme(3)  # one call at a time (a second ATD would put the first on hold)
        if not self._radio_on() or (self._reg_stat() not in (1, 5) and self._eps_stat() not in (1, 5)):
            self._last_cause = "No network service"
            raise _Final("NO CARRIER")
        outcome = self.network._call_outcome_for(digits)
        record = CallRecord(digits, outcome, _utcnow())
        call = self._call = _Call(record, self.network._call_started(record))
        logger.info("simulator: dialling %s", mask_number(digits))
        self._clcc_urc()
        if outcome == "no-voice":
            self._after_reply(lambda: self._end_call("no-voice", "NO CARRIER"))
        else:
            self._call_later(self._call_timing[0], lambda: self._set_up(call))
        return []

    def _set_up(self, call: _Call) -> None:
        if self._call is not call or call.stat != 2:
            return
        outcome = call.record.outcome
        if outcome in ("busy", "invalid"):
            self._end_call(outcome, "BUSY" if outcome == "busy" else "NO CARRIER")
            return
        call.stat = 3
        self._clcc_urc()
        _, ring, no_answer = self._call_timing
        if outcome == "answer":
            self._call_later(ring, lambda: self._connect(call) if self._call is call and call.stat == 3 else None)
        elif outcome == "reject":
            self._call_later(ring, lambda: self._end_if_ringing(call, "rejected", "NO CARRIER"))
        if outcome in ("no-answer", "answer", "reject"):
            self._call_later(no_answer, lambda: self._end_if_ringing(call, "no-answer", "NO ANSWER"))

    def _end_if_ringing(self, call: _Call, result: str, urc: str) -> None:
        if self._call is call and call.stat in (2, 3):
            self._end_call(result, urc)

    def _connect(self, call: _Call) -> None:
        call.stat = 0
        call.active_since = time.monotonic()
        call.record = replace(call.record, answered=True)
        self.network._call_changed(call.handle, call.record)
        if self._colp:
            self._urc(f'+COLP: "{call.record.number}",{_type_of(call.record.number)}')
        self._clcc_urc()

    def _end_call(self, result: str, urc: str | None) -> None:
        call, self._call = self._call, None
        if call is None:
            return
        duration = 0.0 if call.active_since is None else round(time.monotonic() - call.active_since, 3)
        call.record = replace(call.record, ended=True, result=result, duration=duration)
        self.network._call_changed(call.handle, call.record)
        self._last_cause = _CAUSES.get(result, "Normal, unspecified")
        logger.info("simulator: call to %s ended (%s)", mask_number(call.record.number), result)
        if urc is not None:
            self._urc(urc)

    def _clcc_line(self, call: _Call) -> str:
        number = call.record.number
        return f'+CLCC: 1,0,{call.stat},0,0,"{self._enc(number)}",{_type_of(number)}'

    def _clcc_urc(self) -> None:
        if self._clcc_n and self._call is not None:
            self._urc(self._clcc_line(self._call))

    # -- commands

    def _call_handlers(self) -> dict[str, _Handler]:
        return {
            "+CLCC": self._h_clcc,
            "+CHUP": self._h_chup,
            "+COLP": self._h_colp,
            "+CEER": self._h_ceer,
            "+CNUM": self._h_cnum,
        }

    def _hang_up(self) -> list[str]:
        """``ATH`` / ``AT+CHUP``: end the call, if any; ``OK`` either way."""
        self._end_call("host", None)
        return []

    def _h_clcc(self, kind: str, arg: str) -> list[str]:
        if kind == "exec":
            return [] if self._call is None else [self._clcc_line(self._call)]
        if kind == "test":
            return ["+CLCC: (0,1)"]
        if kind == "read":
            return [f"+CLCC: {self._clcc_n}"]
        value = _int_arg(split_args(arg), 0, 0)
        if value not in (0, 1):
            raise _error()
        self._clcc_n = value  # SIMCom: 1 reports every change of the call's state
        return []

    def _h_chup(self, kind: str, arg: str) -> list[str]:
        if kind == "test":
            return []
        if kind != "exec":
            raise _error()
        return self._hang_up()

    def _h_colp(self, kind: str, arg: str) -> list[str]:
        if kind == "test":
            return ["+COLP: (0,1)"]
        if kind == "read":
            return [f"+COLP: {self._colp},1"]  # <m> 1: COLP provisioned
        if kind != "set":
            raise _error()
        value = _int_arg(split_args(arg), 0, 0)
        if value not in (0, 1):
            raise _error()
        self._colp = value
        return []

    def _h_ceer(self, kind: str, arg: str) -> list[str]:
        if kind == "test":
            return []
        if kind != "exec":
            raise _error()
        return [f"+CEER: {self._last_cause}"]

    def _h_cnum(self, kind: str, arg: str) -> list[str]:
        if kind == "test":
            return []
        if kind != "exec":
            raise _error()
        self._require_sim()
        number = self.options.own_number
        if number is None:
            raise _error()  # the SIM does not know its number
        return [f'+CNUM: "","{self._enc(number)}",{_type_of(number)}']


def _type_of(number: str) -> int:
    """27.007 <type>: 145 international ("+" first), 129 otherwise."""
    return 145 if number.startswith("+") else 129
