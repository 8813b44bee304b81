"""Make (or check) damaged SMS-DELIVER vectors: PDUs real modems hand over broken.

    .venv/bin/python -m tests.vectors.make_damaged          # rewrite pdu_damaged.json
    .venv/bin/python -m tests.vectors.make_damaged --check  # exit 1 if it would change

python-gammu is the oracle; ``modem/`` is never imported here. Each case starts from gammu's
own SMS-DELIVER octets (``gammu.EncodePDU``, as in make_vectors.py), is damaged here by hand
(octets appended after the user data, octets cut off its end, the hex line wrapped in junk a
modem sent: quotes, spaces, lowercase, a glued ``OK``, a last half octet), and is decoded by
``gammu.DecodePDU`` in a child process. ``gammu`` holds what gammu salvaged: the text (hex
for 8-bit data) and the sender. ``pdu`` is the hex gammu was given; ``line`` (when present)
is the junky reply line that holds it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gammu

from tests.vectors.make_vectors import dump, gammu_decode, gammu_delivers

HERE = Path(__file__).resolve().parent
DAMAGED_FILE = HERE / "pdu_damaged.json"
SENDER = "+15557654321"


def _cases() -> list[dict[str, Any]]:
    ((gsm7, _),) = gammu_delivers(SENDER, "Server A is DOWN since 12:00")
    ((ucs2, _),) = gammu_delivers(SENDER, "Сервер A не отвечает", unicode=True)
    ((data8, _),) = gammu_delivers(SENDER, bytes(range(0x30, 0x40)))
    part1 = gammu_delivers(SENDER, "Server A is DOWN. " * 12, ref=0x42)[0][0]
    h, u, d, p = gsm7.hex().upper(), ucs2.hex().upper(), data8.hex().upper(), part1.hex().upper()
    cases: list[dict[str, Any]] = [
        {"id": "gsm7-extra-1", "damage": "1 octet after the user data", "pdu": h + "00"},
        {"id": "gsm7-extra-3", "damage": "3 octets after the user data", "pdu": h + "AABBCC"},
        {"id": "gsm7-short-1", "damage": "user data 1 octet short", "pdu": h[:-2]},
        {"id": "gsm7-short-4", "damage": "user data 4 octets short", "pdu": h[:-8]},
        {"id": "ucs2-extra-2", "damage": "2 octets after the user data", "pdu": u + "0041"},
        {"id": "ucs2-short-1", "damage": "user data 1 octet short (half a character)", "pdu": u[:-2]},
        {"id": "ucs2-short-4", "damage": "user data 4 octets short", "pdu": u[:-8]},
        {"id": "8bit-extra-1", "damage": "1 octet after the user data", "pdu": d + "FF"},
        {"id": "8bit-short-3", "damage": "user data 3 octets short", "pdu": d[:-6]},
        {"id": "concat-short-5", "damage": "part 1 of 2 (8-bit reference 0x42), 5 octets short", "pdu": p[:-10]},
        {"id": "line-quoted", "damage": "a stray quote after the PDU", "pdu": h, "line": h + '"'},
        {"id": "line-lowercase-ok", "damage": "lowercase, OK glued on", "pdu": h, "line": h.lower() + "OK"},
        {"id": "line-spaces", "damage": "spaces around and inside", "pdu": h, "line": f"  {h[:20]} {h[20:]} \r"},
        {"id": "line-half-octet", "damage": "line cut in the middle of an octet", "pdu": h[:-2], "line": h[:-1]},
    ]
    for case, got in zip(cases, gammu_decode([c["pdu"] for c in cases]), strict=True):
        case["gammu"] = {"Number": got["Number"], "Text": got["Text"], "Coding": got["Coding"]}
    return cases


def build() -> str:
    versions = gammu.Version()
    return dump(
        {
            "made_with": {"python-gammu": versions[1], "libGammu": versions[0]},
            "about": "Damaged SMS-DELIVER PDUs (gammu's own octets, damaged by hand) and what "
            "gammu.DecodePDU salvaged from each: tests/vectors/make_damaged.py.",
            "cases": _cases(),
        }
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--check", action="store_true", help="regenerate in memory and compare")
    args = parser.parse_args(argv)
    text = build()
    if args.check:
        if not DAMAGED_FILE.is_file() or DAMAGED_FILE.read_text("utf-8") != text:
            print(f"out of date (regenerate): {DAMAGED_FILE.name}", file=sys.stderr)
            return 1
        return 0
    DAMAGED_FILE.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
