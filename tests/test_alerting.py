"""Alerting. What is decided and sent, and when, runs in-process on clocks the test moves
(tests/support/clockrig.py), so "nothing more was sent" is exact. The whole path runs end to
end in the ``slow`` tests: the daemon as a subprocess, a simulated modem on a real pty (its own
subprocess), and a real SMTP server on loopback receiving the email channel."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path

import pytest

from gateway.model import Status
from gateway.runtime.channels import ChannelError
from tests.support import clockrig
from tests.support.clockrig import T0, Gateway
from tests.support.daemon import hbgw, hbgw_json, wait_for
from tests.support.rig import EMAIL, OWNER, rig


def heads(texts: list[str]) -> list[str]:
    """Each text up to the check's name: "DOWN web1", "STILL DOWN web1", "UP web1"."""
    return [t.split(":")[0].split(" for ")[0].split(" after ")[0] for t in texts]


# ------------------------------------------------------------------------------ in-process


def test_it_sends_nothing_for_a_paused_check_that_would_be_down_again(tmp_path: Path) -> None:
    with Gateway(tmp_path, alerts={"repeat": "2s"}) as g:
        g.add("web1", period=1, grace=1)
        g.ping("web1")
        g.tick(2)  # down
        g.tick(2)
        g.tick(2)  # two reminders
        g.ping("web1")
        g.dispatch()  # UP
        g.service.pause("web1")  # before its next period ends
        expected = ["DOWN web1", "STILL DOWN web1", "STILL DOWN web1", "UP web1"]
        assert heads(g.sms.texts()) == expected and heads(g.email.texts()) == expected
        rows = len(g.outbox())
        for _ in range(3):  # each step past a period + grace and a repeat interval
            assert g.tick(2) == []
        assert g.service.get_check("web1").status is Status.PAUSED
        assert heads(g.sms.texts()) == expected and heads(g.email.texts()) == expected
        assert len(g.outbox()) == rows


def test_it_sends_no_sms_but_email_when_the_sms_toggle_is_off(tmp_path: Path) -> None:
    with Gateway(tmp_path, alerts={"repeat": "1h"}) as g:
        g.add("web1", period=1, grace=0)
        g.service.set_sms_enabled("web1", False)
        g.ping("web1")
        g.tick(1)
        assert g.email.sent == [
            (clockrig.EMAIL, "DOWN web1: no heartbeat since 08:00 (1 s). Reply ACK web1 to silence.")
        ]
        g.tick(3600)
        assert heads(g.email.texts()) == ["DOWN web1", "STILL DOWN web1"]
        assert g.sms.sent == []
        assert [(m["channel"], m["kind"], m["state"]) for m in g.outbox()] == [
            ("email", "down", "sent"),
            ("email", "reminder", "sent"),
        ]
        assert g.describe("web1")["sms_enabled"] is False


def test_it_stops_reminders_once_both_channels_are_turned_off(tmp_path: Path) -> None:
    # A reminder waiting out the coalescing delay when the toggles land was decided before
    # them and still leaves; nothing is decided after them.
    with Gateway(tmp_path, alerts={"repeat": "10s", "coalesce": "3s"}) as g:
        g.add("web1", period=1, grace=0)
        g.ping("web1")
        g.tick(1)
        g.tick(3)  # DOWN, after the coalescing delay
        g.tick(10)  # a reminder is decided, and waits 3 s
        assert [(m["kind"], m["state"]) for m in g.outbox() if m["channel"] == "sms"] == [
            ("down", "sent"),
            ("reminder", "pending"),
        ]
        g.service.set_sms_enabled("web1", False)
        g.service.set_email_enabled("web1", False)
        g.tick(3)
        assert heads(g.sms.texts()) == heads(g.email.texts()) == ["DOWN web1", "STILL DOWN web1"]
        rows = len(g.outbox())
        g.tick(10)
        g.tick(10)  # two repeat intervals: reminders would have been decided and sent by now
        assert heads(g.sms.texts()) == heads(g.email.texts()) == ["DOWN web1", "STILL DOWN web1"]
        assert len(g.outbox()) == rows
        assert g.service.get_check("web1").alert_at is None


