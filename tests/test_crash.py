"""Crashes with SMS in flight (issue 12): a real ``hbgw serve`` killed with SIGKILL while the
simulated modem holds an SMS whose ``+CMGS`` has not come back, then started again. No alert is
lost, each crash costs at most one duplicate, no alert goes out in more than two messages, and the
message sent on restart names each server once, as it is then (it flapped meanwhile)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.support.daemon import wait_for
from tests.support.rig import Rig, rig

NAMES = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]  # none inside another
KILLS = 4


def settled(r: Rig) -> bool:
    """Every SMS row finished (sent or failed), none waiting or in flight."""
    return all(state in ("sent", "failed") for channel, state, *_ in r.outbox() if channel == "sms")


def named(text: str) -> set[str]:
    return {n for n in NAMES if re.search(rf"\b{n}\b", text)}


def listings(text: str, name: str) -> int:
    """How often a message names the server, not counting its "Reply ACK <name>" hint."""
    return len(re.findall(rf"\b{name}\b", text)) - len(re.findall(rf"ACK {name}\b", text))


@pytest.mark.slow
def test_it_loses_no_alert_and_repeats_each_at_most_once_per_crash(tmp_path: Path) -> None:
    checks = [(n, "1h", "1h") for n in NAMES]
    with rig(tmp_path, checks, alerts='coalesce = "0s"\nrepeat = "1h"') as r:
        tokens = {n: r.token(n) for n in NAMES}

        def ping(name: str, suffix: str = "") -> None:  # curl alone: no CLI call while SMS are in flight
            subprocess.run(
                ["curl", "-fsS", "-o", "/dev/null", f"{r.daemon.url}/ping/{tokens[name]}{suffix}"], check=True
            )

        for name in NAMES:
            ping(name)
        in_flight: list[set[str]] = []
        for k in range(KILLS):
            first, second = NAMES[2 * k], NAMES[2 * k + 1]
            r.sim.latency(1.5, command="+CMGS")  # the modem is slow to confirm
            n = len(r.sim.sent())
            ping(first, "/fail")
            sent = r.sim.wait_sent(n + 1, timeout=20)  # the network has it; +CMGS is 1.5 s away
            # While first's SMS is in flight: first recovers and fails again, second fails; they wait
            ping(first)
            ping(first, "/fail")
            ping(second, "/fail")
            # first's SMS is still unconfirmed: its row is being sent, the three new ones wait
            assert [s for c, s, *_ in r.outbox() if c == "sms"][-4:] == ["sending", "pending", "pending", "pending"]
            r.daemon.kill9()
            in_flight.append(named(sent[-1]["text"]))
            r.sim.latency(0.0, command="+CMGS")
            r.daemon.start()
            wait_for(lambda: settled(r), timeout=20, what="the outbox to drain after a restart")
        texts = r.texts()
    alerted = NAMES[: 2 * KILLS]
    counts = {n: sum(n in named(t) for t in texts) for n in alerted}
    assert all(listings(t, n) <= 1 for t in texts for n in NAMES), texts  # each server once a message
    assert all(counts[n] >= 1 for n in alerted), (counts, texts)  # none lost
    assert all(counts[n] <= 2 for n in alerted), (counts, texts)  # none in more than two messages
    repeated = {n for n in alerted if counts[n] == 2}
    assert repeated <= set().union(*in_flight), (repeated, in_flight, texts)  # only what was in flight
    assert sum(counts.values()) - len(alerted) <= KILLS, texts  # at most one duplicate per crash
    assert [named(t) for t in texts if named(t) & {"alpha"}] == [{"alpha"}, {"alpha", "bravo"}]  # merged on restart
