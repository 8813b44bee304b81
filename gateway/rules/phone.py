"""Phone numbers (and addresses) as the gateway handles them: normalized to E.164 for matching,
masked for logs and event rows. Pure."""

from __future__ import annotations

import re

from modem.interface import mask_number


def normalize_number(number: str, country_code: str | None) -> str:
    """A sender as E.164 where possible: ``+...`` stays, ``00...`` → ``+...``, a national
    ``0...`` gets ``+<country_code>``; anything else (alphanumeric senders) is returned as is."""
    n = re.sub(r"[\s().-]", "", number)
    if re.fullmatch(r"\+\d{6,15}", n):
        return n
    if re.fullmatch(r"00\d{6,15}", n):
        return "+" + n[2:]
    if country_code and re.fullmatch(r"0\d{5,14}", n):
        return f"+{country_code}{n[1:]}"
    if country_code and re.fullmatch(rf"{country_code}\d{{6,13}}", n):
        return "+" + n
    return number


mask = mask_number  # the project's one masker: ``+155***67``, ``ow***@example.net``