def test_it_retries_a_failing_modem_then_falls_back_to_email(tmp_path: Path) -> None:
    with Gateway(tmp_path, alerts={"fallback_after": 2, "repeat": "1h"}) as g:
        g.sms.fail_next(ChannelError("+CMS ERROR: 500"), count=2)  # a third attempt would succeed
        g.add("web1", period=1, grace=0)
        g.ping("web1")
        g.tick(1)  # the DOWN email leaves; the SMS fails once and waits for its retry
        assert heads(g.email.texts()) == ["DOWN web1"]
        sms = [m for m in g.outbox() if m["channel"] == "sms"]
        assert [(m["state"], m["attempts"], m["error"]) for m in sms] == [("pending", 1, "+CMS ERROR: 500")]
        g.tick(60)  # past the retry's backoff: fails again, and that is enough
        # the SMS's fallback and the "SMS is failing" notice go to the same address at the same
        # moment and so leave merged in one email
        assert len(g.email.sent) == 2 and g.email.sent[1][0] == clockrig.EMAIL
        assert "DOWN web1" in g.email.texts()[1] and "sending SMS is failing" in g.email.texts()[1]
        assert g.sms.sent == []
        sms = [m for m in g.outbox() if m["channel"] == "sms"]
        assert [(m["state"], m["attempts"], m["error"]) for m in sms] == [("failed", 2, "+CMS ERROR: 500")]
        g.tick(60)
        assert len(g.email.sent) == 2 and g.sms.sent == []


def test_it_sends_one_offline_note_and_no_false_down_after_downtime(tmp_path: Path) -> None:
    with Gateway(tmp_path) as g:
        for name in ("web1", "web2"):
            g.add(name, period=2, grace=1)
        g.ping("web1", "web2")
        g.clocks.run(3.5)  # the gateway was stopped at T0: longer than period + grace
        reset = g.service.fresh_start(offline_since=T0)  # what the daemon does on start-up
        assert sorted(c.name for c in reset) == ["web1", "web2"]
        assert g.tick() == []  # the watchdog's first look
        assert g.sms.texts() == [
            "hbgw was offline from 08:00 to 08:00; 2 server(s) given a fresh period, no alerts for that time."
        ]
        for _ in range(4):
            g.ping("web1", "web2")  # the servers are fine: they keep pinging
            assert g.tick(1) == []
        assert len(g.sms.sent) == len(g.email.sent) == 1
        assert [c.status for c in g.service.list_checks()] == [Status.UP, Status.UP]


def test_it_merges_six_silent_servers_into_one_summary_sms(tmp_path: Path) -> None:
    names = [f"srv{i}" for i in range(6)]
    with Gateway(tmp_path, alerts={"coalesce": "1s", "repeat": "1h"}) as g:
        for name in names:
            g.add(name, period=1, grace=0)
        g.ping(*names)
        assert len(g.tick(1)) == 6  # all down at once; they wait a second for each other
        assert g.sms.sent == []
        g.tick(1)
        assert len(g.sms.sent) == 1
        text = g.sms.texts()[0]
        assert text.startswith("6 of 6 servers silent since 08:00: network or power? srv0, srv1")
        assert len(text) <= 160  # one SMS
        assert len(g.email.sent) == 1 and g.email.texts()[0].startswith(text)
        rows = len(g.outbox())
        g.tick(60)
        g.tick(1)
        assert len(g.sms.sent) == len(g.email.sent) == 1 and len(g.outbox()) == rows


def test_it_keeps_to_the_sms_budget_and_emails_the_rest(tmp_path: Path) -> None:
    names = [f"srv{i}" for i in range(4)]
    with Gateway(tmp_path, alerts={"repeat": "1h", "max_sms_per_hour": 2}) as g:
        for i, name in enumerate(names):
            g.add(name, period=1 + i, grace=0)
        g.ping(*names)
        for _ in names:
            g.tick(1)  # one more goes down each second
        texts = g.sms.texts()
        assert heads(texts[:2]) == ["DOWN srv0", "DOWN srv1"] and len(texts) == 3
        assert texts[2].startswith("hbgw: SMS budget of 2/h reached; further alerts by email until 09:00.")
        # each DOWN by email, and the two the budget kept from SMS once more as their fallback
        assert Counter(heads(g.email.texts())) == {"DOWN srv0": 1, "DOWN srv1": 1, "DOWN srv2": 2, "DOWN srv3": 2}
        refused = [m["check"] for m in g.outbox() if m["channel"] == "sms" and m["state"] == "failed"]
        assert refused == ["srv2", "srv3"]


