"""SMS commands. The inbox, the command runner and the outbox run in-process on clocks the test
moves (tests/support/clockrig.py). End to end (``slow``): an SMS injected into the simulated
modem's network reaches the daemon through the AT driver (+CMTI, CMGR, CMGD), is executed
through the service, and the reply leaves through the outbox and the modem."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.model import Status
from tests.support import clockrig
from tests.support.clockrig import Gateway
from tests.support.daemon import wait_for
from tests.support.rig import OWNER, Rig, rig

STRANGER = "+15559990000"
ME = clockrig.OWNER  # the in-process gateway's owner


def replies(r: Rig) -> list[str]:
    return [s["text"] for s in r.sim.sent() if s["number"] == OWNER]


# ------------------------------------------------------------------------------ in-process


def test_it_turns_sms_alerts_off_and_answers(tmp_path: Path) -> None:
    with Gateway(tmp_path, security={"sms_allow": [ME]}) as g:
        g.add("web1", period=3600, grace=3600)
        g.add("db1", period=3600, grace=3600)
        g.receive(ME, "Off web1.")  # as a phone keyboard writes it
        g.dispatch()
        assert g.sms.sent == [(ME, "OFF web1: SMS alerts off")]
        assert g.service.get_check("web1").sms_enabled is False
        assert g.service.get_check("db1").sms_enabled is True
        [msg] = g.inbox()
        assert (msg["from"], msg["text"], msg["allowed"], msg["handled"]) == (ME, "Off web1.", True, True)
        assert msg["reply"] == "OFF web1: SMS alerts off"
        g.receive(ME, "on WEB1")
        g.dispatch()
        assert len(g.sms.sent) == 2 and g.sms.sent[1][0] == ME
        assert g.service.get_check("web1").sms_enabled is True


def test_it_sends_no_reminder_after_an_sms_ack(tmp_path: Path) -> None:
    with Gateway(tmp_path, alerts={"repeat": "2s"}, security={"sms_allow": [ME]}) as g:
        g.add("web1", period=1, grace=0)
        g.add("db1", period=3600, grace=3600)
        g.ping("web1", "db1")
        g.tick(1)
        assert [t.split(":")[0] for t in g.sms.texts()] == ["DOWN web1"]
        g.receive(ME, "ACK")  # the last alert's check
        g.dispatch()
        assert [t.split(":")[0] for t in g.sms.texts()] == ["DOWN web1", "ACK web1"]
        for _ in range(3):
            g.tick(2)  # each a repeat interval: a reminder would be sent now
        assert [t.split(":")[0] for t in g.sms.texts()] == ["DOWN web1", "ACK web1"]
        assert [t.split(":")[0] for t in g.email.texts()] == ["DOWN web1"]  # replies go by SMS only
        check = g.service.get_check("web1")
        assert check.status is Status.DOWN and check.acked and check.alert_at is None
        g.receive(ME, "status")
        g.dispatch()
        assert len(g.sms.sent) == 3 and g.sms.texts()[2].startswith("1 up, 1 down")


def test_it_ignores_strangers_and_a_wrong_pin(tmp_path: Path) -> None:
    with Gateway(tmp_path, security={"sms_allow": [ME], "sms_pin": "4321"}) as g:
        g.add("web1", period=3600, grace=3600)
        g.receive(STRANGER, "OFF web1")
        g.receive(ME, "1234 OFF web1")  # wrong PIN
        g.receive(ME, "OFF web1")  # no PIN
        g.dispatch()
        # no reply to anyone; only the stranger's SMS is forwarded to the owner by email
        # ([relay] forward_sms = "strangers", the default), never obeyed
        assert g.sms.sent == []
        assert [(r["kind"], r["channel"]) for r in g.outbox()] == [("forward", "email")]
        assert "OFF web1" in g.email.sent[0][1]
        assert g.service.get_check("web1").sms_enabled is True
        inbox = g.inbox()
        assert [(m["from"], m["allowed"], m["handled"], m["reply"]) for m in inbox] == [
            (STRANGER, False, False, None),
            (ME, True, True, None),
            (ME, True, True, None),
        ]
        g.receive(ME, "4321 STATUS")  # a correct one afterwards proves the pipe works
        g.dispatch()
        assert g.sms.sent == [(ME, "1 new.")]


def test_it_helps_with_an_unknown_check(tmp_path: Path) -> None:
    with Gateway(tmp_path, security={"sms_allow": [ME]}) as g:
        g.add("web1", period=3600, grace=3600)
        g.receive(ME, "off wbe1")
        g.dispatch()
        [(to, text)] = g.sms.sent
        assert to == ME and "web1" in text and len(text) <= 160
        assert g.service.get_check("web1").sms_enabled is True


# ------------------------------------------------------------------------------ end to end


@pytest.mark.slow
def test_it_answers_status_and_acks_the_last_alert(tmp_path: Path) -> None:
    with rig(
        tmp_path,
        [("web1", "1s", "0s"), ("db1", "1h", "1h")],
        alerts='coalesce = "0s"\nrepeat = "1h"',
        security=f'sms_allow = ["{OWNER}"]',
    ) as r:
        r.ping("web1", "db1")
        r.sim.wait_sent(1, timeout=10)  # DOWN web1
        r.sim.inject(OWNER, "ACK")
        wait_for(lambda: any(t.startswith("ACK web1") for t in replies(r)), timeout=15, what="ACK reply")
        r.sim.inject(OWNER, "status")
        wait_for(lambda: any(t.startswith("1 up, 1 down") for t in replies(r)), timeout=15, what="STATUS reply")
        assert [t.split(":")[0] for t in replies(r)] == ["DOWN web1", "ACK web1", "1 up, 1 down"]
