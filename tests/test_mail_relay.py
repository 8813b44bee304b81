"""Email to SMS: which addresses ask for an SMS and who may send one (pure), then real SMTP clients
(smtplib, raw sessions, swaks) against the real listener on loopback, started on the loop of the
in-process gateway (tests/support/clockrig.py), whose dispatcher hands the SMS to a recording
channel."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import shutil
import smtplib
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from gateway.config import SmtpConfig
from gateway.intake import mailrelay
from gateway.intake.mail import NO_SUCH_ADDRESS, RECORDED, start_smtp
from gateway.intake.mailrelay import RelayAddress, in_networks, origin, parse_relay_address
from gateway.model import OutboxRow
from modem.pdu import count_parts
from tests.support.clockrig import OWNER, Gateway
from tests.support.smtp_client import RawSmtp

DOMAIN = "hb.test"
KEY = "relay-key-0123456789abcdef"
PARTNER = "+15551230002"
ALLOWED = "+15557770000"
STRANGER = "+15559990000"
RELAY: dict[str, Any] = {
    "enabled": True,
    "allow_from": ["nas@home.lan", "@ups.lan"],
    "key": KEY,
    "allow_numbers": [ALLOWED],
}
CONTACTS = {"partner": {"phone": PARTNER}, "mailonly": {"email": "m@example.net"}}


# ------------------------------------------------------------------ addresses (pure)


def parse(address: str, key: str | None = KEY) -> RelayAddress | None:
    return parse_relay_address(address, DOMAIN, key=key, contacts=("partner", "Bob_2"))


@pytest.mark.parametrize(
    ("address", "want"),
    [
        ("sms@hb.test", RelayAddress(None)),
        ("SMS@HB.Test.", RelayAddress(None)),
        ("sms+15551234567@hb.test", RelayAddress("+15551234567")),
        ("sms++15551234567@hb.test", RelayAddress("+15551234567")),
        ("sms+0015551234567@hb.test", RelayAddress("+15551234567")),
        ("partner@hb.test", RelayAddress("partner")),
        ("bob_2@hb.test", RelayAddress("Bob_2")),
        (f"{KEY}+sms@hb.test", RelayAddress(None, keyed=True)),
        (f"{KEY}+SMS+15551234567@hb.test", RelayAddress("+15551234567", keyed=True)),
    ],
)
def test_it_reads_the_relay_addresses(address: str, want: RelayAddress) -> None:
    assert parse(address) == want


@pytest.mark.parametrize(
    "address",
    [
        "sms@other.test",  # another domain
        "sms",  # no domain
        "sms+@hb.test",  # no number
        "sms+phone@hb.test",  # not a number
        "sms+12a4567@hb.test",
        "nobody@hb.test",  # not a contact
        "partner+sms@hb.test",  # a contact is no key
        f"{KEY.upper()}+sms@hb.test",  # the key is case-sensitive
        "wrong-key-0123456789abc+sms@hb.test",  # left to the heartbeat addresses (a check "sms")
        f"{KEY}+partner@hb.test",  # the keyed forms are sms and sms+<number> only
        f"{KEY}@hb.test",
        "Xk3v9tQ2mB7wLp4sZr8yNc@hb.test",  # a heartbeat token
        "ping-key-0123456789+web1@hb.test",  # a ping-key address
    ],
)
def test_anything_else_is_no_relay_address(address: str) -> None:
    assert parse(address) is None


def test_without_a_key_the_keyed_forms_are_not_relay_addresses() -> None:
    assert parse(f"{KEY}+sms@hb.test", key=None) is None
    assert parse("sms@hb.test", key=None) == RelayAddress(None)


@pytest.mark.parametrize(
    ("ip", "allow", "want"),
    [
        ("192.168.1.7", ["192.168.1.0/24"], True),
        ("::ffff:192.168.1.7", ["192.168.1.0/24"], True),
        ("192.168.2.7", ["192.168.1.0/24", "nas@home.lan"], False),
        ("fd00::5", ["fd00::/64"], True),
        ("127.0.0.1", ["@127.0.0.1"], False),  # an @domain is not a network
        (None, ["0.0.0.0/0"], False),
        ("not-an-ip", ["0.0.0.0/0"], False),
    ],
)
def test_it_knows_the_allowed_networks(ip: str | None, allow: list[str], want: bool) -> None:
    assert in_networks(ip, allow) is want


@pytest.mark.parametrize(
    ("address", "sender", "ip", "want"),
    [
        (RelayAddress(None), "NAS@home.lan", "10.0.0.1", "mail nas@home.lan"),
        (RelayAddress(None), "<upsd@ups.lan>", "10.0.0.1", "mail upsd@ups.lan"),
        (RelayAddress(None), "x@elsewhere", "192.168.1.9", "mail x@elsewhere"),
        (RelayAddress(None), "x@elsewhere", "10.0.0.1", None),
        (RelayAddress(None), "", "192.168.1.9", None),  # a bounce never relays without the key
        (RelayAddress(None, keyed=True), "", "10.0.0.1", mailrelay.KEY_ORIGIN),
        (RelayAddress(PARTNER, keyed=True), "x@elsewhere", None, "mail key"),
    ],
)
def test_it_decides_who_may_relay(address: RelayAddress, sender: str, ip: str | None, want: str | None) -> None:
    assert origin(address, sender, ip, ("nas@home.lan", "@ups.lan", "192.168.1.0/24")) == want


# ------------------------------------------------------------------ the listener


@contextmanager
def listening(tmp_path: Path, **relay: Any) -> Iterator[tuple[Gateway, tuple[str, int]]]:
    """The in-process gateway (``[relay]`` = RELAY with ``relay`` over it) with the SMTP
    listener on its loop, on a free loopback port."""
    table = {**RELAY, **relay}
    with Gateway(tmp_path / "data", relay=table, contacts=CONTACTS) as g:
        config = dataclasses.replace(g.config, smtp=SmtpConfig(listen="127.0.0.1:0", domain=DOMAIN))
        listener = asyncio.run_coroutine_threadsafe(start_smtp(g.service, config), g.loop).result(10)
        try:
            yield g, listener.address
        finally:
            asyncio.run_coroutine_threadsafe(listener.close(grace=2), g.loop).result(10)


def mail(to: str | list[str], subject: str = "UPS on battery", body: str = "Runtime 12 min\n") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "NAS <nas@home.lan>"
    msg["To"] = ", ".join([to] if isinstance(to, str) else to)
    msg["Subject"] = subject
    msg.set_content(body)
    return msg


def send(addr: tuple[str, int], msg: EmailMessage, sender: str = "nas@home.lan", to: list[str] | None = None) -> None:
    with smtplib.SMTP(*addr, timeout=10) as s:
        assert s.send_message(msg, from_addr=sender, to_addrs=to) == {}


def relayed(g: Gateway) -> list[OutboxRow]:
    return sorted((r for r in g.service.views.outbox(1000) if r.kind == "relay"), key=lambda r: r.id)


def session(addr: tuple[str, int], sender: str) -> RawSmtp:
    r = RawSmtp(*addr)
    assert r.reply()[0] == 220
    assert r.cmd("EHLO client.example")[0] == 250
    assert r.cmd(f"MAIL FROM:<{sender}>")[0] == 250
    return r


def test_it_texts_a_mail_from_an_allowed_address_to_the_owner(tmp_path: Path) -> None:
    with listening(tmp_path) as (g, addr):
        send(addr, mail(f"sms@{DOMAIN}"))
        g.dispatch()
        assert g.sms.sent == [(OWNER, "UPS on battery\nRuntime 12 min")]
        (row,) = relayed(g)
        assert (row.origin, row.state) == ("mail nas@home.lan", "sent")


def test_it_texts_numbers_and_contacts_for_a_sender_allowed_by_domain(tmp_path: Path) -> None:
    with listening(tmp_path) as (g, addr):
        rcpts = [f"sms+00{ALLOWED[1:]}@{DOMAIN}", f"Partner@{DOMAIN}", f"SMS+{OWNER}@{DOMAIN}", f"sms@{DOMAIN}"]
        send(addr, mail(rcpts, subject="Mains back"), sender="upsd@ups.lan")
        g.dispatch()
        # One SMS per number: sms@ and sms+<owner> are the same number.
        assert sorted(to for to, _ in g.sms.sent) == sorted([ALLOWED, PARTNER, OWNER])
        assert {t for _, t in g.sms.sent} == {"Mains back\nRuntime 12 min"}
        assert {r.origin for r in relayed(g)} == {"mail upsd@ups.lan"}


def test_it_lets_a_listed_network_relay_whatever_the_sender(tmp_path: Path) -> None:
    with listening(tmp_path, allow_from=["127.0.0.0/8"]) as (g, addr):
        send(addr, mail(f"sms@{DOMAIN}"), sender="backup@anything.example")
        g.dispatch()
        assert g.sms.texts() == ["UPS on battery\nRuntime 12 min"]
        assert relayed(g)[0].origin == "mail backup@anything.example"


def test_the_relay_key_lets_any_sender_relay_and_is_never_repeated(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with listening(tmp_path) as (g, addr):
        send(addr, mail(f"{KEY}+sms@{DOMAIN}"), sender="stranger@elsewhere.example")
        send(addr, mail(f"{KEY}+sms+{PARTNER}@{DOMAIN}", subject="to partner"), sender="")
        g.dispatch()
        assert g.sms.sent == [(OWNER, "UPS on battery\nRuntime 12 min"), (PARTNER, "to partner\nRuntime 12 min")]
        assert {r.origin for r in relayed(g)} == {"mail key"}
    assert KEY not in caplog.text
    assert PARTNER not in caplog.text and OWNER not in caplog.text  # numbers are masked


@pytest.mark.parametrize(
    ("relay", "sender", "rcpt", "code", "words"),
    [
        ({}, "stranger@elsewhere.example", f"sms@{DOMAIN}", 550, "5.7.1 Relaying denied"),
        ({}, "nas@home.lan.example", f"partner@{DOMAIN}", 550, "5.7.1 Relaying denied"),
        ({}, "", f"sms@{DOMAIN}", 550, "5.7.1 Relaying denied"),  # a bounce
        ({}, "nas@home.lan", f"sms+{STRANGER}@{DOMAIN}", 553, "5.1.3 +15559990000 may not be texted"),
        ({}, "nas@home.lan", f"sms+12345@{DOMAIN}", 553, "5.1.3 '+12345' is not a phone number"),
        ({}, "nas@home.lan", f"wrong-key-0123456789+sms@{DOMAIN}", 550, "5.1.1 No such heartbeat"),
        ({}, "nas@home.lan", f"mailonly@{DOMAIN}", 550, "5.1.1 No such heartbeat"),  # no phone
        ({"enabled": False}, "nas@home.lan", f"sms@{DOMAIN}", 550, "5.1.1 No such heartbeat"),
        ({"enabled": False}, "x@y.example", f"{KEY}+sms@{DOMAIN}", 550, "5.1.1 No such heartbeat"),
    ],
)
def test_it_refuses_at_rcpt_who_may_not_relay_and_whom_it_may_not_text(
    tmp_path: Path, relay: dict[str, Any], sender: str, rcpt: str, code: int, words: str
) -> None:
    with listening(tmp_path, **relay) as (g, addr), session(addr, sender) as r:
        got, text = r.cmd(f"RCPT TO:<{rcpt}>")
        assert (got, words in text) == (code, True), text
        assert KEY not in text
        assert r.cmd("DATA")[0] == 503  # no valid recipient: nothing to send
        assert relayed(g) == []


def test_a_relayed_text_is_fitted_into_one_part(tmp_path: Path) -> None:
    body = "Disk sda1 reports reallocated sectors.\n\n\n" + "SMART attribute 5 rose again. " * 20
    with listening(tmp_path) as (g, addr):
        send(addr, mail(f"sms@{DOMAIN}", subject="SMART warning", body=body))
        g.dispatch()
        ((to, text),) = g.sms.sent
    assert to == OWNER
    assert text.startswith("SMART warning\nDisk sda1 reports reallocated sectors.\n\nSMART attribute 5")
    assert text.endswith("...") and count_parts(text) == ("gsm7", 1)


def test_a_sender_over_its_share_is_told_to_retry_and_nothing_is_queued(tmp_path: Path) -> None:
    with listening(tmp_path, per_sender_per_hour=2) as (g, addr):
        send(addr, mail(f"sms@{DOMAIN}", subject="one"))
        send(addr, mail(f"sms@{DOMAIN}", subject="two"))
        with pytest.raises(smtplib.SMTPDataError) as e:
            send(addr, mail(f"sms@{DOMAIN}", subject="three"))
        assert e.value.smtp_code == 451
        reply = e.value.smtp_error
        assert reply == b"4.7.1 this sender's 2 SMS per hour are used up, try again later"
        send(addr, mail(f"sms@{DOMAIN}", subject="other"), sender="upsd@ups.lan")  # its own share
        g.dispatch()
        assert [t.split("\n")[0] for t in g.sms.texts()] == ["one", "two", "other"]
        assert len(relayed(g)) == 3


def test_a_two_number_mail_over_the_share_queues_neither(tmp_path: Path) -> None:
    with listening(tmp_path, per_sender_per_hour=1) as (g, addr):
        with pytest.raises(smtplib.SMTPDataError) as e:
            send(addr, mail([f"sms@{DOMAIN}", f"partner@{DOMAIN}"]))
        assert e.value.smtp_code == 451
        assert relayed(g) == []


def raw_mail(addr: tuple[str, int], content: bytes, rcpt: str = f"sms@{DOMAIN}") -> tuple[int, str]:
    with session(addr, "nas@home.lan") as r:
        assert r.cmd(f"RCPT TO:<{rcpt}>")[0] == 250
        assert r.cmd("DATA")[0] == 354
        r.send(content.replace(b"\n", b"\r\n") + b"\r\n.\r\n")
        return r.reply()


@pytest.mark.parametrize(
    ("content", "want"),
    [
        (
            "Subject: =?utf-8?q?Temp=C3=A9rature_=E2=80=93_salle?=\nContent-Type: text/plain; charset=utf-8\n"
            "Content-Transfer-Encoding: quoted-printable\n\nServeur arr=C3=AAt=C3=A9 =E2=80=94 45=C2=B0C\n",
            "Température - salle\nServeur arreté - 45 degC",  # folded into GSM-7 (é is in it, ê is not)
        ),
        (
            "Subject: =?utf-8?b?0KHQtdGA0LLQtdGA?=\nContent-Type: text/plain; charset=utf-8\n"
            "Content-Transfer-Encoding: 8bit\n\n" + "недоступен" + "\n",
            "\n".join(("Сервер", "недоступен")),  # sent as UCS-2
        ),
        (
            'Subject: html\nMIME-Version: 1.0\nContent-Type: multipart/alternative; boundary="b"\n\n--b\n'
            "Content-Type: text/html; charset=utf-8\n\n<html><head><style>p{}</style></head><body>"
            "<p>Backup <b>failed</b></p><div>exit&nbsp;2</div></body></html>\n--b--\n",
            "html\nBackup failed\nexit 2",
        ),
        (
            "Subject: Диск полон\n\nraw 8-bit UTF-8, undeclared\n",  # as some scripts send it
            "Диск полон\nraw 8-bit UTF-8, undeclared",
        ),
        ("no headers at all, as echo | msmtp sends it\n", "no headers at all, as echo | msmtp sends it"),
    ],
)
def test_it_texts_what_a_mail_says_whatever_its_encoding(tmp_path: Path, content: str, want: str) -> None:
    with listening(tmp_path) as (g, addr):
        code, text = raw_mail(addr, content.encode())
        assert (code, text) == (250, "250 2.0.0 OK: SMS queued")
        g.dispatch()
        assert g.sms.texts() == [want]


def test_an_empty_mail_is_refused(tmp_path: Path) -> None:
    with listening(tmp_path) as (g, addr):
        code, text = raw_mail(addr, b"Subject: \n\n\n")
        assert code == 554 and "no subject and no text" in text
        assert relayed(g) == []


def test_one_mail_to_a_heartbeat_address_and_sms_does_both(tmp_path: Path) -> None:
    with listening(tmp_path) as (g, addr):
        g.add("web1", 3600, 60)
        token = g.service.get_check("web1").token
        with session(addr, "nas@home.lan") as r:
            assert r.cmd(f"RCPT TO:<sms@{DOMAIN}>")[0] == 250
            assert r.cmd(f"RCPT TO:<{token}@{DOMAIN}>")[0] == 250
            assert r.cmd("DATA")[0] == 354
            r.send(b"Subject: backup done\r\n\r\nall fine\r\n.\r\n")
            assert r.reply() == (250, "250 2.0.0 OK: heartbeat recorded, SMS queued")
        # The heartbeat alone still gets the heartbeat reply.
        with session(addr, "nas@home.lan") as r:
            assert r.cmd(f"RCPT TO:<{token}@{DOMAIN}>")[0] == 250
            assert r.cmd("DATA")[0] == 354
            r.send(b"Subject: again\r\n\r\nok\r\n.\r\n")
            assert r.reply() == (250, RECORDED)
        g.dispatch()
        assert g.describe("web1")["status"] == "up"
        assert g.sms.sent == [(OWNER, "backup done\nall fine")]


def test_a_refused_sender_keeps_its_heartbeat_recipient(tmp_path: Path) -> None:
    with listening(tmp_path) as (g, addr):
        g.add("web1", 3600, 60)
        token = g.service.get_check("web1").token
        with smtplib.SMTP(*addr, timeout=10) as s:
            refused = s.sendmail("stranger@x.example", [f"sms@{DOMAIN}", f"{token}@{DOMAIN}"], b"Subject: ok\r\n\r\nok")
        assert refused == {
            f"sms@{DOMAIN}": (550, b"5.7.1 Relaying denied: this sender may not send SMS through this gateway")
        }
        assert g.describe("web1")["status"] == "up" and relayed(g) == []


def test_relaying_off_leaves_the_heartbeat_addresses_alone(tmp_path: Path) -> None:
    with listening(tmp_path, enabled=False) as (_, addr), session(addr, "nas@home.lan") as r:
        assert r.cmd(f"RCPT TO:<sms@{DOMAIN}>") == (550, NO_SUCH_ADDRESS)


@pytest.mark.skipif(not shutil.which("swaks"), reason="needs swaks (apt install swaks)")
def test_it_texts_a_mail_sent_with_swaks(tmp_path: Path) -> None:
    with listening(tmp_path) as (g, addr):
        done = subprocess.run(
            [
                "swaks",
                "--server",
                f"{addr[0]}:{addr[1]}",
                "--from",
                "upsd@ups.lan",
                "--to",
                f"partner@{DOMAIN}",
                "--header",
                "Subject: UPS low battery",
                "--body",
                "Shutting down in 5 min",
                "--timeout",
                "10",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stdout
        assert "250 2.0.0 OK: SMS queued" in done.stdout
        g.dispatch()
        assert g.sms.sent == [(PARTNER, "UPS low battery\nShutting down in 5 min")]


def test_a_mixed_mail_over_the_share_records_the_heartbeat_and_is_retried_for_the_sms(tmp_path: Path) -> None:
    with listening(tmp_path, per_sender_per_hour=1) as (g, addr):
        g.add("web1", 3600, 60)
        token = g.service.get_check("web1").token
        send(addr, mail(f"sms@{DOMAIN}", subject="first"))
        with pytest.raises(smtplib.SMTPDataError) as e:
            send(addr, mail([f"{token}@{DOMAIN}", f"sms@{DOMAIN}"], subject="second"))
        assert e.value.smtp_code == 451  # the MTA keeps the mail: the SMS is not lost
        assert g.describe("web1")["status"] == "up"  # the heartbeat did not wait for the SMS
        g.clocks.run(3601)
        send(addr, mail([f"{token}@{DOMAIN}", f"sms@{DOMAIN}"], subject="second"))  # the MTA's retry
        g.dispatch()
        assert [t.split("\n")[0] for t in g.sms.texts()] == ["first", "second"]
