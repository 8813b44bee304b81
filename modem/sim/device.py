"""The simulated modem as a whole (:class:`Simulator`): power, SIM, radio, fault injection,
and the commands that are not about SMS (identity, ``+CPIN``, ``+CREG``, ``+COPS`` ...).

The command line is :class:`~modem.sim.machine.AtMachine`'s, the SMS side
:class:`~modem.sim.sms.SmsCommands`', the vendor's chatter :class:`~modem.sim.vendor.VendorCommands`',
USSD :class:`~modem.sim.ussd.UssdCommands`' and voice calls :class:`~modem.sim.calls.CallCommands`'.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from modem.sim.calls import CallCommands
from modem.sim.machine import _cme, _cms, _command_name, _error, _Final, _Handler, _int_arg, split_args
from modem.sim.network import Network, _utcnow
from modem.sim.records import SimOptions
from modem.sim.sms import _scts

# Named as before the split into modules: log filters select "modem.simulator".
logger = logging.getLogger(__name__)

# What clears a hang (Simulator.hang): "manual" only hang(False) or a power cycle (USB
# unplug/replug); "radio" a radio cycle; "usb" a power cycle, like "manual"; "never" nothing
# but hang(False).
HANG_CLEARS = ("manual", "radio", "usb", "never")


class Simulator(CallCommands):
    """A simulated GSM modem with its SIM, attached to ``network``. Transport-independent and
    thread-safe; powered on when created.

    A transport calls :meth:`feed` with the bytes the host wrote and drains
    :meth:`read_output`; :meth:`set_waker` lets it know when output appears
    from another thread (an injected SMS's ``+CMTI``).
    """

    def __init__(self, network: Network, options: SimOptions | None = None) -> None:
        super().__init__(network, options or SimOptions())
        self._pin = self.options.pin
        self._pin_left = self.options.pin_attempts
        self._puk_left = 10
        self._registration = self.options.registration
        self._signal = self.options.signal_csq
        self._handlers = self._build_handlers()
        self._hang_clears = "manual"
        self._wedged = False  # hang(clears="radio"): answering, but off the network
        self._radio_cycled = False  # the radio went off (CFUN 0/4) while wedged
        self._hang_on_send = self.options.hang_on_send  # fires once, at the first AT+CMGS
        network.configure(self.options)
        network._attach(self)
        self.power_on()

    # -- power and fault injection

    def power_on(self) -> None:
        """Power up (or reset): settings to defaults, SIM locked again, busy phase restarts."""
        with self._lock:
            self._cancel_timers()
            self._drop_call()
            self._powered = True
            self._powered_at = time.monotonic()
            self._busy_until = self._powered_at + self.options.sim_busy_seconds
            self._sim_state = "SIM PIN" if self._pin else "READY"
            if self._pin_left <= 0:
                self._sim_state = "SIM PUK" if self._puk_left > 0 else "BLOCKED"
            self._cfun = self.options.radio_at_boot
            self._reset_io()
            self._reset_settings()
            if self._hang_clears == "never":
                self._hung = True  # survives the power cycle: the stick is dead
            else:
                self._wedged = False
                self._hang_clears = "manual"
            self._boot_chatter()
        self._flush_network()

    def power_off(self) -> None:
        """Power down (USB unplugged): output dropped, inbound SMS wait in the network."""
        with self._lock:
            self._cancel_timers()
            self._drop_call()
            self._powered = False
            self._out.clear()
            self._delay_until = None

    def _reset_settings(self) -> None:
        super()._reset_settings()
        self._creg_n = 0
        self._cgreg_n = 0
        self._cereg_n = 0
        self._cops_format = 0

    def hang(self, on: bool = True, *, clears: str = "manual") -> None:
        """Stop answering until the fault clears; ``hang(False)`` clears every kind.

        ``clears`` says what else ends it (the recovery ladder's steps, in the keeper):
        "manual" and "usb": a power cycle (USB unplug/replug, re-enumeration); input is
        dropped until then, so neither ESC nor a radio cycle reaches the modem. "radio": the
        command line still answers, but the modem is off the network (``+CREG`` stat 2,
        searching) and ``AT+CMGS`` never answers, until the radio is switched off
        (``AT+CFUN=0``/``4``) and on again, or ``AT+CFUN=1,1`` (or a power cycle). "never":
        input is dropped, even after a power cycle.
        """
        if clears not in HANG_CLEARS:
            raise ValueError(f"clears must be one of {', '.join(HANG_CLEARS)}")
        with self._lock:
            self._hang_clears = clears if on else "manual"
            self._wedged = on and clears == "radio"
            self._radio_cycled = False
            self._hung = on and clears != "radio"
            self._line.clear()
            if self._hung:
                self._out.clear()
                self._delay_until = None
        logger.info("simulator: hang %s%s", "on" if on else "off", f" (clears: {clears})" if on else "")
        self._flush_network()

    @property
    def hung(self) -> bool:
        """True while any hang is on (input dropped, or off the network: ``hang_clears``)."""
        return self._hung or self._wedged

    @property
    def hang_clears(self) -> str | None:
        """What clears the current hang (see :meth:`hang`); None when not hung."""
        return self._hang_clears if self.hung else None

    def _execute(self, line: str) -> None:
        if self._hang_on_send is not None and line[2:] and _command_name(line[2:]) == "+CMGS":
            clears, self._hang_on_send = self._hang_on_send, None
            self.hang(True, clears=clears)
            if clears != "radio":  # input dropped from here on: the command is lost too
                self.commands.append(line.split("=", 1)[0] + "=***")
                return
        # A modem wedged off the network takes AT+CMGS and never answers (no "> " prompt).
        if self._wedged and line[2:] and _command_name(line[2:]) == "+CMGS":
            self.commands.append(line.split("=", 1)[0] + "=***")
            logger.info("simulator: AT+CMGS swallowed (wedged off the network)")
            return
        super()._execute(line)

    def set_latency(self, seconds: float, command: str | None = None) -> None:
        """Delay every answer by ``seconds``; with ``command`` (e.g. ``"+CMGS"``) only that one."""
        with self._lock:
            if command is None:
                self._latency = max(0.0, seconds)
            else:
                self._command_latency[command.upper()] = max(0.0, seconds)

    def set_signal(self, csq: int) -> None:
        with self._lock:
            self._signal = csq

    def set_registration(self, stat: int) -> None:
        """Change the network registration (+CREG stat; +CGREG and +CEREG follow it unless
        ``eps_registration`` pins the LTE one); emits each domain's report where enabled."""
        with self._lock:
            self._registration = stat
            for name, n in (("+CREG", self._creg_n), ("+CGREG", self._cgreg_n)):
                if n:
                    self._urc(f"{name}: {self._creg_body(n)[2:]}")
            if self._cereg_n and self.options.has_cereg:
                self._urc(f"+CEREG: {self._creg_body(self._cereg_n, self._eps_stat())[2:]}")
        self._flush_network()

    def urc(self, line: str, *, mid_reply: bool = False) -> None:
        """Emit an unsolicited line (``RING``, ``^RSSI: 12`` ...). With ``mid_reply``
        it is inserted inside the next multi-line answer instead, like modems that
        interleave URCs with replies."""
        with self._lock:
            if mid_reply:
                self._mid_reply_urcs.append(line)
            else:
                self._urc(line)

    @property
    def pin_attempts_left(self) -> int:
        return self._pin_left

    @property
    def sim_state(self) -> str:
        """``READY``, ``SIM PIN``, ``SIM PUK``, ``BLOCKED`` or ``BUSY``."""
        with self._lock:
            if time.monotonic() < self._busy_until:
                return "BUSY"
            return self._sim_state

    # -- basic commands and SIM checks

    def _basic(self, cmd: str) -> list[str]:
        letter = cmd[0].upper()
        value = cmd[1:]
        if letter == "E":
            if value not in ("", "0", "1"):
                raise _error()
            self._echo = value == "1"
            return []
        if letter == "Z" or cmd.upper() == "&F":
            self._reset_settings()
            return []
        if letter == "I":
            o = self.options
            return [
                f"Manufacturer: {o.manufacturer}",
                f"Model: {o.model}",
                f"Revision: {o.revision}",
                f"IMEI: {o.imei}",
                "+GCAP: +CGSM",
            ]
        if letter == "V":
            if value not in ("", "1"):
                raise _error()  # numeric result codes are not simulated
            return []
        if letter == "D":
            return self._dial(value)
        if letter == "H":
            return self._hang_up()
        if letter == "A":
            raise _Final("NO CARRIER")  # no incoming call to answer (none are simulated)
        if letter in "QXLM&":
            return []
        if letter == "S":
            if value.endswith("?"):
                return ["013" if value.startswith("3") else "000"]
            return []
        raise _error()

    def _sim_ready(self) -> bool:
        return self.sim_state == "READY"

    def _require_sim(self, *, sms: bool = False) -> None:
        state = self.sim_state
        if state == "READY":
            return
        if sms:
            code = {"BUSY": 314, "SIM PIN": 311, "SIM PUK": 316}.get(state, 310)
            raise _cms(code)
        raise _cme({"BUSY": 14, "SIM PIN": 11, "SIM PUK": 12}.get(state, 13))

    def _radio_on(self) -> bool:
        return self._cfun == 1

    def _reg_stat(self) -> int:
        if not self._radio_on() or not self._sim_ready():
            return 0
        if self._wedged:
            return 2  # searching, for good
        return self._registration

    def _eps_stat(self) -> int:
        """The ``+CEREG`` stat: the LTE domain (SMS-only 6/7, denied 3 ...)."""
        if not self._radio_on() or not self._sim_ready():
            return 0
        if self._wedged:
            return 2
        eps = self.options.eps_registration
        return self._registration if eps is None else eps

    def _sms_registered(self) -> bool:
        return self._reg_stat() in (1, 5) or self._eps_stat() in (1, 5, 6, 7, 9, 10)

    # -- handlers

    def _build_handlers(self) -> dict[str, _Handler]:
        simple = {
            "+CGMI": lambda: self.options.manufacturer,
            "+GMI": lambda: self.options.manufacturer,
            "+CGMM": lambda: self.options.model,
            "+GMM": lambda: self.options.model,
            "+CGMR": lambda: self.options.revision,
            "+GMR": lambda: self.options.revision,
            "+CGSN": lambda: self.options.imei,
            "+GSN": lambda: self.options.imei,
        }
        handlers: dict[str, _Handler] = {}
        for name, value in simple.items():
            handlers[name] = self._identity(value)
        handlers.update(self._vendor_handlers())
        handlers.update(self._ussd_handlers())
        handlers.update(self._call_handlers())
        handlers.update(
            {
                "+CIMI": self._h_cimi,
                "+CMEE": self._h_cmee,
                "+CPIN": self._h_cpin,
                "+CPINR": self._h_cpinr,
                "+CREG": self._h_creg,
                "+CGREG": self._h_cgreg,
                "+CEREG": self._h_cereg,
                "+C5GREG": self._h_c5greg,
                "+CGATT": self._h_cgatt,
                "+CSQ": self._h_csq,
                "+COPS": self._h_cops,
                "+CFUN": self._h_cfun,
                "+CSCA": self._h_csca,
                "+CSCS": self._h_cscs,
                "+CPMS": self._h_cpms,
                "+CNMI": self._h_cnmi,
                "+CMGF": self._h_cmgf,
                "+CMGS": self._h_cmgs,
                "+CMGL": self._h_cmgl,
                "+CMGR": self._h_cmgr,
                "+CMGD": self._h_cmgd,
                "+CSMP": self._h_csmp,
                "+CSDH": self._h_csdh,
                "+CSMS": self._h_csms,
                "+CNMA": lambda kind, arg: [],
                "+GCAP": lambda kind, arg: ["+GCAP: +CGSM"],
                "+CCLK": self._h_cclk,
                # A setting gammu's Huawei init makes (and refuses to go on without): kept, not acted on.
                "+CCWA": self._setting("+CCWA", 1),
            }
        )
        return handlers

    def _identity(self, value: Callable[[], str]) -> _Handler:
        def handler(kind: str, arg: str) -> list[str]:
            if kind == "test":
                return []
            if kind != "exec":
                raise _error()
            return [value()]

        return handler

    def _h_cimi(self, kind: str, arg: str) -> list[str]:
        if kind == "test":
            return []
        if kind != "exec":
            raise _error()
        self._require_sim()
        return [self.options.imsi]

    def _h_cmee(self, kind: str, arg: str) -> list[str]:
        if kind == "read":
            return [f"+CMEE: {self._cmee}"]
        if kind == "test":
            return ["+CMEE: (0-2)"]
        value = _int_arg(split_args(arg), 0, 0) if kind == "set" else 0
        if value not in (0, 1, 2):
            raise _error()
        self._cmee = value
        return []

    def _h_cpin(self, kind: str, arg: str) -> list[str]:
        if kind == "test":
            return []
        state = self.sim_state
        if kind == "read":
            if state == "BUSY":
                raise _cme(14)
            if state == "BLOCKED":
                raise _cme(13)
            return [f"+CPIN: {state}"]
        if kind != "set":
            raise _error()
        args = split_args(arg)
        if state == "BUSY":
            raise _cme(14)
        if state == "BLOCKED":
            raise _cme(13)
        if state == "READY":
            raise _cme(3)
        if state == "SIM PIN":
            if args[0] != self._pin:
                self._pin_left -= 1
                logger.info("simulator: wrong PIN, %d attempt(s) left", self._pin_left)
                if self._pin_left <= 0:
                    self._sim_state = "SIM PUK"
                raise _cme(16)
            self._pin_left = self.options.pin_attempts
        else:  # SIM PUK: AT+CPIN="<puk>","<new pin>"
            if len(args) < 2 or not args[1]:
                raise _cme(12)
            if args[0] != self.options.puk:
                self._puk_left -= 1
                if self._puk_left <= 0:
                    self._sim_state = "BLOCKED"
                raise _cme(16)
            self._pin = args[1]
            self._pin_left = self.options.pin_attempts
            self._puk_left = 10
        self._sim_state = "READY"
        self._busy_until = time.monotonic() + self.options.busy_after_pin_seconds
        if self._creg_n:
            self._urc(f"+CREG: {self._creg_body(self._creg_n)[2:]}")
        self._after_reply(self._ready_chatter)
        self._after_reply(self._flush_network)
        return []

    def _h_cpinr(self, kind: str, arg: str) -> list[str]:
        if kind == "test":
            return []
        return [
            f"+CPINR: SIM PIN,{self._pin_left},{self.options.pin_attempts}",
            f"+CPINR: SIM PUK,{self._puk_left},10",
        ]

    def _creg_body(self, n: int, stat: int | None = None) -> str:
        stat = self._reg_stat() if stat is None else stat
        act = self.options.act
        if self.options.short_creg and act is not None:
            return f"{n},{stat},{act}"  # the three-field quirk
        body = f"{n},{stat}"
        if n == 2 and stat in (1, 5, 6, 7, 9, 10):
            body += ',"1A2B","00003C4D"'
            if act is not None:
                body += f",{act}"
        return body

    def _h_creg(self, kind: str, arg: str) -> list[str]:
        if kind == "test":
            return ["+CREG: (0-2)"]
        if kind == "read":
            return [f"+CREG: {self._creg_body(self._creg_n)}"]
        if kind == "set":
            value = _int_arg(split_args(arg), 0, 0)
            if value not in (0, 1, 2):
                raise _error()
            self._creg_n = value
            return []
        raise _error()

    def _h_cgreg(self, kind: str, arg: str) -> list[str]:
        if kind == "test":
            return ["+CGREG: (0-2)"]
        if kind == "read":
            return [f"+CGREG: {self._creg_body(self._cgreg_n)}"]
        if kind == "set":
            value = _int_arg(split_args(arg), 0, 0)
            if value not in (0, 1, 2):
                raise _error()
            self._cgreg_n = value
            return []
        raise _error()

    def _h_cereg(self, kind: str, arg: str) -> list[str]:
        if not self.options.has_cereg:
            raise _error()  # a 2G-only module does not know the command
        if kind == "test":
            return ["+CEREG: (0-2)"]
        if kind == "read":
            return [f"+CEREG: {self._creg_body(self._cereg_n, self._eps_stat())}"]
        if kind == "set":
            value = _int_arg(split_args(arg), 0, 0)
            if value not in (0, 1, 2):
                raise _error()
            self._cereg_n = value
            return []
        raise _error()

    def _h_c5greg(self, kind: str, arg: str) -> list[str]:
        if not self.options.has_c5greg:
            raise _error()
        if kind == "read":
            return [f"+C5GREG: 0,{self._eps_stat() if self.options.act in (11, 12, 13) else 0}"]
        if kind in ("set", "test"):
            return []
        raise _error()

    def _h_cgatt(self, kind: str, arg: str) -> list[str]:
        if kind == "read":
            return [f"+CGATT: {1 if self._reg_stat() in (1, 5) else 0}"]
        if kind == "test":
            return ["+CGATT: (0,1)"]
        if kind == "set":
            return []
        raise _error()

    def _h_csq(self, kind: str, arg: str) -> list[str]:
        if kind == "test":
            return ["+CSQ: (0-31,99),(0-7,99)"]
        if kind != "exec":
            raise _error()
        rssi = self._signal if self._radio_on() else 99
        return [f"+CSQ: {rssi},99"]

    def _h_cops(self, kind: str, arg: str) -> list[str]:
        o = self.options
        if kind == "test":
            return [f'+COPS: (2,"{o.operator}","{o.operator_short}","{o.operator_numeric}",0),,(0-4),(0-2)']
        if kind == "read":
            if not self._sms_registered():
                return ["+COPS: 0"]
            name = (o.operator, o.operator_short, o.operator_numeric)[self._cops_format]
            act = self.options.act if self.options.act is not None else 0
            return [f'+COPS: 0,{self._cops_format},"{self._enc(name)}",{act}']
        if kind != "set":
            raise _error()
        args = split_args(arg)
        mode = _int_arg(args, 0, 0)
        if mode == 3:
            fmt = _int_arg(args, 1, 0)
            if fmt not in (0, 1, 2):
                raise _error()
            self._cops_format = fmt
            return []
        if mode in (0, 1, 2, 4):
            if mode == 2:
                self._registration = 0
            elif mode == 0 and self._registration == 0:
                self._registration = self.options.registration
            return []
        raise _error()

    def _h_cfun(self, kind: str, arg: str) -> list[str]:
        if kind == "read":
            return [f"+CFUN: {self._cfun}"]
        if kind == "test":
            return ["+CFUN: (0,1,4),(0-1)"]
        if kind != "set":
            raise _error()
        args = split_args(arg)
        fun = _int_arg(args, 0, 1)
        if fun not in (0, 1, 4):
            raise _error()
        if fun == 1 and self.options.refuse_radio_on:
            raise _cme(3)
        if self._wedged:
            if fun in (0, 4):
                self._radio_cycled = True
            elif self._radio_cycled or _int_arg(args, 1, 0) == 1:  # off then on, or a reset
                self._wedged = False
                self._hang_clears = "manual"
                logger.info("simulator: radio cycle cleared the hang")
        if fun == 1 and self._cfun != 1 and self._sim_state == "READY":
            self._after_reply(self._ready_chatter)  # SIMCom/Quectel announce the SIM again
        if fun != 1:
            self._drop_call()  # the radio went off under it
        self._cfun = fun
        self._after_reply(self._flush_network)
        return []

    def _h_cclk(self, kind: str, arg: str) -> list[str]:
        if kind == "read":
            return [f'+CCLK: "{_scts(_utcnow())}"']
        if kind in ("set", "test"):
            return []
        raise _error()
