"""Status badges: the pure rules (gateway.rules.badges), then the URLs over real HTTP against
``hbgw serve``, read without a login."""

from __future__ import annotations

import sqlite3
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from gateway.model import Status
from gateway.rules import badges as rules
from tests.support.browser import Response, WebClient
from tests.support.clockrig import Gateway
from tests.support.daemon import Daemon, hbgw_json, wait_for, write_config
from web import badges

SVG = "{http://www.w3.org/2000/svg}"
ODD = 'odd <&"> name'

# ---------------------------------------------------------------------- pure


@pytest.mark.parametrize(
    ("statuses", "states", "expected"),
    [
        ([], 3, ("up", 0, 0, 0)),
        ([Status.UP, Status.NEW, Status.PAUSED], 3, ("up", 3, 0, 0)),
        ([Status.UP, Status.LATE], 3, ("late", 2, 1, 0)),
        ([Status.UP, Status.LATE], 2, ("up", 2, 1, 0)),
        ([Status.LATE, Status.DOWN, Status.LATE], 3, ("down", 3, 2, 1)),
        ([Status.DOWN], 2, ("down", 1, 0, 1)),
        ([Status.PAUSED], 3, ("up", 1, 0, 0)),
    ],
)
def test_it_summarizes_checks_as_healthchecks_does(
    statuses: list[Status], states: int, expected: tuple[str, int, int, int]
) -> None:
    s = rules.summarize(statuses, states)
    assert (s.status.value, s.total, s.grace, s.down) == expected
    assert rules.to_json(s) == dict(zip(("status", "total", "grace", "down"), expected, strict=True))


def test_it_refuses_other_numbers_of_states() -> None:
    with pytest.raises(ValueError):
        rules.summarize([], 4)


def svg_parts(text: str) -> tuple[str, str, str, int]:
    """(label, status, status colour, width) of a badge, parsing it as XML."""
    root = ET.fromstring(text)
    texts = [t.text or "" for t in root.iter(f"{SVG}text")]
    rects = list(root.iter(f"{SVG}rect"))
    colour = next(r.get("fill") for r in rects if r.get("x"))
    return texts[0], texts[2], colour or "", int(root.get("width") or 0)


@pytest.mark.parametrize(("status", "colour"), [("up", "#4c1"), ("late", "#fe7d37"), ("down", "#e05d44")])
def test_it_draws_an_svg_badge(status: str, colour: str) -> None:
    label, shown, fill, width = svg_parts(rules.svg("backup", rules.BadgeStatus(status)))
    assert (label, shown, fill) == ("backup", status, colour)
    assert width == rules.text_width("backup") + rules.text_width(status) + 20


def test_it_sizes_the_badge_to_its_label() -> None:
    short = svg_parts(rules.svg("db", rules.BadgeStatus.UP))[3]
    long = svg_parts(rules.svg("database-primary", rules.BadgeStatus.UP))[3]
    assert long - short == rules.text_width("database-primary") - rules.text_width("db") > 50
    assert rules.text_width("iii") < rules.text_width("mmm")


def test_it_escapes_the_label() -> None:
    text = rules.svg(ODD + "\x07", rules.BadgeStatus.DOWN)
    assert "<&" not in text
    assert svg_parts(text)[0] == ODD + "?"


def test_it_makes_shields_endpoint_json() -> None:
    assert rules.to_shields("web", rules.BadgeStatus.LATE) == {
        "schemaVersion": 1,
        "label": "web",
        "message": "late",
        "color": "important",
    }


def test_it_derives_stable_distinct_keys() -> None:
    key = rules.check_key("secret", 7, 1700000000.25)
    assert key == rules.check_key("secret", 7, 1700000000.25) and len(key) == 32
    assert key != rules.check_key("secret", 7, 1700000001.25)  # a later check with the same row id
    assert key != rules.check_key("other", 7, 1700000000.25)
    sig = rules.tag_signature("secret", "site", "prod")
    assert len(sig) == rules.SIGNATURE_LENGTH
    assert rules.signature_ok("secret", "site", "prod", sig)
    assert rules.signature_ok("secret", "site", "prod", sig + "-2")
    assert not rules.signature_ok("secret", "site", "web", sig)
    assert not rules.signature_ok("secret", "other", "prod", sig)
    assert not rules.signature_ok("secret", "site", "prod", sig + "-3")
    assert not rules.signature_ok("secret", "site", "prod", sig[:7])
    assert (rules.signature_states(sig), rules.signature_states(sig + "-2")) == (3, 2)


