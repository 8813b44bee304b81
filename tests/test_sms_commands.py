"""SMS commands end to end: an SMS injected into the simulated modem's network reaches the
daemon through the AT driver (+CMTI, CMGR, CMGD), is executed through the service, and the
reply leaves through the outbox and the modem."""

from __future__ import annotations

import time
from pathlib import Path

from tests.support.daemon import hbgw_json, wait_for
from tests.support.rig import OWNER, Rig, rig

STRANGER = "+15559990000"


def inbox(r: Rig) -> list[dict]:
    return list(hbgw_json("sms", "inbox", config=r.cfg))


def replies(r: Rig) -> list[str]:
    return [s["text"] for s in r.sim.sent() if s["number"] == OWNER]


def test_it_turns_sms_alerts_off_and_answers(tmp_path: Path) -> None:
    with rig(tmp_path, [("web1", "1h", "1h"), ("db1", "1h", "1h")], security=f'sms_allow = ["{OWNER}"]') as r:
        r.sim.inject(OWNER, "Off web1.")  # as a phone keyboard writes it
        sent = r.sim.wait_sent(1, timeout=15)
        assert sent[0]["number"] == OWNER and sent[0]["text"] == "OFF web1: SMS alerts off"
        assert hbgw_json("check", "show", "web1", config=r.cfg)["sms_enabled"] is False
        assert hbgw_json("check", "show", "db1", config=r.cfg)["sms_enabled"] is True
        msgs = inbox(r)
        assert msgs[0]["from"] == OWNER and msgs[0]["allowed"] and msgs[0]["handled"]
        r.sim.inject(OWNER, "on WEB1")
        r.sim.wait_sent(2, timeout=15)
        assert hbgw_json("check", "show", "web1", config=r.cfg)["sms_enabled"] is True


def test_it_answers_status_and_acks_the_last_alert(tmp_path: Path) -> None:
    with rig(
        tmp_path,
        [("web1", "1s", "0s"), ("db1", "1h", "1h")],
        alerts='coalesce = "0s"\nrepeat = "2s"',
        security=f'sms_allow = ["{OWNER}"]',
    ) as r:
        r.ping("web1", "db1")
        r.sim.wait_sent(1, timeout=10)  # DOWN web1
        r.sim.inject(OWNER, "ACK")
        wait_for(lambda: any(t.startswith("ACK web1") for t in replies(r)), timeout=15, what="ACK reply")
        n = len(replies(r))
        time.sleep(3)  # longer than repeat: no reminder comes after the ACK
        assert not any(t.startswith("STILL DOWN") for t in replies(r)[n:])
        r.sim.inject(OWNER, "status")
        wait_for(lambda: any(t.startswith("1 up, 1 down") for t in replies(r)), timeout=15, what="STATUS reply")


def test_it_ignores_strangers_and_a_wrong_pin(tmp_path: Path) -> None:
    with rig(tmp_path, [("web1", "1h", "1h")], security=f'sms_allow = ["{OWNER}"]\nsms_pin = "4321"') as r:
        r.sim.inject(STRANGER, "OFF web1")
        r.sim.inject(OWNER, "1234 OFF web1")  # wrong PIN
        r.sim.inject(OWNER, "OFF web1")  # no PIN
        wait_for(lambda: len(inbox(r)) == 3, timeout=15, what="three stored messages")
        r.sim.inject(OWNER, "4321 STATUS")  # a correct one afterwards proves the pipe works
        r.sim.wait_sent(1, timeout=15)
        assert [s["text"].split(":")[0] for s in r.sim.sent()] == ["0 up, 1 new"] or len(r.sim.sent()) == 1
        assert hbgw_json("check", "show", "web1", config=r.cfg)["sms_enabled"] is True
        msgs = {m["from"]: m for m in inbox(r)}
        assert msgs[STRANGER]["allowed"] is False and msgs[STRANGER]["reply"] is None
        assert all(s["number"] == OWNER for s in r.sim.sent())


def test_it_helps_with_an_unknown_check(tmp_path: Path) -> None:
    with rig(tmp_path, [("web1", "1h", "1h")], security=f'sms_allow = ["{OWNER}"]') as r:
        r.sim.inject(OWNER, "off wbe1")
        text = r.sim.wait_sent(1, timeout=15)[0]["text"]
        assert "web1" in text and len(text) <= 160
        assert hbgw_json("check", "show", "web1", config=r.cfg)["sms_enabled"] is True
