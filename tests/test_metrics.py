"""Prometheus metrics: /metrics and Healthchecks' per-project URL over real HTTP against ``hbgw
serve``; counters that survive removed checks and pruned messages on the in-process gateway."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.store import KEEP_MESSAGES
from tests.support.browser import Response, WebClient
from tests.support.clockrig import Gateway
from tests.support.daemon import Daemon, hbgw, hbgw_json, write_config
from web import metrics

ODD = 'say "hi" \\ there'  # a quote and a backslash, escaped in label values
SAMPLE = re.compile(r'[a-z_]+(\{[a-z_]+="([^"\\\n]|\\["\\n])*"(,[a-z_]+="([^"\\\n]|\\["\\n])*")*\})? -?\d+(\.\d+)?')


class Gw:
    def __init__(self, daemon: Daemon, cfg: Path, tokens: dict[str, str], keys: dict[str, str]) -> None:
        self.daemon, self.cfg, self.tokens, self.keys = daemon, cfg, tokens, keys

    def get(self, path: str, key: str | None = None) -> Response:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return WebClient(self.daemon.url).get(path, headers=headers)

    def scrape(self) -> str:
        r = self.get("/metrics", self.keys["write"])
        assert r.status == 200, r.text
        return r.text

    def ping(self, name: str, action: str = "") -> None:
        assert WebClient(self.daemon.url).get(f"/ping/{self.tokens[name]}{action}").status == 200


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gw]:
    root = tmp_path_factory.mktemp("metrics")
    data = root / "data"
    cfg = write_config(root / "hbgw.toml", data)
    tokens = {}
    for name, tags in (("web1", "prod web"), ("db1", "prod"), (ODD, "odd"), ("gone", "prod")):
        made = hbgw_json("check", "add", name, "--period", "1h", "--tags", tags, config=cfg)
        tokens[name] = made["ping_url"].rsplit("/", 1)[1]
    keys = {
        "write": hbgw_json("apikey", "add", "scraper", config=cfg)["key"],
        "read": hbgw_json("apikey", "add", "ro", "--read-only", config=cfg)["key"],
    }
    with Daemon(data, config=cfg) as d:
        yield Gw(d, cfg, tokens, keys)


def value(text: str, series: str) -> float:
    """The value of the one sample ``series`` (name and labels, as written)."""
    found = [line.rsplit(" ", 1)[1] for line in text.splitlines() if line.rsplit(" ", 1)[0] == series]
    assert len(found) == 1, (series, text)
    return float(found[0])


def test_it_exports_prometheus_metrics(gw: Gw) -> None:
    text = gw.scrape()
    lines = text.splitlines()
    for status_name in ("up", "late", "down", "new", "paused"):
        assert any(re.fullmatch(rf'hbgw_checks\{{status="{status_name}"\}} \d+', line) for line in lines)
    assert re.search(r"^hbgw_pings_received_total \d+$", text, re.M)
    assert re.search(r"^hbgw_sms_sent_total \d+$", text, re.M)
    assert re.search(r"^hbgw_sms_failed_total \d+$", text, re.M)
    assert re.search(r"^hbgw_email_sent_total \d+$", text, re.M)
    assert re.search(r"^hbgw_email_failed_total \d+$", text, re.M)
    assert re.search(r"^hbgw_modem_connected [01]$", text, re.M)
    assert "# TYPE hbgw_checks gauge" in text
    assert "# TYPE hbgw_pings_received_total counter" in text
    for line in lines:  # every sample line is "name{labels} value", label values escaped
        assert line.startswith("#") or SAMPLE.fullmatch(line), line
    for line in lines:  # a HELP and a TYPE before each family's samples, once
        if not line.startswith("#"):
            family = re.split(r"[{ ]", line, maxsplit=1)[0]
            assert f"# TYPE {family} " in text


def test_it_exports_each_check(gw: Gw) -> None:
    gw.ping("web1")
    gw.ping("db1", "/fail")
    text = gw.scrape()
    web = '{name="web1",slug="web1",tags="prod web"}'
    assert value(text, f"hbgw_check_up{web}") == 1
    assert value(text, 'hbgw_check_up{name="db1",slug="db1",tags="prod"}') == 0
    assert 0 <= value(text, f"hbgw_check_seconds_since_last_ping{web}") < 60
    assert value(text, f"hbgw_check_started{web}") == 0
    for status in ("new", "up", "late", "down", "paused"):
        assert value(text, f'hbgw_check_status{{name="db1",status="{status}"}}') == (status == "down")
        assert value(text, f'hbgw_check_status{{name="web1",status="{status}"}}') == (status == "up")
    assert value(text, 'hbgw_tag_up{tag="prod"}') == 0
    assert value(text, 'hbgw_tag_up{tag="web"}') == 1
    assert value(text, 'hbgw_tag_up{tag="odd"}') == 1


def test_it_escapes_label_values(gw: Gw) -> None:
    text = gw.scrape()
    escaped = 'say \\"hi\\" \\\\ there'
    assert value(text, f'hbgw_check_status{{name="{escaped}",status="new"}}') == 1
    assert f'hbgw_check_up{{name="{escaped}",' in text
    assert 'seconds_since_last_ping{name="say' not in text  # never pinged: no such sample
    assert metrics.escape('a"b\\c\nd') == 'a\\"b\\\\c\\nd'


def test_it_reports_runs(gw: Gw) -> None:
    web = '{name="web1",slug="web1",tags="prod web"}'
    gw.ping("web1", "/start")
    assert value(gw.scrape(), f"hbgw_check_started{web}") == 1
    gw.ping("web1")
    text = gw.scrape()
    assert value(text, f"hbgw_check_started{web}") == 0
    assert 0 <= value(text, f"hbgw_check_last_duration_seconds{web}") < 60


def test_the_ping_counter_survives_a_removed_check(gw: Gw) -> None:
    for _ in range(3):
        gw.ping("gone")
    before = value(gw.scrape(), "hbgw_pings_received_total")
    r = WebClient(gw.daemon.url).request(
        "DELETE", "/api/v1/checks/gone", headers={"Authorization": f"Bearer {gw.keys['write']}"}
    )
    assert r.status == 200, r.text
    text = gw.scrape()
    assert value(text, "hbgw_pings_received_total") == before
    assert 'name="gone"' not in text


@pytest.mark.parametrize("scope", ["read", "write"])
@pytest.mark.parametrize("path", ["/projects/{id}/metrics/{key}", "/projects/{id}/checks/metrics/{key}"])
def test_it_answers_the_per_project_url_with_the_key_in_it(gw: Gw, scope: str, path: str) -> None:
    for project in ("1", "b4a1e2c0-0000-4000-8000-000000000000"):
        r = gw.get(path.format(id=project, key=gw.keys[scope]))  # no header
        assert r.status == 200
        assert (r.header("Content-Type") or "").startswith("text/plain; version=0.0.4")
        assert "hbgw_check_up{" in r.text and "hbgw_pings_received_total" in r.text


def test_it_answers_the_per_project_url_with_the_key_in_a_header(gw: Gw) -> None:
    assert gw.get("/projects/1/metrics/", gw.keys["read"]).status == 200
    assert gw.get("/projects/1/metrics/").status == 401


@pytest.mark.parametrize(
    "key", ["hbgw_" + "A" * 40, "A" * 32, "hbgw_", "%20", "hbgw_" + "A" * 300]
)  # unknown, Healthchecks-shaped, empty, blank, oversized
def test_it_refuses_a_wrong_key_in_the_path(gw: Gw, key: str) -> None:
    r = gw.get(f"/projects/1/metrics/{key}")
    assert r.status == 401
    assert "hbgw_" not in r.text


def test_it_refuses_a_revoked_key_in_the_path(gw: Gw) -> None:
    made = hbgw_json("apikey", "add", "short-lived", "--read-only", config=gw.cfg)
    assert gw.get(f"/projects/1/metrics/{made['key']}").status == 200
    hbgw("apikey", "rm", str(made["id"]), config=gw.cfg)
    assert gw.get(f"/projects/1/metrics/{made['key']}").status == 401


def test_it_keeps_bearer_auth_on_metrics(gw: Gw) -> None:
    assert gw.get("/metrics").status == 401
    assert gw.get("/metrics", gw.keys["read"]).status == 200


# ---------------------------------------------------------------------- in process, by the clock


def test_message_counters_survive_pruning_and_states_follow_the_clock(tmp_path: Path) -> None:
    with Gateway(tmp_path / "data") as g:
        g.add("db", period=60, grace=60)
        g.ping("db")
        g.tick(90)
        assert value(metrics.render(g.service), 'hbgw_check_status{name="db",status="late"}') == 1
        g.tick(60)  # down: an SMS and an email go out
        text = metrics.render(g.service)
        assert value(text, 'hbgw_check_up{name="db",slug="db",tags=""}') == 0
        sms, email = value(text, "hbgw_sms_sent_total"), value(text, "hbgw_email_sent_total")
        assert sms >= 1 and email >= 1
        g.ping("db")  # up again: one more of each, the newest outbox rows
        g.dispatch()
        text = metrics.render(g.service)
        assert value(text, "hbgw_sms_sent_total") == sms + 1
        assert value(text, "hbgw_email_sent_total") == email + 1
        in_outbox = value(text, 'hbgw_messages{channel="sms",state="sent"}')

        g.clocks.run(KEEP_MESSAGES + 86400)
        removed = asyncio.run_coroutine_threadsafe(g.service.prune(), g.loop).result(timeout=10)
        assert removed["outbox"] >= 2
        text = metrics.render(g.service)
        assert value(text, 'hbgw_messages{channel="sms",state="sent"}') < in_outbox  # a gauge
        assert value(text, "hbgw_sms_sent_total") == sms + 1  # counters
        assert value(text, "hbgw_email_sent_total") == email + 1
        assert g.service.store.counters()["sms:sent"] >= 1  # what pruning took, kept
