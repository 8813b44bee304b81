"""Exceptions of the modem layer: one root, typed subclasses that say whether a retry can help."""

from __future__ import annotations


class ModemError(Exception):
    """Root of every error the modem layer raises.

    ``permanent`` is True when retrying the same operation cannot help
    (invalid number, wrong PIN, SIM missing); False for transient faults
    (timeouts, network busy, port gone).
    """

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class ModemTimeout(ModemError):
    """The modem did not finish a command within its timeout."""

    def __init__(self, message: str, *, partial: list[str] | None = None) -> None:
        super().__init__(message, permanent=False)
        self.partial = list(partial or [])


class PortGone(ModemError):
    """The serial port or socket vanished (USB unplug, TCP reset). Reconnect and retry."""

    def __init__(self, message: str) -> None:
        super().__init__(message, permanent=False)


class CommandError(ModemError):
    """A command ended in plain ``ERROR`` (or another non-OK final result)."""


class CmeError(ModemError):
    """``+CME ERROR: <code>``: equipment / SIM errors."""

    def __init__(self, code: int, message: str, *, permanent: bool) -> None:
        super().__init__(f"+CME ERROR {code}: {message}", permanent=permanent)
        self.code = code


class CmsError(ModemError):
    """``+CMS ERROR: <code>``: SMS service errors (network, SMSC, number)."""

    def __init__(self, code: int, message: str, *, permanent: bool) -> None:
        super().__init__(f"+CMS ERROR {code}: {message}", permanent=permanent)
        self.code = code


class SimError(ModemError):
    """The SIM is missing, blocked (PUK) or the configured PIN is wrong: never retried."""

    def __init__(self, message: str) -> None:
        super().__init__(message, permanent=True)


class PduError(ModemError, ValueError):
    """A PDU is malformed (odd length, truncated, lengths that lie) or cannot be encoded."""

    def __init__(self, message: str) -> None:
        super().__init__(message, permanent=True)
