"""Benchmark of modem.pdu: encode + decode time per message.

Run from the repository root: ``.venv/bin/python bench/pdu_codec.py [--seconds 0.5]``.
For each kind of message it times ``encode_submit`` of the whole text plus ``decode_pdu``
of every part (the path an outgoing alert and the simulator take), and prints the best of
five runs per message and per part.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

# Let `python bench/pdu_codec.py` find the package without installing it.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from modem.pdu import decode_pdu, encode_submit

MESSAGES = {
    "alert, GSM-7, 1 part": "DOWN: web-1 (https://example.org/health) missed 2 heartbeats at 03:14 UTC",
    "GSM-7 with escapes, 1 part": "[db-2] {disk} ~ 97% | load ^ 12 € \\ backup",
    "UCS-2, 1 part": "Сервер web-1 недоступен 😀",
    "GSM-7, 3 parts": "web-1 down, retrying. " * 18,
    "UCS-2 with emoji, 4 parts": "Ж😀 сервер недоступен " * 12,
    "GSM-7, 255 parts (max)": "x" * 153 * 255,
}


def per_message(text: str, budget: float) -> tuple[float, int]:
    """Best-of-5 seconds for one encode + decode of ``text``, and its part count."""
    parts = len(encode_submit("+4915112345678", text))
    loops = 1
    while True:  # grow the loop count until one run takes a measurable slice of the budget
        start = time.perf_counter()
        for _ in range(loops):
            for part in encode_submit("+4915112345678", text, smsc="+491710760000"):
                decode_pdu(part.hex)
        elapsed = time.perf_counter() - start
        if elapsed >= budget / 5 or loops >= 1 << 20:
            break
        loops *= 2
    best = elapsed
    for _ in range(4):
        start = time.perf_counter()
        for _ in range(loops):
            for part in encode_submit("+4915112345678", text, smsc="+491710760000"):
                decode_pdu(part.hex)
        best = min(best, time.perf_counter() - start)
    return best / loops, parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.5, help="time budget per message kind")
    args = parser.parse_args()
    print(f"{'message':30} {'parts':>5} {'µs/message':>12} {'µs/part':>10}")
    for name, text in MESSAGES.items():
        seconds, parts = per_message(text, args.seconds)
        print(f"{name:30} {parts:5d} {seconds * 1e6:12.1f} {seconds * 1e6 / parts:10.1f}")


if __name__ == "__main__":
    main()
