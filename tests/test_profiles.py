"""Every simulator profile (the modems people buy) through the whole path over a real pty:
init, status, sending single and multipart SMS, receiving, and, with the daemon, the alert, the
reply to an SMS command and the recovery of a modem that hangs at its first send. Then each
fault mode against the driver, and ``hbgw modem probe`` on a profile run by
``hbgw simulate-modem --profile``.

The profiles themselves (what each modem prints, per its manual) are tested in
test_sim_profiles.py; here the driver and the gateway meet them."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from modem.errors import CmsError
from modem.gammu import GammuModem
from modem.simulator import PROFILES, build_options
from tests.support.aio import eventually, run
from tests.support.daemon import hbgw, wait_for
from tests.support.rig import OWNER, rig
from tests.support.sim import SimProcess
from tests.test_at_modem import NUMBER, Inbox, Rig, opened

TECHNOLOGY = {"generic": "GSM", "huawei-e3372": "LTE", "sim7600": "LTE", "ec25": "LTE", "sim800": "GSM"}
LONG = "db1 DOWN since 03:00 UTC; disk /var full; last heartbeat 2h ago. " * 4  # two parts

# ------------------------------------------------------------------------------ the driver on each profile


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_the_driver_runs_the_whole_path_on_every_profile(make_pty_rig: Callable[..., Rig], profile: str) -> None:
    options = build_options(profile, flood_interval=0.05)  # the floods at full tilt
    rig = make_pty_rig(options)
    inbox = Inbox()

    async def main() -> None:
        async with opened(rig.modem(), inbox) as modem:
            status = await modem.status()
            assert (status.manufacturer, status.model) == (options.manufacturer, options.model)
            assert (status.sim, status.registration, status.radio) == ("READY", "home", "on")
            assert status.access_technology == TECHNOLOGY[profile]
            assert await modem.send_sms(NUMBER, "DOWN web1: no heartbeat") != []
            assert len(await modem.send_sms(NUMBER, LONG)) == 2
            rig.net.inject(OWNER, "STATUS")
            rig.net.inject(OWNER, "ACK " + "web1 " * 40)  # a multipart one back
            messages = await inbox.wait(2)
            assert sorted(m.text for m in messages) == sorted(["STATUS", "ACK " + "web1 " * 40])
            await eventually(lambda: rig.sim.storage_fill()[0] == 0, what="the storage emptied")

    run(main())
    sent = rig.net.sent()
    assert [(s.text, s.parts) for s in sent] == [("DOWN web1: no heartbeat", 1), (LONG, 2)]
    if options.urc_control == "^CURC":
        assert "AT^CURC=0" in rig.sim.commands  # the floods switched off
    if "ME" in options.storages:
        assert 'AT+CPMS="ME","ME","ME"' in rig.sim.commands


# ------------------------------------------------------------------------------ the faults, against the driver


@pytest.mark.parametrize("profile", ["ec25", "sim800"])
def test_a_radio_that_boots_off_is_switched_on(make_pty_rig: Callable[..., Rig], profile: str) -> None:
    rig = make_pty_rig(build_options(profile, ["radio-off"]))

    async def main() -> None:
        async with opened(rig.modem()) as modem:
            assert ((await modem.status()).radio, (await modem.status()).registration) == ("on", "home")
            await modem.send_sms(NUMBER, "DOWN web1")

    run(main())
    assert "AT+CFUN=1" in rig.sim.commands and len(rig.net.sent()) == 1


@pytest.mark.parametrize("profile", ["ec25", "sim800"])
def test_a_denied_registration_is_reported_with_what_it_means(make_pty_rig: Callable[..., Rig], profile: str) -> None:
    rig = make_pty_rig(build_options(profile, ["denied"]))

    async def main() -> None:
        async with opened(rig.modem()) as modem:
            status = await modem.status()
            assert status.registration == "denied"
            assert status.registration_note is not None and "alerts cannot be sent" in status.registration_note

    run(main())


def test_an_sms_only_registration_still_carries_alerts(make_pty_rig: Callable[..., Rig]) -> None:
    rig = make_pty_rig(build_options("sim7600", ["sms-only"]))

    async def main() -> None:
        async with opened(rig.modem()) as modem:
            status = await modem.status()
            assert (status.registration, status.sms_only, status.access_technology) == ("home", True, "LTE")
            await modem.send_sms(NUMBER, "DOWN web1")

    run(main())
    assert len(rig.net.sent()) == 1


def test_an_lte_network_without_sms_is_explained_not_retried_forever(make_pty_rig: Callable[..., Rig]) -> None:
    rig = make_pty_rig(build_options("ec25", ["lte-no-sms"]))

    async def main() -> None:
        async with opened(rig.modem()) as modem:
            assert (await modem.status()).access_technology == "LTE"
            with pytest.raises(CmsError) as info:
                await modem.send_sms(NUMBER, "DOWN web1")
            assert info.value.code == 500
            assert "LTE" in info.value.hint

    run(main())
    assert rig.net.sent() == []


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_a_full_storage_is_emptied_and_what_waited_arrives(make_pty_rig: Callable[..., Rig], profile: str) -> None:
    options = build_options(profile, ["storage-full"])
    rig = make_pty_rig(options)
    rig.net.inject(OWNER, "ACK web1")  # held by the network: no room
    assert rig.net.undelivered() == 1
    inbox = Inbox()

    async def main() -> None:
        async with opened(rig.modem(), inbox):
            await eventually(lambda: any(m.text == "ACK web1" for m in inbox.messages), 10.0, "the held ACK")
            await eventually(lambda: rig.sim.storage_fill()[0] == 0, what="the storage emptied")

    run(main())
    # what sat in the storage was handed over too (the gateway's inbox keeps it), never lost
    assert len(inbox.messages) == options.storage_size + 1


def test_a_full_storage_reported_while_running_is_read_and_counted(make_pty_rig: Callable[..., Rig]) -> None:
    rig = make_pty_rig(build_options("ec25"))
    inbox = Inbox()

    async def main() -> None:
        async with opened(rig.modem(), inbox) as modem:
            rig.sim.urc('+QIND: "smsfull","ME"')
            await eventually(lambda: "AT+CMGL=4" in list(rig.sim.commands)[-2:], what="a listing")
            assert (await modem.status()).storage_full_reports == 1

    run(main())


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_junk_slots_leave_the_storage(make_pty_rig: Callable[..., Rig], profile: str) -> None:
    rig = make_pty_rig(build_options(profile, ["junk-slots"]))
    junk = len(rig.sim.stored("SM"))
    assert junk == 3
    inbox = Inbox()

    async def main() -> None:
        async with opened(rig.modem(), inbox):
            await eventually(lambda: rig.sim.stored("SM") == [], what="the junk deleted")
            rig.net.inject(OWNER, "STATUS")
            await eventually(lambda: any(m.text == "STATUS" for m in inbox.messages), what="the next SMS")

    run(main())
    # what could be salvaged was handed over marked (the inbox shows it so), the rest deleted
    salvaged = [m for m in inbox.messages if m.text != "STATUS"]
    assert salvaged and all(m.undecodable or m.damaged for m in salvaged)


# ------------------------------------------------------------------------------ the daemon on each profile


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_the_gateway_alerts_answers_and_recovers_on_every_profile(tmp_path: Path, profile: str) -> None:
    """The whole product on each modem: the first DOWN SMS hangs the modem (a fault that only a
    radio cycle clears); the ladder clears it, the alert goes out, and the owner's STATUS is
    answered."""
    with rig(
        tmp_path,
        [("web1", "1s", "0s")],
        sim_args=("--profile", profile, "--fault", "hang-radio"),
        modem='recover_after = "1s"\nsend_timeout = "2s"',
        security=f'sms_allow = ["{OWNER}"]',
    ) as r:
        assert r.sim.status()["profile"] == profile
        r.ping("web1")
        down = r.sim.wait_sent(1, timeout=25)[0]
        assert down["number"] == OWNER and down["text"].startswith("DOWN web1")
        wait_for(lambda: "radio cycle" in r.daemon.log(), what="the radio cycle in the log")
        r.sim.inject(OWNER, "STATUS")
        sent = r.sim.wait_sent(2, timeout=25)
        assert sent[1]["number"] == OWNER and "web1" in sent[1]["text"]
    assert sum(s["text"].startswith("DOWN web1") for s in sent) == 1  # sent once, not lost, not twice


# ------------------------------------------------------------------------------ python-gammu on each profile


@pytest.mark.parametrize("profile", sorted(set(PROFILES) - {"generic"}))
def test_python_gammus_own_at_driver_works_on_every_profile(make_pty_rig: Callable[..., Rig], profile: str) -> None:
    """The gammu backend is gammu's own AT driver: it must cope with each modem's chatter too.
    (Not with the EC25's "+QIND: "csq"" reports, which are off unless someone switches them on:
    gammu then times out on a command the report lands in. The AT driver copes: see above.)"""
    options = build_options(profile, flood_urcs=()) if profile == "ec25" else build_options(profile)
    rig = make_pty_rig(options)
    inbox = Inbox()

    async def main() -> None:
        modem = GammuModem(rig.url, poll_interval=0)
        modem.set_inbound_handler(inbox)
        await modem.open()
        try:
            status = await modem.status()  # gammu shortens the maker's name ("SIMCOM_Ltd" -> "SIMCOM")
            assert options.manufacturer.lower().startswith((status.manufacturer or "?").lower())
            assert len(await modem.send_sms(NUMBER, "DOWN web1: no heartbeat")) == 1
            rig.net.inject(OWNER, "STATUS")
            await eventually(lambda: rig.sim.storage_fill()[0] == 1, what="the SMS in storage")
            assert await modem.poll_inbound() == 1
        finally:
            await modem.close()

    run(main(), timeout=60)
    assert [m.text for m in inbox.messages] == ["STATUS"]
    assert [s.text for s in rig.net.sent()] == ["DOWN web1: no heartbeat"]


# ------------------------------------------------------------------------------ hbgw modem probe on a profile


@pytest.mark.parametrize(
    ("profile", "faults", "verdict", "technology"),
    [
        ("ec25", [], "yes", "LTE"),
        ("huawei-e3372", [], "yes", "LTE"),
        ("sim800", [], "yes", "GSM"),
        ("sim7600", ["denied"], "no, because", None),
    ],
)
def test_modem_probe_shows_what_the_profile_reports(
    tmp_path: Path, profile: str, faults: list[str], verdict: str, technology: str | None
) -> None:
    extra = [arg for f in faults for arg in ("--fault", f)]
    with SimProcess(tmp_path / "modem", "--profile", profile, *extra) as control:
        assert control.status()["profile"] == profile
        r = hbgw("modem", "probe", "--device", str(tmp_path / "modem"), "--json", data_dir=tmp_path, check=False)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["verdict"].startswith(verdict)
    assert report["manufacturer"] == build_options(profile).manufacturer
    assert report.get("access_technology") == technology


def test_the_profiles_are_listed() -> None:
    out = hbgw("simulate-modem", "--list-profiles").stdout
    for name in PROFILES:
        assert f"  {name} " in out
