"""Healthchecks' management API in our terms (gateway.rules.hcfields) and the dialect rule
(web.hcapi.dialect): pure, no daemon."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

import pytest

from gateway.model import Event, Ping, PingKind, Schedule, Status
from gateway.rules import hcfields as hc
from tests.support.checks import make_check
from web.hcapi import INTERNAL, dialect, is_internal

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z
HC_UUID = "7918b17b-a745-4db1-8575-9d2e07c97f79"
BASE = "https://gw.example"


def as_dict(check: Any, now: float = T0, *, v: int = 3, readonly: bool = False) -> dict[str, Any]:
    return hc.check_dict(check, now, v=v, readonly=readonly, base_url=BASE, badge_url=f"{BASE}/b/2/k.svg")


# ---------------------------------------------------------------- unique_key


def test_it_derives_unique_key_from_the_uuid_as_healthchecks_does() -> None:
    # Healthchecks: sha1(code.hex[:16]); code.hex is the UUID in lower case without dashes
    expected = hashlib.sha1(uuid.UUID(HC_UUID).hex[:16].encode()).hexdigest()
    assert hc.unique_key(HC_UUID) == expected == hashlib.sha1(b"7918b17ba7454db1").hexdigest()
    assert hc.unique_key(HC_UUID.upper()) == expected  # the same check, however it is written


def test_it_derives_unique_key_from_our_own_token_as_it_is() -> None:
    token = "AbCdEfGh-IjKlMnOpQrStUvWx"
    assert hc.unique_key(token) == hashlib.sha1(b"AbCdEfGh-IjKlMnO").hexdigest()
    assert len(hc.unique_key(token)) == 40


# ---------------------------------------------------------------- status


@pytest.mark.parametrize(
    ("facts", "at", "v", "expected"),
    [
        ({}, T0, 3, "new"),
        ({"anchor": T0, "last_ping": T0, "status": Status.UP}, T0 + 899, 3, "up"),
        ({"anchor": T0, "last_ping": T0, "status": Status.UP}, T0 + 900, 3, "grace"),  # our late
        ({"anchor": T0, "last_ping": T0, "status": Status.UP}, T0 + 1800, 3, "down"),
        ({"status": Status.PAUSED, "anchor": T0}, T0 + 99_999, 3, "paused"),
        ({"last_failed": True, "anchor": T0, "status": Status.DOWN}, T0, 3, "down"),
        # a run under way: v1 says "started", v2/v3 the status (with "started": true beside it)
        ({"last_start": T0}, T0 + 10, 1, "started"),
        ({"last_start": T0}, T0 + 10, 2, "new"),
        ({"last_start": T0, "anchor": T0 - 100, "status": Status.UP}, T0 + 10, 3, "up"),
        # ... and one that ran past its grace is down in every version
        ({"last_start": T0}, T0 + 900, 1, "down"),
    ],
)
def test_it_reports_healthchecks_statuses(facts: dict[str, Any], at: float, v: int, expected: str) -> None:
    assert hc.hc_status(make_check(**facts), at, v=v) == expected


def test_it_reports_next_ping_as_the_grace_start() -> None:
    up = make_check(anchor=T0, last_ping=T0, status=Status.UP)
    assert hc.next_ping(up, T0 + 1) == T0 + 900
    assert hc.next_ping(up, T0 + 901) == T0 + 900  # late: the grace period started then
    assert hc.next_ping(up, T0 + 1800) is None  # down
    assert hc.next_ping(make_check(), T0) is None  # new
    assert hc.next_ping(make_check(last_start=T0 + 5), T0 + 6) == T0 + 5  # a run under way
    assert hc.next_ping(up.evolve(last_start=T0 + 100), T0 + 101) == T0 + 100
    cron = make_check(schedule=Schedule(60, 300, cron="0 3 * * *", tz="UTC"), anchor=T0, status=Status.UP)
    assert hc.isostring(hc.next_ping(cron, T0 + 1)) == "2023-11-15T03:00:00+00:00"


# ---------------------------------------------------------------- the check dict

COMMON = {
    "name",
    "slug",
    "tags",
    "desc",
    "grace",
    "n_pings",
    "status",
    "started",
    "last_ping",
    "next_ping",
    "manual_resume",
    "methods",
    "subject",
    "subject_fail",
    "start_kw",
    "success_kw",
    "failure_kw",
    "filter_subject",
    "filter_body",
    "filter_http_body",
    "filter_default_fail",
    "badge_url",
}
READ_WRITE = {"uuid", "ping_url", "update_url", "pause_url", "resume_url", "channels"}


def test_it_shows_a_simple_check_to_a_read_write_key() -> None:
    check = make_check(
        token=HC_UUID,
        name="Backups",
        slug="backups",
        tags="prod www",
        desc="nightly",
        schedule=Schedule(3600, 60),
        anchor=T0,
        last_ping=T0 + 0.7,
        status=Status.UP,
        n_pings=3,
        last_duration=12.9,
        methods="POST",
        manual_resume=True,
    )
    d = as_dict(check, T0 + 10, v=2)
    assert set(d) == COMMON | READ_WRITE | {"timeout", "last_duration"}
    assert d["uuid"] == HC_UUID
    assert d["ping_url"] == f"{BASE}/ping/{HC_UUID}"
    assert d["update_url"] == f"{BASE}/api/v2/checks/{HC_UUID}"
    assert d["pause_url"] == d["update_url"] + "/pause"
    assert d["resume_url"] == d["update_url"] + "/resume"
    assert (d["timeout"], d["grace"], d["last_duration"]) == (3600, 60, 12)
    assert d["last_ping"] == "2023-11-14T22:13:20+00:00"  # whole seconds, with the offset
    assert d["next_ping"] == "2023-11-14T23:13:20+00:00"
    assert (d["status"], d["started"], d["tags"], d["methods"], d["manual_resume"]) == (
        "up",
        False,
        "prod www",
        "POST",
        True,
    )
    assert d["subject"] == d["success_kw"] == "" and d["filter_subject"] is False


def test_it_shows_a_cron_check_to_a_read_only_key() -> None:
    check = make_check(token=HC_UUID, schedule=Schedule(60, 300, cron="15 5 * * *", tz="Europe/Riga"))
    d = as_dict(check, readonly=True)
    assert set(d) == COMMON | {"unique_key", "schedule", "tz"}
    assert (d["schedule"], d["tz"], d["unique_key"]) == ("15 5 * * *", "Europe/Riga", hc.unique_key(HC_UUID))
    assert not READ_WRITE & set(d) and "timeout" not in d and "last_duration" not in d


def test_it_shows_our_keyword_filters_as_healthchecks_keywords() -> None:
    filters = json.dumps({"subject": True, "body": True, "success": ["OK", "done"], "fail": ["FAIL"], "start": []})
    d = as_dict(make_check(filters=filters))
    assert (d["success_kw"], d["failure_kw"], d["start_kw"]) == ("OK,done", "FAIL", "")
    assert (d["subject"], d["subject_fail"]) == ("OK,done", "FAIL")
    assert d["filter_subject"] is True and d["filter_body"] is True
    # keywords kept but nowhere to look: filtering is off, as Healthchecks shows it
    off = as_dict(make_check(filters=json.dumps({"subject": False, "body": False, "fail": ["X"]})))
    assert off["filter_subject"] is False and off["subject_fail"] == "" and off["failure_kw"] == "X"


def test_it_lists_the_channels_a_check_alerts() -> None:
    chans = hc.channels_of(["+4915112345678"], ["ops@example.net"])
    assert [c.kind for c in chans] == ["sms", "email"]
    assert chans[0].id == str(uuid.uuid5(uuid.NAMESPACE_URL, "tel:+4915112345678"))
    assert chans[0].name.startswith("SMS +49") and "12345678" not in chans[0].name
    assert chans[1].name.startswith("Email ") and "ops@example.net" not in chans[1].name
    both = hc.check_channels(make_check(), chans)
    assert both == ",".join(sorted(c.id for c in chans))
    assert hc.check_channels(make_check(sms_enabled=False), chans) == chans[1].id
    assert hc.check_channels(make_check(sms_enabled=False, email_enabled=False), chans) == ""


# ---------------------------------------------------------------- create/update bodies


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"timeout": 0}, "timeout is too small"),
        ({"timeout": 59}, "timeout is too small"),
        ({"timeout": 31536001}, "timeout is too large"),
        ({"timeout": "oops"}, "timeout is not a number"),
        ({"timeout": 3600.0}, "timeout is not a number"),  # strict: whole seconds only
        ({"timeout": True}, "timeout is too small"),  # a JSON true is 1 second there too
        ({"grace": 31536001}, "grace is too large"),
        ({"name": False}, "name is not a string"),
        ({"name": "01234567890" * 20}, "name is too long"),
        ({"unique": ["status"]}, "an item in 'unique' has unexpected value"),
        ({"unique": "name"}, "unique is not an array"),
        ({"schedule": "bad-expression"}, "schedule is not a valid cron or OnCalendar expression"),
        ({"schedule": "* * * * * *"}, "schedule is not a valid cron or OnCalendar expression"),
        ({"schedule": "*-*~1 12:00"}, "schedule is not a valid cron or OnCalendar expression"),  # no OnCalendar
        ({"schedule": "1," * 100 + "1 * * * *"}, "schedule is too long"),
        ({"tz": "not-a-timezone"}, "tz is not a valid timezone"),
        ({"tz": "../../etc/passwd"}, "tz is not a valid timezone"),
        ({"manual_resume": "surprise"}, "manual_resume is not a boolean"),
        ({"manual_resume": 1}, "manual_resume is not a boolean"),
        ({"filter_subject": "surprise"}, "filter_subject is not a boolean"),
        ({"methods": "bad-value"}, "methods has unexpected value"),
        ({"methods": "post"}, "methods has unexpected value"),
        ({"methods": ["POST"]}, "methods has unexpected value"),
        ({"slug": "Not Valid"}, "slug does not match pattern"),
        ({"slug": "a" * 101}, "slug is too long"),
        ({"success_kw": "A" * 201}, "success_kw is too long"),
        ({"subject_fail": False}, "subject_fail is not a string"),
        ({"channels": ["a"]}, "channels is not a string"),
        ({"filter_http_body": True}, "filter_http_body is not supported"),
    ],
)
def test_it_refuses_what_healthchecks_refuses_in_its_words(body: dict[str, Any], error: str) -> None:
    with pytest.raises(hc.SpecError) as e:
        hc.parse_spec(body)
    assert str(e.value).startswith("json validation error: ")
    assert error in str(e.value)


@pytest.mark.parametrize(
    "field", ["channels", "timeout", "grace", "name", "schedule", "subject", "subject_fail", "unique", "tz"]
)
def test_it_refuses_null_for_every_field(field: str) -> None:
    with pytest.raises(hc.SpecError, match=f"{field} is not a"):
        hc.parse_spec({field: None})


def test_it_names_the_first_bad_field_in_healthchecks_order() -> None:
    # its Spec declares channels, desc, ..., grace, ..., name, schedule, ..., timeout, tz, unique
    with pytest.raises(hc.SpecError, match="grace is too small"):
        hc.parse_spec({"timeout": 1, "grace": 1, "name": 5})
    with pytest.raises(hc.SpecError, match="schedule is not a valid"):
        hc.parse_spec({"timeout": 1, "schedule": "nope"})


def test_it_accepts_a_full_body_and_ignores_unknown_keys() -> None:
    body = {
        "api_key": "X" * 32,
        "name": "Backups",
        "slug": "my-backups_2",
        "tags": "prod www",
        "desc": "d",
        "timeout": 60,
        "grace": 31536000,
        "schedule": "0,30 * * * *",
        "tz": "Europe/Kiev",
        "manual_resume": False,
        "methods": "",
        "channels": "*",
        "unique": ["name", "slug", "tags", "timeout", "grace"],
        "whatever": [1, 2],
    }
    spec = hc.parse_spec(body)
    assert spec.kind == "cron"  # a schedule wins over a timeout
    assert spec.get("tz") == "Europe/Kyiv"  # a legacy name, brought up to date
    assert not spec.has("api_key") and not spec.has("whatever")
    assert hc.parse_spec({"timeout": 300}).kind == "simple"
    assert hc.parse_spec({"grace": 300}).kind is None


def test_it_turns_a_create_into_our_fields_per_version() -> None:
    chans = hc.channels_of(["+4915112345678"], ["ops@example.net"])
    spec = hc.parse_spec({"name": "Database Backup", "timeout": 300, "tags": "db"})
    v1 = hc.spec_changes(spec, v=1, check=None, channels=chans)
    assert v1 == {
        "name": "Database Backup",
        "slug": "database-backup",
        "period": 300.0,
        "cron": None,
        "tags": "db",
        "grace": 3600.0,  # Healthchecks' default
        "sms_enabled": True,  # deviation: a new check alerts everyone unless told otherwise
        "email_enabled": True,
    }
    v3 = hc.spec_changes(spec, v=3, check=None, channels=chans)
    assert v3["slug"] == ""  # v3 makes no slug from the name
    defaults = hc.spec_changes(hc.parse_spec({}), v=3, check=None, channels=chans)
    assert (defaults["period"], defaults["grace"]) == (86400.0, 3600.0)
    explicit = hc.spec_changes(hc.parse_spec({"name": "A B", "slug": "x"}), v=1, check=None, channels=chans)
    assert explicit["slug"] == "x"  # an explicit slug wins in every version


def test_it_turns_an_update_into_only_what_it_names() -> None:
    check = make_check(name="old", slug="old")
    spec = hc.parse_spec({"name": "New Name"})
    assert hc.spec_changes(spec, v=2, check=check, channels=[]) == {"name": "New Name", "slug": "new-name"}
    assert hc.spec_changes(spec, v=3, check=check, channels=[]) == {"name": "New Name"}
    cron = hc.spec_changes(hc.parse_spec({"schedule": "5 * * * *", "tz": "UTC"}), v=3, check=check, channels=[])
    assert cron == {"cron": "5 * * * *", "tz": "UTC"}
    assert hc.spec_changes(hc.parse_spec({}), v=3, check=check, channels=[]) == {}


def test_it_maps_channels_onto_our_switches() -> None:
    chans = hc.channels_of(["+4915112345678", "+4915187654321"], ["ops@example.net"])
    sms, _, mail = chans
    assert hc.select_channels("*", chans) == {"sms_enabled": True, "email_enabled": True}
    assert hc.select_channels("", chans) == {"sms_enabled": False, "email_enabled": False}
    assert hc.select_channels(sms.id, chans) == {"sms_enabled": True, "email_enabled": False}
    assert hc.select_channels(f"{mail.name}", chans) == {"sms_enabled": False, "email_enabled": True}
    with pytest.raises(hc.SpecError, match=r"^invalid channel identifier: abc$"):
        hc.select_channels(f"{sms.id},abc", chans)
    with pytest.raises(hc.SpecError, match=r"^empty channel identifier$"):
        hc.select_channels(f"{sms.id},", chans)
    twins = [hc.Channel("1", "same", "sms"), hc.Channel("2", "same", "email")]
    with pytest.raises(hc.SpecError, match=r"^non-unique channel identifier: same$"):
        hc.select_channels("same", twins)


def test_it_maps_keyword_fields_onto_our_filters() -> None:
    spec = hc.parse_spec({"subject": "SUCCESS,COMPLETE"})
    assert hc.spec_changes(spec, v=3, check=make_check(), channels=[])["filters"] == {
        "subject": True,
        "body": False,
        "start": [],
        "success": ["SUCCESS", "COMPLETE"],
        "fail": [],
    }
    # keywords without a place to look: no filtering, as in Healthchecks
    spec = hc.parse_spec({"failure_kw": "ERR"})
    assert hc.spec_changes(spec, v=3, check=make_check(), channels=[])["filters"] == {}
    current = make_check(filters=json.dumps({"subject": True, "body": False, "fail": ["ERR"]}))
    spec = hc.parse_spec({"filter_body": True, "start_kw": "go, begin"})
    merged = hc.spec_changes(spec, v=3, check=current, channels=[])["filters"]
    assert merged == {"subject": True, "body": True, "start": ["go", "begin"], "success": [], "fail": ["ERR"]}


def test_it_finds_the_check_a_unique_create_updates() -> None:
    a = make_check(id=2, name="Backups", tags="prod www", schedule=Schedule(3600, 60))
    b = make_check(id=1, name="Backups2", slug="b", tags="www prod", schedule=Schedule(3600, 120))
    checks = [a, b]

    def find(body: dict[str, Any]) -> Any:
        found = hc.find_unique(checks, hc.parse_spec(body))
        return found.name if found else None

    assert find({"name": "Backups", "unique": ["name"]}) == "Backups"
    assert find({"name": "Nope", "unique": ["name"]}) is None
    assert find({"unique": ["name"]}) is None  # a listed field absent: a new check
    assert find({"name": "Backups", "unique": []}) is None
    assert find({"timeout": 3600, "unique": ["timeout"]}) == "Backups2"  # the oldest match
    assert find({"timeout": 3600, "grace": 60, "unique": ["timeout", "grace"]}) == "Backups"
    assert find({"tags": "prod   www", "unique": ["tags"]}) == "Backups"
    assert find({"slug": "b", "unique": ["slug"]}) == "Backups2"


def test_it_names_a_check_created_without_a_name() -> None:
    assert hc.new_check_name(hc.parse_spec({"name": "x"}), "tok") == "x"
    assert hc.new_check_name(hc.parse_spec({"slug": "s"}), "tok") == "s"
    assert hc.new_check_name(hc.parse_spec({"name": ""}), HC_UUID) == "check-7918b17b"


# ---------------------------------------------------------------- pings and flips


def test_it_shows_pings_as_healthchecks_lists_them() -> None:
    rid = "123e4567-e89b-12d3-a456-426614174000"
    ping = Ping(7, 1, T0 + 0.113073, PingKind.SUCCESS, 0, "http", "192.0.2.0", "GET", "curl/8", "hi", rid, 2.896736)
    d = hc.ping_dict(ping, v=3, base_url=BASE, token=HC_UUID)
    assert d == {
        "type": "success",
        "date": "2023-11-14T22:13:20.113073+00:00",
        "n": 7,
        "scheme": "http",
        "remote_addr": "192.0.2.0",
        "method": "GET",
        "ua": "curl/8",
        "rid": rid,
        "duration": 2.9,
        "body_url": f"{BASE}/api/v3/checks/{HC_UUID}/pings/7/body",
    }
    mail = Ping(8, 1, T0, PingKind.START, None, "email", "a@b.c", None, None, None)
    m = hc.ping_dict(mail, v=1, base_url=BASE, token=HC_UUID)
    assert (m["scheme"], m["method"], m["ua"], m["body_url"], m["type"]) == ("email", "email", "", None, "start")
    assert "duration" not in m


def test_it_shows_flips_healthchecks_would_have() -> None:
    def flip(old: str, new: str) -> Event:
        return Event(1, 1, T0 + 0.9, "flip", old, new, "deadline")

    assert hc.flip_dict(flip("down", "up")) == {"timestamp": "2023-11-14T22:13:20+00:00", "up": 1}
    assert hc.flip_dict(flip("up", "down"))["up"] == 0
    kept = [("new", "up"), ("up", "down"), ("late", "down"), ("up", "paused"), ("paused", "new"), ("down", "up")]
    dropped = [("up", "late"), ("late", "up"), ("new", "late")]
    assert all(hc.is_hc_flip(o, n) for o, n in kept)
    assert not any(hc.is_hc_flip(o, n) for o, n in dropped)


def test_it_reads_the_flip_window() -> None:
    assert hc.parse_flip_window({}, T0) == hc.FlipWindow(None, None)
    assert hc.parse_flip_window({"start": "100", "end": "200"}, T0) == hc.FlipWindow(100.0, 200.0)
    assert hc.parse_flip_window({"seconds": "3600"}, T0) == hc.FlipWindow(T0 - 3600, None)
    assert hc.parse_flip_window({"seconds": "3600", "start": str(int(T0))}, T0).start == T0  # the later one
    for bad in ({"start": "abc"}, {"start": "-123"}, {"seconds": "31536001"}, {"end": "1.5"}):
        with pytest.raises(hc.SpecError):
            hc.parse_flip_window(bad, T0)


# ---------------------------------------------------------------- which dialect


def h(*names: str) -> list[tuple[bytes, bytes]]:
    return [(n.encode(), b"x") for n in names]


@pytest.mark.parametrize(
    ("path", "headers", "body", "expected"),
    [
        # v2 and v3 are only Healthchecks'
        ("/api/v3/checks/", [], b"", "/v3/checks/"),
        ("/api/v2/checks/abc", h("authorization"), b"", "/v2/checks/abc"),
        ("/api/v3/status/", [], b"", "/v3/status/"),
        # v1 with X-Api-Key: Healthchecks', whatever the shape
        ("/api/v1/checks", h("x-api-key"), b"", "/v1/checks"),
        ("/api/v1/checks/web1", h("x-api-key", "authorization"), b"", "/v1/checks/web1"),
        # v1 with Bearer: ours, even with a trailing slash or an api_key in the body
        ("/api/v1/checks/", h("authorization"), b"", None),
        ("/api/v1/checks/x/pings/", h("authorization"), b"", None),
        ("/api/v1/checks", h("authorization"), b'{"api_key": "k"}', None),
        # v1 with neither: Healthchecks' shapes go there, the rest is ours (and answers 401)
        ("/api/v1/checks/", [], b"", "/v1/checks/"),
        ("/api/v1/checks/u/pings/3/body", [], b"", "/v1/checks/u/pings/3/body"),
        ("/api/v1/checks/u/flips/", [], b"", "/v1/checks/u/flips/"),
        ("/api/v1/checks/u", [], b'{"api_key": "k", "name": "n"}', "/v1/checks/u"),
        ("/api/v1/checks/u", [], b'{"name": "api_key"}', None),
        ("/api/v1/checks/u", [], b'["api_key"]', None),
        ("/api/v1/checks/u", [], b"api_key: not json", None),
        ("/api/v1/checks/u", [], b"", None),
        ("/api/v1/checks/u/pings", [], b"", None),  # ours: no trailing slash
        # not the API at all
        ("/api/v4/checks/", h("x-api-key"), b"", None),
        ("/ping/abc/", h("x-api-key"), b"", None),
        ("/checks/", [], b"", None),
    ],
)
def test_it_tells_the_two_dialects_apart(
    path: str, headers: list[tuple[bytes, bytes]], body: bytes, expected: str | None
) -> None:
    assert dialect(path, headers, body) == (INTERNAL + expected if expected else None)


def test_it_knows_the_internal_prefix() -> None:
    assert is_internal(INTERNAL) and is_internal(INTERNAL + "/v1/checks/")
    assert not is_internal(INTERNAL + "x/v1") and not is_internal("/api/v1/checks/")
