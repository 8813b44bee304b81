"""Email to SMS (pure): which recipient addresses of the SMTP listener ask for an SMS, and who
may send one.

Addresses at ``[smtp] domain`` (the whole address is compared case-insensitively):

- ``sms@<domain>``: the owner's numbers (``[alerts] sms_to``);
- ``sms+<number>@<domain>``: that number, written ``15551234567``, ``+15551234567`` or
  ``0015551234567``; it must be the owner's, a contact's or in ``[relay] allow_numbers``;
- ``<contact>@<domain>``: that contact's phone (``[contacts]``);
- ``<relay key>+sms@<domain>`` and ``<relay key>+sms+<number>@<domain>``: the same, authorized by
  ``[relay] key`` from any sender and any network.

Precedence. These shapes are decided *before* the heartbeat addresses (``<token>@``,
``<ping-key>+<name>@``, :mod:`gateway.intake.mail`), and only while ``[relay] enabled``: with
relaying off they are heartbeat addresses like any other (so unknown, ``550 5.1.1``). They cannot
take a heartbeat address by accident: a token is random (never ``sms`` or a contact's name), and
``<x>+sms@`` is a relay address only when ``x`` *is* the relay key; with a wrong key it stays a
ping-key address (a check called ``sms``) and gets the heartbeat reply, so the listener never
tells a guesser that the key was wrong. A contact called ``sms`` is reached as ``sms+<number>``:
``sms@`` is always the owner.

Who may relay (:func:`origin`): the address carries the relay key; or the envelope sender
(``MAIL FROM``) is listed in ``[relay] allow_from`` (an address, or its ``@domain``); or the
client's IP is in one of its networks. A null sender (``MAIL FROM:<>``, a bounce) never relays
without the key: a bounce turned into an SMS could loop. The origin is what the sender's hourly
share is counted by: ``mail <sender>``, or ``mail key`` (never the key itself).
"""

from __future__ import annotations

import hmac
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

from gateway.rules.relay import sender_allowed

OWNER_LOCAL = "sms"  # the local part that means "the owner" and marks the keyed forms
KEY_ORIGIN = "mail key"  # the origin of mail authorized by the relay key

# A number in an address: digits with an optional leading "+" (or "00"); recipients() checks E.164.
_NUMBER = re.compile(r"\+?\d{4,20}")


@dataclass(frozen=True)
class RelayAddress:
    """A recipient asking for an SMS. ``to`` is what :func:`gateway.rules.relay.recipients` takes:
    None (the owner), an E.164 number, or a contact's name; ``keyed``: the address carries the
    relay key."""

    to: str | None
    keyed: bool = False


def parse_relay_address(address: str, domain: str, *, key: str | None, contacts: Iterable[str]) -> RelayAddress | None:
    """The relay recipient ``address`` names, or None when it has none of the relay shapes (it
    may still be a heartbeat address). ``key``: ``[relay] key`` (None: no keyed forms);
    ``contacts``: the names of contacts with a phone. Only the shape is checked here; whether
    the number may be texted is :func:`gateway.rules.relay.recipients`' business."""
    local, at, dom = address.rpartition("@")
    if not at or not local or dom.lower().rstrip(".") != domain.lower():
        return None
    head, plus, rest = local.partition("+")
    keyed = False
    if plus and key is not None and head.lower() != OWNER_LOCAL:
        # <key>+sms[+<number>]: the key is compared as written (it is case-sensitive) and in
        # constant time.
        if not hmac.compare_digest(head.encode(), key.encode()):
            return None
        keyed = True
        head, plus, rest = rest.partition("+")
    if head.lower() == OWNER_LOCAL:
        if not plus:
            return RelayAddress(None, keyed)
        number = _number(rest)
        return None if number is None else RelayAddress(number, keyed)
    if keyed or plus:
        return None
    folded = local.casefold()
    for name in contacts:
        if name.casefold() == folded:
            return RelayAddress(name)
    return None


def _number(text: str) -> str | None:
    """``15551234567``, ``+15551234567``, ``0015551234567`` → ``+15551234567``."""
    if not _NUMBER.fullmatch(text):
        return None
    digits = text.lstrip("+")
    if text.startswith("+"):
        return "+" + digits
    return "+" + (digits[2:] if digits.startswith("00") else digits)


def in_networks(peer_ip: str | None, allow_from: Iterable[str]) -> bool:
    """Whether ``peer_ip`` (an IPv4 or IPv6 address, IPv4-mapped IPv6 included) is in one of the
    networks listed in ``allow_from`` (the entries without an ``@``)."""
    if not peer_ip:
        return False
    try:
        ip = ipaddress.ip_address(peer_ip.partition("%")[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for entry in allow_from:
        if "@" in entry:
            continue
        try:
            network = ipaddress.ip_network(entry.strip(), strict=False)
        except ValueError:  # the config loader refuses these; never let one open the relay
            continue
        if ip.version == network.version and ip in network:
            return True
    return False


def origin(address: RelayAddress, sender: str, peer_ip: str | None, allow_from: Iterable[str]) -> str | None:
    """Who relays (the origin the hourly share is counted by), or None when this mail may not:
    ``mail key`` for a keyed address; ``mail <sender>`` when the envelope ``sender`` or the
    client's ``peer_ip`` is allowed by ``allow_from``. A null ``sender`` relays only with the key."""
    if address.keyed:
        return KEY_ORIGIN
    sender = sender.strip().strip("<>").strip()
    if not sender:
        return None
    entries = tuple(allow_from)
    if sender_allowed(sender, peer_ip, entries, in_networks(peer_ip, entries)):
        return f"mail {sender.lower()}"
    return None
