"""Make (or check) the project's own SMS PDU and AT transcript vectors in this folder.

    .venv/bin/python -m tests.vectors.make_vectors          # rewrite pdu.json and at.json
    .venv/bin/python -m tests.vectors.make_vectors --check  # exit 1 if they would change

python-gammu (libGammu) is the oracle; ``modem/`` is never imported here, so the vectors do
not come from the code they test:

- SMS-SUBMIT parts are gammu's own wire (``gammu.EncodeSMS`` + ``gammu.EncodePDU``). The tests
  require ``modem.pdu.encode_submit`` to produce the same octets.
- SMS-DELIVER PDUs are ``gammu.EncodePDU(..., "Deliver")`` output. Where gammu cannot write a
  field (a time-zone octet other than 00, TON national, 23.040's length of an alphanumeric
  address, the concatenation reference), the octets are set here by hand from 3GPP 23.040.
  The STATUS-REPORTs (gammu cannot encode one) are assembled here by hand.
- Every PDU is then decoded by ``gammu.DecodePDU`` in a child process (it can crash, see
  ../shared/python-gammu-notes.md) and must give back the expected values stored beside it.
- The AT transcripts are played to gammu's own AT driver over a real pty
  (tests/support/at_peer.py), in a child process: gammu must list and read the stored
  messages with the expected senders and texts and fail on the error replies; the
  ``AT+CMGS`` transcript is the command and PDU gammu itself wrote.

The expected values are the inputs given to gammu, never our codec's output.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gammu

from tests.support.at_peer import PROMPT, AtPeer

HERE = Path(__file__).resolve().parent
PDU_FILE = HERE / "pdu.json"
AT_FILE = HERE / "at.json"

SMSC = "+15550000000"
#: gammu writes every SMS-DELIVER with this local time and zone octet 00; the zone is set after.
GAMMU_WALL_TIME = dt.datetime(2024, 1, 2, 3, 4, 5)
GSM7_EXTENSION = "\f^{}\\[~]|€"


# ------------------------------------------------------------------ 23.040 by hand (no modem.pdu)


def swapped_bcd(digits: str) -> bytes:
    """Semi-octets, low nibble first, F-padded (23.040 §9.1.2.3)."""
    nibbles = [int(d, 16) for d in digits] + ([0xF] if len(digits) % 2 else [])
    return bytes(nibbles[i] | nibbles[i + 1] << 4 for i in range(0, len(nibbles), 2))


def address_field(number: str) -> bytes:
    """An international (+) or unknown-type numeric TP-address: length in digits, TOA, digits."""
    digits = number.removeprefix("+")
    return bytes([len(digits), 0x91 if number.startswith("+") else 0x81]) + swapped_bcd(digits)


def smsc_field(number: str) -> bytes:
    digits = number.removeprefix("+")
    body = bytes([0x91]) + swapped_bcd(digits)
    return bytes([len(body)]) + body


def zone_octet(offset: dt.timedelta) -> int:
    """23.040 §9.2.3.11: quarter hours in BCD, sign in bit 3 of the (swapped) tens nibble."""
    quarters = int(offset.total_seconds()) // 900
    octet = swapped_bcd(f"{abs(quarters):02d}")[0]
    return octet | (0x08 if quarters < 0 else 0)


def scts(when: dt.datetime) -> bytes:
    offset = when.utcoffset()
    assert offset is not None, "aware datetimes only"
    digits = when.strftime("%y%m%d%H%M%S")
    return swapped_bcd(digits) + bytes([zone_octet(offset)])


def deliver_layout(raw: bytes) -> dict[str, int]:
    """Offsets in an SMS-DELIVER with SMSC field: OA length/TOA and the SCTS (for patching)."""
    oa = 1 + raw[0] + 1
    scts_at = oa + 2 + (raw[oa] + 1) // 2 + 2
    return {"oa_length": oa, "oa_toa": oa + 1, "scts": scts_at}


def status_report(ref: int, recipient: str, sent: dt.datetime, done: dt.datetime, status: int) -> bytes:
    # TP-MTI 10 = status report, TP-MMS (0x04) = no more messages waiting.
    return smsc_field(SMSC) + bytes([0x06, ref]) + address_field(recipient) + scts(sent) + scts(done) + bytes([status])


# ------------------------------------------------------------------ gammu, in a child process

_DECODE_CHILD = r"""
import json, sys
import gammu

def iso(value):
    return None if value is None else value.isoformat()

