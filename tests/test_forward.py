"""Inbound SMS forwarded to the owner by email (``[relay] forward_sms``): which messages, to
whom, never the canary or our own, never in a loop, retried like every email. In process, on
the clock rig (tests/support/clockrig.py)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from gateway.rules import forward
from gateway.rules import smspath as canary_rules
from gateway.runtime.channels import ChannelError
from tests.support.clockrig import EMAIL, T0, Gateway

ME = "+15551230001"  # on the allow-list (the rig's owner)
STRANGER = "+15557654321"
OWN = "+15550009999"  # the gateway's own SIM
SECURITY = {"sms_allow": [ME]}


def forwards(g: Gateway) -> list[dict[str, Any]]:
    return [r for r in g.outbox() if r["kind"] == "forward"]


@pytest.mark.parametrize(
    ("mode", "stranger", "owner_chat"),
    [
        ("off", False, False),
        ("strangers", True, False),
        ("all", True, True),
    ],
)
def test_it_forwards_what_each_mode_says(tmp_path: Path, mode: str, stranger: bool, owner_chat: bool) -> None:
    with Gateway(tmp_path, security=SECURITY, relay={"forward_sms": mode}) as g:
        g.add("web1", period=3600, grace=3600)
        g.receive(STRANGER, "Your credit is low: 1.20 EUR left.")
        g.receive(ME, "hello, are you there")
        g.receive(ME, "STATUS")
        g.dispatch()
        mailed = [t for to, t in g.email.sent if to == EMAIL]
        assert any("credit is low" in t for t in mailed) is stranger
        assert any("are you there" in t for t in mailed) is owner_chat
        assert not any("STATUS" in t for t in mailed)  # a command is never forwarded
        # the inbox stays the record, whatever was forwarded
        assert [m["from"] for m in g.inbox()] == [STRANGER, ME, ME]
        # commands still get their replies
        assert (ME, "1 new.") in g.sms.sent


def test_the_email_says_who_when_and_what(tmp_path: Path) -> None:
    with Gateway(tmp_path) as g:
        g.receive(STRANGER, "Your code is 482913.\nDo not share it.")
        g.dispatch()
        [(to, text)] = g.email.sent
        assert to == EMAIL
        [row] = forwards(g)
        assert row["channel"] == "email" and row["state"] == "sent"
        inbox_id = g.inbox()[0]["id"]
        assert text == (
            f"SMS from {STRANGER} at 2027-01-15 08:00 UTC. Forwarded by hbgw; it stays in the inbox"
            f" (#{inbox_id}).\n\nYour code is 482913.\nDo not share it."
        )


def test_a_command_with_a_mistake_gets_its_reply_not_a_forward(tmp_path: Path) -> None:
    with Gateway(tmp_path, security=SECURITY, relay={"forward_sms": "all"}) as g:
        g.add("web1", period=3600, grace=3600)
        g.receive(ME, "off wbe1")  # a command, with a name to fix
        g.receive(ME, "mute web1 forever")
        g.receive(ME, "AKC web1")  # no command: forwarded, and answered "did you mean ACK?"
        g.dispatch()
        assert [r["text"].split("\n\n")[1] for r in forwards(g)] == ["AKC web1"]
        assert len(g.sms.sent) == 3


def test_it_blanks_the_pin_in_what_it_forwards(tmp_path: Path) -> None:
    security = {"sms_allow": [ME], "sms_pin": "4321"}
    with Gateway(tmp_path, security=security, relay={"forward_sms": "all"}) as g:
        g.receive(ME, "4321 lunch at noon?")
        g.receive(ME, "no pin here")
        g.dispatch()
        texts = [r["text"] for r in forwards(g)]
        assert len(texts) == 2 and "4321" not in "".join(texts) and "[PIN] lunch at noon?" in texts[0]


def test_it_never_forwards_the_canary_or_our_own_messages(tmp_path: Path) -> None:
    with Gateway(tmp_path, modem={"own_number": OWN}, relay={"forward_sms": "all"}) as g:
        token = asyncio.run_coroutine_threadsafe(g.service.smspath.send_canary(OWN, "2027-01-15"), g.loop).result(10)
        g.receive(OWN, canary_rules.canary_text(token))  # the canary, back
        g.receive(OWN, "hbgw: UP web1")  # anything else from our own number
        g.receive(STRANGER, canary_rules.canary_text("abcdef"))  # a canary come back some other way
        g.dispatch()
        assert forwards(g) == []
        assert [m["from"] for m in g.inbox()] == [OWN, STRANGER]


def test_it_never_mails_its_own_domain(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # mail to the gateway's own SMTP domain could come back in (a relay address texts it on)
    alerts = {"email_to": ["sms@hbgw.local", EMAIL]}
    with caplog.at_level(logging.INFO), Gateway(tmp_path, alerts=alerts) as g:
        g.receive(STRANGER, "hi")
        g.dispatch()
        assert [r["to"] for r in forwards(g)] == [EMAIL]
    assert "own mail domain" in caplog.text


def test_one_sender_is_forwarded_at_most_so_often(tmp_path: Path) -> None:
    with Gateway(tmp_path) as g:
        for i in range(forward.PER_SENDER_PER_HOUR + 3):
            g.receive(STRANGER, f"auto-reply {i}")
        g.receive("+15550001111", "someone else")
        g.dispatch()
        assert len(forwards(g)) == forward.PER_SENDER_PER_HOUR + 1
        assert len(g.inbox()) == forward.PER_SENDER_PER_HOUR + 4
        g.tick(3600)
        g.receive(STRANGER, "an hour later")
        g.dispatch()
        assert any("an hour later" in t for t in g.email.texts())


def test_it_retries_like_any_email_without_relay_enabled(tmp_path: Path) -> None:
    with Gateway(tmp_path, relay={"enabled": False}) as g:
        g.email.fail_next(ChannelError("relay unreachable: ConnectionRefusedError"), 2)
        g.receive(STRANGER, "are you the plumber?")
        g.dispatch()
        [row] = forwards(g)
        assert row["state"] == "pending" and row["attempts"] == 1
        g.tick(5)
        g.tick(10)
        [row] = forwards(g)
        assert row["state"] == "sent" and "plumber" in g.email.texts()[0]
        assert g.clocks() == T0 + 15


def test_it_logs_numbers_masked_and_never_the_text(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG), Gateway(tmp_path) as g:
        g.receive(STRANGER, "secret code 918273")
        g.dispatch()
        assert len(forwards(g)) == 1
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "forwarded" in logged and "+155***21" in logged
    assert STRANGER not in logged and "918273" not in logged and EMAIL not in logged
