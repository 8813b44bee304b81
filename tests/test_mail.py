"""Email heartbeats: real SMTP clients (smtplib, swaks, msmtp, raw sockets) against ``hbgw serve``
on loopback, asserting on ``hbgw check show --json`` and on the SQLite file opened read-only."""

from __future__ import annotations

import itertools
import shutil
import signal
import smtplib
import socket
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from gateway import config as cfgmod
from gateway.errors import ValidationError
from gateway.intake import mail
from gateway.intake.mail import (
    BAD_RCPT_LIMIT,
    BAD_RECIPIENT_SYNTAX,
    BAD_SENDER_SYNTAX,
    NO_SUCH_ADDRESS,
    Address,
    MailRejected,
    client_of,
    html_to_text,
    parse_address,
    read_message,
)
from gateway.model import PingKind
from gateway.rules import keywords
from gateway.rules.keywords import FilterError, Filters, classify, parse_filters
from gateway.service import Service, new_token, url_secret
from gateway.store import Store
from tests.support.daemon import Daemon, hbgw, hbgw_json, wait_for, write_config
from tests.support.db import pings_of
from tests.support.smtp_client import InProcessSmtp, RawSmtp

PING_KEY = "k" * 8 + "-mail-ping-key-0123"
DOMAIN = "hb.test"
MAX_SIZE = 200_000
CHECKS = (
    "web1",
    "web2",
    "web3",
    "swaks1",
    "msmtp1",
    "msmtp2",
    "msmtp3",
    "multi1",
    "multi2",
    "session",
    "filtered",
    "failonly",
    "html",
    "big",
    "garbage",
    "cap",
)
BODY_SECRET = "zz-body-secret-7d1f"  # a phrase mailed in bodies; must never reach the log


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    root = tmp_path_factory.mktemp("mail")
    data = root / "data"
    cfg = write_config(
        root / "hbgw.toml",
        data,
        extra=f"""
[smtp]
listen = "127.0.0.1:0"
domain = "{DOMAIN}"
max_size = {MAX_SIZE}
max_recipients = 50

[security]
ping_key = "{PING_KEY}"
auto_create = true
max_checks = 30
""",
    )
    config = cfgmod.load(cfg)
    with Store(config.db_path) as store:  # in-process: 15 CLI runs would cost seconds
        service = Service(store, config)
        tokens = {n: service.add_check(n, period=3600, grace=3600).token for n in CHECKS}
        # As made before tokens stopped starting with "-" (a database from an older version).
        tokens["dashed"] = store.add_check(
            "dashed", "-" + "d" * 23, service.make_schedule(3600, 3600), time.time()
        ).token
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HBGW_LOG_LEVEL", "DEBUG")  # so the no-secrets-in-the-log test sees everything
        d = Daemon(data, config=cfg).start()
    try:
        d.cfg = cfg  # type: ignore[attr-defined]
        d.tokens = tokens  # type: ignore[attr-defined]
        yield d
    finally:
        d.stop()


def smtp_addr(gw: Daemon) -> tuple[str, int]:
    host, port = gw.info["smtp"].rsplit(":", 1)
    return host, int(port)


def addr(gw: Daemon, name: str) -> str:
    return f"{gw.tokens[name]}@{DOMAIN}"  # type: ignore[attr-defined]


def show(gw: Daemon, name: str) -> dict[str, Any]:
    return dict(hbgw_json("check", "show", name, config=gw.cfg))  # type: ignore[attr-defined]


def pings(gw: Daemon, name: str) -> list[tuple[Any, ...]]:
    return pings_of(gw.data_dir, name)


def all_ping_count(gw: Daemon) -> int:
    con = sqlite3.connect(f"file:{gw.data_dir / 'hbgw.sqlite3'}?mode=ro", uri=True)
    try:
        return int(con.execute("SELECT count(*) FROM pings").fetchone()[0])
    finally:
        con.close()


def message(
    to: str, subject: str = "backup done", body: str = "all fine\n", sender: str = "Cron Daemon <root@web1.example>"
) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg.set_content(body)
    return msg


def set_filters(gw: Daemon, name: str, filters: dict[str, Any] | None) -> None:
    """Set filters through the service, in this process, on the daemon's database."""
    config = cfgmod.load(gw.cfg)  # type: ignore[attr-defined]
    with Store(config.db_path) as store:
        Service(store, config).set_filters(name, filters)


def raw(gw: Daemon) -> RawSmtp:
    r = RawSmtp(*smtp_addr(gw))
    assert r.reply()[0] == 220
    return r


def in_transaction(gw: Daemon, rcpt: str) -> RawSmtp:
    r = raw(gw)
    assert r.cmd("EHLO client.example")[0] == 250
    assert r.cmd("MAIL FROM:<cron@client.example>")[0] == 250
    assert r.cmd(f"RCPT TO:<{rcpt}>")[0] == 250
    return r


def send_data(r: RawSmtp, content: bytes) -> tuple[int, str]:
    """DATA with ``content`` dot-stuffed and terminated."""
    code, _ = r.cmd("DATA")
    assert code == 354
    if not content.endswith(b"\r\n"):
        content += b"\r\n"
    stuffed = content.replace(b"\r\n.", b"\r\n..")
    if stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    r.send(stuffed + b".\r\n")
    return r.reply()


def assert_clean(text: str) -> None:
    """No traceback or exception text in what a client was told."""
    assert "Traceback" not in text and "Error: (" not in text and "Exception" not in text