out = []
for hex_pdu in json.load(sys.stdin):
    d = gammu.DecodePDU(bytes.fromhex(hex_pdu), SMSC=True)
    text = d["Text"]
    out.append({
        "Type": d["Type"],
        "Number": d["Number"],
        # Oracle pitfall: a NUL plus garbage per GSM-7 extension character (cut there).
        "Text": text.hex() if isinstance(text, bytes) else text.split("\x00", 1)[0],
        "Coding": d["Coding"],
        "SMSC": d["SMSC"]["Number"],
        "UDH": {k: d["UDH"][k] for k in ("Type", "ID8bit", "ID16bit", "PartNumber", "AllParts")},
        "DateTime": iso(d["DateTime"]),
        "SMSCDateTime": iso(d["SMSCDateTime"]),
        "MessageReference": d["MessageReference"],
        "DeliveryStatus": d["DeliveryStatus"],
    })
json.dump(out, sys.stdout)
"""


def gammu_decode(pdus: Sequence[str]) -> list[dict[str, Any]]:
    """``gammu.DecodePDU`` of each hex PDU, run in a child process so a crash is a clear error."""
    done = subprocess.run(
        [sys.executable, "-c", _DECODE_CHILD],
        input=json.dumps(list(pdus)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"gammu.DecodePDU child failed ({done.returncode}): {done.stderr[-2000:]}")
    decoded: list[dict[str, Any]] = json.loads(done.stdout)
    return decoded


def set_udh_ref(message: dict[str, Any], ref: int, ref16: bool) -> None:
    """EncodeSMS picks its own reference; the UDH octets it wrote are what EncodePDU sends."""
    udh = bytearray(message["UDH"]["Text"])
    if ref16:
        assert udh[1:3] == b"\x08\x04", udh
        udh[3:5] = ref.to_bytes(2, "big")
    else:
        assert udh[1:3] == b"\x00\x03", udh
        udh[3] = ref
    message["UDH"]["Text"] = bytes(udh)


def gammu_split(text: str, *, unicode: bool, ref: int, ref16: bool) -> list[dict[str, Any]]:
    entry = "ConcatenatedTextLong16bit" if ref16 else "ConcatenatedTextLong"
    messages: list[dict[str, Any]] = gammu.EncodeSMS(
        {"Class": -1, "Unicode": unicode, "Entries": [{"ID": entry, "Buffer": text}]}
    )
    if len(messages) > 1:
        for message in messages:
            set_udh_ref(message, ref, ref16)
    return messages


# ------------------------------------------------------------------ SMS-DELIVER


def gammu_delivers(
    sender: str, text: str | bytes, *, unicode: bool = False, ref: int = 0, ref16: bool = False
) -> list[tuple[bytes, str | None]]:
    """gammu's SMS-DELIVER octets of each part, with the part's text as gammu split it."""
    if isinstance(text, bytes):
        messages: list[dict[str, Any]] = [{"Text": text, "Coding": "8bit"}]
    else:
        messages = gammu_split(text, unicode=unicode, ref=ref, ref16=ref16)
    out = []
    for message in messages:
        part_text = message["Text"] if isinstance(message["Text"], str) else None
        message.update(
            Number=sender,
            SMSC={"Location": 0, "Number": SMSC},
            Folder=1,
            Type="Deliver",
            DateTime=GAMMU_WALL_TIME,
            Class=-1,
        )
        out.append((gammu.EncodePDU(message, "Deliver"), part_text))
    return out


def deliver_vectors() -> list[dict[str, Any]]:
    """(id, note, sender, text or 8-bit data, ucs2, zone hours, concat ref, ref16, patches)."""
    specs: list[dict[str, Any]] = [
        {
            "id": "gsm7-basic",
            "note": "international sender, zone +00:00 as gammu writes it",
            "sender": "+4915112345678",
            "text": "Server A is back UP @ 14:05 (£5 = ¥ §)",
            "zone": 0.0,
        },
        {
            "id": "gsm7-extension",
            "note": "every character of the GSM-7 extension table (ESC pairs)",
            "sender": "+4915112345678",
            "text": "ext: " + GSM7_EXTENSION + " end",
            "zone": 2.0,
        },
        {
            "id": "ucs2-surrogate-pair",
            "note": "UCS-2 with surrogate pairs (emoji, skin tone)",
            "sender": "+79161234567",
            "text": "Сервер 😀 down 👍🏽",
            "ucs2": True,
            "zone": 3.0,
        },
        {
            "id": "ucs2-bmp-only",
            "note": "UCS-2, Basic Multilingual Plane only, zone -03:30",
            "sender": "+4915112345678",
            "text": "Zürich ✓ web1 â",
            "ucs2": True,
            "zone": -3.5,
        },
        {
            "id": "concat8-gsm7",
            "note": "8-bit reference 0x5C (153 septets a part), zone -05:00",
            "sender": "+14155550100",
            "text": "db1 DOWN since 03:00 UTC; disk /var full. " * 5,
            "ref": 0x5C,
            "zone": -5.0,
        },
        {
            "id": "concat16-ucs2",
            "note": "16-bit reference 0xBEEF (66 UTF-16 units a part), zone +05:45",
            "sender": "+4915112345678",
            "text": "Ж😀 " * 50,
            "ucs2": True,
            "ref": 0xBEEF,
            "ref16": True,
            "zone": 5.75,
        },
        {
            "id": "concat16-gsm7",
            "note": "16-bit reference 0x0102 (152 septets a part)",
            "sender": "+4915112345678",
            "text": "all servers up. " * 12,
            "ref": 0x0102,
            "ref16": True,
            "zone": 1.0,
        },
        {
            "id": "concat8-ucs2",
            "note": "8-bit reference 0xA5 (67 UTF-16 units a part), zone -12:00",
            "sender": "+4915112345678",
            "text": "Привет, мир! " * 7,
            "ucs2": True,
            "ref": 0xA5,
            "zone": -12.0,
        },
        {
            "id": "alnum-exact-fit",
            "note": "alphanumeric sender, 8 septets fill 14 semi-octets exactly",
            "sender": "InfoDesk",
            "text": "Your code is 1234",
            "zone": 0.0,
        },
        {
            "id": "alnum-23040-length",
            "note": "alphanumeric sender with 23.040's semi-octet count (11, set by hand: gammu writes 12)",
            "sender": "Alerts",
            "text": "hi",
            "zone": 0.0,
            "oa_length": 0x0B,
        },
        {
            "id": "alnum-gammu-length",
            "note": "alphanumeric sender as gammu writes it: the spare nibble counted (08 for 7 useful semi-octets)",
            "sender": "ACME",
            "text": "hi",
            "zone": 0.0,
        },
        {
            "id": "national-unknown-type",
            "note": "number without + : TOA 0x81 (unknown type, ISDN)",
            "sender": "01511234567",
            "text": "national",
            "zone": 0.0,
        },
        {
            "id": "national-ton",
            "note": "TOA 0xA1 (TON national, set by hand: gammu writes 0x81)",
            "sender": "0151123456",
            "text": "national TON",
            "zone": 0.0,
            "toa": 0xA1,
        },
        {
            "id": "eight-bit-data",
            "note": "8-bit data, DCS 0x04, no text",
            "sender": "+4915112345678",
            "data": "0001FEFF41",
            "zone": -8.0,
        },
    ]
    out: list[dict[str, Any]] = []
    for spec in specs:
        data = bytes.fromhex(spec["data"]) if "data" in spec else None
        raws = gammu_delivers(
            spec["sender"],
            data if data is not None else spec["text"],
            unicode=spec.get("ucs2", False),
            ref=spec.get("ref", 0),
            ref16=spec.get("ref16", False),
        )
        offset = dt.timedelta(hours=spec["zone"])
        when = GAMMU_WALL_TIME.replace(tzinfo=dt.timezone(offset))
        for seq, (raw_bytes, part_text) in enumerate(raws, start=1):
            raw = bytearray(raw_bytes)
            at = deliver_layout(bytes(raw))
            assert raw[at["scts"] : at["scts"] + 7] == scts(GAMMU_WALL_TIME.replace(tzinfo=dt.UTC))
            raw[at["scts"] + 6] = zone_octet(offset)
            if "toa" in spec:
                assert raw[at["oa_toa"]] == 0x81
                raw[at["oa_toa"]] = spec["toa"]
            if "oa_length" in spec:
                assert raw[at["oa_length"]] == spec["oa_length"] + 1  # gammu's count
                raw[at["oa_length"]] = spec["oa_length"]
            concat = None
            if len(raws) > 1:
                bits = 16 if spec.get("ref16") else 8
                concat = {"ref": spec["ref"], "total": len(raws), "seq": seq, "bits": bits}
            vector: dict[str, Any] = {
                "id": spec["id"] if len(raws) == 1 else f"{spec['id']}-{seq}",
                "note": spec["note"],
                "pdu": bytes(raw).hex().upper(),
                "smsc": SMSC,
                "sender": spec["sender"],
                "sender_toa": raw[at["oa_toa"]],
                "encoding": "8bit" if data is not None else ("ucs2" if spec.get("ucs2") else "gsm7"),
                "text": part_text,
                "data": None if data is None else data.hex().upper(),
                "timestamp": when.isoformat(),
                "concat": concat,
            }
            out.append(vector)
    for vector, got in zip(out, gammu_decode([v["pdu"] for v in out]), strict=True):
        check_deliver(vector, got)
    check_joined_texts(out, specs)
    return out


def check_deliver(vector: dict[str, Any], got: dict[str, Any]) -> None:
    coding = {"gsm7": "Default_No_Compression", "ucs2": "Unicode_No_Compression", "8bit": "8bit"}
    want = {
        "Type": "Deliver",
        "Number": vector["sender"],
        "SMSC": vector["smsc"],
        "Coding": coding[vector["encoding"]],
        "DateTime": vector["timestamp"],
    }
    assert {k: got[k] for k in want} == want, (vector["id"], got)
    if vector["data"] is not None:
        assert got["Text"].upper() == vector["data"], (vector["id"], got)
    else:
        assert got["Text"] == vector["text"], (vector["id"], got)
    concat = vector["concat"]
    udh = got["UDH"]
    if concat is None:
        assert udh["Type"] == "NoUDH", (vector["id"], udh)
    else:
        ref_key = "ID16bit" if concat["bits"] == 16 else "ID8bit"
        kind = "ConcatenatedMessages16bit" if concat["bits"] == 16 else "ConcatenatedMessages"
        seen = (udh["Type"], udh[ref_key], udh["AllParts"], udh["PartNumber"])
        assert seen == (kind, concat["ref"], concat["total"], concat["seq"]), (vector["id"], udh)


def check_joined_texts(vectors: list[dict[str, Any]], specs: list[dict[str, Any]]) -> None:
    for spec in specs:
        if "text" not in spec:
            continue
        parts = [v for v in vectors if v["id"] == spec["id"] or v["id"].startswith(spec["id"] + "-")]
        assert "".join(v["text"] for v in parts) == spec["text"], spec["id"]


# ------------------------------------------------------------------ SMS-STATUS-REPORT


def status_report_vectors() -> list[dict[str, Any]]:
    minus5 = dt.timezone(dt.timedelta(hours=-5))
    plus9 = dt.timezone(dt.timedelta(hours=9))
    specs = [
        (
            "status-delivered",
            "delivered (TP-ST 0x00)",
            0x2A,
            "+4915112345678",
            dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=minus5),
            dt.datetime(2024, 5, 6, 7, 8, 39, tzinfo=minus5),
            0x00,
        ),
        (
            "status-permanent-failure",
            "permanent failure (TP-ST 0x46, validity period expired)",
            0x07,
            "+14155550100",
            dt.datetime(2024, 12, 31, 23, 59, 50, tzinfo=plus9),
            dt.datetime(2025, 1, 1, 0, 5, 0, tzinfo=plus9),
            0x46,
        ),
        (
            "status-temporary-failure",
            "still trying (TP-ST 0x20, congestion)",
            0xFF,
            "01511234567",
            dt.datetime(2024, 2, 29, 12, 0, 0, tzinfo=dt.UTC),
            dt.datetime(2024, 2, 29, 12, 0, 0, tzinfo=dt.UTC),
            0x20,
        ),
    ]
    out: list[dict[str, Any]] = [
        {
            "id": ident,
            "note": note,
            "pdu": status_report(ref, recipient, sent, done, status).hex().upper(),
            "smsc": SMSC,
            "message_ref": ref,
            "recipient": recipient,
            "sc_timestamp": sent.isoformat(),
            "discharge_time": done.isoformat(),
            "status": status,
        }
        for ident, note, ref, recipient, sent, done, status in specs
    ]
    for vector, got in zip(out, gammu_decode([v["pdu"] for v in out]), strict=True):
        want = {
            "Type": "Status_Report",
            "Number": vector["recipient"],
            "SMSC": vector["smsc"],
            "MessageReference": vector["message_ref"],
            "DateTime": vector["sc_timestamp"],
            "SMSCDateTime": vector["discharge_time"],
            "DeliveryStatus": vector["status"],
        }
        assert {k: got[k] for k in want} == want, (vector["id"], got)
    return out


# ------------------------------------------------------------------ SMS-SUBMIT

#: gammu's SMSC "Validity" names and the relative TP-VP they stand for, in minutes.
VALIDITY_MINUTES = {"Max": 63 * 7 * 24 * 60, "1D": 24 * 60, "12H": 12 * 60}


def submit_vectors() -> list[dict[str, Any]]:
    specs: list[dict[str, Any]] = [
        {"id": "gsm7-single", "number": "+4915112345678", "text": "Server A is DOWN"},
        {"id": "gsm7-extension", "number": "+4915112345678", "text": "db1 {load} [eu-1] ~9.5 | 100€ ^ \\ x"},
        {"id": "ucs2-surrogate-pair", "number": "+14155550100", "text": "disk full 😀👍🏽", "ucs2": True},
        {"id": "national-number", "number": "01511234567", "text": "national @ £$¥ ÄÖÜ §¿¡", "validity": "1D"},
        {
            "id": "reference-and-reject-duplicates",
            "number": "+4915112345678",
            "text": "ref 7",
            "message_ref": 7,
            "reject_duplicates": True,
            "validity": "12H",
        },
        {"id": "concat8-gsm7", "number": "+4915112345678", "text": "long GSM-7 text, " * 12, "ref": 0x42},
        {
            "id": "concat16-gsm7",
            "number": "+4915112345678",
            "text": "long GSM-7 text, " * 12,
            "ref": 0x1234,
            "ref16": True,
        },
        {"id": "concat8-ucs2", "number": "+4915112345678", "text": "Ж😀" * 50, "ucs2": True, "ref": 0xA5},
        {
            "id": "concat16-ucs2",
            "number": "+79161234567",
            "text": "Сервер недоступен. " * 5,
            "ucs2": True,
            "ref": 0xBEEF,
            "ref16": True,
        },
    ]
    out: list[dict[str, Any]] = []
    every_pdu: list[str] = []
    for spec in specs:
        validity = spec.get("validity", "Max")
        messages = gammu_split(
            spec["text"], unicode=spec.get("ucs2", False), ref=spec.get("ref", 0), ref16=spec.get("ref16", False)
        )
        parts: list[dict[str, Any]] = []
        for message in messages:
            message.update(
                Number=spec["number"],
                SMSC={"Location": 0, "Number": SMSC, "Validity": validity},
                Folder=0,
                Class=-1,
                MessageReference=spec.get("message_ref", 0),
                RejectDuplicates=int(spec.get("reject_duplicates", False)),
            )
            wire: bytes = gammu.EncodePDU(message, "Submit")
            if not spec.get("ucs2") and message["UDH"]["Type"] == "NoUDH":
                # 7 spare bits: 23.038 puts CR there, gammu zeros. Pick texts that avoid it.
                septets = len(spec["text"]) + sum(ch in GSM7_EXTENSION for ch in spec["text"])
                assert (7 * septets) % 8 != 1, spec["id"]
            parts.append({"pdu": wire.hex().upper(), "tpdu_length": len(wire) - 1 - wire[0]})
        every_pdu.extend(p["pdu"] for p in parts)
        out.append(
            {
                "id": spec["id"],
                "number": spec["number"],
                "text": spec["text"],
                "smsc": SMSC,
                "validity_minutes": VALIDITY_MINUTES[validity],
                "message_ref": spec.get("message_ref", 0),
                "reject_duplicates": spec.get("reject_duplicates", False),
                "concat_ref": spec.get("ref", 0),
                "ref16": spec.get("ref16", False),
                "encoding": "ucs2" if spec.get("ucs2") else "gsm7",
                "parts": parts,
            }
        )
    decoded = iter(gammu_decode(every_pdu))
    for vector in out:
        texts = []
        for _ in vector["parts"]:
            got = next(decoded)
            assert (got["Type"], got["Number"], got["SMSC"]) == ("Submit", vector["number"], SMSC), got
            assert got["MessageReference"] == vector["message_ref"], got
            texts.append(got["Text"])
        assert "".join(texts) == vector["text"], vector["id"]
    return out


# ------------------------------------------------------------------ AT transcripts


def crlf(*lines: str) -> str:
    """Result codes and one-line answers, each framed by CR LF (V1 format)."""
    return "".join(f"\r\n{line}\r\n" for line in lines)


def info(*lines: str) -> str:
    """A multi-line information response as modems send it: lines joined by CR LF."""
    return "\r\n" + "\r\n".join(lines) + "\r\n"


def stored_pdu_length(pdu: str) -> int:
    """TPDU length, as in +CMGL/+CMGR/+CMGS: octets after the SMSC field."""
    return len(pdu) // 2 - 1 - int(pdu[:2], 16)


def at_vectors(pdus: dict[str, str], submit: dict[str, Any]) -> list[dict[str, Any]]:
    """The transcripts, then checked by gammu's AT driver (:func:`check_with_gammu_at`)."""

    def entry(index: int, stat: int, ident: str) -> dict[str, Any]:
        pdu = pdus[ident]
        return {"index": index, "stat": stat, "length": stored_pdu_length(pdu), "pdu": ident}

    def listing(entries: list[dict[str, Any]]) -> list[str]:
        lines = []
        for e in entries:
            lines += [f"+CMGL: {e['index']},{e['stat']},,{e['length']}", pdus[e["pdu"]]]
        return lines

    plain = [entry(1, 1, "gsm7-basic"), entry(2, 0, "ucs2-surrogate-pair")]
    split = [entry(3, 0, "concat8-gsm7-1"), entry(4, 0, "concat8-gsm7-2")]
    report = pdus["status-delivered"]
    urc_lines = listing(split)
    cmgr = entry(7, 1, "alnum-exact-fit")
    cmgr_report = entry(8, 0, "status-delivered")
    sent = submit["parts"][0]
    return [
        {
            "id": "cmgl-two-stored",
            "note": "PDU-mode listing, one read and one unread message",
            "exchange": [["host", "AT+CMGL=4\r"], ["modem", info(*listing(plain)) + crlf("OK")]],
            "lines": listing(plain),
            "urcs": [],
            "stored": plain,
        },
        {
            "id": "cmgl-urcs-in-the-middle",
            "note": "a new-message URC, a status report with its PDU line and a vendor URC arrive mid-listing",
            "exchange": [
                ["host", "AT+CMGL=4\r"],
                ["modem", info(*urc_lines[:2])],
                ["modem", crlf('+CMTI: "SM",5')],
                ["modem", info(f"+CDS: {stored_pdu_length(report)}", report)],
                ["modem", crlf("^RSSI: 17")],
                ["modem", info(*urc_lines[2:]) + crlf("OK")],
            ],
            "lines": urc_lines,
            "urcs": [
                {"name": "+CMTI", "args": '"SM",5', "pdu": None},
                {"name": "+CDS", "args": str(stored_pdu_length(report)), "pdu": "status-delivered"},
                {"name": "^RSSI", "args": "17", "pdu": None},
            ],
            "stored": split,
        },
        {
            "id": "cmgl-empty",
            "note": "nothing stored",
            "exchange": [["host", "AT+CMGL=4\r"], ["modem", crlf("OK")]],
            "lines": [],
            "urcs": [],
            "stored": [],
        },
        {
            "id": "cmgr-deliver",
            "note": "one stored SMS-DELIVER",
            "exchange": [
                ["host", f"AT+CMGR={cmgr['index']}\r"],
                ["modem", info(f"+CMGR: {cmgr['stat']},,{cmgr['length']}", pdus[cmgr["pdu"]]) + crlf("OK")],
            ],
            "lines": [f"+CMGR: {cmgr['stat']},,{cmgr['length']}", pdus[cmgr["pdu"]]],
            "urcs": [],
            "stored": cmgr,
        },
        {
            "id": "cmgr-status-report",
            "note": "a stored SMS-STATUS-REPORT (AT+CNMI ds=2)",
            "exchange": [
                ["host", f"AT+CMGR={cmgr_report['index']}\r"],
                ["modem", info(f"+CMGR: 0,,{cmgr_report['length']}", report) + crlf("OK")],
            ],
            "lines": [f"+CMGR: 0,,{cmgr_report['length']}", report],
            "urcs": [],
            "stored": cmgr_report,
        },
        {
            "id": "cmgr-empty-slot",
            "note": "an empty index: OK and nothing else",
            "exchange": [["host", "AT+CMGR=9\r"], ["modem", crlf("OK")]],
            "lines": [],
            "urcs": [],
            "stored": None,
        },
        {
            "id": "cmgr-cms-error",
            "note": "+CMS ERROR: 321 invalid memory index",
            "exchange": [["host", "AT+CMGR=99\r"], ["modem", crlf("+CMS ERROR: 321")]],
            "error": {"kind": "+CMS ERROR", "code": 321},
            "urcs": [],
        },
        {
            "id": "cmgs-sent",
            "note": "the command and PDU gammu's AT driver wrote for submit vector gsm7-single",
            "submit": submit["id"],
            "exchange": [
                ["host", f"AT+CMGS={sent['tpdu_length']}\r"],
                ["modem", "\r\n> "],
                ["host", sent["pdu"] + "\x1a"],
                ["modem", crlf("+CMGS: 7", "OK")],
            ],
            "lines": ["+CMGS: 7"],
            "urcs": [],
            "message_ref": 7,
        },
        {
            "id": "cmgs-cms-error-after-the-pdu",
            "note": "+CMS ERROR: 330 SMSC address unknown, after the PDU",
            "exchange": [
                ["host", f"AT+CMGS={sent['tpdu_length']}\r"],
                ["modem", "\r\n> "],
                ["host", sent["pdu"] + "\x1a"],
                ["modem", crlf("+CMS ERROR: 330")],
            ],
            "error": {"kind": "+CMS ERROR", "code": 330},
            "urcs": [],
        },
        {
            "id": "cmgs-cms-error-instead-of-the-prompt",
            "note": "+CMS ERROR: 304 invalid PDU mode parameter, no prompt",
            "exchange": [
                ["host", f"AT+CMGS={sent['tpdu_length']}\r"],
                ["modem", crlf("+CMS ERROR: 304")],
            ],
            "error": {"kind": "+CMS ERROR", "code": 304},
            "urcs": [],
        },
    ]


