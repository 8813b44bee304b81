"""Push notifications through apprise: who gets push rows (pure policy), the config keys and
their errors, the URLs kept secret, and end to end through the real PushChannel and apprise to
a JSON webhook on 127.0.0.1 (no other network)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import http.server
import json
import logging
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway import config as cfgmod
from gateway.model import Check, Flip, Status
from gateway.rules import escalation, policy
from gateway.rules.settings import Settings, push_key, quiet_hours
from gateway.runtime.channels import PushChannel
from tests.support.checks import make_check
from tests.support.clockrig import EMAIL, OWNER, Gateway
from tests.support.daemon import wait_for

T0 = 1_800_000_000.0  # 2027-01-15 08:00 UTC
NTFY = "ntfy://ntfy.sh/owner-secret-topic-91x"
HOOK = "json://127.0.0.1:9/hook?token=s3cr3t"
S = Settings(sms_to=("+15551230000",), email_to=("o@example.test",), push_to=(NTFY,), repeat=900, tz="UTC")


def check(**kw: object) -> Check:
    up = dict(id=7, status=Status.UP, anchor=T0 - 2000, last_ping=T0 - 1920, created=T0 - 10**5, n_pings=5)
    return make_check(**{**up, **kw})


def went_down(before: Check, after: Check, s: Settings) -> list[policy.Outgoing]:
    flip = Flip(7, T0, before.status, Status.DOWN, "deadline")
    return policy.alerts_for_flip(before, after, flip, key="f1", down_since=T0, body=None, s=s, now=T0)


def rows(out: list[policy.Outgoing]) -> list[tuple[str, str, str]]:
    return [(o.kind, o.channel, o.recipient) for o in out]


# ------------------------------------------------------------------------------ policy (pure)


def test_push_to_is_told_of_every_alert_like_email_to() -> None:
    down = went_down(check(), check(status=Status.DOWN), S)
    assert rows(down) == [
        ("down", "sms", "+15551230000"),
        ("down", "email", "o@example.test"),
        ("down", "push", push_key(NTFY)),
    ]
    assert down[2].text == down[0].text and len({o.dedupe for o in down}) == 3
    reminder = policy.reminders(check(status=Status.DOWN), down_since=T0, s=S, now=T0 + 900)
    assert ("reminder", "push", push_key(NTFY)) in rows(reminder)
    flip = Flip(7, T0 + 60, Status.DOWN, Status.UP, "ping")
    up = policy.alerts_for_flip(
        check(status=Status.DOWN), check(), flip, key="f2", down_since=T0, body=None, s=S, now=T0 + 60
    )
    assert ("up", "push", push_key(NTFY)) in rows(up)
    note = policy.offline_note(T0 - 600, T0, 2, S)
    assert ("note", "push", push_key(NTFY)) in rows(note)


def test_push_follows_the_email_toggle_and_a_mute() -> None:
    no_mail = check(email_enabled=False)
    assert [c for _, c, _ in rows(went_down(no_mail, dataclasses.replace(no_mail, status=Status.DOWN), S))] == ["sms"]
    muted = check(muted_until=T0 + 3600)
    assert went_down(muted, dataclasses.replace(muted, status=Status.DOWN), S) == []


def test_push_alone_keeps_reminders_coming_and_quiet_hours_hold_them() -> None:
    only_push = Settings(push_to=(NTFY,), repeat=900, tz="UTC")
    down = check(status=Status.DOWN)
    assert policy.next_reminder(down, T0, only_push) == T0 + 900
    assert policy.next_reminder(dataclasses.replace(down, email_enabled=False), T0, only_push) is None
    quiet = dataclasses.replace(only_push, quiet_hours=quiet_hours("quiet_hours", "22:00-07:00"))
    night = dt.datetime(2027, 1, 15, 23, 50, tzinfo=dt.UTC).timestamp()
    assert policy.next_reminder(down, night, quiet) == dt.datetime(2027, 1, 16, 7, tzinfo=dt.UTC).timestamp()


PEOPLE = escalation.contacts(
    {
        "owner": {"phone": "+15551230000", "push": [NTFY, HOOK]},
        "partner": {"email": "p@example.test", "push": "gotify://gotify.example/AbCdEf123"},
    }
)
LADDER = escalation.steps(
    [
        {"after": "0m", "sms": ["owner"], "push": ["owner"]},
        {"after": "10m", "push": ["partner"], "email": ["partner"]},
    ],
    PEOPLE,
)


def test_a_ladder_step_pushes_to_its_contacts_and_reminders_follow_who_was_told() -> None:
    s = Settings(sms_to=("+15550000001",), escalation=LADDER, repeat=3600, tz="UTC")
    before = check()
    after = check(status=Status.DOWN, down_since=T0)
    assert rows(went_down(before, after, s)) == [
        ("down", "sms", "+15551230000"),
        ("down", "push", push_key(NTFY)),
        ("down", "push", push_key(HOOK)),
    ]
    climbed = dataclasses.replace(after, ladder_step=1)
    out, taken = policy.escalations(climbed, s, T0 + 600)
    assert taken == 1 and rows(out) == [
        ("escalation", "email", "p@example.test"),
        ("escalation", "push", push_key("gotify://gotify.example/AbCdEf123")),
    ]
    phones, emails, pushes = policy.told(dataclasses.replace(after, ladder_step=2), s)
    assert phones == ("+15551230000",) and emails == ("p@example.test",)
    assert pushes == (NTFY, HOOK, "gotify://gotify.example/AbCdEf123")
    assert LADDER[0].describe() == "at DOWN: sms owner; push owner"
    assert set(s.push_targets) == {push_key(NTFY), push_key(HOOK), push_key("gotify://gotify.example/AbCdEf123")}


def test_a_push_url_never_shows() -> None:
    key = push_key(NTFY)
    assert key.startswith("ntfy://***#") and "secret" not in key and push_key(HOOK) != push_key(NTFY)
    for shown in (repr(S), repr(PEOPLE["owner"]), repr(LADDER), LADDER[0].describe()):
        assert "secret" not in shown and "s3cr3t" not in shown


# ------------------------------------------------------------------------------ the config file


def parse(tables: dict[str, Any]) -> cfgmod.Config:
    return cfgmod.parse(tables, "hbgw.toml")


def test_it_reads_push_in_contacts_alerts_and_steps() -> None:
    cfg = parse(
        {
            "contacts": {"owner": {"phone": "+15551230000", "push": ["ntfy://host/topic", HOOK]}},
            "alerts": {
                "push_to": ["ntfy://host/topic"],
                "escalation": [{"after": "0m", "sms": ["owner"], "push": ["owner"]}],
            },
        }
    )
    assert cfg.alerts.push_to == ("ntfy://host/topic",)
    assert cfg.alerts.escalation[0].push[0].push == ("ntfy://host/topic", HOOK)
    assert len(cfg.alerts.push_targets) == 2


@pytest.mark.parametrize(
    ("tables", "message"),
    [
        (
            {"contacts": {"owner": {"push": ["not a url s3cr3t"]}}},
            "[contacts] owner.push: entry 1 is not an apprise URL",
        ),
        ({"contacts": {"owner": {"push": 5}}}, "[contacts] owner.push: expected apprise URLs"),
        ({"contacts": {"owner": {"push": []}}}, "[contacts] owner: a contact needs"),
        ({"contacts": {"owner": {"pushh": [NTFY]}}}, "[contacts] owner.pushh: unknown key"),
        ({"alerts": {"push_to": ["ntfy:/s3cr3t"]}}, "[alerts] push_to: entry 1 is not an apprise URL"),
        ({"alerts": {"push_to": "ntfy://host/t"}}, "[alerts] push_to: expected a list"),
        (
            {
                "contacts": {"owner": {"phone": "+15551230000"}},
                "alerts": {"escalation": [{"after": "0m", "push": ["owner"]}]},
            },
            "[alerts] escalation: [1].push: contact 'owner' has no push",
        ),
    ],
)
def test_config_errors_name_the_key_never_the_url(tables: dict[str, Any], message: str) -> None:
    with pytest.raises(cfgmod.ConfigError) as e:
        parse(tables)
    assert message in str(e.value) and "s3cr3t" not in str(e.value)


def test_reading_the_config_does_not_load_apprise() -> None:
    code = (
        "import sys, gateway.runtime.daemon, gateway.config as c;"
        "c.parse({'alerts': {'push_to': ['ntfy://h/t']}});"
        "assert 'apprise' not in sys.modules, 'apprise loaded'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent.parent)


# ------------------------------------------------------------------------------ end to end


class Hook(http.server.ThreadingHTTPServer):
    """A JSON webhook on 127.0.0.1: keeps what apprise posts, answers ``status``."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.status = 200
        self.posts: list[dict[str, Any]] = []

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.server_address[1]}/hook?token=s3cr3t"


