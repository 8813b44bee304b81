"""USSD, the pure part: the ``+CUSD`` line (27.007 7.15) and the three ways modems show the
network's answer. No I/O: :mod:`modem.atcall` sends ``AT+CUSD`` and waits for the line.

``+CUSD: <m>[,"<str>",<dcs>]``; ``<m>`` 0 answer (no further action), 1 answer (the network
waits for a reply: a menu), 2 ended by the network, 3 answered by another client, 4 not
supported, 5 network time out. ``<str>`` is, depending on the firmware:

* text in the ``+CSCS`` character set, dcs 15 (Quectel, SIMCom);
* the GSM-7 septets packed and in hex, dcs 15 (Huawei sticks);
* UTF-16 (UCS-2) in hex, dcs 72 (and hex under dcs 15 from a modem set to ``+CSCS="UCS2"``).

:func:`decode_ussd` tells them apart: dcs 72 is UCS-2; hex under a GSM-7 dcs is tried as
UCS-2 when it looks like Latin text in UCS-2, then as packed GSM-7, then as either when the
result is printable text; anything else is taken as it came.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from modem.pdu import decode_gsm7, unpack_septets

_CUSD_RE = re.compile(r'^\+CUSD:\s*(\d+)\s*(?:,\s*("(?:[^"]*)"|[^,]*)\s*(?:,\s*(\d+))?)?\s*$', re.IGNORECASE)
_HEX_RE = re.compile(r"(?:[0-9A-Fa-f]{2})+")

#: ``<m>`` values that are an error, and what to tell the owner.
CUSD_ERRORS: dict[int, str] = {
    2: "the network ended the USSD session",
    3: "another client answered the USSD session",
    4: "the network does not support this USSD code",
    5: "the network did not answer the USSD request in time",
}


@dataclass(frozen=True, slots=True)
class UssdReply:
    """One ``+CUSD:`` line: ``m``, the raw ``text`` (None when absent) and ``dcs``."""

    m: int
    text: str | None = None
    dcs: int | None = None

    @property
    def decoded(self) -> str | None:
        """The answer as text (:func:`decode_ussd`), None when the line carries none."""
        return None if self.text is None else decode_ussd(self.text, self.dcs)


def parse_cusd(line: str) -> UssdReply | None:
    """A ``+CUSD:`` line; None when it is not one."""
    m = _CUSD_RE.match(line.strip())
    if m is None:
        return None
    raw = m.group(2)
    text: str | None = None
    if raw is not None:
        raw = raw.strip()
        text = raw[1:-1] if len(raw) >= 2 and raw[0] == raw[-1] == '"' else raw
    dcs = int(m.group(3)) if m.group(3) is not None else None
    return UssdReply(int(m.group(1)), text, dcs)


def is_ucs2_dcs(dcs: int | None) -> bool:
    """23.038 §5: the CBS data coding schemes that mean UCS-2 (0x48 = 72, the common one;
    0x11 "UCS2 preceded by language"; group 01xx with alphabet bits 10; 0x9x with 10)."""
    if dcs is None:
        return False
    if dcs == 0x11:
        return True
    group = dcs >> 4
    if group in (0x4, 0x5, 0x6, 0x7, 0x9):
        return (dcs >> 2) & 0x03 == 0x02
    return False


def decode_ussd(text: str, dcs: int | None) -> str:
    """The answer text of a ``+CUSD`` ``<str>`` under ``dcs`` (see the module docstring).
    Never raises: what cannot be decoded is returned as it came."""
    raw = text.strip()
    hexlike = bool(_HEX_RE.fullmatch(raw))
    if is_ucs2_dcs(dcs):
        if hexlike and len(raw) % 4 == 0:
            ucs2 = _ucs2(raw)
            if ucs2 is not None:
                return ucs2
        return text
    if not hexlike:
        return text
    if len(raw) % 4 == 0:
        ucs2 = _ucs2(raw)
        if ucs2 is not None and _mostly_latin(raw):
            return ucs2
    gsm = _packed_gsm7(raw)
    if gsm is not None:
        return gsm
    if len(raw) % 4 == 0:
        ucs2 = _ucs2(raw)
        if ucs2 is not None:
            return ucs2
    return text


def _printable(text: str) -> bool:
    return bool(text) and all(ch.isprintable() or ch in "\r\n" for ch in text)


def _ucs2(raw: str) -> str | None:
    try:
        decoded = bytes.fromhex(raw).decode("utf-16-be")
    except ValueError:
        return None
    return decoded if _printable(decoded) else None


def _mostly_latin(raw: str) -> bool:
    """UCS-2 hex of Latin text: every code unit starts with 00 (at least most do)."""
    units = [raw[i : i + 4] for i in range(0, len(raw), 4)]
    return sum(1 for u in units if u.startswith("00")) * 2 > len(units)


def _packed_gsm7(raw: str) -> str | None:
    data = bytes.fromhex(raw)
    septets = unpack_septets(data)
    if (8 * len(data)) % 7 == 0 and septets.endswith(b"\x00"):
        septets = septets[:-1]  # 7 bits of zero padding (Huawei) instead of 23.038's CR
    decoded = decode_gsm7(septets)
    return decoded if _printable(decoded) else None
