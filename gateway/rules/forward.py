"""Inbound SMS forwarded to the owner by email (``[relay] forward_sms``). Pure.

The SIM receives more than commands: the carrier's "credit low", one-time codes, a stranger's
"who is this?". With ``forward_sms = "strangers"`` (the default) every SMS from a number not on
``[alerts] sms_allow`` is mailed to ``[alerts] email_to``; with ``"all"`` so is an allow-listed
phone's message whose first word is no command ("hello", "AKC web1": its sender gets the
"unknown command" reply as well), while a command, even one with a wrong check name or
duration, is not; ``"off"`` forwards nothing. The inbox row stays the
record; the email is an outbox row of kind "forward" (retried like every email).

Never forwarded: the daily canary and anything from the gateway's own number (our replies,
our relayed texts, our tests coming back), which would otherwise start a loop. Never mailed to
an address on the gateway's own SMTP domain either: a mail there could come back in (a
heartbeat address, a relay address that texts it on).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence

from gateway.rules import commands as cmds
from gateway.rules.settings import Settings

PER_SENDER_PER_HOUR = 10  # forwards per sender: a phone stuck in an auto-reply loop floods no one


def wanted(
    mode: str,
    *,
    allowed: bool,
    parsed: cmds.Command | cmds.ParseError | cmds.PinRejected | None,
    canary: bool,
    ours: bool,
) -> bool:
    """Whether an inbound SMS is forwarded: ``allowed``, its sender is on the allow-list;
    ``parsed``, what the command parser made of it (only needed for an allowed sender in
    ``"all"`` mode); ``canary``, it carries a canary token; ``ours``, it came from the
    gateway's own number."""
    if mode not in ("strangers", "all") or canary or ours:
        return False
    if not allowed:
        return True
    if mode != "all":
        return False
    if isinstance(parsed, cmds.PinRejected):
        return True  # no command without the PIN: a message like any other
    # "hello, are you there" is no command ("did you mean HELP?" says the parser, which cannot
    # tell a typo from a chat); "OFF wbe1" is one, with a check name to fix
    return isinstance(parsed, cmds.ParseError) and parsed.code == "unknown-command"


def recipients(email_to: Sequence[str], own_domain: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(addresses to mail, addresses left out): those on ``own_domain`` (the gateway's SMTP
    domain) are left out, since mail to them could come back in."""
    suffix = "@" + own_domain.lower()
    keep = tuple(a for a in email_to if not a.lower().endswith(suffix))
    return keep, tuple(a for a in email_to if a not in keep)


def text(sender: str, received: float, body: str, inbox_id: int, s: Settings) -> str:
    """The email: who sent it and when (the subject line), then the message as it came. A
    leading PIN is blanked (an allow-listed sender's "4321 hello" must not mail the PIN)."""
    when = dt.datetime.fromtimestamp(received, s.zone).strftime("%Y-%m-%d %H:%M %Z")
    if s.sms_pin:
        body = re.sub(rf"^\s*{re.escape(s.sms_pin)}\b", "[PIN]", body)
    return f"SMS from {sender} at {when}. Forwarded by hbgw; it stays in the inbox (#{inbox_id}).\n\n{body}"
