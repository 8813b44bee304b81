"""The box as the house's SMS gateway (pure): what a relayed message says, to whom it may go,
and whether a sender still has room in its share of the SMS budget.

A *relayed* message is one that something else in the house asked the gateway to send (a NAS's
email, Alertmanager's webhook, a script's API call), as opposed to our own alerts. It is always
sent as its own SMS (never merged with alerts), after our alerts, and within a share of the
hourly SMS budget, so a flood from one sender can never starve the alerts about our own checks.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from gateway.errors import ValidationError
from gateway.rules.settings import E164
from modem.pdu import count_parts, is_gsm7

MAX_PARTS = 10  # a hard cap on what [relay] max_parts may be
ELLIPSIS = "…"  # not GSM-7: a cut GSM-7 text ends in "..." instead
# Characters people's tools send that GSM-7 lacks, and their nearest GSM-7 spelling.
_FOLD = {
    "\u2018": "'",
    "\u2019": "'",
    "\u201a": "'",
    "\u201c": '"',
    "\u201d": '"',
    "\u201e": '"',
    "\u2013": "-",
    "\u2014": "-",
    "\u2212": "-",
    "\u2026": "...",
    "\u00a0": " ",
    "\u2022": "*",
    "\u2192": "->",
    "\u2190": "<-",
    "\u2264": "<=",
    "\u2265": ">=",
    "\u00b0": " deg",
    "\t": " ",
}


@dataclass(frozen=True)
class RelayRules:
    """``[relay]`` in the config file."""

    enabled: bool = False
    max_parts: int = 1  # SMS parts a relayed message may use; longer texts are cut
    unicode: str = "ucs2"  # "ucs2": send other scripts as they are; "transliterate": fold to GSM-7
    share: float = 0.5  # of [alerts] max_sms_per_hour that relayed messages may use
    per_sender_per_hour: int = 10  # relayed SMS one sender (address, network or API key) may queue
    allow_from: tuple[str, ...] = ()  # mail senders (addresses, @domains) and networks allowed to relay
    key: str | None = None  # a secret that authorizes mail to <key>+sms@domain from anywhere
    forward_sms: str = "strangers"  # "off" | "strangers" | "all": inbound SMS forwarded by email
    allow_numbers: tuple[str, ...] = ()  # numbers relayed SMS may go to besides the owner's and contacts'


def fold_gsm7(text: str) -> str:
    """``text`` with what GSM-7 lacks spelled in GSM-7 where a spelling exists: typographic
    quotes and dashes, accents dropped from letters GSM-7 does not have (GSM-7's own "é", "ü"
    and friends stay). Characters without one (other scripts, emoji) are left as they are."""
    out = []
    for ch in text:
        if is_gsm7(ch):
            out.append(ch)
            continue
        if ch in _FOLD:
            out.append(_FOLD[ch])
            continue
        base = unicodedata.normalize("NFKD", ch).encode("ascii", "ignore").decode("ascii")
        out.append(base if base and is_gsm7(base) else ch)
    return "".join(out)


def compose(subject: str, body: str) -> str:
    """The text of a relayed message from an email or a webhook: the subject, then the body's
    lines without blank runs, quoted replies or a signature."""
    lines: list[str] = []
    for raw in body.splitlines():
        line = raw.rstrip()
        if line == "--":  # "-- ", the signature delimiter: the rest is the signature
            break
        if line.startswith(">"):
            continue
        if not line.strip() and (not lines or not lines[-1]):
            continue
        lines.append(" ".join(line.split()))
    text = "\n".join(lines).strip()
    subject = " ".join(subject.split())
    if subject and text:
        return f"{subject}\n{text}"
    return subject or text


def fit(text: str, max_parts: int, unicode_mode: str) -> str:
    """``text`` as it will be sent: folded to GSM-7 where the text allows (or transliterated,
    when ``unicode_mode`` is "transliterate"), then cut to ``max_parts`` SMS parts with "…"
    (or "..." in GSM-7) at the end. Never empty: an empty text raises ValidationError."""
    text = text.strip()
    if not text:
        raise ValidationError("text", "the message is empty")
    folded = fold_gsm7(text)
    if is_gsm7(folded) or unicode_mode == "transliterate":
        text = folded if is_gsm7(folded) else "".join(ch if is_gsm7(ch) else "?" for ch in folded)
    if _parts(text) <= max_parts:
        return text
    mark = "..." if is_gsm7(text) else ELLIPSIS
    lo, hi = 0, len(text)
    while lo < hi:  # the longest prefix that fits with the mark
        mid = (lo + hi + 1) // 2
        if _parts(text[:mid].rstrip() + mark) <= max_parts:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo].rstrip() + mark


def _parts(text: str) -> int:
    return count_parts(text)[1]


def recipients(
    to: str | Iterable[str] | None,
    *,
    owner: tuple[str, ...],
    contacts: Mapping[str, str],
    allowed: Iterable[str],
    field: str = "to",
) -> tuple[str, ...]:
    """The numbers a relayed message goes to. ``to``: None or "" (the owner's SMS numbers), a
    contact's name, an E.164 number, or a list of those. A number must be the owner's, a
    contact's or in ``[relay] allow_numbers``: the gateway is never an open SMS relay. Raises
    ValidationError(``field``)."""
    wanted = [to] if to is None or isinstance(to, str) else list(to)
    if not wanted:
        raise ValidationError(field, "no recipient")
    permitted = {*owner, *contacts.values(), *allowed}
    out: list[str] = []
    for item in wanted:
        if item is None:
            item = ""
        if not isinstance(item, str):
            raise ValidationError(field, "a phone number (+E.164) or a contact's name")
        item = item.strip()
        if not item or (item == "owner" and "owner" not in contacts):
            if not owner:
                raise ValidationError(field, "no owner's number is set ([alerts] sms_to)")
            out += owner
            continue
        if item in contacts:
            out.append(contacts[item])
            continue
        number = re.sub(r"[\s()./-]", "", item)
        if number.startswith("00"):
            number = "+" + number[2:]
        if not E164.fullmatch(number):
            raise ValidationError(field, f"{item!r} is not a phone number (+E.164) or a contact's name")
        if number not in permitted:
            raise ValidationError(
                field, f"{number} may not be texted through this gateway (not the owner or a contact)"
            )
        out.append(number)
    return tuple(dict.fromkeys(out))


def sender_allowed(sender: str, peer_ip: str | None, allow_from: Iterable[str], in_networks: bool) -> bool:
    """Whether a mail ``sender`` (envelope address) from ``peer_ip`` may relay: its address or
    its domain (``@example.net``) is listed, or the peer is in a listed network
    (``in_networks``, decided by the caller from the same list)."""
    address = sender.strip().lower()
    domain = "@" + address.rpartition("@")[2] if "@" in address else None
    for entry in allow_from:
        e = entry.strip().lower()
        if e == address or (domain is not None and e == domain):
            return True
    return in_networks


def room(sent_by_sender: int, sent_relayed: int, *, budget: int, rules: RelayRules) -> str | None:
    """Why one more relayed SMS may not be queued now (None: it may): the sender's own hourly
    share, or the relayed share of the budget, is used up."""
    if sent_by_sender >= rules.per_sender_per_hour:
        return f"this sender's {rules.per_sender_per_hour} SMS per hour are used up"
    if sent_relayed >= relay_budget(budget, rules):
        return "the SMS budget for relayed messages is used up for this hour"
    return None


def relay_budget(budget: int, rules: RelayRules) -> int:
    """Relayed SMS per hour: their share of the budget, at least one when relaying is on."""
    return max(1, int(budget * rules.share)) if rules.enabled else 0
