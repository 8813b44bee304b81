"""What a modem's firmware adds to 27.007/27.005 (:class:`VendorCommands`): power-up
chatter, periodic status reports and the vendor commands that switch them off (Huawei
``AT^CURC``, Quectel ``AT+QINDCFG``), the storage-full report, and the SIM as it comes out of
the drawer (already full, or with undecodable PDUs). :mod:`modem.sim.profiles` says which
modem does what; with the default :class:`~modem.sim.records.SimOptions` all of it is off.
"""

from __future__ import annotations

import datetime as dt
import time

from modem.pdu import encode_deliver
from modem.sim.machine import _cme, _error, _Handler, _int_arg, split_args
from modem.sim.network import Network
from modem.sim.records import SimOptions, StoredSms
from modem.sim.sms import SmsCommands

# Which vendor switch (SimOptions.urc_control) governs the periodic reports and which the
# storage-full report: Huawei's ^CURC covers both (^SMMEMFULL is one of its reports), Quectel
# has one +QINDCFG type per report.
_FLOOD_SWITCH = {"^CURC": "curc", "+QINDCFG": "csq"}
_FULL_SWITCH = {"^CURC": "curc", "+QINDCFG": "smsfull"}
_BOOT_TIME = dt.datetime(2024, 1, 1, 12, 0, tzinfo=dt.UTC)  # when the prefilled messages "arrived"


