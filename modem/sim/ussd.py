"""USSD in the simulated modem (:class:`UssdCommands`): ``AT+CUSD`` per 3GPP TS 27.007 7.15.

``AT+CUSD=1,"*100#",15`` answers ``OK`` at once; the network's answer follows as the
unsolicited ``+CUSD: 0,"<answer>",<dcs>`` after ``SimOptions.ussd_delay`` seconds (``<m>`` 0:
no further action needed). A code the network does not know gets ``+CUSD: 4`` (operation not
supported). ``AT+CUSD=2`` ends a session, ``AT+CUSD=0|1`` alone sets the result code
presentation ``<n>`` (``AT+CUSD?`` reads it back); with ``<n>`` 0 the answer is not presented.

How the answer is shown follows the firmware (``SimOptions.ussd_encoding``): "text" in the
``+CSCS`` character set with dcs 15, as Quectel and SIMCom modules do; "gsm7-hex" the GSM-7
septets packed and in hex with dcs 15, as Huawei sticks do; "ucs2-hex" UTF-16 in hex with dcs
72. The request may come as text, as packed GSM-7 hex (what Huawei sticks want:
``AT+CUSD=1,"AA180C3602",15`` is ``*100#``) or, with ``+CSCS="UCS2"``, as UCS-2 hex.

A session the network never answers (``ussd_mode`` "silent") stays open: a second request is
refused with ``+CME ERROR: 3`` until ``AT+CUSD=2`` ends it. "timeout" answers ``+CUSD: 5``
(network time out) after the delay instead.
"""

from __future__ import annotations

import logging
import re

from modem.pdu import PduError, decode_gsm7, encode_gsm7, is_gsm7, pack_septets, unpack_septets
from modem.sim.machine import _cme, _error, _Handler, _int_arg, split_args
from modem.sim.network import Network
from modem.sim.records import SimOptions
from modem.sim.vendor import VendorCommands

# Named as before the split into modules: log filters select "modem.simulator".
logger = logging.getLogger(__name__)

USSD_ENCODINGS = ("text", "gsm7-hex", "ucs2-hex")
USSD_MODES = ("answer", "silent", "timeout")
_CODE = re.compile(r"[0-9*#+]+")
_HEX = re.compile(r"(?:[0-9A-Fa-f]{2})+")


class UssdCommands(VendorCommands):
    """The USSD side of a simulated modem (see the module docstring)."""

    def __init__(self, network: Network, options: SimOptions) -> None:
        super().__init__(network, options)
        self._ussd_answers = dict(options.ussd_answers)
        self._ussd_encoding = options.ussd_encoding
        self._ussd_delay = options.ussd_delay
        self._ussd_mode = options.ussd_mode
        _check(self._ussd_encoding, USSD_ENCODINGS, "USSD encoding")
        _check(self._ussd_mode, USSD_MODES, "USSD mode")
        self._ussd_session = 0  # the open session's number; 0: none
        self._ussd_sessions = 0
        self.ussd_requests: list[str] = []  # the codes the host sent, for tests

    def _reset_settings(self) -> None:
        super()._reset_settings()
        self._cusd_n = 0
        self._ussd_session = 0

    def set_ussd(
        self,
        *,
        answers: dict[str, str | None] | None = None,
        encoding: str | None = None,
        delay: float | None = None,
        mode: str | None = None,
    ) -> None:
        """Change the network's USSD answers (a None text forgets that code) and how they come
        back: ``encoding`` (:data:`USSD_ENCODINGS`), ``delay`` seconds, ``mode``
        (:data:`USSD_MODES`). Raises ``ValueError``."""
        if encoding is not None:
            _check(encoding, USSD_ENCODINGS, "USSD encoding")
        if mode is not None:
            _check(mode, USSD_MODES, "USSD mode")
        with self._lock:
            for code, text in (answers or {}).items():
                if text is None:
                    self._ussd_answers.pop(code, None)
                else:
                    self._ussd_answers[code] = text
            if encoding is not None:
                self._ussd_encoding = encoding
            if delay is not None:
                self._ussd_delay = max(0.0, delay)
            if mode is not None:
                self._ussd_mode = mode

    def _ussd_handlers(self) -> dict[str, _Handler]:
        return {"+CUSD": self._h_cusd}

    def _h_cusd(self, kind: str, arg: str) -> list[str]:
        if kind == "test":
            return ["+CUSD: (0-2)"]
        if kind == "read":
            return [f"+CUSD: {self._cusd_n}"]
        args = split_args(arg) if kind == "set" else []
        n = _int_arg(args, 0, 0)
        if n not in (0, 1, 2):
            raise _error()
        if n == 2:
            if self._ussd_session:
                logger.info("simulator: USSD session cancelled")
            self._ussd_session = 0
            return []
        self._cusd_n = n
        if len(args) < 2 or args[1] == "":
            return []  # no string: the network is not asked
        self._require_sim()
        if not self._sms_registered():
            raise _cme(30)  # no network service
        if self._ussd_session:
            raise _cme(3)  # a session is still open: AT+CUSD=2 first
        code = self._ussd_request(args[1], _int_arg(args, 2, 15))
        self.ussd_requests.append(code)
        self._ussd_sessions += 1
        session = self._ussd_session = self._ussd_sessions
        if self._ussd_mode != "silent":
            self._call_later(self._ussd_delay, lambda: self._ussd_answer(session, code))
        return []

    def _ussd_request(self, raw: str, dcs: int) -> str:
        """The service code the host typed, whichever way it came."""
        if self._cscs == "UCS2" or dcs == 72:
            try:
                return bytes.fromhex(raw).decode("utf-16-be")
            except ValueError:
                pass
        if _CODE.fullmatch(raw):
            return raw
        if _HEX.fullmatch(raw):  # packed GSM-7, the Huawei way
            try:
                code = decode_gsm7(unpack_septets(bytes.fromhex(raw)))
            except PduError:
                code = ""
            if _CODE.fullmatch(code):
                return code
        return raw

    def _ussd_answer(self, session: int, code: str) -> None:
        if session != self._ussd_session:
            return  # cancelled (AT+CUSD=2) or a reset meanwhile
        self._ussd_session = 0
        if self._cusd_n != 1:
            return  # presentation off: the answer is not shown
        if self._ussd_mode == "timeout":
            self._urc("+CUSD: 5")
            return
        text = self._ussd_answers.get(code)
        if text is None:
            self._urc("+CUSD: 4")
            return
        encoding = self._ussd_encoding
        if encoding == "gsm7-hex" and is_gsm7(text):
            self._urc(f'+CUSD: 0,"{pack_septets(encode_gsm7(text)).hex().upper()}",15')
        elif encoding == "text" and is_gsm7(text):
            self._urc(f'+CUSD: 0,"{self._enc(text)}",15')
        else:  # UCS-2 asked for, or text GSM-7 cannot carry
            self._urc(f'+CUSD: 0,"{text.encode("utf-16-be").hex().upper()}",72')


def _check(value: str, allowed: tuple[str, ...], what: str) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r} (known: {', '.join(allowed)})")