# ---------------------------------------------------------------------- over HTTP

CHECKS = [  # name, period, grace, tags
    ("web1", "1h", "1h", "prod web"),
    ("db1", "1h", "1h", "prod"),
    ("cron1", "1s", "1h", "web"),  # late a second after its ping, down only after an hour
    (ODD, "1h", "1h", "odd v1.2"),
]


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    root = tmp_path_factory.mktemp("badges")
    data = root / "data"
    cfg = write_config(root / "hbgw.toml", data)
    tokens = {}
    for name, period, grace, tags in CHECKS:
        made = hbgw_json("check", "add", name, "--period", period, "--grace", grace, "--tags", tags, config=cfg)
        tokens[name] = made["ping_url"].rsplit("/", 1)[1]
    with Daemon(data, config=cfg) as d:
        client = WebClient(d.url)
        for name in ("web1", "db1", "cron1"):
            token = tokens[name]
            assert client.get(f"/ping/{token}/fail" if name == "db1" else f"/ping/{token}").status == 200
        yield d


class Keys:
    """The badge URLs as web.badges makes them, from the secrets the daemon keeps."""

    def __init__(self, db: Path) -> None:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            settings = dict(con.execute("SELECT key, value FROM settings WHERE key LIKE 'badge_%'"))
            self.checks = {
                name: (i, created) for i, name, created in con.execute("SELECT id, name, created FROM checks")
            }
        finally:
            con.close()
        self.secret, self.site = settings["badge_secret"], settings["badge_key"]

    def check(self, name: str, states: int, fmt: str) -> str:
        return f"/b/{states}/{rules.check_key(self.secret, *self.checks[name])}.{fmt}"

    def tag(self, tag: str, states: int, fmt: str) -> str:
        sig = rules.tag_signature(self.secret, self.site, tag) + ("-2" if states == 2 else "")
        if tag == "*":
            return f"/badge/{self.site}/{sig}.{fmt}"
        return f"/badge/{self.site}/{sig}/{quote(tag, safe='')}.{fmt}"


@pytest.fixture(scope="module")
def keys(gw: Daemon) -> Keys:
    return Keys(gw.data_dir / "hbgw.sqlite3")


def get(gw: Daemon, path: str) -> Response:
    """Anonymous: no cookie, no key."""
    return WebClient(gw.url).get(path)


def late(gw: Daemon, keys: Keys) -> None:
    wait_for(lambda: get(gw, keys.check("cron1", 3, "json")).json()["status"] == "late", what="cron1 late")


@pytest.mark.parametrize(
    ("name", "states", "status"),
    [
        ("web1", 2, "up"),
        ("web1", 3, "up"),
        ("db1", 3, "down"),
        ("db1", 2, "down"),
        ("cron1", 3, "late"),
        ("cron1", 2, "up"),
        (ODD, 3, "up"),  # new counts as up
    ],
)
def test_it_serves_a_check_badge_without_login(gw: Daemon, keys: Keys, name: str, states: int, status: str) -> None:
    late(gw, keys)
    r = get(gw, keys.check(name, states, "svg"))
    assert r.status == 200 and r.header("Content-Type") == "image/svg+xml"
    assert "no-store" in (r.header("Cache-Control") or "")
    label, shown, colour, _ = svg_parts(r.text)
    assert (label, shown) == (name, status)
    assert colour == rules.SVG_COLORS[rules.BadgeStatus(status)]
    data = get(gw, keys.check(name, states, "json")).json()
    assert data["status"] == status and data["total"] == 1
    assert (data["grace"], data["down"]) == ((name == "cron1") * 1, (name == "db1") * 1)
    shields = get(gw, keys.check(name, states, "shields")).json()
    assert shields == {
        "schemaVersion": 1,
        "label": name,
        "message": status,
        "color": rules.SHIELDS_COLORS[rules.BadgeStatus(status)],
    }


