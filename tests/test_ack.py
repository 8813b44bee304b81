"""Acknowledging from anywhere, and the escalation ladder through the real dispatcher: an outage
climbs the ladder (SMS, then a call, then the partner) until someone acknowledges by SMS, on the
page, with ``hbgw ack``, or through the API; a restart in the middle of a ladder neither
repeats nor skips a step. The gateway runs in the test's process on clocks the test moves
(tests/support/clockrig.py); the CLI runs as a subprocess on the same data directory."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import ValidationError
from gateway.model import Status
from tests.support.clockrig import OWNER, Clocks, Gateway, RecordingChannel
from tests.support.daemon import hbgw

PARTNER = "+15551239999"
CONTACTS = {"owner": {"phone": OWNER}, "partner": {"phone": PARTNER}}
LADDER = {
    "repeat": "1d",
    "escalation": [
        {"after": "0m", "sms": ["owner"]},
        {"after": "10m", "call": ["owner"]},
        {"after": "20m", "sms": ["partner"], "call": ["partner"]},
    ],
}
SECURITY = {"sms_allow": [OWNER]}


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[Gateway]:
    with Gateway(tmp_path / "data", alerts=LADDER, security=SECURITY, contacts=CONTACTS) as g:
        g.add("web1", 60, 0)
        g.ping("web1")
        yield g


def down(g: Gateway) -> None:
    g.tick(61)  # the deadline passes: DOWN
    assert g.describe("web1")["status"] == "down"


def calls(g: Gateway) -> list[str]:
    return [r for r, _ in g.call.sent]


def test_the_ladder_climbs_until_an_sms_ack_stops_it(gw: Gateway) -> None:
    down(gw)
    assert [r for r, _ in gw.sms.sent] == [OWNER] and calls(gw) == []
    gw.tick(599)
    assert calls(gw) == []  # never early
    gw.tick(1)
    assert calls(gw) == [OWNER]
    gw.receive(OWNER, "ACK web1")
    d = gw.describe("web1")
    assert d["acked"] and d["acked_by"] == "+155***01" and d["escalation_steps_taken"] == 2
    gw.tick(3600)
    assert calls(gw) == [OWNER] and PARTNER not in [r for r, _ in gw.sms.sent]  # stopped
    events = [e.detail for e in gw.events("web1") if e.kind == "acked by +155***01"]
    assert events == [None]


def test_a_later_step_reaches_the_partner_and_the_up_reaches_everyone_told(gw: Gateway) -> None:
    down(gw)
    gw.tick(1200)
    assert calls(gw) == [OWNER, PARTNER]
    assert [r for r, _ in gw.sms.sent] == [OWNER, PARTNER]
    assert gw.sms.sent[1][1].startswith("STILL DOWN web1 for 20 min")
    gw.ping("web1")
    gw.dispatch()
    ups = [(r, t) for r, t in gw.sms.sent if t.startswith("UP web1")]
    assert [r for r, _ in ups] == [OWNER, PARTNER]


def test_a_call_for_a_check_that_came_back_is_not_made(gw: Gateway) -> None:
    down(gw)
    gw.ping("web1")  # back before the call step
    gw.tick(600)
    assert calls(gw) == []


def test_a_restart_in_the_middle_of_the_ladder_repeats_and_skips_nothing(tmp_path: Path) -> None:
    clocks = Clocks()
    args: dict[str, Any] = dict(alerts=LADDER, security=SECURITY, contacts=CONTACTS, clocks=clocks)
    with Gateway(tmp_path / "data", **args) as g:
        g.add("web1", 60, 0)
        g.ping("web1")
        down(g)
        g.tick(600)
        assert calls(g) == [OWNER]
    clocks.run(300)  # the gateway is down for five minutes, mid-ladder
    with Gateway(tmp_path / "data", **args) as g:
        g.tick(0)
        assert calls(g) == [] and g.describe("web1")["escalation_steps_taken"] == 2  # step 2 not again
        g.tick(299)
        assert calls(g) == []
        g.tick(1)
        assert calls(g) == [PARTNER]  # step 3 on time, once


def test_an_ack_for_a_check_that_recovered_changes_nothing(gw: Gateway) -> None:
    down(gw)
    gw.ping("web1")
    gw.receive(OWNER, "ACK web1")
    d = gw.describe("web1")
    assert d["status"] == "up" and not d["acked"] and d["acked_by"] is None


def test_without_a_ladder_nothing_is_called(tmp_path: Path) -> None:
    with Gateway(tmp_path / "data", alerts={"repeat": "5m"}) as g:
        g.add("web1", 60, 0)
        g.ping("web1")
        g.tick(61)
        g.tick(3600)
        assert calls(g) == [] and len(g.sms.sent) >= 2


# ------------------------------------------------------------------------------ the CLI


def test_hbgw_ack_mute_and_unmute(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with Gateway(data, alerts=LADDER, security=SECURITY, contacts=CONTACTS) as g:
        g.add("web1", 60, 0)
        g.add("db1", 60, 0)
        g.add("idle", 60, 0)  # never pinged: new, not down
        g.ping("web1", "db1")
        g.tick(61)
        assert g.service.get_check("web1").status is Status.DOWN
    r = hbgw("ack", "web1", data_dir=data)
    assert r.stdout.startswith("acknowledged web1")
    shown = json.loads(hbgw("check", "show", "web1", "--json", data_dir=data).stdout)
    assert shown["acked"] and shown["acked_by"] == "cli"
    assert hbgw("ack", "web1", data_dir=data).stdout == "web1 was acknowledged already, by cli\n"
    assert hbgw("ack", "idle", data_dir=data).stdout == "idle is not down: nothing to acknowledge\n"
    assert hbgw("mute", "db1", "2h", data_dir=data).stdout == "muted db1 for 2h\n"
    assert json.loads(hbgw("check", "show", "db1", "--json", data_dir=data).stdout)["muted_until"] is not None
    assert hbgw("unmute", data_dir=data).stdout == "unmuted db1\n"
    assert json.loads(hbgw("check", "show", "db1", "--json", data_dir=data).stdout)["muted_until"] is None
    bad = hbgw("mute", "db1", "10s", data_dir=data, check=False)
    assert bad.returncode == 2 and "from 1m to 30d" in bad.stderr
    missing = hbgw("ack", "nope", data_dir=data, check=False)
    assert missing.returncode == 1 and "no check named" in missing.stderr


# ------------------------------------------------------------------------------ answered calls


class AnsweringPhone(RecordingChannel):
    """The call channel as it reports a call someone picked up."""

    async def send(self, recipient: str, text: str) -> str:
        await super().send(recipient, text)
        return "answered"


@pytest.mark.parametrize("acks", [True, False])
def test_an_answered_call_acknowledges_only_when_configured(tmp_path: Path, acks: bool) -> None:
    alerts = {**LADDER, "call_answer_acks": acks}
    with Gateway(tmp_path / "data", alerts=alerts, security=SECURITY, contacts=CONTACTS) as g:
        g.call = AnsweringPhone("call")
        g.dispatcher.channels["call"] = g.call
        g.add("web1", 60, 0)
        g.ping("web1")
        down(g)
        g.tick(600)
        assert calls(g) == [OWNER]
        d = g.describe("web1")
        assert d["acked"] is acks and d["acked_by"] == ("call +155***01" if acks else None)
        answered = [e for e in g.events("web1") if e.kind == "call"]
        assert [e.detail for e in answered] == ([] if acks else ["answered by +155***01"])
        g.tick(600)
        assert calls(g) == ([OWNER] if acks else [OWNER, PARTNER])  # the ladder stopped, or went on


def test_a_check_can_follow_a_ladder_of_its_own(tmp_path: Path) -> None:
    alerts = {**LADDER, "ladders": {"critical": [{"after": "0m", "call": ["owner", "partner"]}]}}
    data = tmp_path / "data"
    with Gateway(data, alerts=alerts, security=SECURITY, contacts=CONTACTS) as g:
        g.add("web1", 60, 0)
        g.add("db1", 60, 0)
        g.service.patch_check("db1", ladder="critical")
        with pytest.raises(ValidationError) as e:
            g.service.patch_check("web1", ladder="nightly")
        assert e.value.field == "ladder" and "critical" in str(e.value)
        g.ping("web1", "db1")
        g.tick(61)
        assert sorted(calls(g)) == [OWNER, PARTNER]  # db1: both phones ring at DOWN
        assert [r for r, _ in g.sms.sent] == [OWNER]  # web1: the default ladder's SMS
        assert g.describe("db1")["ladder"] == "critical"
    r = hbgw("check", "set", "db1", "--ladder", "", data_dir=data)
    assert r.returncode == 0
    bad = hbgw("check", "set", "db1", "--ladder", "nightly", data_dir=data, check=False)
    assert bad.returncode == 2 and "ladder" in bad.stderr
