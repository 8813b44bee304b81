"""Status badges, as Healthchecks draws them: what a set of checks shows, and its forms.

Pure: no I/O and no clock; callers pass the checks' current statuses (``rules.status.evaluate``)
and the secrets.

- A badge shows ``up``, ``late`` or ``down``: down if any check is down; else late if any is late
  and the badge has three states (a two-state badge shows late as up); else up. New and paused
  checks count as up, as in Healthchecks.
- Forms: an SVG image (shields.io's flat look; the left part is the label, the check's name or
  the tag, the right part the status), JSON ``{"status", "total", "grace", "down"}`` (grace: how
  many are late) and shields.io's endpoint JSON.
- Keys: a check's badge key is an HMAC of the badge secret and the check's id and creation time,
  so it survives renames and new ping URLs, and a removed check's key never names a later check
  that happens to get the same row id. A tag badge's URL carries a signature, the first 8
  characters of an HMAC of the site's badge key and the tag; ``-2`` after it asks for two states.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from gateway.model import Status

SIGNATURE_LENGTH = 8
TWO_STATES = "-2"  # after a tag signature: a two-state badge (late shows as up)
ALL = "*"  # the tag that means every check
ALL_LABEL = "hbgw"  # the label of the all-checks badge (Healthchecks shows its site name)


class BadgeStatus(StrEnum):
    UP = "up"
    LATE = "late"
    DOWN = "down"


# Healthchecks' colours: shields.io's green, orange and red.
SVG_COLORS = {BadgeStatus.UP: "#4c1", BadgeStatus.LATE: "#fe7d37", BadgeStatus.DOWN: "#e05d44"}
SHIELDS_COLORS = {BadgeStatus.UP: "success", BadgeStatus.LATE: "important", BadgeStatus.DOWN: "critical"}


@dataclass(frozen=True)
class Summary:
    """What a badge shows for a set of checks: the status, and how many are late or down."""

    status: BadgeStatus
    total: int
    grace: int  # late: past the expected time, within the grace period
    down: int


def summarize(statuses: Iterable[Status], states: int = 3) -> Summary:
    """The badge of checks with these current statuses. ``states``: 3 shows ``late``, 2 does not."""
    if states not in (2, 3):
        raise ValueError(f"a badge has 2 or 3 states, not {states}")
    total = late = down = 0
    for s in statuses:
        total += 1
        if s == Status.DOWN:
            down += 1
        elif s == Status.LATE:
            late += 1
    if down:
        status = BadgeStatus.DOWN
    elif late and states == 3:
        status = BadgeStatus.LATE
    else:
        status = BadgeStatus.UP
    return Summary(status, total, late, down)


def to_json(summary: Summary) -> dict[str, object]:
    """The ``.json`` form."""
    return {"status": summary.status.value, "total": summary.total, "grace": summary.grace, "down": summary.down}


def to_shields(label: str, status: BadgeStatus) -> dict[str, object]:
    """The ``.shields`` form: a shields.io endpoint badge (https://shields.io/badges/endpoint-badge)."""
    return {"schemaVersion": 1, "label": label, "message": status.value, "color": SHIELDS_COLORS[status]}


# Advance widths in pixels of Verdana at 11px, rounded, by character; anything else counts 7.
# Good enough to size the boxes around the text the way shields.io does, without a font file.
_WIDTHS = (
    dict.fromkeys("ijl'|.,:;!", 3)
    | dict.fromkeys("frIJ-()[] ", 4)
    | {"t": 5}
    | dict.fromkeys("ceksxzFL_", 6)
    | dict.fromkeys("ACDHNUV", 8)
    | dict.fromkeys("GOQ", 9)
    | dict.fromkeys("mwM", 10)
    | {"W": 11}
)
_PADDING = 10  # 5px each side of each text


def text_width(text: str) -> int:
    """The width in pixels ``text`` takes in the badge's font (an estimate)."""
    return sum(_WIDTHS.get(ch, 7) for ch in text)


def _xml_text(text: str) -> str:
    # XML 1.0 has no place for most control characters, even escaped: show them as "?".
    clean = "".join(ch if ch >= " " or ch in "\t" else "?" for ch in text)
    return clean.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def svg(label: str, status: BadgeStatus) -> str:
    """The ``.svg`` form: ``label`` on grey, the status on its colour. ``label`` is escaped."""
    left = text_width(label) + _PADDING
    right = text_width(status.value) + _PADDING
    width = left + right
    text = _xml_text(label)
    color = SVG_COLORS[status]
    lx, rx = left / 2, left + right / 2
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="20" role="img"'
        f' aria-label="{text}: {status.value}">\n'
        f"<title>{text}: {status.value}</title>\n"
        '<linearGradient id="s" x2="0" y2="100%">'
        '<stop offset="0" stop-color="#bbb" stop-opacity=".1"/><stop offset="1" stop-opacity=".1"/>'
        "</linearGradient>\n"
        f'<mask id="r"><rect width="{width}" height="20" rx="3" fill="#fff"/></mask>\n'
        '<g mask="url(#r)">'
        f'<rect width="{left}" height="20" fill="#555"/>'
        f'<rect x="{left}" width="{right}" height="20" fill="{color}"/>'
        f'<rect width="{width}" height="20" fill="url(#s)"/>'
        "</g>\n"
        '<g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif"'
        ' text-rendering="geometricPrecision" font-size="11">\n'
        f'<text x="{lx:g}" y="15" fill="#010101" fill-opacity=".3">{text}</text>'
        f'<text x="{lx:g}" y="14">{text}</text>\n'
        f'<text x="{rx:g}" y="15" fill="#010101" fill-opacity=".3">{status.value}</text>'
        f'<text x="{rx:g}" y="14">{status.value}</text>\n'
        "</g>\n</svg>\n"
    )


def _mac(secret: str, message: str) -> str:
    digest = hmac.new(secret.encode(), message.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def check_key(secret: str, check_id: int, created: float) -> str:
    """A check's badge key (32 URL-safe characters): the same for as long as the check exists."""
    return _mac(secret, f"check:{check_id}:{created!r}")[:32]


def tag_signature(secret: str, site_key: str, tag: str) -> str:
    """The signature in a tag badge's URL (``ALL`` for every check)."""
    return _mac(secret, f"tag:{site_key}:{tag}")[:SIGNATURE_LENGTH]


def signature_states(signature: str) -> int | None:
    """How many states a signature in a URL asks for (2 with the ``-2`` suffix, else 3), or None
    when it has the wrong shape."""
    if len(signature) == SIGNATURE_LENGTH + len(TWO_STATES) and signature.endswith(TWO_STATES):
        return 2
    if len(signature) == SIGNATURE_LENGTH:
        return 3
    return None


def signature_ok(secret: str, site_key: str, tag: str, signature: str) -> bool:
    """Whether ``signature`` (with or without ``-2``) was made for ``tag``, in constant time."""
    if signature_states(signature) is None:
        return False
    ours = tag_signature(secret, site_key, tag)
    return hmac.compare_digest(ours.encode(), signature[:SIGNATURE_LENGTH].encode())
