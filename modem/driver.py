"""The modem layer's public face: the ``Modem`` interface and its records
(:mod:`modem.interface`), the AT backend (:mod:`modem.atmodem`), the keeper
(:mod:`modem.keeper`), and :func:`create_modem`, which picks the backend the config names.
``GammuModem`` (:mod:`modem.gammu`) is imported only when asked for.
"""

from __future__ import annotations

from modem.atmodem import PART_TRIES, AtModem
from modem.interface import (
    CallResult,
    DeliveryReport,
    InboundHandler,
    InboundSms,
    Modem,
    ModemStatus,
    ReportHandler,
    SimAbsent,
    mask_number,
)
from modem.keeper import ModemHealth, ModemKeeper

__all__ = [
    "PART_TRIES",
    "AtModem",
    "CallResult",
    "DeliveryReport",
    "InboundHandler",
    "InboundSms",
    "Modem",
    "ModemHealth",
    "ModemKeeper",
    "ModemStatus",
    "ReportHandler",
    "SimAbsent",
    "create_modem",
    "mask_number",
]


def create_modem(
    backend: str,
    device: str,
    *,
    baudrate: int = 115200,
    pin: str | None = None,
    smsc: str | None = None,
    send_timeout: float = 60.0,
) -> Modem:
    """The backend named in the config: ``"at"`` (:class:`AtModem`) or ``"gammu"``
    (``modem.gammu.GammuModem``, imported only when asked for; gammu keeps its own timeouts, so
    ``send_timeout`` is the AT driver's). Raises ValueError for any other name."""
    if backend == "at":
        return AtModem(device, baudrate=baudrate, pin=pin, smsc=smsc, send_timeout=send_timeout)
    if backend == "gammu":
        from modem.gammu import GammuModem  # python-gammu is heavy: load it only when used

        modem: Modem = GammuModem(device, connection=f"at{baudrate}", model="", pin=pin, smsc=smsc)
        return modem
    raise ValueError(f"unknown modem backend {backend!r} (expected 'at' or 'gammu')")
