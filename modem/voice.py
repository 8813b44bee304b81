"""Voice calls and the subscriber's number, the pure part: ``+CLCC`` lines, ``+CEER`` causes,
``+CNUM``, which number may be dialled, and how a call's end maps to a
:class:`~modem.interface.CallResult` outcome. No I/O, no clock: :mod:`modem.atcall` feeds these
what the modem said and the times it measured.

The outcomes (:data:`modem.interface.CALL_OUTCOMES`), from what the modem says:

=========================================== ==========================================
the modem says                              outcome
=========================================== ==========================================
``+CLCC`` stat 0 (active), ``+COLP``        "answered" (we hang up after a moment)
``ring_for`` passed, still dialling/ringing "no-answer" (we hang up)
``NO ANSWER``                               "no-answer"
``BUSY`` before it rang                     "busy"
``BUSY`` / ``NO CARRIER`` after it rang     "rejected" (declined; "User busy" is how many
                                            networks report a declined call)
``NO CARRIER`` before it rang               by ``AT+CEER``: "invalid" (unassigned number,
                                            invalid format), "no-voice" (bearer/service not
                                            available), "busy", "rejected", else "failed"
``NO CARRIER`` once answered                "answered" (the phone hung up first)
``+CME ERROR: 4`` / ``ERROR`` to ``ATD``    "no-voice" (the module has no voice: permanent)
``NO DIALTONE``, other ``+CME ERROR``,      "failed" (worth another try later)
no final result to ``ATD``
=========================================== ==========================================
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

# 27.007 7.18 <stat>
CLCC_ACTIVE = 0
CLCC_HELD = 1
CLCC_DIALLING = 2
CLCC_ALERTING = 3
CLCC_INCOMING = 4
CLCC_WAITING = 5

_CLCC_RE = re.compile(r"^\+CLCC:\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*(?:,(.*))?$", re.IGNORECASE)
_DIAL_RE = re.compile(r"\+?\d{3,20}")


@dataclass(frozen=True, slots=True)
class CallLine:
    """One ``+CLCC: <id>,<dir>,<stat>,<mode>,<mpty>[,<number>,<type>...]`` line."""

    id: int
    outgoing: bool  # <dir> 0: mobile originated
    stat: int  # CLCC_ACTIVE ... CLCC_WAITING
    voice: bool  # <mode> 0
    number: str | None = None


def parse_clcc_line(line: str) -> CallLine | None:
    """One ``+CLCC:`` line; None when it is not one (or a field is out of range)."""
    m = _CLCC_RE.match(line.strip())
    if m is None:
        return None
    ident, direction, stat, mode, _ = (int(g) for g in m.groups()[:5])
    if direction > 1 or stat > 7:
        return None
    number: str | None = None
    rest = m.group(6)
    if rest:
        first = rest.split(",", 1)[0].strip()
        if len(first) >= 2 and first[0] == first[-1] == '"':
            first = first[1:-1]
        number = first or None
    return CallLine(ident, direction == 0, stat, mode == 0, number)


def parse_clcc(lines: Sequence[str]) -> list[CallLine]:
    """Every call an ``AT+CLCC`` reply lists (other lines skipped)."""
    calls = (parse_clcc_line(line) for line in lines)
    return [c for c in calls if c is not None]


def our_call(calls: Sequence[CallLine]) -> CallLine | None:
    """The call we dialled among ``calls``: the first outgoing voice call."""
    return next((c for c in calls if c.outgoing and c.voice), None)


def dial_number(number: str) -> str | None:
    """The number as ``ATD`` takes it (spaces, dashes and brackets removed), or None when it
    is not a phone number: an optional ``+`` and 3 to 20 digits. Anything else (letters, ``;``,
    ``>``, service codes) never reaches the modem's dial command."""
    cleaned = re.sub(r"[\s\-().]", "", number)
    return cleaned if _DIAL_RE.fullmatch(cleaned) else None


def parse_ceer(lines: Sequence[str]) -> str | None:
    """The release cause text of an ``AT+CEER`` reply (``+CEER: Normal call clearing``; some
    modems print ``+CEER: <cause number>`` or ``+CEER: "<text>"``); None when empty."""
    for line in lines:
        text = line.strip()
        if text.upper().startswith("+CEER:"):
            text = text[6:].strip()
        text = text.strip('"').strip()
        if text:
            return text
    return None


