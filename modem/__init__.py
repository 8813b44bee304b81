"""Modem layer: SMS through a GSM modem with AT commands or python-gammu.

Depends on nothing in ``gateway``. The public surface is :mod:`modem.driver`
(the ``Modem`` interface and its backends), :mod:`modem.pdu` (the pure SMS
codec) and :mod:`modem.simulator` (a modem that speaks AT on a pty or TCP).
"""