class VendorCommands(SmsCommands):
    """The vendor side of a simulated modem (see the module docstring); the power, SIM and
    radio state it reads are the subclass's (:class:`~modem.sim.device.Simulator`)."""

    _signal: int
    _cfun: int
    _sim_state: str
    _powered_at: float

    def __init__(self, network: Network, options: SimOptions) -> None:
        super().__init__(network, options)
        self._urc_switches: dict[str, bool] = {}
        self._next_flood: float | None = None
        self._flood_turn = 0
        self._full_reported = False  # the storage-full report went out and room was not made since
        self._prefill(self._storage["SM"])

    def _prefill(self, slots: dict[int, StoredSms]) -> None:
        """The SIM as it comes out of the drawer: ``junk_slots`` undecodable PDUs, then, with
        ``full_at_boot``, every other slot holding a message already read."""
        o = self.options
        junk = _junk_pdus(self.network.smsc)
        indexes = range(o.first_index, o.first_index + o.storage_size)
        for n, index in enumerate(indexes[: o.junk_slots]):
            slots[index] = StoredSms(index, 0, junk[n % len(junk)])
        if o.full_at_boot:
            for index in indexes[o.junk_slots :]:
                (pdu,) = encode_deliver(
                    "+15550002000", f"old message {index}", timestamp=_BOOT_TIME, smsc=self.network.smsc
                )
                slots[index] = StoredSms(index, 1, pdu)

    def _vendor_handlers(self) -> dict[str, _Handler]:
        if self.options.urc_control == "^CURC":
            # ^PORTSEL: which port carries the reports (Huawei); gammu's init insists on it.
            return {"^CURC": self._h_curc, "^PORTSEL": self._setting("^PORTSEL", 1)}
        if self.options.urc_control == "+QINDCFG":
            return {"+QINDCFG": self._h_qindcfg}
        return {}

    def _boot_chatter(self) -> None:
        """The vendor's power-up lines, and its periodic reports switched on again."""
        o = self.options
        self._urc_switches = {"curc": True, "csq": True, "smsfull": True}
        self._flood_turn = 0
        self._next_flood = None
        if o.flood_urcs and o.flood_interval > 0:
            self._next_flood = self._powered_at + o.flood_interval
        for line in o.boot_urcs:
            self._urc(line.format(cfun=self._cfun))
        if o.ready_urcs and self._sim_state != "READY":
            self._urc(f"+CPIN: {self._sim_state}")
        elif self._sim_state == "READY":
            self._ready_chatter()

    def _ready_chatter(self) -> None:
        for line in self.options.ready_urcs:
            self._urc(line)

    # -- periodic reports

    def read_output(self) -> tuple[bytes, float | None]:
        """As :meth:`AtMachine.read_output`, with the periodic reports due by now queued first
        (so the transport's wait also covers the next round)."""
        with self._lock:
            flood_wait = self._tick_flood()
            data, wait = super().read_output()
        if flood_wait is not None:
            wait = flood_wait if wait is None else min(wait, flood_wait)
        return data, wait

    def _tick_flood(self) -> float | None:
        if self._next_flood is None or not self._powered or self._hung:
            return None
        now = time.monotonic()
        if now >= self._next_flood:
            if self._report_enabled("flood"):
                for template in self.options.flood_urcs:
                    self._urc(self._render(template))
            self._next_flood = max(self._next_flood + self.options.flood_interval, now + 0.001)
        return self._next_flood - now

    def _between_commands(self) -> None:
        # Real sticks let a report slip out between two commands, not only on a timer.
        flood = self.options.flood_urcs
        if flood and self.options.flood_between_commands and self._report_enabled("flood"):
            self._urc(self._render(flood[self._flood_turn % len(flood)]))
            self._flood_turn += 1

    def _render(self, template: str) -> str:
        rssi = self._signal if self._radio_on() else 99
        registered = self._sms_registered()
        if rssi == 99:
            scales = {"hcsq_rssi": 255, "hcsq_rsrp": 255, "hcsq_sinr": 255, "hcsq_rsrq": 255}
        else:
            dbm = -113 + 2 * rssi
            # ^HCSQ "LTE" scales: rssi dBm+121, rsrp dBm+141 (RSRP taken 20 dB under RSSI),
            # sinr (dB+20)*5 (10 dB), rsrq (dB+19.5)*2 (-10 dB).
            scales = {"hcsq_rssi": dbm + 121, "hcsq_rsrp": dbm - 20 + 141, "hcsq_sinr": 150, "hcsq_rsrq": 19}
        return template.format(
            rssi=rssi,
            srvst=2 if registered else 0,
            sysmode="17,17" if registered else "0,0",
            **scales,
        )

    def _report_enabled(self, switch: str) -> bool:
        """Whether the vendor's reports of kind ``switch`` ("flood", "smsfull") are on."""
        control = self.options.urc_control
        if control is None:
            return True
        name = (_FLOOD_SWITCH if switch == "flood" else _FULL_SWITCH).get(control, switch)
        return self._urc_switches.get(name, True)

    # -- storage reports

    def _report_storage_full(self) -> None:
        """The vendor's storage-full report (``^SMMEMFULL``, ``+QIND: "smsfull"`` ...), if any."""
        template = self.options.storage_full_urc
        self._full_reported = True
        if template is not None and self._report_enabled("smsfull"):
            self._urc(template.format(mem=f'"{self._mems[2]}"'))

    def _report_storage_free(self) -> None:
        if not self._full_reported:
            return
        self._full_reported = False
        template = self.options.storage_free_urc
        if template is not None and self._report_enabled("smsfull"):
            self._urc(template.format(mem=f'"{self._mems[2]}"'))

    # -- vendor commands

    def _h_curc(self, kind: str, arg: str) -> list[str]:
        """Huawei ``AT^CURC``: 0 stops the periodic reports (and ``^SMMEMFULL``), 1 restores them."""
        if kind == "read":
            return [f"^CURC: {int(self._urc_switches['curc'])}"]
        if kind == "test":
            return ["^CURC: (0-1)"]
        if kind != "set":
            raise _error()
        value = _int_arg(split_args(arg), 0)
        if value not in (0, 1):
            raise _error()
        self._urc_switches["curc"] = value == 1
        return []

    def _h_qindcfg(self, kind: str, arg: str) -> list[str]:
        """Quectel ``AT+QINDCFG="<urctype>"[,<enable>[,<save>]]``; "all" covers every type."""
        types = ("all", "csq", "smsfull", "ring", "smsincoming", "act")
        if kind == "test":
            names = ",".join(f'"{t}"' for t in types)
            return [f"+QINDCFG: ({names}),(0,1),(0,1)"]
        if kind != "set":
            raise _error()
        args = split_args(arg)
        urctype = args[0].lower()
        if urctype not in types:
            raise _cme(4)
        if len(args) == 1 or args[1] == "":
            on = all(self._urc_switches.values()) if urctype == "all" else self._urc_switches.get(urctype, True)
            return [f'+QINDCFG: "{urctype}",{int(on)}']
        value = _int_arg(args, 1)
        if value not in (0, 1):
            raise _cme(4)
        for name in ("csq", "smsfull") if urctype == "all" else (urctype,):
            self._urc_switches[name] = value == 1
        return []


def _junk_pdus(smsc: str) -> list[str]:
    """Stored PDUs no codec can read: a DELIVER cut short, a reserved message type, an SMSC
    field longer than the PDU."""
    (good,) = encode_deliver("+15550001111", "junk junk junk", timestamp=_BOOT_TIME, smsc=smsc)
    return [good[:-8], "00" + "FF" * 12, "0791" + "FF" * 3]
