"""Durations as people write them in config and on the command line: "90s", "15m", "2h", "1d"."""

from __future__ import annotations

import re

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")


def parse_duration(text: str) -> float:
    """Seconds in ``text`` ("90s", "15m", "1h30m", "2d", or a bare number of seconds).

    Raises ValueError with a message that says what is allowed.
    """
    s = text.strip().lower()
    if re.fullmatch(r"\d+(?:\.\d+)?", s):
        return float(s)
    pos, total = 0, 0.0
    for m in _PART.finditer(s):
        if m.start() != pos and s[pos : m.start()].strip():
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos == 0 or s[pos:].strip():
        raise ValueError(f"{text!r} is not a duration (use e.g. 90s, 15m, 2h, 1d, 1h30m)")
    return total


def format_duration(seconds: float) -> str:
    """The shortest exact form: 900 → "15m", 5400 → "1h30m", 0.5 → "0.5s"."""
    if seconds < 0:
        return "-" + format_duration(-seconds)
    if seconds != int(seconds):
        return f"{seconds:g}s"
    rest, out = int(seconds), []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            out.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(out) or "0s"


def humanize(seconds: float) -> str:
    """Rounded for people: "45 s", "32 min", "3 h 5 min", "2 d 4 h"."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < 86400:
        h, m = divmod(s // 60, 60)
        return f"{h} h {m} min" if m else f"{h} h"
    d, h = divmod(s // 3600, 24)
    return f"{d} d {h} h" if h else f"{d} d"


def run_time(seconds: float) -> str:
    """How long a job ran, to the precision people compare runs by: "0.4 s", "12.3 s",
    "4 min 12 s", then as :func:`humanize` from an hour on."""
    s = max(0.0, seconds)
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        m, rest = divmod(int(s), 60)
        return f"{m} min {rest} s" if rest else f"{m} min"
    return humanize(s)