# ------------------------------------------------------------------------------ end to end


@pytest.mark.slow
def test_it_sends_one_down_sms_then_reminders_then_up(tmp_path: Path) -> None:
    with rig(tmp_path, [("web1", "1s", "1s")], alerts='coalesce = "0s"\nrepeat = "2s"') as r:
        r.ping("web1")
        first = r.sim.wait_sent(1, timeout=10)[0]
        assert first["number"] == OWNER
        assert first["text"].startswith("DOWN web1: no heartbeat since ")
        assert first["text"].endswith("Reply ACK web1 to silence.") and first["parts"] == 1
        sent = r.sim.wait_sent(3, timeout=10)
        assert [s["text"].split(" web1")[0] for s in sent] == ["DOWN", "STILL DOWN", "STILL DOWN"]
        r.ping("web1")
        hbgw("check", "pause", "web1", config=r.cfg)  # before its next period ends
        wait_for(lambda: any(t.startswith("UP web1 after ") for t in r.texts()), what="UP SMS")
        n = len(r.texts())
        assert sum(t.startswith("DOWN") for t in r.texts()) == 1
        # every SMS also went by email
        mails = r.sink.wait(n)
        assert all(rcpt == [EMAIL] for rcpt, _ in mails)
        assert "DOWN web1" in str(mails[0][1]["Subject"])
    states = {(c, s) for c, s, *_ in r.outbox()}
    assert states == {("sms", "sent"), ("email", "sent")}


@pytest.mark.slow
def test_it_delivers_an_alert_in_flight_when_killed_at_most_once_more(tmp_path: Path) -> None:
    with rig(tmp_path, [("web1", "1s", "0s")], alerts='coalesce = "0s"\nrepeat = "1h"') as r:
        r.sim.latency(2.0, command="+CMGS")  # the modem is slow to confirm the SMS
        r.ping("web1")
        r.sim.wait_sent(1, timeout=20)  # the network has it; the +CMGS answer is 2 s away
        assert ("sms", "sending") in {(c, s) for c, s, *_ in r.outbox()}
        r.daemon.kill9()
        r.sim.latency(0.0, command="+CMGS")
        r.daemon.start()
        wait_for(lambda: ("sms", "sent") in {(c, s) for c, s, *_ in r.outbox()}, timeout=30, what="marked sent")
        # sent once more (the modem had it, the gateway could not know), and no more than that
        texts = r.texts()
        assert len(texts) == 2 and texts[0] == texts[1] and texts[0].startswith("DOWN web1")


@pytest.mark.slow
def test_it_sends_the_offline_note_by_sms_after_a_restart(tmp_path: Path) -> None:
    with rig(tmp_path, [("web1", "2s", "1s"), ("web2", "2s", "1s")]) as r:
        r.ping("web1", "web2")
        down_at = max(
            dt.datetime.fromisoformat(hbgw_json("check", "show", n, config=r.cfg)["down_at"]) for n in ("web1", "web2")
        )
        assert r.daemon.stop() == 0
        # down_at is to the second: one more, and both deadlines passed with the gateway down
        wait_for(lambda: dt.datetime.now(dt.UTC) > down_at + dt.timedelta(seconds=1), what="the deadlines to pass")
        r.daemon.start()
        sent = r.sim.wait_sent(1, timeout=10)
        assert len(sent) == 1 and sent[0]["text"].startswith("hbgw was offline from ")
        assert "2 server(s) given a fresh period" in sent[0]["text"]
        assert [c["status"] for c in hbgw_json("check", "list", config=r.cfg)] == ["up", "up"]


@pytest.mark.slow
def test_it_emails_the_owner_when_the_modem_stays_unusable(tmp_path: Path) -> None:
    with rig(tmp_path, [("web1", "1h", "1h")], alerts='modem_alert_after = "2s"') as r:
        wait_for(lambda: "modem connected" in r.daemon.log(), what="modem up")
        r.sim.unplug()  # like pulling the USB stick
        _, mail = r.sink.wait(1, timeout=20)[0]
        assert "cannot send SMS" in str(mail.get_payload())
        r.sim.replug()
        wait_for(lambda: len(r.sink.messages) >= 2, timeout=30, what="modem-back email")
        assert "works again" in str(r.sink.messages[1][1].get_payload())
        assert len(r.sink.messages) == 2  # one email per spell, not one per minute