_AT_CHILD = r"""
import json, sys
import gammu

device, plan = sys.argv[1], json.loads(sys.argv[2])
sm = gammu.StateMachine()
sm.SetConfig(0, {"Device": device, "Connection": "at", "Model": "", "LockDevice": False})
sm.Init()

def summary(messages):
    return [[m["Location"], m["Type"], m["Number"], m["Text"] if isinstance(m["Text"], str) else m["Text"].hex()]
            for m in messages]

results = []
for step in plan:
    try:
        if step[0] == "list":
            got, location = [], None
            while True:
                try:
                    if location is None:
                        messages = sm.GetNextSMS(Start=True, Folder=0)
                    else:
                        messages = sm.GetNextSMS(Location=location, Folder=0)
                except gammu.ERR_EMPTY:
                    break
                got += summary(messages)
                location = messages[0]["Location"]
            results.append({"ok": got})
        elif step[0] == "get":
            results.append({"ok": summary(sm.GetSMS(Folder=0, Location=step[1]))})
        elif step[0] == "send":
            results.append({"ok": sm.SendSMS(step[1])})
    except gammu.GSMError as exc:
        results.append({"error": type(exc).__name__})
json.dump(results, sys.stdout)
"""


class _GammuFacingModem:
    """Answers gammu's init and storage probes plainly, and the transcripts' commands from them.

    ``AT+CPMS?`` reports as many stored messages as the next listing holds: gammu checks the
    count and otherwise falls back to ``AT+CMGR`` on every index.
    """

    def __init__(self, cases: list[dict[str, Any]]) -> None:
        self.queues: dict[str, list[dict[str, Any]]] = {}
        for case in cases:
            self.queues.setdefault(self._key(case["exchange"][0][1].rstrip("\r")), []).append(case)
        self.current: dict[str, Any] | None = None
        self.served: list[str] = []
        self.unexpected: list[str] = []
        self.lock = threading.Lock()

    @staticmethod
    def _key(command: str) -> str:
        upper = command.upper()
        return "AT+CMGS" if upper.startswith("AT+CMGS=") else upper

    @staticmethod
    def _modem_steps(case: dict[str, Any], after: int) -> list[str]:
        out = []
        for side, data in case["exchange"][after + 1 :]:
            if side == "host":
                break
            out.append(PROMPT if data == "\r\n> " else data)
        return out

    def _used(self) -> int:
        listings = self.queues.get("AT+CMGL=4") or []
        return len(listings[0]["stored"]) if listings else 2

    def respond(self, cmd: str) -> list[str]:
        upper = cmd.upper()
        with self.lock:
            queue = self.queues.get(self._key(cmd))
            if queue:
                self.current = queue.pop(0)
                self.served.append(self.current["id"])
                if self.current["exchange"][0][1] != cmd + "\r":
                    self.unexpected.append(cmd)  # e.g. another AT+CMGS length than the transcript's
                return self._modem_steps(self.current, 0)
            used = self._used()
        fixed = {
            "AT+CGMM": crlf("HBGW-VECTORS", "OK"),
            "AT+CGMI": crlf("HBGW", "OK"),
            "AT+CGMR": crlf("1.0", "OK"),
            "AT+CPMS=?": crlf('+CPMS: ("SM"),("SM"),("SM")', "OK"),
            "AT+CPMS?": crlf(f'+CPMS: "SM",{used},30,"SM",{used},30,"SM",{used},30', "OK"),
            "AT+CSCA?": crlf(f'+CSCA: "{SMSC}",145', "OK"),
        }
        if upper in fixed:
            return [fixed[upper]]
        if upper.startswith("AT+CPMS="):
            return [crlf(f"+CPMS: {used},30,{used},30,{used},30", "OK")]
        if upper.startswith(("AT+CMGR=", "AT+CMGL", "AT+CMGS", "AT+CMGD=")):
            self.unexpected.append(cmd)
            return [crlf("+CMS ERROR: 321")]
        if upper.endswith("=?"):
            return [crlf("ERROR")]
        return [crlf("OK")]

    def payload(self, cmd: str, payload: str) -> list[str]:
        assert self.current is not None
        case = self.current
        host = [i for i, (side, _) in enumerate(case["exchange"]) if side == "host"]
        assert case["exchange"][host[1]][1] == payload + "\x1a", (case["id"], payload)
        return self._modem_steps(case, host[1])


