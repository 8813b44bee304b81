"""SMS in the simulated modem: storage, delivery from the network, and the SMS commands.

:class:`SmsCommands` adds to the :class:`~modem.sim.machine.AtMachine` command line what a
modem does with short messages: the SIM/phone storages (``+CPMS``), new-message indications
(``+CNMI``: ``+CMTI``, ``+CMT``, status reports), PDU and text mode (``+CMGF``, ``+CSCS``),
and sending, reading, listing and deleting (``+CMGS``, ``+CMGR``, ``+CMGL``, ``+CMGD``).
The SIM and the radio are the subclass's (:class:`~modem.sim.device.Simulator`).
"""

from __future__ import annotations

import abc
import datetime as dt
import logging
from collections import deque

from modem.pdu import Deliver, PduError, Submit, decode_pdu, encode_status_report
from modem.sim.machine import _PROMPT, AtMachine, _cme, _cms, _error, _int_arg, split_args
from modem.sim.network import DELAYED_STATUS, FAILED_STATUS, Network, _utcnow
from modem.sim.records import SimOptions, StoredSms

# Named as before the split into modules: log filters select "modem.simulator".
logger = logging.getLogger(__name__)

_STAT_TEXT = ("REC UNREAD", "REC READ", "STO UNSENT", "STO SENT")


