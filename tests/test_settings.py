"""The one alert-settings validator (gateway.rules.settings): the page and the API edits, the
stored overrides, and the config file's [alerts] table all go through the same rules."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from gateway import config
from gateway.config import ConfigError
from gateway.rules import settings as rules
from gateway.rules.settings import Settings, SettingsError

FILE = Settings(
    sms_to=("+15551230000",),
    email_to=("o@example.test",),
    sms_allow=("+15551230000",),
    sms_pin="4321",
    repeat=900.0,
    quiet_hours=(22 * 60, 7 * 60),
    max_sms_per_hour=30,
    tz="UTC",
)


# ------------------------------------------------------------------------------ parse_edit: accepted


@pytest.mark.parametrize(
    ("raw", "typed"),
    [
        ({"sms_to": "+15551230000"}, {"sms_to": ("+15551230000",)}),
        ({"sms_to": "+1 555 123 0000"}, {"sms_to": ("+15551230000",)}),
        ({"sms_to": "+1-555-123-0000"}, {"sms_to": ("+15551230000",)}),
        ({"sms_to": "+1 (555) 123.0000"}, {"sms_to": ("+15551230000",)}),
        ({"sms_to": "0033 6 12 34 56 78"}, {"sms_to": ("+33612345678",)}),
        ({"sms_to": "+33612345678\n0033612345678, +33 6 12 34 56 78"}, {"sms_to": ("+33612345678",)}),
        ({"sms_to": ["+15551230000", "", " ", "+15551239999"]}, {"sms_to": ("+15551230000", "+15551239999")}),
        ({"sms_to": "+1234567"}, {"sms_to": ("+1234567",)}),
        ({"sms_to": "+123456789012345"}, {"sms_to": ("+123456789012345",)}),
        ({"sms_to": ""}, {"sms_to": ()}),
        ({"sms_to": []}, {"sms_to": ()}),
        ({"sms_to": None}, {"sms_to": ()}),
        ({"sms_allow": "0044 20 7946 0000; +44-20-7946-0000"}, {"sms_allow": ("+442079460000",)}),
        (
            {"email_to": " o@example.test \nops@example.test,o@example.test"},
            {"email_to": ("o@example.test", "ops@example.test")},
        ),
        ({"email_to": []}, {"email_to": ()}),
        ({"sms_pin": "1234"}, {"sms_pin": "1234"}),
        ({"sms_pin": " 12345678 "}, {"sms_pin": "12345678"}),
        ({"sms_pin": ""}, {"sms_pin": None}),
        ({"sms_pin": None}, {"sms_pin": None}),
        ({"repeat": "15m"}, {"repeat": 900.0}),
        ({"repeat": "1h30m"}, {"repeat": 5400.0}),
        ({"repeat": "1s"}, {"repeat": 1.0}),
        ({"repeat": "365d"}, {"repeat": 365 * 86400.0}),
        ({"repeat": 600}, {"repeat": 600.0}),
        ({"repeat": 2.5}, {"repeat": 2.5}),
        ({"quiet_hours": "22:00-07:00"}, {"quiet_hours": (1320, 420)}),
        ({"quiet_hours": " 7:05 - 9:30 "}, {"quiet_hours": (425, 570)}),
        ({"quiet_hours": "00:00-23:59"}, {"quiet_hours": (0, 1439)}),
        ({"quiet_hours": ""}, {"quiet_hours": None}),
        ({"quiet_hours": None}, {"quiet_hours": None}),
        ({"max_sms_per_hour": "1"}, {"max_sms_per_hour": 1}),
        ({"max_sms_per_hour": " 12 "}, {"max_sms_per_hour": 12}),
        ({"max_sms_per_hour": 10_000}, {"max_sms_per_hour": 10_000}),
        ({}, {}),
        (
            {"sms_to": "+15551230000", "repeat": "10m", "sms_pin": "9876"},
            {"sms_to": ("+15551230000",), "repeat": 600.0, "sms_pin": "9876"},
        ),
    ],
)
def test_it_normalizes_what_the_page_accepts(raw: dict[str, Any], typed: dict[str, Any]) -> None:
    assert rules.parse_edit(raw) == typed


# ------------------------------------------------------------------------------ parse_edit: refused


@pytest.mark.parametrize(
    ("raw", "field", "message"),
    [
        (
            {"sms_to": "555-1234"},
            "sms_to",
            "'555-1234' is not an E.164 number (international format, e.g. +15551234567)",
        ),
        (
            {"sms_to": "+15551230000\nabc"},
            "sms_to",
            "'abc' is not an E.164 number (international format, e.g. +15551234567)",
        ),
        (
            {"sms_to": "+0123456789"},
            "sms_to",
            "'+0123456789' is not an E.164 number (international format, e.g. +15551234567)",
        ),
        ({"sms_to": "+123456"}, "sms_to", "'+123456' is not an E.164 number (international format, e.g. +15551234567)"),
        (
            {"sms_to": "+1234567890123456"},
            "sms_to",
            "'+1234567890123456' is not an E.164 number (international format, e.g. +15551234567)",
        ),
        ({"sms_to": [5]}, "sms_to", "expected phone numbers as text"),
        ({"sms_to": 5}, "sms_to", "a list, or one entry per line"),
        (
            {"sms_allow": "+15551230000, 12"},
            "sms_allow",
            "'12' is not an E.164 number (international format, e.g. +15551234567)",
        ),
        ({"email_to": "nope"}, "email_to", "'nope' is not an email address"),
        ({"email_to": "a@b@c"}, "email_to", "'a@b@c' is not an email address"),
        ({"email_to": "o@example.test\nx y@example.test"}, "email_to", "'x y@example.test' is not an email address"),
        ({"email_to": ["o@" + "x" * 253]}, "email_to", f"'o@{'x' * 253}' is not an email address"),
        ({"email_to": [None]}, "email_to", "expected email addresses as text"),
        ({"sms_pin": "123"}, "sms_pin", "a PIN is 4 to 8 digits (or leave it empty)"),
        ({"sms_pin": "123456789"}, "sms_pin", "a PIN is 4 to 8 digits (or leave it empty)"),
        ({"sms_pin": "12a4"}, "sms_pin", "a PIN is 4 to 8 digits (or leave it empty)"),
        ({"sms_pin": 1234}, "sms_pin", "a PIN is 4 to 8 digits, as text"),
        ({"repeat": "0s"}, "repeat", "must be between 1s and 365d"),
        ({"repeat": 0.5}, "repeat", "must be between 1s and 365d"),
        ({"repeat": "366d"}, "repeat", "must be between 1s and 365d"),
        ({"repeat": float("nan")}, "repeat", "must be between 1s and 365d"),
        ({"repeat": "soon"}, "repeat", "'soon' is not a duration (use e.g. 90s, 15m, 2h, 1d, 1h30m)"),
        ({"repeat": True}, "repeat", "a duration such as 90s, 15m, 2h or 1d"),
        ({"repeat": None}, "repeat", "a duration such as 90s, 15m, 2h or 1d"),
        ({"quiet_hours": "24:00-07:00"}, "quiet_hours", "'24:00-07:00' has an invalid time"),
        ({"quiet_hours": "22:60-07:00"}, "quiet_hours", "'22:60-07:00' has an invalid time"),
        ({"quiet_hours": "22-07"}, "quiet_hours", "'22-07' is not a time range like 22:00-07:00"),
        ({"quiet_hours": "10pm-7am"}, "quiet_hours", "'10pm-7am' is not a time range like 22:00-07:00"),
        ({"quiet_hours": [1320, 420]}, "quiet_hours", "a time range like 22:00-07:00"),
        ({"max_sms_per_hour": 0}, "max_sms_per_hour", "must be between 1 and 10000, got 0"),
        ({"max_sms_per_hour": "10001"}, "max_sms_per_hour", "must be between 1 and 10000, got 10001"),
        ({"max_sms_per_hour": "lots"}, "max_sms_per_hour", "a whole number"),
        ({"max_sms_per_hour": 2.5}, "max_sms_per_hour", "a whole number"),
        ({"max_sms_per_hour": True}, "max_sms_per_hour", "a whole number"),
        (
            {"sms_too": "+15551230000"},
            "sms_too",
            "not a setting (the settings are sms_to, email_to, sms_allow, sms_pin, repeat, quiet_hours,"
            " max_sms_per_hour)",
        ),
        (
            {"coalesce": 5},
            "coalesce",
            "not a setting (the settings are sms_to, email_to, sms_allow, sms_pin, repeat, quiet_hours,"
            " max_sms_per_hour)",
        ),
        ({"repeat": "10m", "sms_pin": "1"}, "sms_pin", "a PIN is 4 to 8 digits (or leave it empty)"),
    ],
)
def test_it_refuses_a_bad_value_naming_the_field(raw: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(SettingsError) as e:
        rules.parse_edit(raw)
    assert (e.value.field, str(e.value)) == (field, message)


# ------------------------------------------------------------------------------ overrides, apply


@pytest.mark.parametrize(
    ("wanted", "stored"),
    [
        (FILE, {}),
        (dataclasses.replace(FILE, repeat=600.0), {"repeat": 600.0}),
        (dataclasses.replace(FILE, coalesce=9.0, tz="Europe/Paris", daily_summary=480), {}),
        (dataclasses.replace(FILE, sms_pin=None, quiet_hours=None), {"sms_pin": None, "quiet_hours": None}),
        (
            dataclasses.replace(FILE, sms_to=("+15551230000", "+15551239999"), max_sms_per_hour=5, coalesce=1.0),
            {"sms_to": ("+15551230000", "+15551239999"), "max_sms_per_hour": 5},
        ),
    ],
    ids=["same", "repeat", "only-file-fields", "cleared", "several"],
)
def test_it_stores_only_the_editable_fields_that_differ(wanted: Settings, stored: dict[str, Any]) -> None:
    assert rules.overrides(FILE, wanted) == stored


@pytest.mark.parametrize(
    ("saved", "settings_in_force"),
    [
        ({}, FILE),
        ({"repeat": 600}, dataclasses.replace(FILE, repeat=600.0)),
        ({"sms_to": ["+1 555 123 9999"]}, dataclasses.replace(FILE, sms_to=("+15551239999",))),
        ({"sms_pin": ""}, dataclasses.replace(FILE, sms_pin=None)),
        ({"quiet_hours": ""}, dataclasses.replace(FILE, quiet_hours=None)),
        ({"quiet_hours": "08:00-09:00"}, dataclasses.replace(FILE, quiet_hours=(480, 540))),
        ({"quiet_hours": [480, 540]}, dataclasses.replace(FILE, quiet_hours=(480, 540))),  # the old stored shape
        ({"quiet_hours": []}, dataclasses.replace(FILE, quiet_hours=None)),  # the old shape, cleared
    ],
)
def test_it_applies_saved_overrides_to_the_file_settings(saved: dict[str, Any], settings_in_force: Settings) -> None:
    assert rules.apply(FILE, saved) == settings_in_force


@pytest.mark.parametrize(
    ("saved", "field"),
    [
        ({"sms_to": ["nope"]}, "sms_to"),
        ({"quiet_hours": [2000, 420]}, "quiet_hours"),
        ({"repeat": "never"}, "repeat"),
        ({"coalesce": 3}, "coalesce"),
    ],
)
def test_it_validates_saved_overrides_again(saved: dict[str, Any], field: str) -> None:
    with pytest.raises(SettingsError) as e:
        rules.apply(FILE, saved)
    assert e.value.field == field


@pytest.mark.parametrize("damaged", [[1320], ["22", "x"]], ids=["one-element", "not-numbers"])
def test_it_refuses_a_damaged_old_quiet_hours_list_with_a_settings_error(damaged: list[Any]) -> None:
    with pytest.raises(SettingsError) as e:
        rules.apply(FILE, {"quiet_hours": damaged})
    assert e.value.field == "quiet_hours"


def test_it_stores_overrides_as_json_values() -> None:
    wanted = dataclasses.replace(FILE, sms_to=("+15551239999",), sms_pin=None, quiet_hours=(480, 540), repeat=60.0)
    assert rules.to_json(rules.overrides(FILE, wanted)) == {
        "sms_to": ["+15551239999"],
        "sms_pin": "",
        "repeat": 60.0,
        "quiet_hours": "08:00-09:00",
    }


digits = "0123456789"
numbers = hs.builds(lambda a, b: "+" + a + b, hs.sampled_from("123456789"), hs.text(digits, min_size=6, max_size=14))
emails = hs.builds(
    lambda a, b: f"{a}@{b}",
    hs.text("abcxyz019._+-", min_size=1, max_size=12),
    hs.text("abcxyz019.-", min_size=1, max_size=12),
)
editable = hs.fixed_dictionaries(
    {},
    optional={
        "sms_to": hs.lists(numbers, max_size=3, unique=True).map(tuple),
        "email_to": hs.lists(emails, max_size=3, unique=True).map(tuple),
        "sms_allow": hs.lists(numbers, max_size=3, unique=True).map(tuple),
        "sms_pin": hs.one_of(hs.none(), hs.text(digits, min_size=4, max_size=8)),
        "repeat": hs.one_of(
            hs.floats(rules.REPEAT_MIN, rules.REPEAT_MAX, allow_nan=False), hs.integers(1, 86400).map(float)
        ),
        "quiet_hours": hs.one_of(hs.none(), hs.tuples(hs.integers(0, 1439), hs.integers(0, 1439))),
        "max_sms_per_hour": hs.integers(1, rules.BUDGET_MAX),
    },
)


@settings(deadline=None, max_examples=500)
@given(editable, editable)
def test_it_round_trips_what_the_page_saves(file_fields: dict[str, Any], wanted_fields: dict[str, Any]) -> None:
    file = dataclasses.replace(FILE, **file_fields)
    wanted = dataclasses.replace(file, **wanted_fields)
    stored = json.loads(json.dumps(rules.to_json(rules.overrides(file, wanted))))
    assert rules.apply(file, stored) == wanted
    assert set(stored) == {k for k in rules.EDITABLE if getattr(wanted, k) != getattr(file, k)}


# ------------------------------------------------------------------------------ the config file: same rules


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("sms_to", ["555-1234"]),
        ("sms_to", ["+15551230000", "+0123456789"]),
        ("email_to", ["nope"]),
        ("email_to", ["a@b@c"]),
        ("sms_allow", ["+123456"]),
        ("sms_pin", "123"),
        ("sms_pin", "12a4"),
        ("repeat", "0s"),
        ("repeat", "0.5s"),
        ("repeat", "366d"),
        ("repeat", "soon"),
        ("quiet_hours", "24:00-07:00"),
        ("quiet_hours", "22-07"),
        ("max_sms_per_hour", 0),
        ("max_sms_per_hour", 10_001),
    ],
)
def test_it_refuses_in_the_config_file_what_the_page_refuses(key: str, value: Any) -> None:
    with pytest.raises(SettingsError) as page:
        rules.parse_edit({key: value})
    with pytest.raises(ConfigError) as file:
        config.parse({"alerts": {key: value}})
    assert str(file.value) == f"<config>: [alerts] {key}: {page.value}"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("sms_to", ["0033 6 12 34 56 78", "+33612345678", "+1-555-123-0000"]),
        ("email_to", [" o@example.test ", "o@example.test"]),
        ("sms_allow", ["+1 (555) 123.0000"]),
        ("sms_pin", " 4321 "),
        ("sms_pin", ""),
        ("repeat", "1h30m"),
        ("quiet_hours", "22:00-07:00"),
        ("max_sms_per_hour", 10_000),
    ],
)
def test_it_reads_in_the_config_file_what_the_page_reads(key: str, value: Any) -> None:
    alerts = config.parse({"alerts": {key: value}}).alerts
    assert getattr(alerts, key) == rules.parse_edit({key: value})[key]


def test_it_loads_the_same_refusal_from_a_toml_file(tmp_path: Path) -> None:
    path = tmp_path / "hbgw.toml"
    path.write_text('[alerts]\nsms_to = ["+15551230000", "555-1234"]\n')
    with pytest.raises(ConfigError) as e:
        config.load(path)
    assert str(e.value) == (
        f"{path}: [alerts] sms_to: '555-1234' is not an E.164 number (international format, e.g. +15551234567)"
    )


def test_it_still_reads_the_allow_list_and_pin_from_security() -> None:
    c = config.parse({"security": {"sms_allow": ["+1 555 123 0000", "0015551230000"], "sms_pin": "4321"}})
    assert (c.alerts.sms_allow, c.alerts.sms_pin) == (("+15551230000",), "4321")
    assert not hasattr(c.security, "sms_allow") and not hasattr(c.security, "sms_pin")


@pytest.mark.parametrize(
    ("key", "alerts", "security"),
    [("sms_allow", ["+15551230000"], ["+15551239999"]), ("sms_pin", "1111", "2222"), ("sms_pin", "1111", "1111")],
)
def test_it_refuses_the_allow_list_or_pin_in_both_places(key: str, alerts: Any, security: Any) -> None:
    with pytest.raises(ConfigError) as e:
        config.parse({"alerts": {key: alerts}, "security": {key: security}})
    assert str(e.value) == f"<config>: [security] {key}: also set in [alerts]; keep it in [alerts] {key} only"


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("sms_pin", "12", "a PIN is 4 to 8 digits (or leave it empty)"),
        ("sms_allow", ["12"], "'12' is not an E.164 number (international format, e.g. +15551234567)"),
        ("sms_allow", "+15551230000", "expected a list, got str"),
    ],
)
def test_it_applies_the_same_rules_to_the_old_place(key: str, value: Any, problem: str) -> None:
    with pytest.raises(ConfigError) as e:
        config.parse({"security": {key: value}})
    assert str(e.value) == f"<config>: [security] {key}: {problem}"
