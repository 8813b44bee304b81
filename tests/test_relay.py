"""The box as the house's SMS gateway, its core: fitting a text into SMS parts, who may be
texted, each sender's share of the budget (pure), and the dispatcher sending relayed messages
after our own alerts, one SMS each, waiting while the budget is used up (in-process, injected
clocks)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from gateway.errors import ValidationError
from gateway.relay import RelayOff
from gateway.rules import relay as rules
from gateway.store import Refused
from modem.pdu import count_parts, is_gsm7
from tests.support.clockrig import OWNER, Gateway
from tests.support.daemon import wait_for

PARTNER = "+15551230002"
STRANGER = "+15559990000"
ON = {"enabled": True}


# ------------------------------------------------------------------ fitting a text


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("\u201cBackup\u201d finished \u2013 3 files\u2026", '"Backup" finished - 3 files...'),
        ("Temp 45°C → high", "Temp 45 degC -> high"),
        ("Zoë's NAS: ça va", "Zoe's NAS: ca va"),  # GSM-7 has neither ë nor ç (only Ç)
        ("Ünïcödé ok", "Ünicödé ok"),
        ("Disk full 😱", "Disk full 😱"),  # no spelling for an emoji: left as it is
    ],
)
def test_it_folds_what_gsm7_lacks_into_gsm7(text: str, want: str) -> None:
    assert rules.fold_gsm7(text) == want


def test_it_composes_subject_then_body_without_quotes_blank_runs_or_signature() -> None:
    body = "Dear admin,\n\n\n  the UPS   is on battery.\n> earlier message\n\nRuntime 12 min\n-- \nmy NAS\n"
    assert rules.compose(" UPS  alert ", body) == "UPS alert\nDear admin,\n\nthe UPS is on battery.\n\nRuntime 12 min"
    assert rules.compose("", "only body") == "only body"
    assert rules.compose("only subject", "  \n ") == "only subject"


def test_it_cuts_a_long_text_to_the_parts_allowed_and_says_so() -> None:
    long = "disk sda1 is failing " * 30
    one = rules.fit(long, 1, "ucs2")
    assert count_parts(one) == ("gsm7", 1) and one.endswith("...") and 150 <= len(one) <= 160
    three = rules.fit(long, 3, "ucs2")
    assert count_parts(three)[1] == 3 and len(three) > 400
    cyrillic = rules.fit("Сервер недоступен " * 20, 1, "ucs2")
    assert count_parts(cyrillic) == ("ucs2", 1) and cyrillic.endswith("…")
    assert rules.fit("short", 1, "ucs2") == "short"
    with pytest.raises(ValidationError) as e:
        rules.fit("  \n ", 1, "ucs2")
    assert e.value.field == "text"


def test_transliterate_mode_never_sends_ucs2() -> None:
    assert rules.fit("Сервер 😱 down", 1, "transliterate") == "?????? ? down"
    assert rules.fit("Сервер down", 1, "ucs2") == "Сервер down"


@settings(max_examples=300, deadline=None)
@given(text=hs.text(min_size=1, max_size=900).filter(lambda t: t.strip()), parts=hs.integers(1, 4))
def test_a_fitted_text_always_fits_and_keeps_its_start(text: str, parts: int) -> None:
    for mode in ("ucs2", "transliterate"):
        try:
            out = rules.fit(text, parts, mode)
        except ValidationError:
            continue
        assert out and count_parts(out)[1] <= parts
        if mode == "transliterate":
            assert is_gsm7(out)


# ------------------------------------------------------------------ who may be texted


def recipients(to: object) -> tuple[str, ...]:
    return rules.recipients(to, owner=(OWNER,), contacts={"partner": PARTNER}, allowed=("+15557770000",))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("to", "want"),
    [
        (None, (OWNER,)),
        ("", (OWNER,)),
        ("owner", (OWNER,)),
        ("partner", (PARTNER,)),
        (OWNER, (OWNER,)),
        ("0015551230002", (PARTNER,)),
        ("+1 (555) 777-0000", ("+15557770000",)),
        (["partner", OWNER, PARTNER], (PARTNER, OWNER)),
    ],
)
def test_it_texts_only_the_owner_contacts_and_allowed_numbers(to: object, want: tuple[str, ...]) -> None:
    assert recipients(to) == want


@pytest.mark.parametrize(
    ("to", "words"),
    [
        (STRANGER, "may not be texted"),
        ("nobody", "not a phone number"),
        ("+1", "not a phone number"),
        ([], "no recipient"),
        ([42], "phone number"),
    ],
)
def test_it_refuses_anyone_else_naming_the_field(to: object, words: str) -> None:
    with pytest.raises(ValidationError) as e:
        recipients(to)
    assert e.value.field == "to" and words in str(e.value)


def test_a_sender_is_allowed_by_address_domain_or_network() -> None:
    allow = ("nas@home.lan", "@ups.lan")
    assert rules.sender_allowed("NAS@home.lan", "10.0.0.9", allow, False)
    assert rules.sender_allowed("upsd@ups.lan", None, allow, False)
    assert not rules.sender_allowed("evil@home.lan.example", "10.0.0.9", allow, False)
    assert rules.sender_allowed("anyone@anywhere", "192.168.1.5", allow, True)


def test_each_sender_has_its_share_and_relaying_has_its_part_of_the_budget() -> None:
    r = rules.RelayRules(enabled=True, per_sender_per_hour=3, share=0.5)
    assert rules.room(2, 10, budget=30, rules=r) is None
    assert "this sender's 3" in (rules.room(3, 3, budget=30, rules=r) or "")
    assert "budget for relayed" in (rules.room(0, 15, budget=30, rules=r) or "")
    assert rules.relay_budget(1, r) == 1 and rules.relay_budget(30, rules.RelayRules()) == 0


# ------------------------------------------------------------------ through the dispatcher


def test_relaying_is_off_unless_configured(tmp_path: Path) -> None:
    with Gateway(tmp_path / "data") as g, pytest.raises(RelayOff):
        g.service.relay.queue(None, "hello", "test")


def test_a_relayed_sms_goes_as_it_is_after_the_alerts_and_never_merged(tmp_path: Path) -> None:
    with Gateway(tmp_path / "data", relay={**ON, "max_parts": 1}, contacts={"partner": {"phone": PARTNER}}) as g:
        from gateway.runtime.channels import ChannelError

        g.sms.fail_next(ChannelError("modem busy", permanent=False), count=2)
        [a] = g.service.relay.queue("owner", "UPS on battery", "mail ups@home.lan", subject="UPS")
        [b] = g.service.relay.queue(["partner"], "Runtime 9 min", "api key 1")
        g.dispatch()  # both failed once: they retry in a while
        assert not g.sms.sent
        g.add("web1", 60, 0)
        g.add("web2", 60, 0)
        g.ping("web1", "web2")
        g.tick(61)  # both DOWN, and the relayed messages are due again: one claim holds them all
        texts = g.sms.sent
        assert [to for to, _ in texts] == [OWNER, OWNER, PARTNER]
        assert "web1" in texts[0][1] and "web2" in texts[0][1]  # the alerts, merged, first
        assert texts[1] == (OWNER, "UPS\nUPS on battery")  # then the relayed one, as it is
        assert texts[2] == (PARTNER, "Runtime 9 min")
        rows = {r.id: r for r in g.service.views.outbox(100)}
        assert (rows[a].kind, rows[a].state, rows[a].origin) == ("relay", "sent", "mail ups@home.lan")
        assert g.service.relay.message(b) is not None and g.service.relay.message(b).state == "sent"  # type: ignore[union-attr]


def test_a_sender_over_its_share_is_refused_and_nothing_is_queued(tmp_path: Path) -> None:
    with Gateway(tmp_path / "data", relay={**ON, "per_sender_per_hour": 2}) as g:
        g.service.relay.queue(None, "one", "mail nas@home.lan")
        g.service.relay.queue(None, "two", "mail nas@home.lan")
        with pytest.raises(Refused, match="this sender's 2"):
            g.service.relay.queue(None, "three", "mail nas@home.lan")
        g.service.relay.queue(None, "other sender", "mail ups@home.lan")  # its own share
        g.dispatch()
        assert g.sms.texts() == ["one", "two", "other sender"]
        g.clocks.run(3601)
        g.service.relay.queue(None, "an hour later", "mail nas@home.lan")
        g.dispatch()
        assert g.sms.texts()[-1] == "an hour later"


def test_relayed_messages_wait_while_the_budget_is_used_up_and_alerts_keep_going(tmp_path: Path) -> None:
    budget = {"max_sms_per_hour": 2, "repeat": "1d"}
    with Gateway(tmp_path / "data", alerts=budget, relay={**ON, "share": 1.0}) as g:
        [first] = g.service.relay.queue(None, "relayed 1", "api key 1")
        g.dispatch()
        g.add("web1", 60, 0)
        g.ping("web1")
        g.tick(61)  # the DOWN alert: the second SMS of the hour
        assert g.sms.texts()[0] == "relayed 1" and "web1" in g.sms.texts()[1]
        [second] = g.service.relay.queue(None, "relayed 2", "api key 1")
        g.dispatch()
        row = g.service.relay.message(second)
        assert row is not None and (row.state, row.error) == ("pending", "waiting for the SMS budget (2/h)")
        assert len(g.sms.sent) == 2
        assert not any("relayed" in t for t in g.email.texts())  # no email fallback for relayed messages
        g.tick(3600)
        wait_for(lambda: "relayed 2" in g.sms.texts(), what="the relayed SMS once the hour has passed")
        assert g.service.relay.message(first) is not None


def test_a_relayed_message_that_cannot_go_fails_visibly_without_email(tmp_path: Path) -> None:
    from gateway.runtime.channels import ChannelError

    with Gateway(tmp_path / "data", relay=ON) as g:
        g.sms.fail_next(ChannelError("CMS ERROR 38: network out of order", permanent=True))
        [i] = g.service.relay.queue(None, "hello", "api key 1")
        g.dispatch()
        row = g.service.relay.message(i)
        assert row is not None and row.state == "failed" and "network out of order" in (row.error or "")
        assert not g.email.sent  # not ours: no email fallback


def test_the_modem_page_shows_each_senders_share_of_the_hour(tmp_path: Path) -> None:
    with Gateway(tmp_path / "data", alerts={"max_sms_per_hour": 20}, relay={**ON, "share": 0.5}) as g:
        assert g.service.views.modem_page().relay_budget == 10
        g.service.relay.queue(None, "one", "mail nas@home.lan")
        g.service.relay.queue(None, "two", "mail nas@home.lan")
        g.service.relay.queue(None, "three", "api key 2 (ha)")
        page = g.service.views.modem_page()
        assert page.relayed == {"mail nas@home.lan": 2, "api key 2 (ha)": 1}
        g.clocks.run(3601)
        assert g.service.views.modem_page().relayed == {}
    with Gateway(tmp_path / "off") as g:
        assert g.service.views.modem_page().relay_budget is None
