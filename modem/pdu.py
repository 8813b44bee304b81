"""SMS PDU codec (3GPP TS 23.040 / 23.038): SMS-SUBMIT, SMS-DELIVER and SMS-STATUS-REPORT.

Pure: no I/O, no clock reads, no logging (message bodies must never reach a log).
Every decoding failure raises :class:`~modem.errors.PduError` (a ``ValueError``);
no ``IndexError`` or ``UnicodeError`` escapes from inside.

What it covers:

* GSM 03.38 7-bit default alphabet with the extension table (``^ { } \\ [ ~ ] | €``
  and form feed, each sent as ESC 0x1B + code), UCS-2 (UTF-16BE, astral characters as
  surrogate pairs) when the text is not GSM-7, 8-bit data on decode only.
* Concatenated SMS with 8-bit (IEI 0x00) or 16-bit (IEI 0x08) reference UDH; parts are
  split so that no escape pair and no surrogate pair straddles two parts.
* International (``+4915...``, TOA 0x91), other numeric (``0151...``, TOA 0x81, "unknown
  type, ISDN plan" as phones, gammu and ModemManager send it) and alphanumeric (TOA 0xD0,
  GSM-7 packed) addresses; the SMSC field (``00`` = use the SIM's SMSC).
* Relative and absolute TP-VP, status-report request, TP-SCTS timestamps with time zone
  (quarter hours, sign bit).
* Damaged replies (``lenient=True``): an SMS-DELIVER whose user data runs past TP-UDL or
  stops a few octets short is decoded as far as the octets go, with ``problems`` saying what
  was wrong; :func:`clean_pdu_line` digs the hex out of a PDU line with junk around it.
* 23.038 §6.1.2.1.1 padding: when packed septets leave exactly 7 spare bits, they hold CR
  rather than zeros so a reader that counts septets from octets does not see a stray ``@``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from modem.errors import PduError
from modem.interface import DeliveryReport

__all__ = [
    "Concat",
    "Deliver",
    "PduError",
    "Reassembler",
    "StatusReport",
    "Submit",
    "SubmitPdu",
    "Unreadable",
    "clean_pdu_line",
    "count_parts",
    "decode_address",
    "decode_gsm7",
    "decode_pdu",
    "decode_relative_validity",
    "decode_smsc",
    "decode_timestamp",
    "delivery_report",
    "encode_address",
    "encode_deliver",
    "encode_deliver_data",
    "encode_gsm7",
    "encode_relative_validity",
    "encode_smsc",
    "encode_status_report",
    "encode_submit",
    "encode_timestamp",
    "is_gsm7",
    "pack_septets",
    "salvage_deliver",
    "status_meaning",
    "unpack_septets",
    "unreadable_text",
]

# --------------------------------------------------------------------------------------------
# GSM 03.38 alphabet
# --------------------------------------------------------------------------------------------

ESC = 0x1B
CR = 0x0D

# The default alphabet, indexed by septet value. Slot 0x1B is the escape to the extension
# table, not a character: it is never produced from text (see _GSM7_ENCODE).
_GSM7_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
assert len(_GSM7_BASIC) == 128

_GSM7_EXTENSION: dict[int, str] = {
    0x0A: "\f",
    0x14: "^",
    0x28: "{",
    0x29: "}",
    0x2F: "\\",
    0x3C: "[",
    0x3D: "~",
    0x3E: "]",
    0x40: "|",
    0x65: "€",
}

_GSM7_ENCODE: dict[str, bytes] = {ch: bytes([i]) for i, ch in enumerate(_GSM7_BASIC) if i != ESC}
_GSM7_ENCODE.update({ch: bytes([ESC, code]) for code, ch in _GSM7_EXTENSION.items()})

# Decoding: ESC followed by a code the extension table does not define shows the default
# alphabet's character for that code (23.038 §6.2.1.1); ESC ESC ("reserved for another
# extension table") and a dangling ESC show a space, as the same clause asks.
_GSM7_ESCAPED: tuple[str, ...] = tuple(
    _GSM7_EXTENSION.get(code, " " if code == ESC else _GSM7_BASIC[code]) for code in range(128)
)

# TP-UD holds at most 140 octets (160 septets).
_UD_OCTETS = 140
_UD_SEPTETS = 160
_MAX_PARTS = 255

_CONCAT8_IEI = 0x00
_CONCAT16_IEI = 0x08
_PORTS8_IEI = 0x04
_PORTS16_IEI = 0x05

_NUMERIC_RE = re.compile(r"\+?[0-9*#]+")
_BCD_DIGITS = "0123456789*#abc"  # semi-octet values 0x0-0xE; 0xF is the filler

TOA_INTERNATIONAL = 0x91
TOA_UNKNOWN = 0x81
TOA_ALPHANUMERIC = 0xD0


def is_gsm7(text: str) -> bool:
    """True when every character of ``text`` is in the GSM 03.38 default or extension table."""
    encode = _GSM7_ENCODE
    return all(ch in encode for ch in text)


def encode_gsm7(text: str) -> bytes:
    """The unpacked septets (one per octet, ESC included for extension characters) of ``text``.

    Raises PduError naming the first character that has no GSM-7 code.
    """
    encode = _GSM7_ENCODE
    try:
        return b"".join([encode[ch] for ch in text])
    except KeyError as exc:
        raise PduError(f"character U+{ord(exc.args[0]):04X} is not in the GSM-7 alphabet") from None


def decode_gsm7(septets: bytes) -> str:
    """Text of unpacked septet values (each 0-127; higher bits are ignored). Never raises."""
    out: list[str] = []
    basic, escaped = _GSM7_BASIC, _GSM7_ESCAPED
    i, n = 0, len(septets)
    while i < n:
        s = septets[i] & 0x7F
        if s == ESC:
            if i + 1 < n:
                out.append(escaped[septets[i + 1] & 0x7F])
                i += 2
                continue
            out.append(" ")  # a dangling escape: see _GSM7_ESCAPED
        else:
            out.append(basic[s])
        i += 1
    return "".join(out)


def pack_septets(septets: bytes, fill_bits: int = 0) -> bytes:
    """Pack 7-bit values LSB first into octets, after ``fill_bits`` zero bits (0-6).

    ``fill_bits`` aligns text that follows a UDH on a septet boundary (23.040 §9.2.3.24).
    When the packed bits leave exactly 7 spare bits at the end, those hold CR, not zeros
    (23.038 §6.1.2.1.1), so a reader that derives the count from the octets finds a CR it
    knows to drop instead of a phantom ``@``; a reader that uses the septet count ignores it.
    """
    if not 0 <= fill_bits <= 6:
        raise PduError(f"fill bits must be 0-6, got {fill_bits}")
    acc = 0
    for i, s in enumerate(septets):
        acc |= (s & 0x7F) << (7 * i)
    nbits = fill_bits + 7 * len(septets)
    if nbits % 8 == 1:
        acc |= CR << (7 * len(septets))
    return (acc << fill_bits).to_bytes((nbits + 7) // 8, "little")


def unpack_septets(data: bytes, count: int | None = None, fill_bits: int = 0) -> bytes:
    """Unpack ``count`` septets from ``data``, skipping ``fill_bits`` leading bits.

    ``count=None`` takes as many septets as the octets hold. Then, and only when those
    septets fill the bits exactly so the last one may be 7 bits of padding, a final CR is
    dropped as the padding of 23.038 §6.1.2.1.1 (a sender that wanted a real CR there must
    have sent two). Raises PduError when ``data`` is too short for ``count`` septets.
    """
    nbits = 8 * len(data) - fill_bits
    if nbits < 0:
        raise PduError(f"{len(data)} octets cannot hold {fill_bits} fill bits")
    stripped = False
    if count is None:
        count = nbits // 7
        stripped = count > 0 and nbits % 7 == 0
    elif count < 0 or 7 * count > nbits:
        raise PduError(f"{len(data)} octets cannot hold {count} septets (after {fill_bits} fill bits)")
    value = int.from_bytes(data, "little") >> fill_bits
    out = bytes([(value >> (7 * i)) & 0x7F for i in range(count)])
    if stripped and out[-1] == CR:
        out = out[:-1]
    return out


# --------------------------------------------------------------------------------------------
# Splitting text into parts
# --------------------------------------------------------------------------------------------


def _udh_octets(ref16: bool) -> int:
    """Octets of a concatenation UDH including its UDHL octet: 6 (8-bit ref) or 7 (16-bit)."""
    return 7 if ref16 else 6


def _part_capacity(encoding: str, udh_octets: int) -> int:
    """Septets (gsm7) or UTF-16 units (ucs2) of text that fit next to a UDH of that size."""
    if encoding == "gsm7":
        # The text starts at the first septet boundary after the header (hence the ceil).
        return _UD_SEPTETS - (8 * udh_octets + 6) // 7
    return (_UD_OCTETS - udh_octets) // 2


def _units(text: str) -> tuple[str, list[bytes]]:
    """Pick the encoding and cut ``text`` into indivisible encoded atoms, one per character.

    A GSM-7 atom is one septet or an ESC pair; a UCS-2 atom is one UTF-16BE code unit or a
    surrogate pair. Parts are cut only between atoms.
    """
    encode = _GSM7_ENCODE
    try:
        return "gsm7", [encode[ch] for ch in text]
    except KeyError:
        pass
    atoms: list[bytes] = []
    for ch in text:
        try:
            atoms.append(ch.encode("utf-16-be"))
        except UnicodeEncodeError:
            raise PduError(f"text contains a lone surrogate U+{ord(ch):04X}") from None
    return "ucs2", atoms


def _split(encoding: str, atoms: Sequence[bytes], ref16: bool) -> list[bytes]:
    """Encoded payload of each part (septets for gsm7, UTF-16BE octets for ucs2).

    One part when the whole text fits without a UDH; otherwise greedy filling, which is
    optimal here: every part but the last is as full as an atom boundary allows, so no
    split can finish in fewer parts.
    """
    unit = 1 if encoding == "gsm7" else 2
    single = _UD_SEPTETS if encoding == "gsm7" else _UD_OCTETS // 2
    whole = b"".join(atoms)
    if len(whole) <= single * unit:
        return [whole]
    cap = _part_capacity(encoding, _udh_octets(ref16)) * unit
    parts: list[bytes] = []
    current: list[bytes] = []
    size = 0
    for atom in atoms:
        if size + len(atom) > cap:
            parts.append(b"".join(current))
            current, size = [], 0
        current.append(atom)
        size += len(atom)
    parts.append(b"".join(current))
    if len(parts) > _MAX_PARTS:
        raise PduError(f"text needs {len(parts)} SMS parts; at most {_MAX_PARTS} are possible")
    return parts


def count_parts(text: str, *, ref16: bool = False) -> tuple[str, int]:
    """``(encoding, parts)`` that :func:`encode_submit` will use for ``text``.

    ``encoding`` is ``"gsm7"`` when :func:`is_gsm7` holds, else ``"ucs2"``; ``parts`` is at
    least 1 (the empty text is one empty SMS). Raises PduError for a lone surrogate or a
    text that needs more than 255 parts.
    """
    encoding, atoms = _units(text)
    return encoding, len(_split(encoding, atoms, ref16))


# --------------------------------------------------------------------------------------------
# Addresses, timestamps, validity
# --------------------------------------------------------------------------------------------


def _bcd(digits: str) -> bytes:
    """Swapped semi-octets of ``digits`` (0-9 * #), padded with 0xF to a whole octet."""
    if len(digits) % 2:
        digits += "F"
    out = bytearray()
    for i in range(0, len(digits), 2):
        lo, hi = digits[i], digits[i + 1]
        out.append(_nibble(hi) << 4 | _nibble(lo))
    return bytes(out)


def _nibble(ch: str) -> int:
    if ch == "F":
        return 0xF
    return _BCD_DIGITS.index(ch)


def _unbcd(data: bytes, ndigits: int, what: str) -> str:
    nibbles = [n for octet in data for n in (octet & 0x0F, octet >> 4)][:ndigits]
    # Some senders count the 0xF filler of an odd-length number as a digit; only in that
    # last position is it harmless, anywhere else the number is corrupt.
    if nibbles and nibbles[-1] == 0xF:
        nibbles.pop()
    if 0xF in nibbles:
        raise PduError(f"{what}: filler nibble F inside the digits")
    return "".join([_BCD_DIGITS[n] for n in nibbles])


def encode_address(number: str) -> bytes:
    """TP-OA / TP-DA field: length in semi-octets, type of address, value.

    ``+`` and digits → international (0x91); digits (and ``*``/``#``) → unknown type, ISDN
    plan (0x81); text containing a letter → alphanumeric (0xD0, GSM-7 packed, at most 11
    septets). Raises PduError for anything else (spaces or dashes in a number, empty, >20
    digits).
    """
    if _NUMERIC_RE.fullmatch(number):
        international = number.startswith("+")
        digits = number[1:] if international else number
        if len(digits) > 20:
            raise PduError(f"number has {len(digits)} digits; an address holds at most 20")
        if international and not digits.isdigit():
            raise PduError("an international number holds only digits after the +")
        toa = TOA_INTERNATIONAL if international else TOA_UNKNOWN
        return bytes([len(digits), toa]) + _bcd(digits)
    if not any(ch.isalpha() for ch in number) or not is_gsm7(number):
        raise PduError("invalid number: expected +digits, digits, or a GSM-7 alphanumeric name")
    septets = encode_gsm7(number)
    if len(septets) > 11:
        raise PduError(f"alphanumeric address is {len(septets)} septets long; at most 11 fit")
    # The length counts the semi-octets that carry bits, so a 7-character name (49 bits)
    # says 13, not 14: a reader then knows there is no 8th septet.
    return bytes([(7 * len(septets) + 3) // 4, TOA_ALPHANUMERIC]) + pack_septets(septets)


def encode_smsc(number: str | None) -> bytes:
    """The SMSC field: ``00`` for None (the modem uses the SIM's SMSC), else length in
    octets (type octet included), type, BCD digits. Raises PduError for a non-numeric SMSC.
    """
    if number is None:
        return b"\x00"
    if not _NUMERIC_RE.fullmatch(number):
        raise PduError("invalid SMSC number: expected +digits or digits")
    field = encode_address(number)
    return bytes([len(field) - 1]) + field[1:]


class _Reader:
    """Cursor over PDU octets whose every read names the field it wanted when it fails."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def octet(self, what: str) -> int:
        return self.take(1, what)[0]

    def take(self, n: int, what: str) -> bytes:
        if n > self.remaining():
            raise PduError(f"PDU truncated: {what} needs {n} octet(s) at offset {self.pos}, {self.remaining()} left")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk


def _read_address(reader: _Reader, what: str) -> tuple[str, int]:
    ndigits = reader.octet(f"{what} length")
    toa = reader.octet(f"{what} type")
    value = reader.take((ndigits + 1) // 2, what)
    return _address_text(toa, value, ndigits, what), toa


def _address_text(toa: int, value: bytes, ndigits: int, what: str) -> str:
    ton = (toa >> 4) & 0x07
    if ton == 0b101:
        # The length counts useful semi-octets. When septets fill them exactly, the last
        # septet may be the 7 spare bits of a sender that counted whole octets (14 for a
        # 7-character name): CR there is 23.038 padding (see unpack_septets), not text.
        nbits = 4 * ndigits
        septets = unpack_septets(value, nbits // 7)
        if septets and nbits % 7 == 0 and septets[-1] == CR:
            septets = septets[:-1]
        return decode_gsm7(septets)
    digits = _unbcd(value, ndigits, what)
    return "+" + digits if ton == 0b001 else digits


def decode_address(data: bytes) -> tuple[str, int]:
    """Decode a TP-OA/DA/RA field at the start of ``data``: ``(address, octets consumed)``.

    Trailing octets are ignored. Raises PduError when the field is truncated or malformed.
    """
    reader = _Reader(bytes(data))
    address, _ = _read_address(reader, "address")
    return address, reader.pos


def _read_smsc(reader: _Reader) -> str | None:
    length = reader.octet("SMSC length")
    if length == 0:
        return None
    toa = reader.octet("SMSC type")
    value = reader.take(length - 1, "SMSC")
    # The SMSC length is in octets, so a final 0xF nibble is filler, not a digit.
    ndigits = 2 * len(value) - (1 if value and value[-1] >> 4 == 0xF else 0)
    return _address_text(toa, value, ndigits, "SMSC")


def decode_smsc(data: bytes) -> tuple[str | None, int]:
    """Decode the SMSC field at the start of ``data``: ``(number or None, octets consumed)``."""
    reader = _Reader(bytes(data))
    smsc = _read_smsc(reader)
    return smsc, reader.pos


def _semi(value: int, what: str) -> int:
    tens, units = value & 0x0F, value >> 4
    if tens > 9 or units > 9:
        raise PduError(f"{what}: semi-octet 0x{value:02X} is not two decimal digits")
    return 10 * tens + units


def decode_timestamp(data: bytes) -> dt.datetime:
    """Decode a 7-octet TP-SCTS / TP-DT / absolute TP-VP into an aware datetime.

    The zone is in quarter hours with the sign in bit 3 of the first semi-octet. Years are
    taken as 2000-2099 (23.040 carries two digits only). Raises PduError for non-decimal
    date digits or an impossible date; an unreadable zone octet is taken as UTC.
    """
    if len(data) != 7:
        raise PduError(f"a timestamp is 7 octets, got {len(data)}")
    year, month, day, hour, minute, second = (_semi(data[i], "timestamp") for i in range(6))
    tz = data[6]
    try:
        quarters = _semi(tz & 0xF7, "timestamp zone")
    except PduError:
        # Some modems and SMSCs put garbage in the zone octet (seen in the wild on status
        # reports). The zone is informational; dropping the owner's message over it is worse.
        quarters = 0
    if tz & 0x08:
        quarters = -quarters
    if abs(quarters) > 95:  # 24 h or more is not a zone
        quarters = 0
    try:
        zone = dt.timezone(dt.timedelta(minutes=15 * quarters))
        return dt.datetime(2000 + year, month, day, hour, minute, second, tzinfo=zone)
    except ValueError as exc:
        raise PduError(f"invalid timestamp: {exc}") from None


def encode_timestamp(when: dt.datetime) -> bytes:
    """7-octet TP-SCTS of an aware datetime (microseconds dropped, year 2000-2099).

    Raises PduError for a naive datetime or a UTC offset that is not whole quarter hours.
    """
    offset = when.utcoffset()
    if offset is None:
        raise PduError("timestamp must be timezone-aware")
    if not 2000 <= when.year <= 2099:
        raise PduError(f"timestamp year {when.year} is outside 2000-2099")
    quarters, rest = divmod(int(offset.total_seconds()), 15 * 60)
    if rest:
        raise PduError(f"UTC offset {offset} is not a whole number of quarter hours")
    sign = 0x08 if quarters < 0 else 0
    quarters = abs(quarters)
    if quarters > 79:
        raise PduError(f"UTC offset {offset} does not fit the timestamp zone")
    fields = (when.year % 100, when.month, when.day, when.hour, when.minute, when.second)
    out = bytes((v % 10) << 4 | v // 10 for v in fields)
    return out + bytes([(quarters % 10) << 4 | (quarters // 10) | sign])


_MINUTE = 60
_DAY = 24 * 60 * 60
_WEEK = 7 * _DAY


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def encode_relative_validity(period: dt.timedelta) -> int:
    """Relative TP-VP octet for ``period`` (23.040 §9.2.3.12.1).

    Rounds *up* to the next representable period, so an alert never expires earlier than
    asked; below 5 minutes gives 5 minutes, beyond 63 weeks gives 63 weeks. Raises
    PduError for a negative period.
    """
    seconds = _ceil_div(period // dt.timedelta(microseconds=1), 1_000_000)
    if seconds < 0:
        raise PduError(f"validity period must not be negative, got {period}")
    if seconds <= 12 * 3600:
        return max(0, _ceil_div(seconds, 5 * _MINUTE) - 1)
    if seconds <= _DAY:
        return 143 + _ceil_div(seconds - 12 * 3600, 30 * _MINUTE)
    if seconds <= 30 * _DAY:
        return 166 + _ceil_div(seconds, _DAY)
    return min(255, 192 + _ceil_div(seconds, _WEEK))


def decode_relative_validity(value: int) -> dt.timedelta:
    """The period a relative TP-VP octet (0-255) stands for."""
    if not 0 <= value <= 255:
        raise PduError(f"relative validity is one octet, got {value}")
    if value <= 143:
        return dt.timedelta(minutes=5 * (value + 1))
    if value <= 167:
        return dt.timedelta(hours=12, minutes=30 * (value - 143))
    if value <= 196:
        return dt.timedelta(days=value - 166)
    return dt.timedelta(weeks=value - 192)


def _decode_enhanced_validity(data: bytes) -> dt.timedelta | None:
    # 23.040 §9.2.3.12.3: bits 0-2 of the functionality indicator give the format.
    fmt = data[0] & 0x07
    if fmt == 1:
        return decode_relative_validity(data[1])
    if fmt == 2:
        return dt.timedelta(seconds=data[1])
    if fmt == 3:
        hours, minutes, seconds = (_semi(data[i], "validity") for i in (1, 2, 3))
        return dt.timedelta(hours=hours, minutes=minutes, seconds=seconds)
    return None  # 0 = no validity period; 4-7 reserved


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SubmitPdu:
    """One SMS-SUBMIT ready for ``AT+CMGS=<tpdu_length>`` then ``hex`` and Ctrl-Z."""

    hex: str  # uppercase, including the SMSC field ("00" when the SIM's SMSC is used)
    tpdu_length: int  # octets after the SMSC field


@dataclass(frozen=True, slots=True)
class Concat:
    """Concatenation info element: part ``seq`` (1-based) of ``total`` with reference ``ref``."""

    ref: int
    total: int
    seq: int
    ref_bits: int  # 8 or 16


@dataclass(frozen=True, slots=True)
class Deliver:
    """A decoded SMS-DELIVER (a message received by the modem).

    ``text`` is the decoded text; for 8-bit data it is the octets mapped one-to-one onto
    U+0000-U+00FF (latin-1) so nothing is lost. ``data`` holds the payload after the UDH
    in code units: septet values for gsm7, raw octets for ucs2 and 8bit.

    ``problems`` names what was wrong with a message decoded with ``lenient=True`` (octets
    after the user data, user data cut short): the text is then what the octets held.
    """

    smsc: str | None
    sender: str
    text: str
    timestamp: dt.datetime
    encoding: str  # "gsm7" | "ucs2" | "8bit"
    concat: Concat | None
    pid: int
    dcs: int
    status_report_indication: bool
    more_messages: bool
    sender_toa: int = TOA_INTERNATIONAL
    data: bytes = b""
    ports: tuple[int, int] | None = None  # (destination, source) application ports
    message_class: int | None = None
    reply_path: bool = False
    problems: tuple[str, ...] = ()

    @property
    def damaged(self) -> bool:
        """True when the PDU was not as 23.040 says and the text may be incomplete."""
        return bool(self.problems)


@dataclass(frozen=True, slots=True)
class Submit:
    """A decoded SMS-SUBMIT (what a driver sends; the simulator decodes it)."""

    smsc: str | None
    recipient: str
    text: str
    encoding: str
    concat: Concat | None
    message_ref: int
    status_report_request: bool
    validity: dt.timedelta | dt.datetime | None
    recipient_toa: int = TOA_INTERNATIONAL
    pid: int = 0
    dcs: int = 0
    reject_duplicates: bool = False
    data: bytes = b""
    ports: tuple[int, int] | None = None
    message_class: int | None = None


@dataclass(frozen=True, slots=True)
class StatusReport:
    """A decoded SMS-STATUS-REPORT (``+CDS`` or stored): the fate of submit ``message_ref``.

    TP-ST 0x00-0x1F means completed (delivered), 0x20-0x3F and 0x60-0x7F temporary
    failures, 0x40-0x5F permanent failures (23.040 §9.2.3.15).
    """

    smsc: str | None
    message_ref: int
    recipient: str
    sc_timestamp: dt.datetime
    discharge_time: dt.datetime
    status: int
    delivered: bool
    recipient_toa: int = TOA_INTERNATIONAL
    more_messages: bool = False
    status_report_qualifier: bool = False  # True: report on an SMS-COMMAND, not a SUBMIT

    @property
    def permanent_failure(self) -> bool:
        """True when the SMSC gave up for good (status 0x40-0x5F)."""
        return 0x40 <= self.status <= 0x5F


# 23.040 §9.2.3.15 TP-ST, in words for the owner. The ranges decide the state: 0x00-0x1F the
# transaction completed, 0x20-0x3F a temporary error while the SC still tries, 0x40-0x5F a
# permanent error, 0x60-0x7F a temporary error after which the SC no longer tries (both
# "failed": nothing more will come). Reserved values (0x80 and up) are read as failed too.
_TP_ST: dict[int, str] = {
    0x00: "delivered",
    0x01: "forwarded, delivery not confirmed",
    0x02: "replaced by the service centre",
    0x20: "network congestion, still trying",
    0x21: "recipient busy, still trying",
    0x22: "recipient absent, still trying",
    0x23: "service rejected, still trying",
    0x24: "quality of service not available, still trying",
    0x25: "error in the recipient's phone, still trying",
    0x40: "remote procedure error",
    0x41: "incompatible destination",
    0x42: "connection rejected by the recipient",
    0x43: "unknown subscriber (not obtainable)",
    0x44: "quality of service not available",
    0x45: "no interworking available",
    0x46: "validity period expired",
    0x47: "deleted by the sender",
    0x48: "deleted by the service centre",
    0x49: "message does not exist",
    0x60: "network congestion, given up",
    0x61: "recipient busy, given up",
    0x62: "recipient absent, given up",
    0x63: "service rejected, given up",
    0x64: "quality of service not available, given up",
    0x65: "error in the recipient's phone, given up",
}


def status_meaning(status: int) -> tuple[str, str]:
    """TP-ST → (state, reason): state "delivered" (0x00-0x1F), "pending" (0x20-0x3F: the
    service centre still tries) or "failed" (0x40 and up); reason a short sentence."""
    if 0x00 <= status <= 0x1F:
        return "delivered", _TP_ST.get(status, f"delivered (status 0x{status:02X})")
    if 0x20 <= status <= 0x3F:
        return "pending", _TP_ST.get(status, f"temporary error 0x{status:02X}, still trying")
    if 0x40 <= status <= 0x5F:
        return "failed", _TP_ST.get(status, f"permanent error 0x{status:02X}")
    if 0x60 <= status <= 0x7F:
        return "failed", _TP_ST.get(status, f"temporary error 0x{status:02X}, given up")
    return "failed", f"unknown status 0x{status:02X}"


def delivery_report(report: StatusReport) -> DeliveryReport:
    """The :class:`~modem.interface.DeliveryReport` of a decoded status report."""
    state, reason = status_meaning(report.status)
    return DeliveryReport(
        reference=report.message_ref,
        recipient=report.recipient,
        state=state,
        status=report.status,
        reason=reason,
        discharged_at=report.discharge_time,
    )


# --------------------------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------------------------


def _concat_udh(ref: int, total: int, seq: int, ref16: bool) -> bytes:
    if ref16:
        return bytes([6, _CONCAT16_IEI, 4, ref >> 8, ref & 0xFF, total, seq])
    return bytes([5, _CONCAT8_IEI, 3, ref, total, seq])


def _user_data(encoding: str, payload: bytes, udh: bytes) -> bytes:
    """TP-UDL followed by TP-UD (UDH, fill bits, text) for one part."""
    if encoding == "gsm7":
        header_septets = (8 * len(udh) + 6) // 7
        fill = 7 * header_septets - 8 * len(udh)
        udl = header_septets + len(payload)
        packed = pack_septets(payload, fill)
        return bytes([udl]) + udh + packed
    return bytes([len(udh) + len(payload)]) + udh + payload


def _check_ref(concat_ref: int, ref16: bool) -> None:
    limit = 0xFFFF if ref16 else 0xFF
    if not 0 <= concat_ref <= limit:
        raise PduError(f"concatenation reference {concat_ref} does not fit {16 if ref16 else 8} bits")


def _dcs(encoding: str, flash: bool) -> int:
    # General data coding group; bit 4 says bits 0-1 carry the class (0 = flash).
    return (0x08 if encoding == "ucs2" else 0x00) | (0x10 if flash else 0x00)


def _parts_with_udh(text: str, concat_ref: int, ref16: bool) -> tuple[str, list[tuple[bytes, bytes]]]:
    _check_ref(concat_ref, ref16)
    encoding, atoms = _units(text)
    payloads = _split(encoding, atoms, ref16)
    total = len(payloads)
    if total == 1:
        return encoding, [(payloads[0], b"")]
    return encoding, [
        (payload, _concat_udh(concat_ref, total, seq, ref16)) for seq, payload in enumerate(payloads, start=1)
    ]


def encode_submit(
    number: str,
    text: str,
    *,
    smsc: str | None = None,
    status_report: bool = False,
    validity: dt.timedelta | dt.datetime | None = None,
    message_ref: int = 0,
    concat_ref: int = 0,
    ref16: bool = False,
    reject_duplicates: bool = False,
    flash: bool = False,
) -> list[SubmitPdu]:
    """SMS-SUBMIT PDUs that send ``text`` to ``number``, one per part.

    GSM-7 when :func:`is_gsm7` holds, else UCS-2. A text longer than one SMS (160 septets /
    70 UTF-16 units) becomes concatenated parts with an 8-bit (or, with ``ref16``, 16-bit)
    ``concat_ref`` UDH: 153/152 septets or 67/66 units each, never splitting an escape or a
    surrogate pair. ``validity`` None sends no TP-VP; a timedelta is a relative TP-VP
    rounded up (:func:`encode_relative_validity`), an aware datetime an absolute one. All
    parts carry ``message_ref`` (the modem normally substitutes its own and reports it in
    ``+CMGS``). ``flash`` sets message class 0.

    Raises PduError for an invalid number or SMSC, an out-of-range reference, a lone
    surrogate, or a text needing more than 255 parts.
    """
    if not 0 <= message_ref <= 0xFF:
        raise PduError(f"message reference {message_ref} does not fit one octet")
    smsc_field = encode_smsc(smsc)
    address = encode_address(number)
    if validity is None:
        vpf, vp = 0x00, b""
    elif isinstance(validity, dt.datetime):
        vpf, vp = 0x18, encode_timestamp(validity)
    else:
        vpf, vp = 0x10, bytes([encode_relative_validity(validity)])
    encoding, parts = _parts_with_udh(text, concat_ref, ref16)
    first = 0x01 | vpf | (0x04 if reject_duplicates else 0) | (0x20 if status_report else 0)
    head_tail = bytes([message_ref]) + address + bytes([0x00, _dcs(encoding, flash)]) + vp
    out: list[SubmitPdu] = []
    for payload, udh in parts:
        tpdu = bytes([first | (0x40 if udh else 0)]) + head_tail + _user_data(encoding, payload, udh)
        out.append(SubmitPdu(hex=(smsc_field + tpdu).hex().upper(), tpdu_length=len(tpdu)))
    return out


def encode_deliver(
    sender: str,
    text: str,
    *,
    timestamp: dt.datetime,
    smsc: str | None = None,
    concat_ref: int = 0,
    ref16: bool = False,
    status_report_indication: bool = False,
) -> list[str]:
    """Uppercase hex SMS-DELIVER PDUs (with SMSC field) of ``text`` from ``sender``.

    Multipart like :func:`encode_submit`. For the simulator's inbound messages; raises
    PduError like :func:`encode_submit` and :func:`encode_timestamp`.
    """
    smsc_field = encode_smsc(smsc)
    address = encode_address(sender)
    scts = encode_timestamp(timestamp)
    encoding, parts = _parts_with_udh(text, concat_ref, ref16)
    # 0x04 = TP-MMS "no more messages waiting".
    first = 0x04 | (0x20 if status_report_indication else 0)
    middle = address + bytes([0x00, _dcs(encoding, False)]) + scts
    return [
        (smsc_field + bytes([first | (0x40 if udh else 0)]) + middle + _user_data(encoding, payload, udh)).hex().upper()
        for payload, udh in parts
    ]


def encode_deliver_data(
    sender: str,
    data: bytes,
    *,
    dcs: int,
    timestamp: dt.datetime,
    smsc: str | None = None,
) -> str:
    """Uppercase hex SMS-DELIVER (with SMSC field) carrying ``data`` as-is under TP-DCS ``dcs``.

    TP-UDL counts octets, as it does for 8-bit and UCS-2 data; no UDH. For the simulator's
    messages in a data coding a phone may send and we may not decode (compressed, a broken
    UCS-2 payload). Raises PduError for more than 140 octets or an invalid address/timestamp.
    """
    if not 0 <= dcs <= 0xFF:
        raise PduError(f"TP-DCS {dcs} does not fit one octet")
    if len(data) > _UD_OCTETS:
        raise PduError(f"{len(data)} octets of user data; at most {_UD_OCTETS} fit")
    tpdu = bytes([0x04]) + encode_address(sender) + bytes([0x00, dcs]) + encode_timestamp(timestamp)
    return (encode_smsc(smsc) + tpdu + bytes([len(data)]) + data).hex().upper()


def encode_status_report(
    message_ref: int,
    recipient: str,
    *,
    sc_timestamp: dt.datetime,
    discharge_time: dt.datetime,
    status: int = 0x00,
    smsc: str | None = None,
) -> str:
    """Uppercase hex SMS-STATUS-REPORT (with SMSC field) for submit ``message_ref``.

    ``status`` is TP-ST (0x00 = delivered). No optional parameters are sent. Raises
    PduError for out-of-range values or an invalid address/timestamp.
    """
    if not 0 <= message_ref <= 0xFF:
        raise PduError(f"message reference {message_ref} does not fit one octet")
    if not 0 <= status <= 0xFF:
        raise PduError(f"status {status} does not fit one octet")
    # 0x02 = status report, 0x04 = TP-MMS "no more messages waiting".
    pdu = (
        encode_smsc(smsc)
        + bytes([0x06, message_ref])
        + encode_address(recipient)
        + encode_timestamp(sc_timestamp)
        + encode_timestamp(discharge_time)
        + bytes([status])
    )
    return pdu.hex().upper()


# --------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------


_HEX_RE = re.compile(r"[0-9A-Fa-f]*")


# Around a PDU line: spaces, quotes, NUL and the Ctrl-Z of an echoed PDU. Inside it: spaces.
_LINE_JUNK = " \t\r\n\"'\x00\x1a"


def clean_pdu_line(text: str) -> str | None:
    """The hex PDU that a modem's reply line holds, uppercase; None when it holds none.

    Real modems put junk around a PDU: quotes, spaces (also between groups of digits), NUL
    or Ctrl-Z, a final ``OK`` glued on when a line break was lost, lowercase digits. A line
    cut short can end in half an octet: that digit is dropped, and :func:`decode_pdu` with
    ``lenient=True`` reads what the rest holds. None for anything else (``OK``, ``ERROR``,
    a ``+CMGL:`` header, text, junk inside the digits, fewer than two digits). A line cut
    in the middle of an octet keeps its odd digit, as the modem sent it: the lenient decoder
    drops it.
    """
    line = text.strip(_LINE_JUNK)
    if line[-2:].upper() == "OK":  # never hex, so it cannot be the PDU's own last digits
        line = line[:-2].strip(_LINE_JUNK)
    digits = "".join(line.split())
    if not _HEX_RE.fullmatch(digits):
        return None
    return digits.upper() if len(digits) >= 2 else None


def _to_bytes(data: str | bytes) -> bytes:
    if isinstance(data, str):
        text = data.strip()
        if not _HEX_RE.fullmatch(text):
            raise PduError("PDU is not hexadecimal (only surrounding whitespace is allowed)")
        if len(text) % 2:
            raise PduError(f"hex PDU has an odd number of digits ({len(text)})")
        return bytes.fromhex(text)
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise PduError(f"PDU must be hex text or bytes, not {type(data).__name__}")


def _parse_dcs(dcs: int) -> tuple[str, int | None]:
    """``(encoding, message class or None)`` of a TP-DCS octet (23.038 §4)."""
    group = dcs >> 4
    if group <= 0x7:  # general data coding; 01xx = "marked for automatic deletion"
        if dcs & 0x20:
            raise PduError(f"compressed user data (DCS 0x{dcs:02X}) is not supported")
        alphabet = (dcs >> 2) & 0x03
        # Alphabet 11 is reserved; 23.038 says to treat it as the default alphabet.
        encoding = ("gsm7", "8bit", "ucs2", "gsm7")[alphabet]
        return encoding, (dcs & 0x03) if dcs & 0x10 else None
    if group == 0xE:  # message waiting indication, store, UCS-2
        return "ucs2", None
    if group == 0xF:  # data coding / message class
        return ("8bit" if dcs & 0x04 else "gsm7"), dcs & 0x03
    # 0xC/0xD (message waiting, GSM-7) and the reserved groups 0x8-0xB (default alphabet).
    return "gsm7", None


@dataclass(frozen=True, slots=True)
class _UserData:
    encoding: str
    text: str
    data: bytes
    concat: Concat | None
    ports: tuple[int, int] | None
    problems: tuple[str, ...] = ()


def _parse_udh(udh: bytes) -> tuple[Concat | None, tuple[int, int] | None]:
    concat: Concat | None = None
    ports: tuple[int, int] | None = None
    i = 0
    while i < len(udh):
        if i + 2 > len(udh):
            raise PduError("UDH: information element header runs past the UDH")
        iei, length = udh[i], udh[i + 1]
        body = udh[i + 2 : i + 2 + length]
        if len(body) != length:
            raise PduError(f"UDH: element 0x{iei:02X} claims {length} octets, {len(body)} left")
        i += 2 + length
        if iei in (_CONCAT8_IEI, _CONCAT16_IEI):
            want = 3 if iei == _CONCAT8_IEI else 4
            if length != want:
                raise PduError(f"UDH: concatenation element 0x{iei:02X} is {length} octets, not {want}")
            if iei == _CONCAT8_IEI:
                ref, bits = body[0], 8
            else:
                ref, bits = body[0] << 8 | body[1], 16
            total, seq = body[-2], body[-1]
            # 23.040 §9.2.3.24.1: a zero count or a sequence number beyond it makes the
            # element void, not the message; a repeated element replaces the earlier one.
            concat = Concat(ref, total, seq, bits) if 1 <= seq <= total else None
        elif iei in (_PORTS8_IEI, _PORTS16_IEI):
            want = 2 if iei == _PORTS8_IEI else 4
            if length != want:
                raise PduError(f"UDH: port element 0x{iei:02X} is {length} octets, not {want}")
            half = want // 2
            ports = (int.from_bytes(body[:half], "big"), int.from_bytes(body[half:], "big"))
        # Other elements (formatting, national language shifts, ...) do not change the text
        # we can produce, so they are skipped.
    return concat, ports


def _read_user_data(reader: _Reader, dcs: int, udhi: bool, *, lenient: bool = False) -> _UserData:
    """The user data after TP-UDL, which must fill the rest of the PDU exactly.

    ``lenient``: octets after the user data are skipped, and user data cut short is read as
    far as it goes (whole septets or UCS-2 code units), each noted in ``problems``; a UDH
    that does not fit what arrived, or no user data at all, still raises PduError.
    """
    encoding, _ = _parse_dcs(dcs)
    udl = reader.octet("TP-UDL")
    if encoding == "gsm7":
        if udl > _UD_SEPTETS:
            raise PduError(f"TP-UDL {udl} exceeds 160 septets")
        nbytes = (7 * udl + 7) // 8
    else:
        if udl > _UD_OCTETS:
            raise PduError(f"TP-UDL {udl} exceeds 140 octets")
        nbytes = udl
    have = reader.remaining()
    problems: list[str] = []
    if have != nbytes and not (lenient and have > 0):
        raise PduError(f"TP-UDL {udl} means {nbytes} octet(s) of user data, but {have} follow")
    if have > nbytes:
        problems.append(f"{have - nbytes} octet(s) after the user data ignored")
    elif have < nbytes:
        problems.append(f"user data {nbytes - have} octet(s) short of TP-UDL {udl}")
        if encoding == "gsm7":
            udl = 8 * have // 7  # the whole septets that arrived
        nbytes = have
    ud = reader.take(nbytes, "TP-UD")
    reader.pos = len(reader.data)  # anything left was noted above (lenient) or raised
    concat: Concat | None = None
    ports: tuple[int, int] | None = None
    header = 0
    if udhi:
        if not ud:
            raise PduError("UDH indicated but the user data is empty")
        header = 1 + ud[0]
        if header > len(ud):
            raise PduError(f"UDH length {ud[0]} runs past the {len(ud)}-octet user data")
        concat, ports = _parse_udh(ud[1:header])
    if encoding == "gsm7":
        header_septets = (8 * header + 6) // 7
        if header_septets > udl:
            raise PduError(f"a {header}-octet UDH does not fit TP-UDL {udl} septets")
        septets = unpack_septets(ud, udl)[header_septets:]
        return _UserData("gsm7", decode_gsm7(septets), septets, concat, ports, tuple(problems))
    payload = ud[header:]
    if encoding == "ucs2":
        if len(payload) % 2:
            if not lenient:
                raise PduError(f"UCS-2 user data has an odd number of octets ({len(payload)})")
            problems.append("half a UCS-2 character at the end ignored")
            payload = payload[:-1]
        # "replace": a lone surrogate (e.g. a pair a sender split across parts) must not
        # leak into str, where it would break every later UTF-8 encode.
        text = payload.decode("utf-16-be", "replace")
        return _UserData("ucs2", text, payload, concat, ports, tuple(problems))
    return _UserData("8bit", payload.decode("latin-1"), payload, concat, ports, tuple(problems))


def decode_pdu(data: str | bytes, *, smsc: bool = True, lenient: bool = False) -> Deliver | Submit | StatusReport:
    """Decode an SMS-DELIVER, SMS-SUBMIT or SMS-STATUS-REPORT.

    ``data`` is hex text (either case, surrounding whitespace allowed) or raw octets; pass
    ``smsc=False`` when it has no SMSC field (some modems' ``+CMGR``/``+CDS`` replies). The
    user data must be exactly as long as TP-UDL says, unless ``lenient``: then an
    SMS-DELIVER with octets after its user data, or user data cut short (an odd UCS-2 octet
    too), is decoded as far as the octets go and comes back with ``problems`` set, as
    gammu's decoder salvages it (it says nothing). Optional parameters after a status
    report's TP-ST are ignored.

    Raises PduError, and nothing else, for every malformed input: odd length, non-hex,
    truncation, lengths that lie, a bad UDH, compressed data, a reserved message type.
    """
    half = lenient and isinstance(data, str) and len(data.strip()) % 2 == 1
    if half:  # a line cut in the middle of an octet: read what the whole octets hold
        data = str(data).strip()[:-1]
    reader = _Reader(_to_bytes(data))
    if not reader.remaining():
        raise PduError("empty PDU")
    sc = _read_smsc(reader) if smsc else None
    first = reader.octet("first octet")
    mti = first & 0x03
    if mti == 0x00:
        deliver = _decode_deliver(reader, first, sc, lenient)
        if half:
            deliver = replace(deliver, problems=("half an octet at the end dropped", *deliver.problems))
        return deliver
    if mti == 0x01:
        return _decode_submit(reader, first, sc)
    if mti == 0x02:
        return _decode_status_report(reader, first, sc)
    raise PduError("reserved message type indicator 0b11")


def _decode_deliver(reader: _Reader, first: int, sc: str | None, lenient: bool) -> Deliver:
    sender, toa = _read_address(reader, "originating address")
    pid = reader.octet("TP-PID")
    dcs = reader.octet("TP-DCS")
    timestamp = decode_timestamp(reader.take(7, "TP-SCTS"))
    ud = _read_user_data(reader, dcs, bool(first & 0x40), lenient=lenient)
    return Deliver(
        smsc=sc,
        sender=sender,
        text=ud.text,
        timestamp=timestamp,
        encoding=ud.encoding,
        concat=ud.concat,
        pid=pid,
        dcs=dcs,
        status_report_indication=bool(first & 0x20),
        more_messages=not first & 0x04,
        sender_toa=toa,
        data=ud.data,
        ports=ud.ports,
        message_class=_parse_dcs(dcs)[1],
        reply_path=bool(first & 0x80),
        problems=ud.problems,
    )


def _decode_submit(reader: _Reader, first: int, sc: str | None) -> Submit:
    message_ref = reader.octet("TP-MR")
    recipient, toa = _read_address(reader, "destination address")
    pid = reader.octet("TP-PID")
    dcs = reader.octet("TP-DCS")
    vpf = (first >> 3) & 0x03
    validity: dt.timedelta | dt.datetime | None = None
    if vpf == 0b10:
        validity = decode_relative_validity(reader.octet("TP-VP"))
    elif vpf == 0b11:
        validity = decode_timestamp(reader.take(7, "TP-VP"))
    elif vpf == 0b01:
        validity = _decode_enhanced_validity(reader.take(7, "TP-VP"))
    ud = _read_user_data(reader, dcs, bool(first & 0x40))
    return Submit(
        smsc=sc,
        recipient=recipient,
        text=ud.text,
        encoding=ud.encoding,
        concat=ud.concat,
        message_ref=message_ref,
        status_report_request=bool(first & 0x20),
        validity=validity,
        recipient_toa=toa,
        pid=pid,
        dcs=dcs,
        reject_duplicates=bool(first & 0x04),
        data=ud.data,
        ports=ud.ports,
        message_class=_parse_dcs(dcs)[1],
    )


def _decode_status_report(reader: _Reader, first: int, sc: str | None) -> StatusReport:
    message_ref = reader.octet("TP-MR")
    recipient, toa = _read_address(reader, "recipient address")
    sc_timestamp = decode_timestamp(reader.take(7, "TP-SCTS"))
    discharge = decode_timestamp(reader.take(7, "TP-DT"))
    status = reader.octet("TP-ST")
    return StatusReport(
        smsc=sc,
        message_ref=message_ref,
        recipient=recipient,
        sc_timestamp=sc_timestamp,
        discharge_time=discharge,
        status=status,
        delivered=status <= 0x1F,
        recipient_toa=toa,
        more_messages=not first & 0x04,
        status_report_qualifier=bool(first & 0x20),
    )


# --------------------------------------------------------------------------------------------
# Reassembly
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Unreadable:
    """What can still be read of a PDU :func:`decode_pdu` rejects (a data coding we do not
    decode, user data whose length lies, a truncated header): enough to hand it on raw."""

    sender: str | None  # None: not even the originating address of an SMS-DELIVER was readable
    timestamp: dt.datetime | None
    dcs: int | None
    data: bytes  # the octets after the last header field read (the user data, header intact)


def salvage_deliver(data: str | bytes, *, smsc: bool = True) -> Unreadable:
    """Read the SMS-DELIVER header fields of ``data`` as far as they go; never raises.

    For a message :func:`decode_pdu` rejected: the gateway still stores it (raw) and the
    modem deletes it, rather than keeping a slot the SIM needs for the next command.
    """
    try:
        raw = _to_bytes(data)
    except PduError:
        return Unreadable(None, None, None, b"")
    reader = _Reader(raw)
    sender: str | None = None
    timestamp: dt.datetime | None = None
    dcs: int | None = None
    try:
        if smsc:
            _read_smsc(reader)
        if reader.octet("first octet") & 0x03 != 0x00:
            return Unreadable(None, None, None, raw[reader.pos :])  # not a DELIVER
        sender, _ = _read_address(reader, "originating address")
        reader.octet("TP-PID")
        dcs = reader.octet("TP-DCS")
        timestamp = decode_timestamp(reader.take(7, "TP-SCTS"))
        reader.octet("TP-UDL")
    except PduError:
        pass
    return Unreadable(sender, timestamp, dcs, raw[reader.pos :])


def unreadable_text(message: Unreadable, excerpt: int = 24) -> str:
    """The text a raw message is stored with: ``[undecodable SMS, DCS 0x24: 0A1B2C...]``,
    the first ``excerpt`` octets in hex (GSM-7 only, so it can be quoted in a reply)."""
    dcs = "?" if message.dcs is None else f"0x{message.dcs:02X}"
    head = message.data[:excerpt].hex().upper()
    more = "..." if len(message.data) > excerpt else ""
    return f"[undecodable SMS, DCS {dcs}: {head}{more}]"


MISSING_PART = "[...]"


@dataclass
class _Pending:
    first_seen: float
    parts: dict[int, Deliver]
    storage: set[int] = field(default_factory=set)


@dataclass(frozen=True)
class Reassembled:
    """One message out of the :class:`Reassembler`, with where its parts were kept."""

    message: Deliver  # concat=None; a missing part shows as ``[...]``
    parts: int  # the total when complete, else how many different parts arrived
    complete: bool
    storage: tuple[int, ...]  # every storage slot given with its parts (duplicates too), sorted


def _join(mapping: dict[int, Deliver], total: int) -> Deliver:
    """One Deliver from the parts in ``mapping`` (seq → part), ``[...]`` for missing ones."""
    present = [mapping[i] for i in sorted(mapping)]
    base = mapping.get(1, present[0])
    encodings = {p.encoding for p in present}
    if len(mapping) == total and len(encodings) == 1:
        # Join the code units and decode once, so an escape or surrogate pair that a
        # careless sender split across two parts still comes out whole.
        data = b"".join(p.data for p in present)
        encoding = present[0].encoding
        if encoding == "gsm7":
            text = decode_gsm7(data)
        elif encoding == "ucs2" and len(data) % 2 == 0:
            text = data.decode("utf-16-be", "replace")
        elif encoding == "8bit":
            text = data.decode("latin-1")
        else:
            text = "".join(p.text for p in present)
        return replace(base, text=text, data=data, concat=None, problems=_problems(present))
    pieces = [mapping[i].text if i in mapping else MISSING_PART for i in range(1, total + 1)]
    data = b"".join(p.data for p in present) if len(encodings) == 1 else b""
    return replace(base, text="".join(pieces), data=data, concat=None, problems=_problems(present))


def _problems(parts: Sequence[Deliver]) -> tuple[str, ...]:
    """Every part's problems, each named once, prefixed with its part number."""
    out: dict[str, None] = {}
    for part in parts:
        seq = part.concat.seq if part.concat else 1
        for problem in part.problems:
            out.setdefault(f"part {seq}: {problem}")
    return tuple(out)


class Reassembler:
    """Joins concatenated parts: out of order, duplicates ignored, incomplete sets expire.

    Parts are grouped by ``(sender, ref, total)``. Pure: time is whatever float the caller
    passes as ``now`` (e.g. ``time.monotonic()``). At most ``max_pending`` incomplete sets
    are buffered; beyond that the oldest is pushed out and handed back, partial, by the
    next :meth:`expire`, so a flood of stray parts cannot grow memory without bound.

    A caller that keeps parts somewhere (a modem's SIM storage) passes their slots to
    :meth:`put`; each message comes back from :meth:`put` or :meth:`take_expired` with the
    slots of all its parts, and :meth:`holds` says whether a slot still waits here. This is
    the one record of which stored parts are buffered: a set pushed out or expired takes its
    slots with it.
    """

    def __init__(self, timeout: float = 3600.0, *, max_pending: int = 256) -> None:
        if max_pending < 1:
            raise ValueError("max_pending must be at least 1")
        self.timeout = timeout
        self.max_pending = max_pending
        self._pending: dict[tuple[str, int, int], _Pending] = {}
        self._evicted: list[Reassembled] = []

    def __len__(self) -> int:
        """Number of incomplete messages buffered."""
        return len(self._pending)

    def add(self, part: Deliver, now: float) -> Deliver | None:
        """Buffer ``part``; return the whole message (``concat=None``) once complete.

        A message without concatenation (or of one part) comes back at once. A duplicate
        part (same sequence number) is ignored: the first copy wins.
        """
        whole = self.put(part, now)
        return None if whole is None else whole.message

    def put(self, part: Deliver, now: float, storage: Iterable[int] = ()) -> Reassembled | None:
        """:meth:`add`, remembering the storage slots ``part`` was kept in: the whole message
        comes back with the slots of every part (a duplicate's too, so it can be deleted)."""
        concat = part.concat
        if concat is None or concat.total <= 1:
            return Reassembled(replace(part, concat=None), 1, True, tuple(sorted(set(storage))))
        key = (part.sender, concat.ref, concat.total)
        pending = self._pending.get(key)
        if pending is None:
            if len(self._pending) >= self.max_pending:
                oldest = min(self._pending, key=lambda k: self._pending[k].first_seen)
                self._evicted.append(self._partial(oldest))
            pending = self._pending[key] = _Pending(now, {})
        pending.parts.setdefault(concat.seq, part)
        pending.storage.update(storage)
        if len(pending.parts) < concat.total:
            return None
        del self._pending[key]
        return Reassembled(_join(pending.parts, concat.total), concat.total, True, tuple(sorted(pending.storage)))

    def expire(self, now: float) -> list[Deliver]:
        """Remove and return incomplete messages whose first part came more than ``timeout``
        ago (and any pushed out by ``max_pending``), oldest first, each with the parts that
        arrived joined and every missing part shown as ``[...]``.
        """
        return [r.message for r in self.take_expired(now)]

    def take_expired(self, now: float) -> list[Reassembled]:
        """:meth:`expire`, each message with its storage slots (``complete`` False)."""
        old = [k for k, p in self._pending.items() if now - p.first_seen > self.timeout]
        old.sort(key=lambda k: self._pending[k].first_seen)
        out, self._evicted = self._evicted, []
        out.extend(self._partial(k) for k in old)
        return out

    def holds(self, slot: int) -> bool:
        """True while a part kept in storage ``slot`` waits here: in an incomplete set, or in
        one pushed out that :meth:`take_expired` has not handed back yet."""
        return any(slot in p.storage for p in self._pending.values()) or any(slot in r.storage for r in self._evicted)

    def slots(self) -> set[int]:
        """Every storage slot :meth:`holds`."""
        out = {slot for p in self._pending.values() for slot in p.storage}
        return out.union(*(r.storage for r in self._evicted))

    def _partial(self, key: tuple[str, int, int]) -> Reassembled:
        pending = self._pending.pop(key)
        return Reassembled(_join(pending.parts, key[2]), len(pending.parts), False, tuple(sorted(pending.storage)))
