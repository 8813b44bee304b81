"""The simulated GSM modem: a fake phone network and a modem that speaks AT commands.

Layers, each usable on its own, one module each:

* :mod:`modem.sim.records` -- :class:`SimOptions` (how the modem and its SIM behave at
  power-up), :class:`SentSms`, :class:`StoredSms` and :class:`CallRecord`.
* :mod:`modem.sim.network` -- :class:`Network`, the fake phone network. It decodes and
  records every SMS the modem submits (multipart reassembled into one :class:`SentSms`)
  and delivers injected inbound SMS to the SIM (store-and-forward while the modem is off,
  locked or not registered, like a real SMSC).
* :mod:`modem.sim.machine`, :mod:`modem.sim.sms`, :mod:`modem.sim.device` -- the modem,
  transport-independent: bytes in through ``Simulator.feed``, bytes out through
  ``Simulator.read_output`` (which also carries the configured latency). ``machine`` is the
  V.250 command line (framing, echo, result codes, the ``> `` prompt), ``sms`` the SMS
  storage and commands, ``device`` the :class:`Simulator` itself: power, SIM, radio, fault
  injection and the remaining commands.
* :mod:`modem.sim.ussd`, :mod:`modem.sim.calls` -- USSD (``AT+CUSD``) and voice calls
  (``ATD``, ``AT+CLCC``, ``ATH``) and the own number (``AT+CNUM``), as the network answers
  them (the network decides each call's outcome and each status report's, and records calls).
* :mod:`modem.sim.transports` -- :class:`PtyModem` / :class:`TcpModem` serve a simulator on
  a real pty or a loopback TCP port from one background thread, with USB-style
  unplug/replug.
* :mod:`modem.sim.control` -- a JSON-lines control socket (:class:`ControlServer`) and its
  client (:class:`SimulatorControl`), for tests that run the simulator in another process.
* :mod:`modem.sim.profiles` -- named vendor profiles (Huawei E3372, SIMCom SIM7600 and
  SIM800, Quectel EC25) and fault modes, as :class:`SimOptions` (:func:`build_options`).
* :mod:`modem.sim.cli` -- ``hbgw simulate-modem`` / ``python -m modem.simulator``.

:mod:`modem.simulator` re-exports the public names; import them from there.
"""
