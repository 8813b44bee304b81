"""The box as the house's SMS gateway, end to end: the daemon on a simulated modem (a real pty),
mail sent with swaks and msmtp to its SMTP listener, the SMS received by the simulated phone; an
SMS from a stranger's phone forwarded to a real SMTP server (the sink)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.runtime.process import read_run_file
from tests.support.daemon import wait_for
from tests.support.rig import EMAIL, OWNER, Rig, rig

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not shutil.which("swaks") or not shutil.which("msmtp"), reason="needs swaks and msmtp"),
]

PARTNER = "+15551239999"
STRANGER = "+15557654321"
RELAY = """
[smtp]
listen = "127.0.0.1:0"
max_size = 20000

[contacts]
partner = { phone = "+15551239999" }

[relay]
enabled = true
allow_from = ["127.0.0.0/8"]
per_sender_per_hour = 3
"""


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    with rig(tmp_path_factory.mktemp("smsgw"), [], extra=RELAY) as r:
        yield r


def smtp_port(r: Rig) -> str:
    info = read_run_file(r.data)
    assert info is not None
    return str(info["smtp"]).rsplit(":", 1)[1]


def swaks(r: Rig, to: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["swaks", "--server", "127.0.0.1", "--port", smtp_port(r), "--to", to, "--from", "ups@home.lan", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_a_mail_to_sms_at_reaches_the_owners_phone(gw: Rig) -> None:
    before = len(gw.sim.sent())
    out = swaks(gw, "sms@hbgw.local", "--header", "Subject: UPS on battery", "--body", "Runtime left: 12 min\n")
    assert out.returncode == 0, out.stdout
    assert "250 2.0.0 OK: SMS queued" in out.stdout
    [sms] = gw.sim.wait_sent(before + 1)[before:]
    assert (sms["number"], sms["text"]) == (OWNER, "UPS on battery\nRuntime left: 12 min")


def test_msmtp_texts_a_contact_by_name(gw: Rig, tmp_path: Path) -> None:
    before = len(gw.sim.sent())
    conf = tmp_path / "msmtprc"
    conf.write_text(f"account default\nhost 127.0.0.1\nport {smtp_port(gw)}\nfrom nas@home.lan\nauth off\ntls off\n")
    conf.chmod(0o600)
    mail = "Subject: RAID degraded\n\nDisk 2 of the NAS has failed.\n"
    out = subprocess.run(
        ["msmtp", "-C", str(conf), "partner@hbgw.local"], input=mail, capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, out.stderr
    [sms] = gw.sim.wait_sent(before + 1)[before:]
    assert (sms["number"], sms["text"]) == (PARTNER, "RAID degraded\nDisk 2 of the NAS has failed.")


def test_it_refuses_numbers_it_may_not_text_oversize_mail_and_a_flood(gw: Rig, tmp_path: Path) -> None:
    before = len(gw.sim.sent())
    out = swaks(gw, "sms+15550000000@hbgw.local", "--body", "hello")
    assert out.returncode != 0 and "553 5.1.3" in out.stdout
    body = tmp_path / "big.txt"
    body.write_text(("x" * 70 + "\n") * 400)  # 28 kB, over [smtp] max_size
    big = swaks(gw, "sms@hbgw.local", "--body", str(body))
    assert big.returncode != 0 and "552" in big.stdout
    sender = ["--from", "flood@home.lan"]
    replies = [swaks(gw, "sms@hbgw.local", *sender, "--body", f"flood {i}").stdout for i in range(4)]
    assert all("SMS queued" in rep for rep in replies[:3])
    assert "451 4.7.1" in replies[3] and "try again later" in replies[3]
    gw.sim.wait_sent(before + 3)
    wait_for(lambda: all(state != "pending" for _, state, kind, *_ in gw.outbox() if kind == "relay"))
    texts = [s["text"] for s in gw.sim.sent()[before:]]  # swaks's own subject, then the body
    assert [t.split("\n")[-1] for t in texts] == ["flood 0", "flood 1", "flood 2"]  # no refused mail was sent


def test_an_sms_from_a_stranger_is_forwarded_to_the_owners_email(gw: Rig) -> None:
    gw.sim.inject(STRANGER, "Your credit is low: 0.42 EUR")
    [(rcpts, message)] = [m for m in gw.sink.wait(1) if "credit" in str(m[1])]
    assert rcpts == [EMAIL]
    body = gw.sink.bodies()[-1]
    assert "+15557654321" in body and "Your credit is low: 0.42 EUR" in body
    assert STRANGER[-4:] in str(message["Subject"])