class SmsCommands(AtMachine):
    """The SMS side of a simulated modem (see the module docstring)."""

    def __init__(self, network: Network, options: SimOptions) -> None:
        super().__init__(options)
        self.network = network
        self._storage: dict[str, dict[int, StoredSms]] = {name: {} for name in options.storages if name != "MT"}
        self._storage.setdefault("SM", {})
        if "MT" in options.storages:
            # "MT" is the ME's storages as one; here simply the SIM's slots under another name.
            self._storage["MT"] = self._storage["SM"]
        self._next_mr = options.first_message_ref % 256
        self._fail_sends: deque[int | None] = deque()  # None: this one goes through
        self._fail_deletes: deque[int] = deque()

    def _reset_settings(self) -> None:
        super()._reset_settings()
        self._cmgf = 0
        self._cscs = "GSM"
        self._cnmi = list(self.options.cnmi)
        self._csmp = [17, 167, 0, 0]
        self._csdh = 0
        self._smsc = self.options.smsc
        self._mems = ["SM", "SM", "SM"]

    @abc.abstractmethod
    def _require_sim(self, *, sms: bool = False) -> None:
        """Raise the error a command gets while the SIM is not ready (``+CMS`` with ``sms``)."""

    @abc.abstractmethod
    def _reg_stat(self) -> int:
        """The ``+CREG`` stat now: 0 while the radio is off or the SIM is not ready."""

    @abc.abstractmethod
    def _radio_on(self) -> bool:
        """``AT+CFUN`` is 1."""

    @abc.abstractmethod
    def _report_storage_full(self) -> None:
        """An inbound SMS found the receive storage full (the vendor's report, if any)."""

    @abc.abstractmethod
    def _report_storage_free(self) -> None:
        """Room was made in the receive storage."""

    @abc.abstractmethod
    def _sms_registered(self) -> bool:
        """Registered in a domain that carries SMS (CS, or LTE/NR including "SMS only")."""

    def fail_next_send(self, cms_code: int, count: int = 1, after: int = 0) -> None:
        """After ``after`` more successful ``AT+CMGS`` submissions, the next ``count`` end in
        ``+CMS ERROR: cms_code``."""
        with self._lock:
            self._fail_sends.extend([None] * after + [cms_code] * count)

    def fail_next_delete(self, cms_code: int, count: int = 1) -> None:
        """The next ``count`` ``AT+CMGD`` end in ``+CMS ERROR: cms_code``, deleting nothing
        (a slot some firmware will not free at once)."""
        with self._lock:
            self._fail_deletes.extend([cms_code] * count)

    def storage_fill(self, storage: str | None = None) -> tuple[int, int]:
        """(slots in use, slots in all) of one storage (default: the one new messages are
        received into, ``AT+CPMS`` mem3), as ``AT+CPMS?`` reports it."""
        with self._lock:
            return len(self._storage[storage or self._mems[2]]), self.options.storage_size

    def stored(self, storage: str | None = None) -> list[StoredSms]:
        """A copy of the messages in one storage (default: the receive storage, mem3), by index."""
        with self._lock:
            slots = self._storage[storage or self._mems[2]]
            return [StoredSms(s.index, s.stat, s.pdu) for _, s in sorted(slots.items())]

    def _reachable(self) -> bool:
        return self._powered and self._sms_registered()

    # -- network side (inbound)

    def _receive_from_network(self, pdus: list[str]) -> None:
        with self._lock:
            if not self._reachable():
                self.network._hold(pdus)
            elif not self._store_message(pdus):
                self.network._hold(pdus)
                self._report_storage_full()

    def _flush_network(self) -> None:
        with self._lock:
            if not self._reachable():
                return
            waiting = self.network._take_undelivered()
            for i, pdus in enumerate(waiting):
                if not self._store_message(pdus):
                    self.network._return_undelivered(waiting[i:])
                    break

    def _store_message(self, pdus: list[str]) -> bool:
        """Store every part in the receive storage (mem3), with indications. False if full."""
        mode, mt = self._cnmi[0], self._cnmi[1]
        if mt in (2, 3) and mode in (1, 2, 3):
            for pdu in pdus:  # routed straight to the host, not stored
                self._urc_cmt(pdu)
            return True
        mem = self._mems[2]
        slots = self._storage[mem]
        free = [
            i
            for i in range(self.options.first_index, self.options.first_index + self.options.storage_size)
            if i not in slots
        ]
        if len(free) < len(pdus):
            return False
        for pdu, index in zip(pdus, free, strict=False):
            slots[index] = StoredSms(index, 0, pdu)
            if mt == 1 and mode in (1, 2, 3):
                self._urc(f'+CMTI: "{mem}",{index}')
        return True

    def _urc_cmt(self, pdu: str) -> None:
        if self._cmgf == 0:
            self._urc(f"+CMT: ,{_tpdu_len(pdu)}\r\n{pdu}")
            return
        fields = self._text_fields(pdu)
        if fields is None:
            return
        sender, text, ts = fields
        self._urc(f'+CMT: "{self._enc(sender)}",,"{ts}"\r\n{text}')

    # -- text-mode helpers

    def _enc(self, text: str) -> str:
        if self._cscs == "UCS2":
            return text.encode("utf-16-be").hex().upper()
        return text

    def _dec(self, text: str) -> str:
        if self._cscs == "UCS2":
            try:
                return bytes.fromhex(text).decode("utf-16-be")
            except ValueError:
                raise _cms(305) from None
        return text

    def _text_fields(self, pdu: str) -> tuple[str, str, str] | None:
        """(sender, text as text mode shows it, scts) of a stored DELIVER, or None."""
        try:
            msg = decode_pdu(pdu, smsc=True)
        except PduError:
            return None
        if not isinstance(msg, Deliver):
            return None
        text = msg.text
        if getattr(msg, "encoding", "gsm7") != "gsm7" and self._cscs != "UCS2":
            text = text.encode("utf-16-be").hex().upper()  # modems show non-GSM data as hex
        else:
            text = self._enc(text)
        return msg.sender, text, _scts(msg.timestamp)

    # -- SMS settings

    def _h_csca(self, kind: str, arg: str) -> list[str]:
        if kind == "test":
            return []
        self._require_sim()
        if kind == "read":
            kind_of_number = 145 if self._smsc.startswith("+") else 129
            return [f'+CSCA: "{self._enc(self._smsc)}",{kind_of_number}']
        if kind == "set":
            args = split_args(arg)
            number = self._dec(args[0])
            if not number or not all(c.isdigit() or c == "+" for c in number):
                raise _error()
            self._smsc = number
            return []
        raise _error()

    def _h_cscs(self, kind: str, arg: str) -> list[str]:
        if kind == "test":
            return ['+CSCS: ("GSM","IRA","8859-1","UCS2")']
        if kind == "read":
            return [f'+CSCS: "{self._cscs}"']
        if kind == "set":
            value = split_args(arg)[0].upper()
            if value not in ("GSM", "IRA", "8859-1", "UCS2"):
                raise _error()
            self._cscs = value
            return []
        raise _error()

    def _cpms_counts(self) -> list[str]:
        return [f"{len(self._storage[m])},{self.options.storage_size}" for m in self._mems]

    def _h_cpms(self, kind: str, arg: str) -> list[str]:
        if kind == "test":
            mems = ",".join(f'"{m}"' for m in self.options.storages)
            return [f"+CPMS: ({mems}),({mems}),({mems})"]
        self._require_sim(sms=True)
        if kind == "read":
            fields = [f'"{m}",{c}' for m, c in zip(self._mems, self._cpms_counts(), strict=True)]
            return ["+CPMS: " + ",".join(fields)]
        if kind != "set":
            raise _error()
        args = [a.upper() for a in split_args(arg)]
        if not args or len(args) > 3 or any(a not in self._storage for a in args if a):
            raise _cms(302)
        for i, value in enumerate(args):
            if value:
                self._mems[i] = value
        return ["+CPMS: " + ",".join(self._cpms_counts())]

    def _h_cnmi(self, kind: str, arg: str) -> list[str]:
        if kind == "test":
            return ["+CNMI: (0-2),(0-3),(0,2),(0-2),(0,1)"]
        if kind == "read":
            return ["+CNMI: " + ",".join(str(v) for v in self._cnmi)]
        if kind != "set":
            raise _error()
        args = split_args(arg)
        values = [_int_arg(args, i, self._cnmi[i] if i else 0) for i in range(min(len(args), 5))]
        limits = (2, 3, 3, 2, 1)
        if any(v < 0 or v > limits[i] for i, v in enumerate(values)):
            raise _cms(303)
        self._cnmi[: len(values)] = values
        return []

    def _h_cmgf(self, kind: str, arg: str) -> list[str]:
        if kind == "test":
            return ["+CMGF: (0,1)"]
        if kind == "read":
            return [f"+CMGF: {self._cmgf}"]
        if kind == "set":
            value = _int_arg(split_args(arg), 0, 0)
            if value not in (0, 1):
                raise _error()
            if self.options.refuse_pdu_mode:
                if value == 0:
                    raise _error()
                return []  # "accepted", but the firmware keeps answering in PDU format
            self._cmgf = value
            return []
        raise _error()

    def _h_csmp(self, kind: str, arg: str) -> list[str]:
        if kind == "read":
            return ["+CSMP: " + ",".join(str(v) for v in self._csmp)]
        if kind == "test":
            return []
        if kind == "set":
            args = split_args(arg)
            for i in range(min(len(args), 4)):
                if args[i]:
                    self._csmp[i] = _int_arg(args, i)
            return []
        raise _error()

    def _h_csdh(self, kind: str, arg: str) -> list[str]:
        if kind == "read":
            return [f"+CSDH: {self._csdh}"]
        if kind == "test":
            return ["+CSDH: (0,1)"]
        if kind == "set":
            self._csdh = 1 if _int_arg(split_args(arg), 0, 0) else 0
            return []
        raise _error()

    def _h_csms(self, kind: str, arg: str) -> list[str]:
        if kind == "read":
            return ["+CSMS: 0,1,1,1"]
        if kind == "test":
            return ["+CSMS: (0,1)"]
        if kind == "set":
            return ["+CSMS: 1,1,1"]
        raise _error()

    # -- SMS commands

    def _h_cmgs(self, kind: str, arg: str) -> list[str] | object:
        if kind == "test":
            return []
        if kind != "set":
            raise _error()
        self._require_sim(sms=True)
        args = split_args(arg)
        if self._cmgf == 0:
            length = _int_arg(args, 0)
            if not 1 <= length <= 164:
                raise _cms(304)
            self._mode = "pdu-prompt"
            self._prompt_arg = length
        else:
            number = self._dec(args[0]) if args and args[0] else ""
            if not number:
                raise _cms(305)
            self._mode = "text-prompt"
            self._prompt_arg = number
        self._body.clear()
        return _PROMPT

    def _storage_slot(self, arg: str) -> tuple[dict[int, StoredSms], int]:
        self._require_sim(sms=True)
        index = _int_arg(split_args(arg), 0)
        first = self.options.first_index
        if not first <= index < first + self.options.storage_size:
            raise _cms(321)
        return self._storage[self._mems[0]], index

    def _h_cmgr(self, kind: str, arg: str) -> list[str]:
        if kind == "test":
            return []
        if kind != "set":
            raise _error()
        slots, index = self._storage_slot(arg)
        sms = slots.get(index)
        if sms is None:
            return []  # an empty slot: OK with nothing, as most modems answer
        lines = self._format_stored(sms, listing=False)
        if sms.stat == 0:
            sms.stat = 1
        return lines

    def _h_cmgl(self, kind: str, arg: str) -> list[str]:
        if kind == "test":
            if self._cmgf == 0:
                return ["+CMGL: (0-4)"]
            return ['+CMGL: ("REC UNREAD","REC READ","STO UNSENT","STO SENT","ALL")']
        self._require_sim(sms=True)
        if kind == "exec":
            wanted = 0
        elif kind == "set":
            raw = split_args(arg)[0]
            if self._cmgf == 0:
                try:
                    wanted = int(raw)
                except ValueError:
                    raise _cms(304) from None
            else:
                names = [*_STAT_TEXT, "ALL"]
                if raw.upper() not in names:
                    raise _cms(305)
                wanted = names.index(raw.upper())
            if not 0 <= wanted <= 4:
                raise _cms(304 if self._cmgf == 0 else 305)
        else:
            raise _error()
        lines: list[str] = []
        if not self._storage[self._mems[0]] and self.options.empty_list_error is not None:
            raise _cms(321) if self.options.empty_list_error == "cms" else _cme(22)
        for _, sms in sorted(self._storage[self._mems[0]].items()):
            if wanted == 4 or sms.stat == wanted:
                lines.extend(self._format_stored(sms, listing=True))
                if sms.stat == 0:
                    sms.stat = 1
        return lines

    def _format_stored(self, sms: StoredSms, *, listing: bool) -> list[str]:
        head = f"+CMGL: {sms.index}," if listing else "+CMGR: "
        if self._cmgf == 0:
            return [f"{head}{sms.stat},,{_tpdu_len(sms.pdu)}", sms.pdu]
        fields = self._text_fields(sms.pdu)
        if fields is None:  # not a DELIVER this firmware can render: show it raw
            return [f'{head}"{_STAT_TEXT[sms.stat]}",,,', sms.pdu]
        sender, text, ts = fields
        kind_of_number = 145 if sender.startswith("+") else 129
        extra = f",{kind_of_number},{len(text)}" if self._csdh else ""
        return [f'{head}"{_STAT_TEXT[sms.stat]}","{self._enc(sender)}",,"{ts}"{extra}', text]

    def _h_cmgd(self, kind: str, arg: str) -> list[str]:
        if kind == "test":
            first = self.options.first_index
            return [f"+CMGD: ({first}-{first + self.options.storage_size - 1}),(0-4)"]
        if kind != "set":
            raise _error()
        slots, index = self._storage_slot(arg)
        args = split_args(arg)
        flag = _int_arg(args, 1, 0)
        if self._fail_deletes:
            code = self._fail_deletes.popleft()
            logger.info("simulator: injected +CMS ERROR %d for AT+CMGD", code)
            raise _cms(code)
        if flag == 0:
            slots.pop(index, None)
        elif flag == 4:
            slots.clear()
        elif flag in (1, 2, 3):
            doomed = ({1}, {1, 3}, {1, 2, 3})[flag - 1]
            for i in [i for i, s in slots.items() if s.stat in doomed]:
                del slots[i]
        else:
            raise _cms(304)
        self._after_reply(self._room_made)  # room again: the SMSC retries
        return []

    def _room_made(self) -> None:
        mem = self._storage[self._mems[2]]
        if len(mem) < self.options.storage_size:
            self._report_storage_free()
        self._flush_network()

    # -- submissions

    def _submit(self, mode: str, arg: int | str, body: str) -> tuple[int, str | None]:
        """Validate and hand one submission to the network: (message ref, +CDS URC or None)."""
        submit = self._parse_submit(body, arg) if mode == "pdu-prompt" else None
        code = self._fail_sends.popleft() if self._fail_sends else None
        if code is not None:
            logger.info("simulator: injected +CMS ERROR %d", code)
            raise _cms(code)
        if not self._radio_on() or not self._sms_registered():
            raise _cms(331)  # radio off (CFUN 0/4) or not registered: "no network service"
        if self.options.submit_error is not None:
            raise _cms(self.options.submit_error)  # e.g. on LTE without SMS over SGs or IMS: 500
        mr = self._next_mr
        self._next_mr = (self._next_mr + 1) % 256
        # What the submission sets off at once (an SMS to the own number coming back) must
        # follow the +CMGS answer: hold URCs as while a command runs.
        self._executing = True
        try:
            if submit is not None:
                self.network._submit_pdu(submit, mr, "".join(body.split()).upper())
                recipient, wants_report = submit.recipient, submit.status_report_request
            else:
                assert isinstance(arg, str)
                self.network._submit_text(arg, self._dec(body) if self._cscs == "UCS2" else body, mr)
                recipient, wants_report = arg, bool(self._csmp[0] & 0x20)  # text mode: +CSMP's <fo>
        finally:
            self._executing = False
        return mr, self._report_delivery(mr, recipient) if wants_report else None

    def _report_delivery(self, mr: int, recipient: str) -> str | None:
        """The status report the network sends for submission ``mr`` (the URC to emit now, or
        None), per :meth:`Network.set_delivery`; a "delayed" one's final report follows later."""
        outcome, status, delay = self.network._delivery_for(recipient)
        if outcome == "never" or self._cnmi[3] not in (1, 2):
            return None
        submitted = _utcnow().replace(microsecond=0)
        if outcome == "delivered":
            return self._status_report(mr, recipient, 0x00, submitted)
        if outcome == "failed":
            return self._status_report(mr, recipient, FAILED_STATUS if status is None else status, submitted)

        def final() -> None:
            if self._cnmi[3] in (1, 2) and self._reachable():  # else lost, as reports are
                line = self._status_report(mr, recipient, 0x00, submitted)
                if line is not None:
                    self._urc(line)

        self._call_later(delay, final)
        return self._status_report(mr, recipient, DELAYED_STATUS if status is None else status, submitted)

    @staticmethod
    def _parse_submit(body: str, length: int | str) -> Submit:
        """The PDU typed at the prompt, checked against ``AT+CMGS=<length>`` like modems do."""
        hex_pdu = "".join(body.split())
        try:
            raw = bytes.fromhex(hex_pdu)
        except ValueError:
            raise _cms(304) from None
        if not raw or len(raw) - raw[0] - 1 != length:
            raise _cms(304)
        try:
            submit = decode_pdu(raw, smsc=True)
        except PduError:
            raise _cms(304) from None
        if not isinstance(submit, Submit):
            raise _cms(304)
        return submit

    def _status_report(
        self, mr: int, recipient: str, status: int = 0x00, submitted: dt.datetime | None = None
    ) -> str | None:
        """The ``+CDS`` URC (CNMI ds=1) or the stored report's ``+CDSI`` (ds=2) of one status
        report with TP-ST ``status``; None when it cannot be made or stored."""
        now = _utcnow().replace(microsecond=0)
        submitted = submitted or now
        try:
            pdu = encode_status_report(
                mr, recipient, sc_timestamp=submitted, discharge_time=now, status=status, smsc=self.network.smsc
            )
        except PduError:
            return None
        if self._cnmi[3] == 2:
            slots = self._storage[self._mems[2]]
            first = self.options.first_index
            free = [i for i in range(first, first + self.options.storage_size) if i not in slots]
            if not free:
                return None
            slots[free[0]] = StoredSms(free[0], 0, pdu)
            return f'+CDSI: "{self._mems[2]}",{free[0]}'
        if self._cmgf == 0:
            return f"+CDS: {_tpdu_len(pdu)}\r\n{pdu}"
        number = self._enc(recipient)
        kind_of_number = 145 if recipient.startswith("+") else 129
        return f'+CDS: 6,{mr},"{number}",{kind_of_number},"{_scts(submitted)}","{_scts(now)}",{status}'


def _tpdu_len(pdu: str) -> int:
    """Octets after the SMSC field (what +CMGS/+CMGL/+CMGR count)."""
    try:
        raw = bytes.fromhex(pdu)
    except ValueError:
        return len(pdu) // 2
    if not raw:
        return 0
    return max(0, len(raw) - raw[0] - 1)


def _scts(when: dt.datetime) -> str:
    """``yy/MM/dd,hh:mm:ss±zz`` (zz in quarter hours), as text mode shows timestamps."""
    offset = when.utcoffset() or dt.timedelta(0)
    quarters = int(offset.total_seconds() // 900)
    sign = "-" if quarters < 0 else "+"
    return when.strftime("%y/%m/%d,%H:%M:%S") + f"{sign}{abs(quarters):02d}"
