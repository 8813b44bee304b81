"""Durations as people write them (config, command line, page, API, SMS): "90s", "15m", "2h", "1d"."""

from __future__ import annotations

import re

# Units as people type them, in config, on the command line, on the page and in an SMS.
_UNITS = {
    "s": 1,
    "sec": 1,
    "secs": 1,
    "second": 1,
    "seconds": 1,
    "m": 60,
    "min": 60,
    "mins": 60,
    "minute": 60,
    "minutes": 60,
    "h": 3600,
    "hr": 3600,
    "hrs": 3600,
    "hour": 3600,
    "hours": 3600,
    "d": 86400,
    "day": 86400,
    "days": 86400,
    "w": 604800,
    "week": 604800,
    "weeks": 604800,
}
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")
_PART = re.compile(r"(\d+(?:[.,]\d+)?)\s*([a-z]+)?")
EXAMPLES = "use e.g. 90s, 15m, 2h, 1d, 1h30m"


def parse_duration(text: str, *, unit_required: bool = True) -> float:
    """Seconds in ``text``: "90s", "15m", "1h30m", "1h30" (minutes after hours), "2 hours",
    "1.5h", "1,5 h", "2d", "1w". The one duration parser of the config file, the command line,
    the page, the JSON API's strings and the SMS commands.

    A bare number ("10") raises unless ``unit_required`` is false (then it is seconds): is
    "MUTE 2" or ``--period 10`` minutes or seconds? Raises ValueError with a message that says
    what is allowed (callers prefix the key or flag).
    """
    s = text.strip().casefold()
    if _NUMBER.fullmatch(s):
        if unit_required:
            n = text.strip()
            raise ValueError(f'"{n}" needs a unit, e.g. {n}s or {n}m')
        return float(s.replace(",", "."))
    if not s or not s[0].isdigit():
        raise ValueError(f"{text!r} is not a duration ({EXAMPLES})")
    total, pos, last_size = 0.0, 0, 0
    for m in _PART.finditer(s):
        if s[pos : m.start()].strip():
            break
        unit = m.group(2)
        if unit is None:
            if last_size != 3600 or m.end() != len(s):
                break
            size = 60  # "1h30": the minutes after hours
        elif unit in _UNITS:
            size = _UNITS[unit]
        else:
            break
        total += float(m.group(1).replace(",", ".")) * size
        last_size = size
        pos = m.end()
    if pos == 0 or s[pos:].strip():
        raise ValueError(f"{text!r} is not a duration ({EXAMPLES})")
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
    """How long a run took, for people: "0.35 s", "3.1 s", "42 s", "4 min 12 s", "1 h 5 min"."""
    seconds = max(0.0, seconds)
    if seconds < 10:
        return f"{seconds:.2g} s" if seconds < 1 else f"{seconds:.1f} s"
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        m, rest = divmod(s, 60)
        return f"{m} min {rest} s" if rest else f"{m} min"
    return humanize(s)