@pytest.mark.parametrize(
    ("tag", "states", "expected"),
    [
        ("prod", 3, {"status": "down", "total": 2, "grace": 0, "down": 1}),
        ("web", 3, {"status": "late", "total": 2, "grace": 1, "down": 0}),
        ("web", 2, {"status": "up", "total": 2, "grace": 1, "down": 0}),
        ("odd", 2, {"status": "up", "total": 1, "grace": 0, "down": 0}),
        ("v1.2", 3, {"status": "up", "total": 1, "grace": 0, "down": 0}),
        ("*", 3, {"status": "down", "total": 4, "grace": 1, "down": 1}),
        ("*", 2, {"status": "down", "total": 4, "grace": 1, "down": 1}),
    ],
)
def test_it_serves_tag_badges(gw: Daemon, keys: Keys, tag: str, states: int, expected: dict[str, Any]) -> None:
    late(gw, keys)
    assert get(gw, keys.tag(tag, states, "json")).json() == expected
    label = rules.ALL_LABEL if tag == "*" else tag
    r = get(gw, keys.tag(tag, states, "svg"))
    assert r.status == 200 and svg_parts(r.text)[:2] == (label, expected["status"])
    shields = get(gw, keys.tag(tag, states, "shields")).json()
    assert (shields["label"], shields["message"]) == (label, expected["status"])


def test_it_hides_a_check_name_in_the_svg_as_text(gw: Daemon, keys: Keys) -> None:
    text = get(gw, keys.check(ODD, 3, "svg")).text
    assert ODD not in text and "odd &lt;&amp;&quot;&gt; name" in text


def wrong_urls(keys: Keys) -> list[str]:
    good_check = keys.check("web1", 3, "svg")
    good_tag = keys.tag("prod", 3, "svg")
    sig = rules.tag_signature(keys.secret, keys.site, "prod")
    other_site = "A" * len(keys.site)
    return [
        "/b/3/" + "A" * 32 + ".svg",  # no such check
        good_check.replace("/b/3/", "/b/4/"),  # no such number of states
        good_check[:-4] + ".png",  # no such format
        good_check[:-4],  # no format at all
        keys.tag("web", 3, "svg").replace("/web.svg", "/prod.svg"),  # another tag's signature
        good_tag.replace(keys.site, other_site),  # another site key
        good_tag.replace(sig, sig[:7] + ("A" if sig[7] != "A" else "B")),
        good_tag.replace(sig, sig + "-3"),
        keys.tag("*", 3, "svg").replace(".svg", ".gif"),
        keys.tag("prod", 3, "svg").replace("/prod.svg", "/*.svg"),  # a tag's signature is not "*"'s
    ]


def test_it_answers_404_for_a_wrong_key_or_signature(gw: Daemon, keys: Keys) -> None:
    for path in wrong_urls(keys):
        r = get(gw, path)
        assert r.status == 404, path
        assert "svg" not in (r.header("Content-Type") or ""), path


def test_the_badge_secrets_are_not_in_the_urls_of_other_sites(keys: Keys) -> None:
    assert keys.secret != keys.site and keys.secret not in keys.tag("*", 3, "svg")


# ---------------------------------------------------------------------- the URLs other modules list


def test_it_lists_the_urls_of_a_check_and_of_each_tag(tmp_path: Path) -> None:
    with Gateway(tmp_path / "data") as g:
        g.service.add_check("web1", period=3600, grace=60, tags="prod web")
        g.service.add_check("db1", period=3600, grace=60, tags="prod")
        check = g.service.get_check("web1")
        urls = badges.badge_urls(g.service, check)  # the secrets are made on first use
        keys = Keys(g.config.db_path)
        base = g.service.base_url
        assert list(urls) == ["svg", "svg3", "json", "json3", "shields", "shields3"]
        for name, url in urls.items():
            fmt, states = name.removesuffix("3"), 3 if name.endswith("3") else 2
            assert url == base + keys.check("web1", states, fmt)
        g.service.replace_token("web1")  # a new ping URL keeps the badge
        g.service.patch_check("web1", slug="www", desc="the web server")
        assert badges.badge_urls(g.service, g.service.get_check("web1")) == urls
        assert badges.badge_urls(g.service, g.service.get_check("db1")) != urls

        listed = badges.project_badges(g.service)
        assert sorted(listed) == ["*", "prod", "web"]
        for tag, tag_urls in listed.items():
            assert list(tag_urls) == list(urls)
            for name, url in tag_urls.items():
                fmt, states = name.removesuffix("3"), 3 if name.endswith("3") else 2
                assert url == base + keys.tag(tag, states, fmt)