def check_with_gammu_at(cases: list[dict[str, Any]], pdus: dict[str, dict[str, Any]], submit: dict[str, Any]) -> None:
    """Play the transcripts to gammu's AT driver; it must see what the vectors say."""
    by_id = {c["id"]: c for c in cases}
    listings = [by_id["cmgl-two-stored"], by_id["cmgl-urcs-in-the-middle"], by_id["cmgl-empty"]]
    reads = [by_id[i] for i in ("cmgr-deliver", "cmgr-status-report", "cmgr-empty-slot", "cmgr-cms-error")]
    sends = [by_id[i] for i in ("cmgs-sent", "cmgs-cms-error-after-the-pdu", "cmgs-cms-error-instead-of-the-prompt")]
    message = {"Number": submit["number"], "Text": submit["text"], "SMSC": {"Location": 1}, "Validity": "Max"}
    plan: list[list[Any]] = [["list"] for _ in listings]
    plan += [["get", int(c["exchange"][0][1].split("=")[1])] for c in reads]
    plan += [["send", message] for _ in sends]
    fake = _GammuFacingModem(listings + reads + sends)
    with AtPeer(fake.respond, echo=True, on_payload=fake.payload) as peer:
        done = subprocess.run(
            [sys.executable, "-c", _AT_CHILD, peer.device, json.dumps(plan)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    if done.returncode != 0:
        raise SystemExit(f"gammu AT child failed ({done.returncode}): {done.stderr[-2000:]}")
    results = iter(json.loads(done.stdout))
    assert fake.unexpected == [], fake.unexpected[:10]
    assert fake.served == [c["id"] for c in listings + reads + sends], fake.served

    def seen(entry: dict[str, Any]) -> list[Any]:
        """What gammu must report for a stored message (for a status report, no text)."""
        vector = pdus[entry["pdu"]]
        if "recipient" in vector:
            return [entry["index"], "Status_Report", vector["recipient"]]
        return [entry["index"], "Deliver", vector["sender"], vector["text"]]

    for case in listings:
        got = next(results)
        want = [seen(e) for e in case["stored"]]
        assert "ok" in got and len(got["ok"]) == len(want), (case["id"], got)
        assert [m[: len(w)] for m, w in zip(got["ok"], want, strict=True)] == want, (case["id"], got)
        case["gammu"] = f"GetNextSMS read {len(want)} message(s) as listed" if want else "GetNextSMS: ERR_EMPTY"
    for case in reads:
        got = next(results)
        if case.get("stored"):
            want = seen(case["stored"])[1:]  # GetSMS numbers locations its own way
            assert [m[1 : 1 + len(want)] for m in got["ok"]] == [want], (case["id"], got)
            case["gammu"] = "GetSMS read it"
        else:
            assert "error" in got, (case["id"], got)
            case["gammu"] = f"GetSMS raised {got['error']}"
    for case in sends:
        got = next(results)
        if "error" in case:
            assert "error" in got, (case["id"], got)
            case["gammu"] = f"SendSMS raised {got['error']}"
        else:
            assert got == {"ok": case["message_ref"]}, (case["id"], got)
            case["gammu"] = f"SendSMS wrote this exchange and returned {case['message_ref']}"
    assert next(results, None) is None


# ------------------------------------------------------------------ main


def build() -> dict[Path, str]:
    versions = gammu.Version()
    made_by = f"tests/vectors/make_vectors.py with python-gammu {versions[1]} / libGammu {versions[0]} as the oracle"
    delivers = deliver_vectors()
    reports = status_report_vectors()
    submits = submit_vectors()
    made_with = {"python-gammu": versions[1], "libGammu": versions[0]}
    pdu_doc = {
        "made_with": made_with,
        "about": "Project-owned SMS PDU vectors: "
        + made_by
        + ". Every PDU carries the SMSC field; timestamps are ISO 8601 with the PDU's own zone.",
        "deliver": delivers,
        "status_report": reports,
        "submit": submits,
    }
    vectors: dict[str, dict[str, Any]] = {v["id"]: v for v in delivers + reports}
    gsm7_single = next(s for s in submits if s["id"] == "gsm7-single")
    cases = at_vectors({k: v["pdu"] for k, v in vectors.items()}, gsm7_single)
    check_with_gammu_at(cases, vectors, gsm7_single)
    at_doc = {
        "made_with": made_with,
        "about": "Project-owned AT transcripts: "
        + made_by
        + ' (replayed to its AT driver over a pty; "gammu" says what it made of each). '
        "exchange: what the host writes and the modem answers, in order (the modem's echo left "
        "out); a pdu or stored.pdu names a vector in pdu.json.",
        "cases": cases,
    }
    return {PDU_FILE: dump(pdu_doc), AT_FILE: dump(at_doc)}


def dump(doc: dict[str, Any]) -> str:
    return json.dumps(doc, ensure_ascii=False, indent=1) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--check", action="store_true", help="regenerate in memory and compare")
    args = parser.parse_args(argv)
    files = build()
    if args.check:
        stale = [path.name for path, text in files.items() if not path.is_file() or path.read_text("utf-8") != text]
        if stale:
            print(f"out of date (regenerate): {', '.join(stale)}", file=sys.stderr)
            return 1
        return 0
    for path, text in files.items():
        path.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