# Release causes (24.008 10.5.4.11): words in the AT+CEER text, and the cause numbers some
# modems print instead, to the outcome of a call that ended before it rang.
_CAUSE_WORDS: tuple[tuple[str, str], ...] = (
    ("unassigned", "invalid"),
    ("unallocated", "invalid"),
    ("invalid number format", "invalid"),
    ("incomplete number", "invalid"),
    ("number changed", "invalid"),
    ("no route to destination", "invalid"),
    ("bearer capability not", "no-voice"),
    ("bearer service not", "no-voice"),
    ("service or option not", "no-voice"),
    ("service option not", "no-voice"),
    ("not subscribed", "no-voice"),
    ("user busy", "busy"),
    ("call rejected", "rejected"),
    ("no answer", "no-answer"),
    ("no user responding", "no-answer"),
)
_CAUSE_NUMBERS: dict[int, str] = {
    1: "invalid",  # unassigned (unallocated) number
    3: "invalid",  # no route to destination
    22: "invalid",  # number changed
    28: "invalid",  # invalid number format (incomplete number)
    17: "busy",  # user busy
    18: "no-answer",  # no user responding
    19: "no-answer",  # no answer from user (user alerted)
    21: "rejected",  # call rejected
    57: "no-voice",  # bearer capability not authorized
    58: "no-voice",  # bearer capability not presently available
    63: "no-voice",  # service or option not available, unspecified
    65: "no-voice",  # bearer service not implemented
}
_CAUSE_NUMBER_RE = re.compile(r"(?:^|[\s,:])(\d{1,3})(?:$|[\s,])")


def cause_outcome(cause: str | None) -> str | None:
    """The outcome an ``AT+CEER`` cause names, or None when it names none we know."""
    if not cause:
        return None
    lower = cause.lower()
    for words, outcome in _CAUSE_WORDS:
        if words in lower:
            return outcome
    m = _CAUSE_NUMBER_RE.search(cause)
    if m is not None:
        return _CAUSE_NUMBERS.get(int(m.group(1)))
    return None


def ended_outcome(result: str, *, alerted: bool, answered: bool, cause: str | None = None) -> str:
    """The outcome of a call the network ended with ``result`` (``NO CARRIER``, ``BUSY``,
    ``NO ANSWER``, ``NO DIALTONE``), after it rang (``alerted``) or was answered or neither;
    ``cause`` is the ``AT+CEER`` text, asked for when it ended before ringing."""
    word = result.strip().upper()
    if answered:
        return "answered"
    if word == "NO ANSWER":
        return "no-answer"
    if word == "NO DIALTONE":
        return "failed"
    if alerted:
        # It rang, then ended: declined (many networks say "User busy" for a declined call),
        # or the network gave up on it.
        named = cause_outcome(cause)
        return "no-answer" if named == "no-answer" else "rejected"
    if word == "BUSY":
        return "busy"
    return cause_outcome(cause) or "failed"


def dial_error_outcome(*, cme: int | None, plain_error: bool) -> str:
    """The outcome of an ``ATD`` the modem refused: ``+CME ERROR: <cme>`` or plain ``ERROR``
    (the number was checked before, so ERROR means no voice, as Cat-M/NB-IoT modules say)."""
    if plain_error or cme in (4, 132, 133):  # operation / service option not supported
        return "no-voice"
    return "failed"


def parse_cnum(lines: Sequence[str]) -> str | None:
    """The first number of an ``AT+CNUM`` reply (``+CNUM: "<alpha>","<number>",<type>``;
    alpha may be empty or unquoted); "+" added for type 145 when missing; UCS-2 hex (modems
    in ``+CSCS="UCS2"``) decoded. None when no line carries a number."""
    for line in lines:
        text = line.strip()
        if not text.upper().startswith("+CNUM:"):
            continue
        fields = _fields(text[6:])
        if len(fields) < 2:
            continue
        number = _ucs2_digits(fields[1].strip().strip('"').strip())
        if not number:
            continue
        kind = fields[2].strip() if len(fields) > 2 else ""
        if kind == "145" and not number.startswith("+"):
            number = "+" + number
        return number
    return None


def _fields(args: str) -> list[str]:
    out: list[str] = []
    cur: list[str] = []
    quoted = False
    for ch in args:
        if ch == '"':
            quoted = not quoted
        elif ch == "," and not quoted:
            out.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    out.append("".join(cur))
    return out


def _ucs2_digits(value: str) -> str:
    if len(value) >= 8 and len(value) % 4 == 0 and re.fullmatch(r"(00[0-9A-Fa-f]{2})+", value):
        try:
            decoded = bytes.fromhex(value).decode("utf-16-be")
        except ValueError:
            return value
        if re.fullmatch(r"\+?\d+", decoded):
            return decoded
    return value
