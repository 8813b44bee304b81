"""The email alert channel against relays set up the way providers run them: STARTTLS on 587 and
TLS from the first byte on 465, login required and only over TLS (aiosmtpd with a self-signed
certificate made by openssl, trusted through SSL_CERT_FILE as a private CA would be)."""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.config import EmailConfig
from gateway.runtime.channels import ChannelError, EmailChannel
from tests.support.nginx import make_certificate
from tests.support.smtp_sink import SinkProcess, SmtpSink

pytestmark = pytest.mark.skipif(not shutil.which("openssl"), reason="needs openssl (installed by .ci/run)")

USER, PASSWORD = "alarm@example.net", "s3cret-relay-pass"
TEXT = "DOWN web1: no heartbeat since 14:02 (32 min). Reply ACK web1 to silence."


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_certificate(tmp_path_factory.mktemp("cert"))


@pytest.fixture
def trusted(cert: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("SSL_CERT_FILE", str(cert[0]))
    yield


def send(port: int, tls: str, password: str = PASSWORD, user: str | None = USER) -> str:
    channel = EmailChannel(
        EmailConfig(host="127.0.0.1", port=port, tls=tls, user=user, password=password, sender="hbgw@alarm.lan"),
        timeout=10,
    )
    return asyncio.run(channel.send("owner@example.net", TEXT))


def test_it_sends_through_a_starttls_relay_that_requires_login(
    cert: tuple[Path, Path], trusted: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with SmtpSink(tls="starttls", cert=cert, login=(USER, PASSWORD)) as sink:
        message_id = send(sink.port, "starttls")
        ((rcpts, msg),) = sink.wait(1)
        assert sink.logins == [(USER, True)]
    assert rcpts == ["owner@example.net"]
    assert msg["Message-ID"] == message_id
    assert msg["From"] == "hbgw@alarm.lan" and msg["Subject"].startswith("[hbgw] DOWN web1")
    assert TEXT in str(msg.get_payload())
    assert PASSWORD not in caplog.text


def test_it_sends_through_an_smtps_relay(cert: tuple[Path, Path], trusted: None, tmp_path: Path) -> None:
    with SinkProcess(tmp_path / "relay", tls="ssl", cert=cert, login=(USER, PASSWORD)) as relay:
        message_id = send(relay.port, "ssl")
        seen = relay.seen()
    assert seen["logins"] == [[USER, True]]
    (raw,) = seen["messages"]
    assert f"Message-ID: {message_id}" in raw and TEXT in raw


def test_a_wrong_password_is_a_permanent_error_that_names_no_secret(cert: tuple[Path, Path], trusted: None) -> None:
    with SmtpSink(tls="starttls", cert=cert, login=(USER, PASSWORD)) as sink:
        with pytest.raises(ChannelError) as err:
            send(sink.port, "starttls", password="wrong-password")
        assert sink.logins == [(USER, False)] and sink.messages == []
    assert err.value.permanent
    assert "login" in str(err.value) and "535" in str(err.value)
    assert "wrong-password" not in str(err.value)


@pytest.mark.parametrize("tls", ["starttls", "ssl"])
def test_an_untrusted_certificate_is_refused_before_the_password_goes_out(
    tls: str, cert: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "no-such-ca.pem"))
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path / "no-such-dir"))
    with SinkProcess(tmp_path / "relay", tls=tls, cert=cert, login=(USER, PASSWORD)) as relay:
        with pytest.raises(ChannelError) as err:
            send(relay.port, tls)
        seen = relay.seen()
    assert seen == {"logins": [], "messages": []}
    assert "certificate is not trusted" in str(err.value)
    assert not err.value.permanent  # the owner can fix the CA; retries are bounded anyway


def test_plain_text_to_a_relay_that_insists_on_tls_fails_clearly(cert: tuple[Path, Path], trusted: None) -> None:
    with SmtpSink(tls="starttls", cert=cert, login=(USER, PASSWORD)) as sink:
        with pytest.raises(ChannelError) as err:
            send(sink.port, "none")  # a config mistake: the password must not go out in clear
        assert sink.logins == [] and sink.messages == []
    assert err.value.permanent and "[email] tls" in str(err.value)
    with SmtpSink(tls="starttls", cert=cert) as sink, pytest.raises(ChannelError) as err2:
        send(sink.port, "none", user=None)
    assert "530" in str(err2.value)  # "must issue STARTTLS first"