# ---------------------------------------------------------------------------- real clients


def test_it_records_a_mail_sent_with_smtplib(gw: Daemon) -> None:
    with smtplib.SMTP(*smtp_addr(gw), timeout=10) as s:
        refused = s.send_message(message(addr(gw, "web1"), body=f"rsync ok\n{BODY_SECRET}\n"))
    assert refused == {}
    assert show(gw, "web1")["status"] == "up"
    kind, code, source, remote, method, ua, body = pings(gw, "web1")[-1]
    assert (kind, code, source, remote, method) == ("success", None, "email", "127.0.0.1", "SMTP")
    assert ua == "Cron Daemon <root@web1.example>"
    assert body == f"Subject: backup done\n\nrsync ok\n{BODY_SECRET}"


def test_it_records_several_messages_sent_in_one_session(gw: Daemon) -> None:
    before = len(pings(gw, "session"))
    with smtplib.SMTP(*smtp_addr(gw), timeout=10) as s:
        for i in range(5):
            assert s.send_message(message(addr(gw, "session"), subject=f"run {i}")) == {}
        assert s.sendmail("x@client.example", [addr(gw, "session")], b"Subject: plain\r\n\r\nhi\r\n") == {}
    rows = pings(gw, "session")
    assert len(rows) == before + 6
    subjects = [r[6].split("\n")[0] for r in rows[-6:]]
    assert subjects == [f"Subject: run {i}" for i in range(5)] + ["Subject: plain"]


