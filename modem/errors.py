"""Exceptions of the modem layer: one root, typed subclasses that say whether a retry can help."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final


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
    """``+CME ERROR: <code>``: equipment / SIM errors.

    ``kind`` and ``hint`` come from :data:`CME_ADVICE` (:func:`cme_advice` for codes not in
    it). ``permanent`` stays what the caller says; left out, it follows ``kind``.
    """

    def __init__(self, code: int, message: str, *, permanent: bool | None = None) -> None:
        advice = cme_advice(code)
        super().__init__(
            f"+CME ERROR {code}: {message}",
            permanent=advice.kind is not ErrorKind.RETRY if permanent is None else permanent,
        )
        self.code = code
        self.kind = advice.kind
        self.hint = advice.hint


class CmsError(ModemError):
    """``+CMS ERROR: <code>``: SMS service errors (network, SMSC, number).

    ``kind`` and ``hint`` come from :data:`CMS_ADVICE` (:func:`cms_advice` for codes not in
    it). ``permanent`` stays what the caller says; left out, it follows ``kind``.
    """

    def __init__(self, code: int, message: str, *, permanent: bool | None = None) -> None:
        advice = cms_advice(code)
        super().__init__(
            f"+CMS ERROR {code}: {message}",
            permanent=advice.kind is not ErrorKind.RETRY if permanent is None else permanent,
        )
        self.code = code
        self.kind = advice.kind
        self.hint = advice.hint


class SimError(ModemError):
    """The SIM is missing, blocked (PUK) or the configured PIN is wrong: never retried."""

    def __init__(self, message: str) -> None:
        super().__init__(message, permanent=True)


class PduError(ModemError, ValueError):
    """A PDU is malformed (odd length, truncated, lengths that lie) or cannot be encoded."""

    def __init__(self, message: str) -> None:
        super().__init__(message, permanent=True)


# --------------------------------------------------------------------------------------------
# What a +CME / +CMS code means for the owner
# --------------------------------------------------------------------------------------------


class ErrorKind(enum.StrEnum):
    """What the owner, or the sender loop, can do about a modem error code."""

    RETRY = "retry"  # transient: the same command may work later
    PERMANENT = "permanent"  # this message or request will never work as it is
    SETUP = "setup"  # nothing works until the owner fixes the SIM, the config or the contract


@dataclass(frozen=True, slots=True)
class Advice:
    """How to treat one error code, and the one sentence the owner reads about it."""

    kind: ErrorKind
    hint: str


_R, _P, _S = ErrorKind.RETRY, ErrorKind.PERMANENT, ErrorKind.SETUP

_NO_NETWORK = "no mobile network here: check the antenna and the coverage; it is retried"
_NET_TIMEOUT = "the mobile network did not answer in time; it is retried"
_SIM_BUSY = "the SIM is still busy (starting up or just unlocked); it is retried shortly"
_NO_SIM = "no SIM card found: insert the SIM (power the modem off first) and restart the modem"
_PIN = "the SIM asks for its PIN: set [modem] pin"
_PUK = "the SIM is blocked after wrong PINs: unblock it with its PUK in a phone, then check [modem] pin"
_SIM_FAILURE = "the SIM card does not work: reseat it, or replace it"
_SIM_WRONG = "the modem refuses this SIM (locked to another operator or SIM): use a SIM it accepts"
_PH_LOCK = "the modem is locked to an operator or a SIM: unlock it (operator code) or use its own SIM"
_STORE_FULL = (
    "the message storage is full: the gateway reads and deletes messages; if it stays full, empty the SIM in a phone"
)
_MEMORY_FAILURE = "the modem or SIM message memory failed: reseat or replace the SIM"
_MODEM_FAILURE = "the modem failed internally; it is retried (restart the modem if it repeats)"
_NOT_NOW = "the modem refused the command in its current state (starting up, radio off, not registered); it is retried"
_NOT_SUPPORTED = "this modem does not support the command: check that the modem model is supported"
_BAD_FORMAT = "the message was refused as malformed: a gateway bug, please report it"
_UNKNOWN = "the modem reported an unknown error; it is retried"

#: ``+CME ERROR`` codes (3GPP TS 27.007 §9.2, GPRS causes from 24.008, and vendor codes
#: seen in the field: smstools3's table, Siemens/Telit/SIMCom manuals).
CME_ADVICE: Final[dict[int, Advice]] = {
    0: Advice(_R, _MODEM_FAILURE),
    1: Advice(_R, "the modem lost its link to the phone part; it is retried"),
    2: Advice(_R, "the modem's link is reserved by another user; it is retried"),
    3: Advice(_R, _NOT_NOW),
    4: Advice(_S, _NOT_SUPPORTED),
    5: Advice(_S, _PH_LOCK),
    6: Advice(_S, _PH_LOCK),
    7: Advice(_S, _PH_LOCK),
    10: Advice(_S, _NO_SIM),
    11: Advice(_S, _PIN),
    12: Advice(_S, _PUK),
    13: Advice(_S, _SIM_FAILURE),
    14: Advice(_R, _SIM_BUSY),
    15: Advice(_S, _SIM_WRONG),
    16: Advice(_S, "the SIM rejected the PIN: correct [modem] pin (every wrong try uses one of the SIM's attempts)"),
    17: Advice(_S, "the SIM asks for its PIN2: the gateway does not use PIN2, check the SIM in a phone"),
    18: Advice(_S, "the SIM's PIN2 is blocked: unblock it with its PUK2 in a phone"),
    20: Advice(_S, _STORE_FULL),
    21: Advice(_P, "no message at that storage index (already deleted)"),
    22: Advice(_P, "the modem did not find the entry asked for"),
    23: Advice(_S, _MEMORY_FAILURE),
    24: Advice(_P, "the text was too long for the modem: a gateway bug, please report it"),
    25: Advice(_P, "the text holds characters the modem refuses: a gateway bug, please report it"),
    26: Advice(_P, "the phone number is too long: check the recipient number"),
    27: Advice(_P, "the phone number holds characters the modem refuses: check the recipient number"),
    # 28 and 29 are not defined by 27.007; some firmwares use them (see the modem's manual).
    28: Advice(_R, "the modem reported equipment error 28, which 3GPP does not define; it is retried"),
    29: Advice(_R, "the modem reported equipment error 29, which 3GPP does not define; it is retried"),
    30: Advice(_R, _NO_NETWORK),
    31: Advice(_R, _NET_TIMEOUT),
    32: Advice(
        _S,
        "the network allows this SIM emergency calls only: the SIM is inactive, out of credit or not allowed here",
    ),
    40: Advice(_S, _PH_LOCK),
    41: Advice(_S, _PH_LOCK),
    42: Advice(_S, _PH_LOCK),
    43: Advice(_S, _PH_LOCK),
    44: Advice(_S, _PH_LOCK),
    45: Advice(_S, _PH_LOCK),
    46: Advice(_S, _PH_LOCK),
    47: Advice(_S, _PH_LOCK),
    48: Advice(_S, _PH_LOCK),
    50: Advice(_P, "the modem rejected the command's parameters: a gateway bug, please report it"),
    100: Advice(_R, _UNKNOWN),
    103: Advice(_S, "the network rejects this SIM (illegal MS): ask the operator"),
    106: Advice(_S, "the network rejects this modem (illegal ME, e.g. a barred IMEI): ask the operator"),
    107: Advice(_S, "the SIM has no data service (this does not stop SMS)"),
    111: Advice(_S, "this network does not allow the SIM (PLMN not allowed): check roaming or the operator"),
    112: Advice(_S, "the network does not allow the SIM in this area: check roaming or the operator"),
    113: Advice(_S, "roaming is not allowed in this area: enable roaming for the SIM or use a local SIM"),
    126: Advice(_R, "the network does not allow this right now; it is retried"),
    132: Advice(_S, "the network does not support the requested service for this SIM"),
    133: Advice(_S, "the SIM is not subscribed to the requested service: ask the operator"),
    134: Advice(_R, "the requested service is temporarily out of order; it is retried"),
    148: Advice(_R, "unspecified data-service error; it is retried"),
    149: Advice(_S, "data-service authentication failed: check the APN credentials"),
    150: Advice(_S, "the network refused the modem's mobile class"),
    256: Advice(_R, "the network does not allow this right now; it is retried"),
    257: Advice(_S, "calls are barred on this SIM: lift the barring with the operator or in a phone"),
    258: Advice(_R, "the modem is busy with a call; it is retried"),
    259: Advice(_R, "the command was aborted; it is retried"),
    260: Advice(_P, "the phone number is not valid: check the number"),
    261: Advice(_R, "the network did not carry out the supplementary service; it is retried"),
    262: Advice(_S, "the SIM is blocked: unblock it with its PUK in a phone, then check [modem] pin"),
    263: Advice(_S, "the SIM refused the request (invalid block): check the SIM in a phone"),
    515: Advice(_R, "the modem is busy (still starting up); it is retried"),
    772: Advice(_R, "the SIM is powered down (modem starting or radio off); it is retried"),
}

_LTE_SMS = "the modem could not send (on LTE-only networks: this network may not carry SMS for this SIM/modem)"
_NUMBER = "the recipient number does not exist: check the number, with its country code (+...)"

#: ``+CMS ERROR`` codes (3GPP TS 27.005 §3.2.5: 0-127 network causes from 24.011, 128-255
#: TP-FCS from 23.040, 300-340 and 500 from 27.005, 512+ vendor codes seen in the field).
CMS_ADVICE: Final[dict[int, Advice]] = {
    1: Advice(_P, _NUMBER),
    8: Advice(_S, "the operator bars SMS for this SIM (no SMS plan, no credit, barred): ask the operator"),
    10: Advice(_S, "sending SMS is barred on this SIM: lift the barring with the operator or in a phone"),
    17: Advice(_R, "the network failed; it is retried"),
    21: Advice(_P, "the network rejected this message (the recipient may not accept SMS from this SIM)"),
    22: Advice(_R, "the recipient's phone has no room for messages; it is retried"),
    27: Advice(_R, "the recipient's phone is unreachable; it is retried"),
    28: Advice(_P, "the network does not know the recipient: check the number"),
    29: Advice(_S, "the network refused the SMS service for this SIM: ask the operator"),
    30: Advice(_P, "the recipient number is not in service: check the number"),
    38: Advice(_R, "the mobile network is out of order; it is retried"),
    41: Advice(_R, "temporary network failure; it is retried"),
    42: Advice(_R, "the network is congested; it is retried"),
    47: Advice(_R, "the network has no resources free; it is retried"),
    50: Advice(_S, "the SIM has no SMS subscription: enable SMS with the operator"),
    69: Advice(_S, "the network does not offer this SMS service to this SIM/modem (on LTE: SMS may not be carried)"),
    81: Advice(_R, "the network lost track of the message (invalid transfer reference); it is retried"),
    95: Advice(_P, _BAD_FORMAT),
    96: Advice(_P, _BAD_FORMAT),
    97: Advice(_P, _BAD_FORMAT),
    98: Advice(_P, _BAD_FORMAT),
    99: Advice(_P, _BAD_FORMAT),
    111: Advice(_R, "network protocol error; it is retried"),
    127: Advice(_R, "the message could not pass between networks; it is retried"),
    128: Advice(_P, "the recipient is not a phone the SMS centre can deliver to"),
    129: Advice(_P, _BAD_FORMAT),
    130: Advice(_P, _BAD_FORMAT),
    143: Advice(_P, _BAD_FORMAT),
    144: Advice(_P, "the SMS centre does not support this alphabet: a gateway bug, please report it"),
    145: Advice(_P, _BAD_FORMAT),
    159: Advice(_P, _BAD_FORMAT),
    160: Advice(_P, _BAD_FORMAT),
    161: Advice(_P, _BAD_FORMAT),
    175: Advice(_P, _BAD_FORMAT),
    176: Advice(_P, _BAD_FORMAT),
    192: Advice(_R, "the SMS centre is busy; it is retried"),
    193: Advice(_S, "the SMS centre does not serve this SIM: check [modem] smsc, or ask the operator"),
    194: Advice(_R, "the SMS centre failed; it is retried"),
    195: Advice(_P, "the SMS centre rejected the recipient number: check the number"),
    196: Advice(_P, "the recipient is barred from receiving SMS"),
    197: Advice(_P, "the SMS centre already has this message (duplicate): not sent again"),
    198: Advice(_P, _BAD_FORMAT),
    199: Advice(_P, _BAD_FORMAT),
    208: Advice(_S, _STORE_FULL),
    209: Advice(_S, "the SIM cannot store messages: let the modem use its own memory"),
    210: Advice(_R, "the modem reported an error; it is retried"),
    211: Advice(_R, "the modem's message memory is full; it is retried after messages are read and deleted"),
    212: Advice(_R, "the SIM toolkit is busy; it is retried"),
    213: Advice(_R, "the SIM data download failed; it is retried"),
    255: Advice(_R, "unspecified error; it is retried"),
    300: Advice(_R, _MODEM_FAILURE),
    301: Advice(_R, "the modem's SMS service is reserved by another user; it is retried"),
    302: Advice(_R, _NOT_NOW),
    303: Advice(_S, _NOT_SUPPORTED),
    304: Advice(_P, "the modem refused the message (invalid PDU parameter, often the number): check the number"),
    305: Advice(_P, "the modem refused a text-mode parameter: a gateway bug, please report it"),
    310: Advice(_S, _NO_SIM),
    311: Advice(_S, _PIN),
    312: Advice(_S, _PH_LOCK),
    313: Advice(_S, _SIM_FAILURE),
    314: Advice(_R, _SIM_BUSY),
    315: Advice(_S, _SIM_WRONG),
    316: Advice(_S, _PUK),
    317: Advice(_S, "the SIM asks for its PIN2: the gateway does not use PIN2, check the SIM in a phone"),
    318: Advice(_S, "the SIM's PIN2 is blocked: unblock it with its PUK2 in a phone"),
    320: Advice(_S, _MEMORY_FAILURE),
    321: Advice(_P, "no message at that storage index (some modems say so for an empty storage)"),
    322: Advice(_S, _STORE_FULL),
    330: Advice(_S, "SMS centre unknown: set [modem] smsc"),
    331: Advice(_R, _NO_NETWORK),
    332: Advice(_R, _NET_TIMEOUT),
    340: Advice(_P, "the modem expected no acknowledgement (+CNMA): a gateway bug, please report it"),
    500: Advice(_R, _LTE_SMS),
    512: Advice(_R, "the modem could not reach the network (weak signal?); it is retried"),
    513: Advice(_R, "the radio link was lost while sending; it is retried"),
    514: Advice(_R, "the network is congested; it is retried"),
    515: Advice(_R, "the modem is still starting up; it is retried"),
}


def cme_advice(code: int) -> Advice:
    """:data:`CME_ADVICE` for ``code``; a code not in it is retried, with a hint naming its range."""
    known = CME_ADVICE.get(code)
    if known is not None:
        return known
    if 103 <= code <= 150:
        return Advice(_R, f"the network refused the data service (cause {code}); it is retried")
    if code >= 512:
        return Advice(_R, f"vendor-specific modem error {code} (see the modem's manual); it is retried")
    return Advice(_R, f"the modem reported equipment error {code}; it is retried")


def cms_advice(code: int) -> Advice:
    """:data:`CMS_ADVICE` for ``code``; a code not in it by its range in 27.005 §3.2.5.

    Unknown network causes (0-127), SMS centre and SIM failures (192-255), reserved ME codes
    (256-499) and vendor codes (500 and up) are retried; unknown TP-FCS codes 128-191 (the
    SMS centre refused the message's protocol, coding or command fields) are permanent,
    since the same PDU is refused again.
    """
    known = CMS_ADVICE.get(code)
    if known is not None:
        return known
    if code <= 127:
        return Advice(_R, f"the network refused the message (cause {code}); it is retried")
    if code <= 191:
        return Advice(
            _P, f"the SMS centre refused the message's format (cause {code}): a gateway bug, please report it"
        )
    if code <= 255:
        return Advice(_R, f"the SMS centre or the SIM failed (cause {code}); it is retried")
    if code < 500:
        return Advice(_R, f"the modem reported SMS error {code}; it is retried")
    return Advice(_R, f"vendor-specific modem error {code} (see the modem's manual); it is retried")
