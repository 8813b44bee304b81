"""Alerting end to end: the daemon as a subprocess, a simulated modem on a real pty (its own
subprocess), and a real SMTP server on loopback receiving the email channel."""

from __future__ import annotations

import time
from pathlib import Path

from tests.support.daemon import hbgw, hbgw_json, wait_for
from tests.support.rig import EMAIL, OWNER, rig


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
        # paused: nothing more, although it would be down again by now
        time.sleep(2.5)
        assert len(r.texts()) == n
    states = {(c, s) for c, s, *_ in r.outbox()}
    assert states == {("sms", "sent"), ("email", "sent")}


def test_it_sends_no_sms_but_email_when_the_sms_toggle_is_off(tmp_path: Path) -> None:
    with rig(tmp_path, [("web1", "1s", "0s")]) as r:
        hbgw("check", "set", "web1", "--sms", "off", config=r.cfg)
        r.ping("web1")
        _, mail = r.sink.wait(1)[0]
        assert "DOWN web1" in mail["Subject"]
        assert r.texts() == []
        assert hbgw_json("check", "show", "web1", config=r.cfg)["sms_enabled"] is False


def test_it_stops_reminders_once_acked_through_the_cli_toggle(tmp_path: Path) -> None:
    with rig(tmp_path, [("web1", "1s", "0s")], alerts='coalesce = "0s"\nrepeat = "1s"') as r:
        r.ping("web1")
        r.sim.wait_sent(2, timeout=10)
        hbgw("check", "set", "web1", "--sms", "off", "--email", "off", config=r.cfg)
        n = len(r.texts())
        time.sleep(2.5)  # two repeat intervals: reminders would have come by now
        assert len(r.texts()) <= n + 1  # at most the one already decided when the toggle landed


def test_it_retries_a_failing_modem_then_falls_back_to_email(tmp_path: Path) -> None:
    alerts = 'coalesce = "0s"\nfallback_after = 2\nrepeat = "1h"'
    with rig(tmp_path, [("web1", "1s", "0s")], alerts=alerts) as r:
        r.sim.fail_next_send(500, count=10)
        r.ping("web1")
        # the DOWN email at once; then the SMS's fallback and the "SMS is failing" notice, which
        # go to the same address at the same moment and so arrive merged in one email
        mails = r.sink.wait(2, timeout=30)
        bodies = [str(m.get_payload()) for _, m in mails]
        assert bodies[0].startswith("DOWN web1: no heartbeat")
        assert "DOWN web1" in bodies[1] and "sending SMS is failing" in bodies[1]
        assert r.texts() == []
        out = hbgw_json("sms", "outbox", config=r.cfg)
        sms = [o for o in out if o["channel"] == "sms"]
        assert len(sms) == 1 and sms[0]["state"] == "failed" and sms[0]["attempts"] == 2
        assert "500" in sms[0]["error"]


def test_it_delivers_an_alert_in_flight_when_killed_at_most_once_more(tmp_path: Path) -> None:
    with rig(tmp_path, [("web1", "1s", "0s")], alerts='coalesce = "0s"\nrepeat = "1h"') as r:
        r.sim.latency(4.0, command="+CMGS")  # the modem is slow to take the SMS
        r.ping("web1")
        wait_for(lambda: ("sms", "sending") in {(c, s) for c, s, *_ in r.outbox()}, timeout=10, what="SMS in flight")
        r.daemon.kill9()
        r.sim.latency(0.0, command="+CMGS")
        r.daemon.start()
        wait_for(lambda: any(t.startswith("DOWN web1") for t in r.texts()), timeout=20, what="DOWN SMS after restart")
        wait_for(lambda: ("sms", "sent") in {(c, s) for c, s, *_ in r.outbox()}, what="marked sent")
        assert 1 <= sum(t.startswith("DOWN web1") for t in r.texts()) <= 2


def test_it_sends_one_offline_note_and_no_false_down_after_downtime(tmp_path: Path) -> None:
    with rig(tmp_path, [("web1", "2s", "1s"), ("web2", "2s", "1s")]) as r:
        r.ping("web1", "web2")
        assert r.daemon.stop() == 0
        time.sleep(3.5)  # longer than period + grace, with the gateway down
        r.daemon.start()
        r.sim.wait_sent(1, timeout=10)
        r.ping("web1", "web2")  # the servers are fine: they keep pinging
        time.sleep(1)
        texts = r.texts()
        assert len(texts) == 1 and texts[0].startswith("hbgw was offline from ")
        assert "2 server(s) given a fresh period" in texts[0]
        assert not any("DOWN" in t for t in texts)


def test_it_merges_six_silent_servers_into_one_summary_sms(tmp_path: Path) -> None:
    names = [f"srv{i}" for i in range(6)]
    with rig(tmp_path, [(n, "1s", "0s") for n in names], alerts='coalesce = "1s"\nrepeat = "1h"') as r:
        r.ping(*names)
        sms = r.sim.wait_sent(1, timeout=10)
        time.sleep(1.5)  # a second message, if any, would have left by now
        texts = r.texts()
        assert len(texts) == 1, texts
        assert texts[0].startswith("6 of 6 servers silent since ")
        assert "network or power?" in texts[0] and len(texts[0]) <= 160
        assert sms[0]["parts"] == 1


def test_it_keeps_to_the_sms_budget_and_emails_the_rest(tmp_path: Path) -> None:
    names = [f"srv{i}" for i in range(4)]
    alerts = 'coalesce = "0s"\nrepeat = "1h"\nmax_sms_per_hour = 2'
    with rig(tmp_path, [(n, f"{1 + i}s", "0s") for i, n in enumerate(names)], alerts=alerts) as r:
        r.ping(*names)
        wait_for(
            lambda: sum("DOWN" in str(m.get_payload()) for _, m in r.sink.messages) >= 6,
            timeout=20,
            what="alert emails",
        )
        texts = r.texts()
        downs = [t for t in texts if t.startswith("DOWN")]
        assert len(downs) == 2
        assert sum("budget of 2/h reached" in t for t in texts) == 1


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