class _Handler(http.server.BaseHTTPRequestHandler):
    server: Hook

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.posts.append(json.loads(body))
        self.send_response(self.server.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def hook(monkeypatch: pytest.MonkeyPatch) -> Iterator[Hook]:
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    server = Hook()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_a_down_alert_arrives_at_the_push_service(tmp_path: Path, hook: Hook, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG), Gateway(tmp_path, alerts={"push_to": [hook.url]}) as g:
        g.dispatcher.channels["push"] = PushChannel(g.config.alerts.push_targets, timeout=10)
        g.add("web1", 60, 0)
        g.ping("web1")
        g.tick(61)
        wait_for(lambda: len(hook.posts) == 1, timeout=10, what="the push notification")
        [post] = hook.posts
        assert post["title"].startswith("hbgw: DOWN web1") and "Reply ACK web1" in post["message"]
        assert g.sms.sent[0][0] == OWNER and g.email.sent[0][0] == EMAIL
        [row] = [r for r in g.outbox() if r["channel"] == "push"]
        assert row["state"] == "sent" and row["to"] == push_key(hook.url)
        assert hook.url not in json.dumps(g.outbox()) and "s3cr3t" not in json.dumps(g.outbox())
    assert "s3cr3t" not in caplog.text and "Notifying" not in caplog.text  # apprise's lines stay out


@pytest.mark.parametrize(("status", "attempts"), [(500, 3), (403, 1)])
def test_a_failing_push_service_is_retried_then_recorded_and_mailed(
    tmp_path: Path, hook: Hook, status: int, attempts: int
) -> None:
    hook.status = status
    with Gateway(tmp_path, alerts={"push_to": [hook.url]}) as g:
        g.dispatcher.channels["push"] = PushChannel(g.config.alerts.push_targets, timeout=10)
        g.add("web1", 60, 0)
        g.ping("web1")
        g.tick(61)
        for wait in (5, 10)[: attempts - 1]:  # the backoff: 5 s, then 10 s
            g.tick(wait)
        [row] = [r for r in g.outbox() if r["channel"] == "push"]
        assert row["state"] == "failed" and row["attempts"] == attempts
        assert row["error"] == f"push service answered {status}"
        assert len(hook.posts) == attempts
        assert [to for to, _ in g.sms.sent] == [OWNER]  # the SMS carried it all along
        # given up: it goes by email as a failed SMS does (the direct email, and the fallback)
        assert [to for to, _ in g.email.sent] == [EMAIL, EMAIL]
        g.tick(600)
        assert len(hook.posts) == attempts


def test_alerts_close_together_become_one_notification_with_every_text(tmp_path: Path, hook: Hook) -> None:
    with Gateway(tmp_path, alerts={"push_to": [hook.url], "coalesce": "3s"}) as g:
        g.dispatcher.channels["push"] = PushChannel(g.config.alerts.push_targets, timeout=10)
        g.add("web1", 60, 0)
        g.add("web2", 60, 0)
        g.ping("web1", "web2")
        g.tick(61)
        g.tick(3)
        wait_for(lambda: len(hook.posts) == 1, timeout=10, what="the push notification")
        [post] = hook.posts
        assert post["message"].startswith("DOWN web1. DOWN web2\n\n")
        assert "DOWN web1: no heartbeat since" in post["message"] and "DOWN web2: no heartbeat since" in post["message"]
        assert len(g.sms.sent) == 1  # the SMS merged them too


class Ntfy(http.server.ThreadingHTTPServer):
    """An ntfy server on a given port: apprise posts JSON with the topic to its root."""

    def __init__(self, port: int) -> None:
        super().__init__(("127.0.0.1", port), _NtfyHandler)
        self.posts: list[dict[str, Any]] = []


class _NtfyHandler(http.server.BaseHTTPRequestHandler):
    server: Ntfy

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.posts.append({"path": self.path, **json.loads(body)})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_an_ntfy_server_that_is_down_gets_the_alert_once_it_is_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    with socket.socket() as s:  # a port nobody listens on yet
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"ntfy://127.0.0.1:{port}/alarms"
    with Gateway(tmp_path, alerts={"push_to": [url]}) as g:
        g.dispatcher.channels["push"] = PushChannel(g.config.alerts.push_targets, timeout=10)
        g.add("web1", 60, 0)
        g.ping("web1")
        g.tick(61)
        [row] = [r for r in g.outbox() if r["channel"] == "push"]
        assert (row["state"], row["attempts"]) == ("pending", 1)  # refused: it will try again
        assert [to for to, _ in g.sms.sent] == [OWNER]  # the SMS does not wait for it
        server = Ntfy(port)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            g.tick(5)  # the first backoff
            wait_for(lambda: server.posts, timeout=10, what="the ntfy notification")
            [post] = server.posts
            assert post["topic"] == "alarms" and "DOWN web1" in post["message"]
            [row] = [r for r in g.outbox() if r["channel"] == "push"]
            assert (row["state"], row["attempts"]) == ("sent", 2)
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)


def test_push_targets_alone_are_someone_to_alert(tmp_path: Path) -> None:
    with Gateway(tmp_path / "pushed", alerts={"sms_to": [], "email_to": [], "push_to": [NTFY]}) as g:
        assert not any("nobody to alert" in t for t in g.service.views.alert_troubles())
    with Gateway(tmp_path / "nobody", alerts={"sms_to": [], "email_to": []}) as g:
        assert any("nobody to alert" in t for t in g.service.views.alert_troubles())
