"""Alerts that reach a person, end to end: the daemon on a simulated modem on a real pty (its own
process, driven through its control socket), an SMTP sink for the email channel, and the CLI.
The escalation call rings the owner's phone and an answer acknowledges; delivery reports land
in the outbox; the daily canary proves the path (and its loss is told); the prepaid balance is
read by USSD. The decisions behind these are tested without I/O in test_escalation.py and
test_smspath.py; the modem side in test_calls.py, test_ussd.py, test_delivery_reports.py."""

from __future__ import annotations

from pathlib import Path

from tests.support.daemon import hbgw, hbgw_json, wait_for
from tests.support.rig import EMAIL, OWNER, rig

LADDER = f"""
[contacts]
owner = {{ phone = "{OWNER}", email = "{EMAIL}" }}

[[alerts.escalation]]
after = "0m"
sms = ["owner"]
[[alerts.escalation]]
after = "2s"
call = ["owner"]
"""
OWN = "+15550009999"  # the simulated SIM's own number


def test_nobody_acknowledges_so_the_phone_rings_and_answering_acknowledges(tmp_path: Path) -> None:
    alerts = 'coalesce = "0s"\nring_for = "10s"\ncall_answer_acks = true'
    with rig(tmp_path, [("web1", "1s", "0s")], alerts=alerts, extra=LADDER) as r:
        r.sim.set_call_timing(ring=0.5)
        r.ping("web1")
        down = r.sim.wait_sent(1, timeout=20)[0]
        assert down["number"] == OWNER and down["text"].startswith("DOWN web1")
        (call,) = r.sim.wait_calls(1, timeout=20, ended=True)
        assert (call["number"], call["answered"]) == (OWNER, True)
        wait_for(lambda: hbgw_json("check", "show", "web1", config=r.cfg)["acked"], what="the answered call's ack")
        shown = hbgw_json("check", "show", "web1", config=r.cfg)
        assert shown["acked_by"] == "call +155***00" and shown["escalation_steps_taken"] == 2
        rows = [(c, k, s) for c, s, k, *_ in r.outbox()]
        assert ("call", "call", "sent") in rows


def test_a_modem_without_voice_says_so_once_and_the_alert_goes_by_email(tmp_path: Path) -> None:
    with rig(tmp_path, [("web1", "1s", "0s")], sim_args=("--fault", "no-voice"), extra=LADDER) as r:
        r.ping("web1")
        r.sim.wait_sent(1, timeout=20)
        wait_for(
            lambda: any("no voice calls" in body for body in r.sink.bodies()),
            timeout=30,
            what="the no-voice email",
        )
        assert r.sim.calls() == []
        calls = [(s, e) for c, s, k, a, e in r.outbox() if c == "call"]
        assert calls and calls[0][0] == "failed" and "no voice calls" in (calls[0][1] or "")
        status = hbgw("status", config=r.cfg, check=False)
        assert "the escalation ladder's calls cannot be made" in status.stdout and status.returncode == 3


def test_delivery_reports_reach_the_outbox(tmp_path: Path) -> None:
    with rig(tmp_path, [("web1", "1s", "0s"), ("web2", "1s", "0s")], alerts='coalesce = "0s"\nrepeat = "1h"') as r:
        r.ping("web1")
        r.sim.wait_sent(1, timeout=20)
        wait_for(
            lambda: (
                [m["delivery"] for m in hbgw_json("sms", "outbox", "--json", config=r.cfg) if m["channel"] == "sms"]
                == ["delivered"]
            ),
            timeout=20,
            what="the delivery report",
        )
        r.sim.set_delivery("failed")
        r.ping("web2")
        r.sim.wait_sent(2, timeout=20)

        def web2() -> dict[str, object]:
            rows = hbgw_json("sms", "outbox", "--json", config=r.cfg)
            return next(m for m in rows if m["channel"] == "sms" and "web2" in str(m["text"]))

        wait_for(lambda: web2()["delivery"] == "failed", timeout=20, what="the failure report")
        assert web2()["state"] == "sent" and web2()["delivery_note"]


def test_the_canary_proves_the_sms_path_every_day(tmp_path: Path) -> None:
    modem = f'own_number = "{OWN}"\ncanary_at = "00:00"\ncanary_window = "0s"'
    with rig(tmp_path, [], modem=modem) as r:
        (canary,) = r.sim.wait_sent(1, timeout=30)
        assert canary["number"] == OWN and canary["text"].startswith("hbgw canary ")

        def proven() -> bool:
            status = hbgw_json("status", "--json", config=r.cfg)
            return bool(status["sms_path"]["proven_at"])

        wait_for(proven, timeout=30, what="the canary back")
        out = hbgw("status", config=r.cfg, check=False).stdout
        assert "sms path: last proven" in out
        assert hbgw_json("sms", "inbox", "--json", config=r.cfg) == []  # not a message for the inbox


def test_a_lost_canary_is_told_and_fails_hbgw_status(tmp_path: Path) -> None:
    modem = f'own_number = "{OWN}"\ncanary_at = "00:00"\ncanary_window = "0s"\ncanary_timeout = "30s"'
    with rig(tmp_path, [], modem=modem, start=False) as r:
        r.sim.set_loopback(lost=True)  # the network swallows it
        r.daemon.start()
        r.sim.wait_sent(1, timeout=30)
        r.sink.wait(1, timeout=60)
        assert any("the SMS path is broken" in body for body in r.sink.bodies())
        status = hbgw("status", config=r.cfg, check=False)
        assert status.returncode == 3 and "the SMS path is broken" in status.stdout


def test_the_prepaid_balance_is_read_and_a_low_one_is_a_trouble(tmp_path: Path) -> None:
    modem = 'balance_ussd = "*100#"\nbalance_min = 20.0'
    with rig(tmp_path, [], modem=modem, sim_args=("--profile", "huawei-e3372")) as r:  # packed GSM-7 answers
        r.sink.wait(1, timeout=60)
        assert any("prepaid balance low: 12.34 (below 20.00)" in body for body in r.sink.bodies())
        status = hbgw("status", config=r.cfg, check=False)
        assert status.returncode == 3 and "prepaid balance low" in status.stdout