@pytest.mark.skipif(not shutil.which("swaks"), reason="needs swaks (installed by .ci/run)")
def test_it_records_a_mail_sent_by_swaks(gw: Daemon) -> None:
    host, port = smtp_addr(gw)
    out = subprocess.run(
        [
            "swaks",
            "--server",
            f"{host}:{port}",
            "--to",
            addr(gw, "swaks1"),
            "--from",
            "ops@client.example",
            "--header",
            "Subject: nightly ok",
            "--body",
            "done",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "250 2.0.0 OK" in out.stdout
    assert pings(gw, "swaks1")[-1][0] == "success"
    assert pings(gw, "swaks1")[-1][6] == "Subject: nightly ok\n\ndone"
    assert show(gw, "swaks1")["status"] == "up"


@pytest.mark.skipif(not shutil.which("msmtp"), reason="needs msmtp (installed by .ci/run)")
@pytest.mark.parametrize("how", ["config-file", "flags", "cron"])
def test_it_records_a_mail_sent_by_msmtp(gw: Daemon, tmp_path: Path, how: str) -> None:
    """As the README shows: ``echo ... | msmtp ADDRESS`` with an msmtprc or with
    flags (no auth, no TLS), and as cron's MAILTO= sends through msmtp as sendmail."""
    host, port = smtp_addr(gw)
    name = {"config-file": "msmtp1", "flags": "msmtp2", "cron": "msmtp3"}[how]
    rc = tmp_path / "msmtprc"
    rc.write_text(f"account default\nhost {host}\nport {port}\nfrom cron@client.example\nauth off\ntls off\n")
    rc.chmod(0o600)
    # No header section at all: msmtp adds From/Date/Message-ID and passes the rest as is.
    text, sender, body = "backup finished\n", "cron@client.example", "backup finished"
    if how == "config-file":
        args = ["msmtp", "-C", str(rc)]
    elif how == "flags":
        args = ["msmtp", f"--host={host}", f"--port={port}", "--from=cron@client.example", "--auth=off", "--tls=off"]
    else:  # what Debian's cron runs for MAILTO=, with the message it writes
        args = ["msmtp", "-C", str(rc), "-i", "-FCronDaemon", "-B8BITMIME", "-oem"]
        text = (
            f"From: root (Cron Daemon)\nTo: {addr(gw, name)}\n"
            "Subject: Cron <root@web1> /usr/local/bin/backup.sh\nMIME-Version: 1.0\n"
            "Content-Type: text/plain; charset=UTF-8\nContent-Transfer-Encoding: 8bit\n"
            "X-Cron-Env: <SHELL=/bin/sh>\n\nbackup ok: 42 files\n"
        )
        sender = "root (Cron Daemon)"
        body = "Subject: Cron <root@web1> /usr/local/bin/backup.sh\n\nbackup ok: 42 files"
    out = subprocess.run([*args, addr(gw, name)], input=text, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    kind, _, source, _, method, ua, stored = pings(gw, name)[-1]
    assert (kind, source, method, ua, stored) == ("success", "email", "SMTP", sender, body)
    assert show(gw, name)["status"] == "up"


@pytest.mark.skipif(not shutil.which("msmtp"), reason="needs msmtp (installed by .ci/run)")
def test_an_older_token_starting_with_a_dash_works_as_its_snippet_shows(gw: Daemon) -> None:
    config = cfgmod.load(gw.cfg)  # type: ignore[attr-defined]
    with Store(config.db_path) as store:
        service = Service(store, config)
        snippet = {s.key: s.text for s in service.views.snippets(service.get_check("dashed"))}["email"]
        plain = {s.key: s.text for s in service.views.snippets(service.get_check("web1"))}["email"]
    assert f"| mail -s ok -- {addr(gw, 'dashed')}" in snippet
    assert f"| mail -s ok {addr(gw, 'web1')}" in plain
    # msmtp, like mail and sendmail, reads what follows "--" as recipients, not options.
    host, port = smtp_addr(gw)
    out = subprocess.run(
        [
            "msmtp",
            f"--host={host}",
            f"--port={port}",
            "--from=c@client.example",
            "--auth=off",
            "--tls=off",
            "--",
            addr(gw, "dashed"),
        ],
        input="Subject: ok\n\nok\n",
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    assert show(gw, "dashed")["status"] == "up"


@pytest.mark.skipif(not shutil.which("msmtp"), reason="needs msmtp (installed by .ci/run)")
def test_it_bounces_a_typo_in_msmtp_at_once(gw: Daemon) -> None:
    host, port = smtp_addr(gw)
    tok = gw.tokens["web1"]  # type: ignore[attr-defined]
    typo = tok[:-1] + ("A" if tok[-1] != "A" else "B")
    out = subprocess.run(
        [
            "msmtp",
            f"--host={host}",
            f"--port={port}",
            "--from=c@client.example",
            "--auth=off",
            "--tls=off",
            f"{typo}@{DOMAIN}",
        ],
        input="Subject: x\n\nx\n",
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode != 0
    assert NO_SUCH_ADDRESS in out.stderr


# ---------------------------------------------------------------------------- addresses


def test_tokens_and_keys_never_start_with_a_dash() -> None:
    """They become addresses on mail commands' command lines (msmtp, mail, sendmail), where a
    leading '-' reads as an option: 1 in 64 raw draws would, so 4,000 draws would catch it."""
    drawn = [new_token() for _ in range(2000)] + [url_secret(16) for _ in range(2000)]
    assert not [t for t in drawn if t.startswith("-")]
    assert len(set(drawn)) == len(drawn)
    assert all(len(t) == 24 for t in drawn[:2000])  # 18 bytes, unchanged


def test_it_pings_by_key_and_name_and_creates_unknown_names(gw: Daemon) -> None:
    with smtplib.SMTP(*smtp_addr(gw), timeout=10) as s:
        assert s.send_message(message(f"{PING_KEY}+web2@{DOMAIN}")) == {}
        assert s.send_message(message(f"{PING_KEY}+WEB2@{DOMAIN.upper()}")) == {}  # case of name, domain
        assert s.send_message(message(f"{PING_KEY}+mailbox7@{DOMAIN}")) == {}
    assert [p[0] for p in pings(gw, "web2")[-2:]] == ["success", "success"]
    assert show(gw, "mailbox7")["status"] == "up"


def test_it_sends_one_heartbeat_per_recipient(gw: Daemon) -> None:
    before = {n: len(pings(gw, n)) for n in ("multi1", "multi2", "web3")}
    rcpts = [
        addr(gw, "multi1"),
        addr(gw, "multi2"),
        f"{PING_KEY}+web3@{DOMAIN}",
        addr(gw, "multi1"),
        f"{PING_KEY}+multi2@{DOMAIN}",
    ]  # the last two: duplicates
    with smtplib.SMTP(*smtp_addr(gw), timeout=10) as s:
        assert s.sendmail("a@client.example", rcpts, b"Subject: three\r\n\r\nx\r\n") == {}
    assert {n: len(pings(gw, n)) - before[n] for n in before} == {"multi1": 1, "multi2": 1, "web3": 1}


@pytest.mark.parametrize(
    "rcpt",
    [
        "{tok}@gmail.com",  # wrong domain
        "someone@gmail.com",  # relay attempt
        "ZZZZZZZZZZZZZZZZZZZZZZZZ@" + DOMAIN,  # well-formed, unknown token
        "{tok}X@" + DOMAIN,  # a typo
        "wrong-key-wrong-key-1+web1@" + DOMAIN,  # wrong ping key, existing name
        "wrong-key-wrong-key-1+newname@" + DOMAIN,  # wrong ping key, creatable name
        PING_KEY + "+bad/name@" + DOMAIN,  # right key, a name that cannot exist
        PING_KEY + "+-dash@" + DOMAIN,  # right key, a name auto_create would not create
        "{tok}@sub." + DOMAIN,
        "{tok}@" + DOMAIN + ".evil.example",
        "user%gmail.com@" + DOMAIN,  # percent hack
        '"user@gmail.com"@' + DOMAIN,
        "postmaster@" + DOMAIN,
        "{tok}",  # no domain
    ],
)
def test_it_refuses_bad_recipients_with_the_same_550(gw: Daemon, rcpt: str) -> None:
    """One reply whatever is wrong (domain, token, key, name), so it tells nothing."""
    before = all_ping_count(gw)
    with smtplib.SMTP(*smtp_addr(gw), timeout=10) as s:
        s.ehlo("client.example")
        assert s.mail("a@client.example")[0] == 250
        code, text = s.rcpt(rcpt.format(tok=gw.tokens["web1"]))  # type: ignore[attr-defined]
        assert (code, text.decode()) == (550, NO_SUCH_ADDRESS[4:])
        assert s.docmd("DATA")[0] == 503  # no valid recipient: nothing to deliver
    assert all_ping_count(gw) == before


def test_it_refuses_a_source_route_as_malformed(gw: Daemon) -> None:
    with smtplib.SMTP(*smtp_addr(gw), timeout=10) as s:
        s.ehlo("client.example")
        s.mail("a@client.example")
        assert s.rcpt(f"@{DOMAIN}:user@gmail.com") == (501, BAD_RECIPIENT_SYNTAX[4:].encode())


def test_it_hangs_up_after_too_many_invalid_recipients(gw: Daemon) -> None:
    with raw(gw) as r:
        r.cmd("EHLO guesser.example")
        r.cmd("MAIL FROM:<a@guesser.example>")
        codes = [r.cmd(f"RCPT TO:<guess{i:04d}guess{i:04d}@{DOMAIN}>")[0] for i in range(BAD_RCPT_LIMIT)]
        assert codes == [550] * (BAD_RCPT_LIMIT - 1) + [421]
        assert r.closed_by_peer()


# ---------------------------------------------------------------------------- limits


def test_it_refuses_an_oversized_message_with_552_and_stores_nothing(gw: Daemon) -> None:
    before = all_ping_count(gw)
    big = message(addr(gw, "big"), body="x" * 70 + "\n")
    big.set_content(("x" * 70 + "\n") * (MAX_SIZE // 70 + 100))
    with smtplib.SMTP(*smtp_addr(gw), timeout=10) as s:
        # EHLO: smtplib declares SIZE= and is refused at MAIL FROM
        with pytest.raises(smtplib.SMTPSenderRefused) as e:
            s.send_message(big)
        assert e.value.smtp_code == 552
    with smtplib.SMTP(*smtp_addr(gw), timeout=10) as s:
        s.helo("old.example")  # HELO: no SIZE declared, refused after DATA
        with pytest.raises(smtplib.SMTPDataError) as d:
            s.send_message(big)
        assert d.value.smtp_code == 552
        assert s.noop()[0] == 250  # the session goes on
    assert all_ping_count(gw) == before


def test_it_caps_recipients_with_452_and_goes_on(gw: Daemon) -> None:
    before = len(pings(gw, "cap"))
    with raw(gw) as r:
        r.cmd("EHLO many.example")
        r.cmd("MAIL FROM:<a@many.example>")
        r.send(b"".join(f"RCPT TO:<{addr(gw, 'cap')}>\r\n".encode() for _ in range(500)))  # pipelined
        codes = [r.reply()[0] for _ in range(500)]
        assert codes == [250] * 50 + [452] * 450
        assert send_data(r, b"Subject: cap\r\n\r\nx\r\n")[0] == 250
        assert r.cmd("QUIT")[0] == 221
    assert len(pings(gw, "cap")) == before + 1  # 50 accepted recipients, one check: one heartbeat


def test_it_caps_concurrent_connections_with_421(gw: Daemon) -> None:
    host, port = smtp_addr(gw)

    def fill() -> list[RawSmtp] | None:
        """100 sessions, or None if a slot was still taken (an earlier test's session whose
        close the server has not processed yet)."""
        opened: list[RawSmtp] = []
        for _ in range(100):
            opened.append(RawSmtp(host, port))
            if opened[-1].reply()[0] != 220:
                for r in opened:
                    r.close()
                return None
        return opened

    held: list[RawSmtp] = wait_for(fill, what="100 free connection slots")
    try:
        with RawSmtp(host, port) as extra:
            code, text = extra.reply()
            assert code == 421 and "Too many connections" in text
            assert extra.closed_by_peer()
    finally:
        for r in held:
            r.close()

    def serving_again() -> bool:
        with RawSmtp(host, port) as r:
            return r.reply()[0] == 220

    wait_for(serving_again, what="a free connection slot")


def open_idle(address: tuple[str, int], source: str, count: int) -> tuple[list[RawSmtp], list[str]]:
    """``count`` connections from ``source`` that never say a word: those the server kept, and
    the replies of those it refused."""
    kept: list[RawSmtp] = []
    refused: list[str] = []
    for _ in range(count):
        r = RawSmtp(*address, source=source)
        code, text = r.reply()
        if code == 220:
            kept.append(r)
        else:
            refused.append(text)
            assert r.closed_by_peer()
            r.close()
    return kept, refused


def mail_from(address: tuple[str, int], source: str, to: str, subject: str) -> None:
    with smtplib.SMTP(*address, timeout=10, source_address=(source, 0)) as s:
        assert s.send_message(message(to, subject=subject)) == {}


def test_it_lets_other_clients_mail_while_one_address_holds_idle_connections(tmp_path: Path) -> None:
    srv = InProcessSmtp(tmp_path / "data")
    token = srv.service.add_check("good", period=3600, grace=3600).token
    with srv:
        flood, refused = open_idle(srv.address, "127.0.0.2", 100)  # the 100 idle connections
        try:
            mail_from(srv.address, "127.0.0.3", f"{token}@hb.test", "from another host")
            mail_from(srv.address, "127.0.0.1", f"{token}@hb.test", "from the box itself")
            assert [p[3] for p in pings_of(srv.config.data_dir, "good")] == ["127.0.0.3", "127.0.0.1"]
            assert len(flood) == mail.MAX_PER_CLIENT
            assert refused == ["421 4.7.0 Too many connections from your address, try again later"] * (
                100 - mail.MAX_PER_CLIENT
            )
        finally:
            for r in flood:
                r.close()


def test_it_keeps_slots_for_the_box_itself_when_remote_clients_fill_the_rest(tmp_path: Path) -> None:
    srv = InProcessSmtp(tmp_path / "data")
    token = srv.service.add_check("local", period=3600, grace=3600).token
    remote = mail.MAX_CONNECTIONS - mail.LOCAL_RESERVED
    with srv:
        held: list[RawSmtp] = []
        try:
            for n in range(2, 2 + mail.MAX_CONNECTIONS // mail.MAX_PER_CLIENT):  # 100 tries from 5 addresses
                held += open_idle(srv.address, f"127.0.0.{n}", mail.MAX_PER_CLIENT)[0]
            _, refused = open_idle(srv.address, "127.0.0.99", 1)  # a newcomer finds the remote share full
            assert refused == ["421 4.7.0 Too many connections, try again later"]
            mail_from(srv.address, "127.0.0.1", f"{token}@hb.test", "local cron")
            assert len(pings_of(srv.config.data_dir, "local")) == 1
            assert len(held) == remote
            local, _ = open_idle(srv.address, "127.0.0.1", mail.LOCAL_RESERVED + 1)  # the box may use them all
            held += local
            assert len(local) == mail.LOCAL_RESERVED
        finally:
            for r in held:
                r.close()


def test_it_drops_a_client_that_does_not_start_a_mail_sooner(tmp_path: Path) -> None:
    """Before MAIL FROM a client has ``pre_mail_timeout`` from connecting, whatever it sends
    meanwhile; inside a transaction the longer ``timeout`` per command."""
    with InProcessSmtp(tmp_path / "data", timeout=30, pre_mail_timeout=0.5) as srv:
        silent = RawSmtp(*srv.address)
        chatty = RawSmtp(*srv.address)
        busy = RawSmtp(*srv.address)
        try:
            for r in (silent, chatty, busy):
                assert r.reply()[0] == 220
            t0 = time.monotonic()
            assert busy.cmd("EHLO busy.example")[0] == 250
            assert busy.cmd("MAIL FROM:<cron@busy.example>")[0] == 250
            assert chatty.cmd("EHLO chatty.example")[0] == 250

            def chatty_dropped() -> bool:  # EHLO and RSET buy it no time
                try:
                    return chatty.cmd("EHLO again.example")[0] != 250 or chatty.cmd("RSET")[0] != 250
                except OSError:
                    return True

            wait_for(chatty_dropped, timeout=5, interval=0.05, what="the chatty client to be dropped")
            assert silent.closed_by_peer()
            assert time.monotonic() - t0 < 5  # not the 30 s of a transaction
            assert busy.cmd(f"RCPT TO:<nobody-nobody@{DOMAIN}>")[0] == 550  # still served
            assert busy.cmd("NOOP")[0] == 250
        finally:
            for r in (silent, chatty, busy):
                r.close()


def test_it_counts_clients_by_address_and_ipv6_by_64() -> None:
    assert client_of(("203.0.113.7", 25)) == ("203.0.113.7", False)
    assert client_of(("::ffff:203.0.113.7", 25, 0, 0)) == ("203.0.113.7", False)
    assert client_of(("2001:db8:1:2:aaaa::1", 25, 0, 0)) == client_of(("2001:db8:1:2:bbbb::2", 25, 0, 0))
    assert client_of(("2001:db8:1:2:aaaa::1", 25, 0, 0)) == ("2001:db8:1:2::/64", False)
    assert client_of(("fe80::1%eth0", 25, 0, 2)) == ("fe80::/64", False)
    assert client_of(("127.0.0.1", 25)) == ("127.0.0.1", True)
    assert client_of(("::1", 25, 0, 0)) == ("::1", True)
    assert client_of(("::ffff:127.0.0.1", 25, 0, 0)) == ("127.0.0.1", True)
    assert client_of(("127.0.0.2", 25)) == ("127.0.0.2", False)  # only .1 and ::1 share the reserve
    assert client_of(None) == ("?", False)


def test_it_hangs_up_on_an_idle_client(tmp_path: Path) -> None:
    with InProcessSmtp(tmp_path / "data", timeout=0.3) as srv, RawSmtp(*srv.address) as r:
        assert r.reply()[0] == 220
        t0 = time.monotonic()
        assert r.closed_by_peer()
        assert time.monotonic() - t0 < 5


# ---------------------------------------------------------------------------- bad input


def _nested_multipart(depth: int) -> bytes:
    head = b"".join(b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i) for i in range(depth))
    return b"Subject: nested\r\n" + head + b"Content-Type: text/plain\r\n\r\ndeep\r\n"


GARBAGE = bytes((i * 37 + 11) % 256 for i in range(6000))

MALFORMED_MESSAGES = [
    # (id, content, expected code)
    ("8-bit-garbage", GARBAGE, 250),
    ("nul-and-8bit-headers", b"Subject: caf\xe9 \x00 ok\r\nFrom: \xff\xfe <x@y>\r\n\r\nbody \x00\x01\xe9\r\n", 250),
    ("no-header-section", b"just some text\r\nand more\r\n", 250),
    ("empty", b"", 250),
    ("multipart-without-boundary", b"Subject: m\r\nContent-Type: multipart/mixed\r\n\r\n--x\r\nhi\r\n", 250),
    (
        "bad-base64-unknown-charset",
        b"Subject: b\r\nContent-Type: text/plain; charset=x-nonesuch\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n!!!not base64***\r\n",
        250,
    ),
    ("bad-encoded-words", b"Subject: =?utf-8?q?unterminated =?x-bad?b?####?= =?utf-8?b?w6k=?=\r\n\r\nx\r\n", 250),
    ("deep-multipart-nesting", _nested_multipart(2000), 250),  # kept raw, not parsed
    (
        "5000-mime-parts",
        b'Subject: p\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
        + b"--b\r\n\r\nx\r\n" * 5000
        + b"--b--\r\n",
        250,
    ),
    ("huge-header-section", b"Subject: big\r\nX-Big: " + b"\r\n ".join([b"y" * 900] * 100) + b"\r\n\r\nx\r\n", 552),
    ("too-many-header-fields", b"".join(b"X-F%d: v\r\n" % i for i in range(600)) + b"\r\nx\r\n", 552),
    ("line-too-long", b"Subject: l\r\n\r\n" + b"a" * 10_000 + b"\r\n", 500),
]


@pytest.mark.parametrize(
    ("content", "code"), [m[1:] for m in MALFORMED_MESSAGES], ids=[m[0] for m in MALFORMED_MESSAGES]
)
def test_it_answers_malformed_mail_with_a_clear_code(gw: Daemon, content: bytes, code: int) -> None:
    before = len(pings(gw, "garbage"))
    with in_transaction(gw, addr(gw, "garbage")) as r:
        got, text = send_data(r, content)
        assert got == code, text
        assert_clean(text)
        assert r.cmd("NOOP")[0] == 250  # the session survives
    assert len(pings(gw, "garbage")) == before + (1 if code == 250 else 0)
    if code == 250:
        body = pings(gw, "garbage")[-1][6] or ""
        assert "\x00" not in body and len(body) <= 10_000


@pytest.mark.parametrize(
    ("line", "code"),
    [
        (b"\xff\xfe\x00garbage", 500),
        (b"EHLO " + b"x" * 600, 500),  # command line over 512
        (b"X" * 9000, 500),  # longer than a line may be
        (b"MAIL FROM:<\xe9@x.example>", 500),  # 8-bit in an argument without SMTPUTF8
        (b"MAIL FROM:<a@x.example> SIZE=999999999", 552),
        (b"MAIL FROM:<a@x.example> SMTPUTF8", 501),
        (b"RCPT TO:<a@hb.test>", 503),  # before MAIL
        (b"DATA", 503),
        (b"AUTH PLAIN AHVzZXIAcGFzcw==", 538),  # no AUTH in clear text (and none at all)
        (b"VRFY root", 252),
        (b"STARTTLS", 454),
    ],
)
def test_it_answers_bad_commands_with_a_clear_code(gw: Daemon, line: bytes, code: int) -> None:
    with raw(gw) as r:
        assert r.cmd("EHLO client.example")[0] == 250
        got, text = r.cmd(line)
        assert got == code, text
        assert_clean(text)
        assert r.cmd("NOOP")[0] == 250


# Addresses the stdlib parser under aiosmtpd crashed on (IndexError, AttributeError,
# UnboundLocalError: answered 451, a 12-line stack logged) or refused as 553.
MALFORMED_ADDRESSES = ["<", "<a@", "a@", '"', '<"', "<\\@", "<a@[", "a@[1.2.3.4", "<a@[ x", "<<>", "<@>", ">", "@"]


def log_since(gw: Daemon, start: int) -> str:
    return gw.log()[start:]


@pytest.mark.parametrize("address", MALFORMED_ADDRESSES)
@pytest.mark.parametrize(
    ("command", "reply"), [("MAIL FROM:", BAD_SENDER_SYNTAX), ("RCPT TO:", BAD_RECIPIENT_SYNTAX)], ids=["MAIL", "RCPT"]
)
def test_it_answers_a_malformed_address_with_501_and_one_log_line(
    gw: Daemon, command: str, reply: str, address: str
) -> None:
    """A syntax error is permanent (501): a 451 would have a real MTA retry it for days."""
    start = len(gw.log())
    with raw(gw) as r:
        assert r.cmd("EHLO client.example")[0] == 250
        if command == "RCPT TO:":
            assert r.cmd("MAIL FROM:<cron@client.example>")[0] == 250
        assert r.cmd(command + address) == (int(reply[:3]), reply)
        assert r.cmd("NOOP")[0] == 250  # the session goes on
        assert r.cmd("QUIT")[0] == 221  # and the log line is written before the reply
    lines = [line for line in log_since(gw, start).splitlines() if "gateway.intake.mail" in line]
    assert len([line for line in lines if "malformed" in line]) == 1, lines
    assert "Traceback" not in log_since(gw, start) and "unexpected" not in log_since(gw, start)


def _fuzzed_addresses() -> list[str]:
    """Every string of 1 to 3 characters over the characters that structure an address."""
    chars = ["<", ">", "@", '"', "\\", "a", "[", "]", " ", ":", "("]
    found = {"".join(t).strip() for n in (1, 2, 3) for t in itertools.product(chars, repeat=n)}
    return sorted(found - {""})


def test_it_never_answers_a_fuzzed_address_with_an_internal_error(gw: Daemon) -> None:
    start = len(gw.log())
    addresses = _fuzzed_addresses()
    codes: dict[int, int] = {}
    for verb in ("MAIL FROM:", "RCPT TO:"):
        # Pipelined in batches, each in a fresh connection: below the bad-recipient limit.
        for i in range(0, len(addresses), BAD_RCPT_LIMIT - 1):
            batch = addresses[i : i + BAD_RCPT_LIMIT - 1]
            with raw(gw) as r:
                assert r.cmd("EHLO fuzz.example")[0] == 250
                if verb == "RCPT TO:":
                    assert r.cmd("MAIL FROM:<cron@fuzz.example>")[0] == 250
                rset = b"RSET\r\n" if verb == "MAIL FROM:" else b""  # so that every MAIL is the first
                r.send(b"".join(f"{verb}{a}\r\n".encode() + rset for a in batch))
                for a in batch:
                    code, text = r.reply()
                    assert code in (250, 501, 550, 555), (a, text)  # never 451, never a hang-up
                    codes[code] = codes.get(code, 0) + 1
                    if rset:
                        assert r.reply()[0] == 250
    assert codes[501] > 1000  # mostly malformed, as intended
    log = log_since(gw, start)
    assert "Traceback" not in log and "unexpected" not in log


def test_it_still_serves_after_all_that(gw: Daemon) -> None:
    with smtplib.SMTP(*smtp_addr(gw), timeout=10) as s:
        assert s.send_message(message(addr(gw, "web1"), subject="still here")) == {}
    assert pings(gw, "web1")[-1][6].startswith("Subject: still here")


# ---------------------------------------------------------------------------- keyword filters

FILTERS = {"subject": True, "body": True, "success": ["ok"], "fail": ["FAIL", "error"], "start": ["started"]}


@pytest.mark.parametrize(
    ("subject", "body", "kind", "status"),
    [
        ("backup ok", "all good", "success", "up"),
        ("backup FAILED", "", "fail", "down"),
        ("backup report", "3 errors found", "fail", "down"),  # in the body, any case
        ("Backup Ok", "", "success", "up"),
        ("backup started", "", "start", "up"),
        ("ok so far, then an ERROR", "", "fail", "down"),  # fail wins
        ("weekly report", "nothing to see", "log", "up"),  # success keywords given, none matched
    ],
)
def test_it_classifies_by_keywords(gw: Daemon, subject: str, body: str, kind: str, status: str) -> None:
    set_filters(gw, "filtered", FILTERS)
    with smtplib.SMTP(*smtp_addr(gw), timeout=10) as s:
        assert s.send_message(message(addr(gw, "filtered"), subject="ok", body="reset")) == {}
        assert s.send_message(message(addr(gw, "filtered"), subject=subject, body=body)) == {}
    assert pings(gw, "filtered")[-1][0] == kind
    assert show(gw, "filtered")["status"] == status


def test_it_treats_mail_without_a_fail_keyword_as_success_when_only_fail_is_set(gw: Daemon) -> None:
    set_filters(gw, "failonly", {"fail": ["FAIL"]})  # subject only (the default)
    with smtplib.SMTP(*smtp_addr(gw), timeout=10) as s:
        s.send_message(message(addr(gw, "failonly"), subject="nightly", body="FAIL in body only"))
        assert pings(gw, "failonly")[-1][0] == "success"
        s.send_message(message(addr(gw, "failonly"), subject="nightly FAIL"))
        assert pings(gw, "failonly")[-1][0] == "fail"
    assert show(gw, "failonly")["status"] == "down"
    set_filters(gw, "failonly", None)  # removed: every mail a success again
    with smtplib.SMTP(*smtp_addr(gw), timeout=10) as s:
        s.send_message(message(addr(gw, "failonly"), subject="nightly FAIL"))
    assert pings(gw, "failonly")[-1][0] == "success"
    assert show(gw, "failonly")["status"] == "up"


def test_it_reads_html_only_mail_as_text(gw: Daemon) -> None:
    set_filters(gw, "html", {"subject": False, "body": True, "fail": ["error"]})
    msg = message(addr(gw, "html"), subject="report")
    msg.set_content(
        "<html><head><style>p {color: red}</style><title>t</title></head><body>"
        "<p>Backup <b>Error</b>: disk&nbsp;full &amp; more</p><script>var x = 'ok';"
        "</script><div>second&#33;</div></body></html>",
        subtype="html",
    )
    with smtplib.SMTP(*smtp_addr(gw), timeout=10) as s:
        assert s.send_message(msg) == {}
    kind, *_, body = pings(gw, "html")[-1]
    assert kind == "fail"
    assert body == "Subject: report\n\nBackup Error: disk full & more\nsecond!"


# ---------------------------------------------------------------------------- shutdown, logs


def test_it_stops_cleanly_with_a_session_open(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cfg = write_config(tmp_path / "hbgw.toml", data, extra='[smtp]\nlisten = "127.0.0.1:0"\n')
    hbgw("check", "add", "one", config=cfg)
    d = Daemon(data, config=cfg).start()
    try:
        host, port = d.info["smtp"].rsplit(":", 1)
        with RawSmtp(host, int(port)) as r:
            assert r.reply()[0] == 220
            assert r.cmd("EHLO x.example")[0] == 250
            assert d.proc is not None
            d.proc.send_signal(signal.SIGTERM)
            assert d.proc.wait(timeout=10) == 0  # DESIGN: exit 0 within 10 s of SIGTERM
            assert r.closed_by_peer()
    finally:
        d.stop()
    with pytest.raises(OSError), socket.create_connection((host, int(port)), timeout=2):
        pass


def test_it_never_logs_tokens_keys_or_bodies(gw: Daemon) -> None:
    """Runs last in this module: everything above was logged at DEBUG."""
    log = gw.log()
    assert "email heartbeats on smtp://" in log
    for secret in [*gw.tokens.values(), PING_KEY, BODY_SECRET]:  # type: ignore[attr-defined]
        assert secret not in log
    assert "Traceback" not in log and "unexpected" not in log


# ---------------------------------------------------------------------------- pure parts


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("abcdefghijklmnop@hb.test", Address(token="abcdefghijklmnop")),
        ("abcdefghijklmnop@HB.Test.", Address(token="abcdefghijklmnop")),
        ("abcdefgh@hb.test", Address(token="abcdefgh")),
        ("abcdefg@hb.test", None),  # too short for a token
        (PING_KEY + "+web-1.x@hb.test", Address(key=PING_KEY, name="web-1.x")),
        (PING_KEY + "+a+b@hb.test", Address(key=PING_KEY, name="a+b")),
        ("shortkey+web1@hb.test", None),
        (PING_KEY + "+@hb.test", None),
        (PING_KEY + "+a/b@hb.test", None),
        ("abcdefghijklmnop@hb.test@evil.example", None),
        ("abcdefghijklmnop@evil.example", None),
        ("abcdefghijklmnop", None),
        ('"abcdefghijklmnop"@hb.test', None),
        ("abc%defghijklmnop@hb.test", None),
    ],
)
def test_it_parses_heartbeat_addresses(address: str, expected: Address | None) -> None:
    assert parse_address(address, "hb.test") == expected


def test_it_reads_multipart_mail_preferring_plain_text() -> None:
    msg = EmailMessage()
    msg["Subject"] = "=?utf-8?q?Sauvegarde_r=C3=A9ussie?="
    msg["From"] = "Cron <root@h>"
    msg.set_content("plain version")
    msg.add_alternative("<p>html version</p>", subtype="html")
    text = read_message(bytes(msg))
    assert (text.subject, text.sender, text.body) == ("Sauvegarde réussie", "Cron <root@h>", "plain version")
    assert text.excerpt() == "Subject: Sauvegarde réussie\n\nplain version"
    assert read_message(b"").excerpt() is None


def test_it_limits_the_header_section() -> None:
    with pytest.raises(MailRejected) as e:
        read_message(b"".join(b"X-%d: v\r\n" % i for i in range(501)) + b"\r\n")
    assert e.value.reply.startswith("552 5.3.4")
    read_message(b"".join(b"X-%d: v\r\n" % i for i in range(500)) + b"\r\n")  # at the limit: fine


def test_it_turns_html_into_text() -> None:
    assert html_to_text("<ul><li>a</li><li>b &lt;c&gt;</li></ul><br>d<script>x</script>") == "a\nb <c>\nd"
    assert html_to_text("5 < 6 <b>bold</b>&nbsp;&#8364;") == "5 < 6 bold \u20ac"


@pytest.mark.parametrize(
    ("filters", "subject", "body", "kind"),
    [
        (None, "FAIL", "error", PingKind.SUCCESS),
        (Filters(), "FAIL", "", PingKind.SUCCESS),  # no keywords
        (Filters(subject=False, body=False, fail=("FAIL",)), "FAIL", "FAIL", PingKind.SUCCESS),
        (Filters(fail=("FAIL",)), "backup fail", "", PingKind.FAIL),
        (Filters(fail=("FAIL",)), "backup", "FAIL", PingKind.SUCCESS),  # body not searched
        (Filters(body=True, fail=("FAIL",)), "backup", "FAIL", PingKind.FAIL),
        (Filters(success=("ok",), start=("start",)), "job started", "", PingKind.START),
        (Filters(success=("ok",), start=("start",)), "job start ok", "", PingKind.SUCCESS),
        (Filters(success=("ok",)), "job done", "", PingKind.LOG),
        (Filters(start=("start",)), "job done", "", PingKind.SUCCESS),
        (Filters(success=("réussi",)), "RÉUSSI", "", PingKind.SUCCESS),
    ],
)
def test_it_classifies_one_way_for_every_edge(filters: Filters | None, subject: str, body: str, kind: PingKind) -> None:
    assert classify(filters, subject, body) is kind


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"subjet": True}, "unknown filter key 'subjet'"),
        ({"subject": "yes"}, "'subject' must be true or false"),
        ({"fail": "FAIL"}, "'fail' must be a list"),
        ({"fail": [1]}, "must be strings"),
        ({"fail": ["  "]}, "empty keyword"),
        ({"fail": ["x" * 101]}, "at most 100 characters"),
        ({"fail": [f"w{i}" for i in range(21)]}, "at most 20 keywords"),
        (["fail"], "must be an object"),
    ],
)
def test_it_validates_filters(data: Any, error: str) -> None:
    with pytest.raises(FilterError, match=error):
        parse_filters(data)


def test_it_stores_filters_in_one_canonical_form(tmp_path: Path) -> None:
    parsed = parse_filters({"fail": [" FAIL ", "fail", "error"], "body": True})
    assert parsed == Filters(subject=True, body=True, fail=("FAIL", "error"))
    assert keywords.loads(keywords.dumps(parsed)) == parsed
    config = cfgmod.Config(data_dir=tmp_path)
    with Store(config.db_path) as store:
        service = Service(store, config)
        service.add_check("web1")
        with pytest.raises(ValidationError) as e:
            service.set_filters("web1", {"fail": "FAIL"})
        assert e.value.field == "filters"
        check = service.set_filters("web1", {"fail": ["FAIL"]})
        assert check.filters == '{"subject":true,"body":false,"success":[],"fail":["FAIL"],"start":[]}'
        assert service.set_filters("web1", {}).filters is None
