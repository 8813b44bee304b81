"""Prometheus metrics (text exposition format 0.0.4), behind a read or write API key.

    GET /metrics                              Authorization: Bearer <API key>
    GET /projects/<id>/metrics/               Authorization: Bearer <API key>
    GET /projects/<id>/metrics/<API key>      for scrapers that cannot send a header
    GET /projects/<id>/checks/metrics/<API key>

The ``/projects/...`` forms are Healthchecks' per-project URLs. There is one project here, so
``<id>`` may be anything (Healthchecks puts the project's UUID there). A wrong or revoked key in
the path answers 401, the same for every kind of wrong.

Series (labels ``name``, ``slug``, ``tags`` for one check; values escaped as the format says):

- ``hbgw_checks{status}``: checks by status (gauge).
- ``hbgw_check_up``: 0 when the check is down, else 1 (late, new and paused count as up, as
  Healthchecks' ``hc_check_up``).
- ``hbgw_check_status{name, status}``: 1 for the check's current status, 0 for the other four.
- ``hbgw_check_started``: 1 while a ``/start`` waits for its success or failure.
- ``hbgw_check_seconds_since_last_ping``: only for checks that have had a ping.
- ``hbgw_check_last_duration_seconds``: only once a ``/start`` was followed by a success or fail.
- ``hbgw_tag_up{tag}``: 0 when any check with the tag is down.
- ``hbgw_pings_received_total``, ``hbgw_{sms,email}_{sent,failed}_total``: real counters that
  include what removed checks and pruned messages counted, so they never go down.
- ``hbgw_messages{channel, state}``: the outbox as it is now (gauge); the modem's connection and
  signal.
"""

from __future__ import annotations

import bottle

from gateway.model import Check, Status
from gateway.readmodels import signal_bars
from gateway.rules import status as st
from gateway.service import Service

CHANNELS = ("sms", "email")
STATES = ("pending", "sending", "sent", "failed")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def escape(value: str) -> str:
    """A label value as the text format wants it: backslash, double quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**labels: str) -> str:
    return "{" + ",".join(f'{k}="{escape(v)}"' for k, v in labels.items()) + "}"


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:.3f}"


class _Text:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str) -> None:
        self.lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]

    def sample(self, name: str, value: float, labels: str = "") -> None:
        self.lines.append(f"{name}{labels} {_number(value)}")


def _split(counts: dict[str, int]) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = {}
    for key, n in counts.items():
        channel, sep, state = key.partition(":")
        if sep:
            out[(channel, state)] = n
    return out


def messages(service: Service) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str], int]]:
    """Messages by (channel, state): in the outbox now, and ever (now plus what pruning took).

    Two reads, not one transaction: a prune between them would count its rows twice or not at
    all, and the next scrape would look like a counter reset. So the kept counters are read
    before and after, and it is done again if a prune came in between.
    """
    store = service.store
    for _ in range(5):
        kept = store.counters()
        live = store.count_outbox()
        if store.counters() == kept:
            break
    now, pruned = _split(live), _split(kept)
    ever = {k: now.get(k, 0) + pruned.get(k, 0) for k in now.keys() | pruned.keys()}
    return now, ever


def render(service: Service) -> str:
    """The whole exposition for ``service`` at its clock's now."""
    now = service.clock()
    checks = service.list_checks()
    statuses = [(c, st.evaluate(c, now).status) for c in checks]
    out = _Text()

    out.family("hbgw_checks", "gauge", "Checks by current status.")
    for s in Status:
        out.sample("hbgw_checks", sum(1 for _, cs in statuses if cs == s), _labels(status=s.value))

    _per_check(out, statuses, now)

    out.family("hbgw_pings_received_total", "counter", "Heartbeats received (all checks, all kinds).")
    out.sample("hbgw_pings_received_total", service.store.total_pings())

    live, totals = messages(service)
    out.family("hbgw_messages", "gauge", "Outgoing messages now in the outbox, by channel and state.")
    for channel in CHANNELS:
        for state in STATES:
            out.sample("hbgw_messages", live.get((channel, state), 0), _labels(channel=channel, state=state))

    for channel, what in (("sms", "SMS messages"), ("email", "Emails")):
        out.family(f"hbgw_{channel}_sent_total", "counter", f"{what} sent.")
        out.sample(f"hbgw_{channel}_sent_total", totals.get((channel, "sent"), 0))
        out.family(f"hbgw_{channel}_failed_total", "counter", f"{what} given up on.")
        out.sample(f"hbgw_{channel}_failed_total", totals.get((channel, "failed"), 0))

    modem = service.modem_status()
    out.family("hbgw_modem_connected", "gauge", "Whether the modem is connected (1) or not (0).")
    out.sample("hbgw_modem_connected", 1 if modem and modem.connected else 0)
    if modem and modem.signal_dbm is not None:
        out.family("hbgw_modem_signal_dbm", "gauge", "Modem signal strength in dBm.")
        out.sample("hbgw_modem_signal_dbm", modem.signal_dbm)
        bars = signal_bars(modem.signal_dbm)
        if bars is not None:
            out.family("hbgw_modem_signal_bars", "gauge", "Modem signal strength in bars (0-5).")
            out.sample("hbgw_modem_signal_bars", bars)
    return "\n".join(out.lines) + "\n"


def _per_check(out: _Text, statuses: list[tuple[Check, Status]], now: float) -> None:
    labels = {c.id: _labels(name=c.name, slug=c.slug, tags=c.tags) for c, _ in statuses}

    out.family("hbgw_check_up", "gauge", "Whether the check is up (1) or down (0); late, new and paused count as up.")
    for c, s in statuses:
        out.sample("hbgw_check_up", 0 if s == Status.DOWN else 1, labels[c.id])

    out.family("hbgw_check_status", "gauge", "1 for the check's current status, 0 for the others.")
    for c, s in statuses:
        for each in Status:
            out.sample("hbgw_check_status", 1 if each == s else 0, _labels(name=c.name, status=each.value))

    out.family(
        "hbgw_check_started", "gauge", "Whether a run of the check has started (/start) and not ended (1) or not (0)."
    )
    for c, _ in statuses:
        out.sample("hbgw_check_started", 1 if c.last_start is not None else 0, labels[c.id])

    out.family("hbgw_check_seconds_since_last_ping", "gauge", "Seconds since the check's last ping of any kind.")
    for c, _ in statuses:
        if c.last_ping is not None:
            out.sample("hbgw_check_seconds_since_last_ping", max(0.0, now - c.last_ping), labels[c.id])

    out.family("hbgw_check_last_duration_seconds", "gauge", "How long the check's last run took (/start to its end).")
    for c, _ in statuses:
        if c.last_duration is not None:
            out.sample("hbgw_check_last_duration_seconds", float(c.last_duration), labels[c.id])

    down: dict[str, bool] = {}
    for c, s in statuses:
        for tag in c.tag_list:
            down[tag] = down.get(tag, False) or s == Status.DOWN
    out.family("hbgw_tag_up", "gauge", "Whether every check with the tag is up (1) or any is down (0).")
    for tag in sorted(down):
        out.sample("hbgw_tag_up", 0 if down[tag] else 1, _labels(tag=tag))


def _reply(service: Service) -> str:
    text = render(service)
    bottle.response.content_type = CONTENT_TYPE
    bottle.response.set_header("Cache-Control", "no-store")
    return text


def install(app: bottle.Bottle, service: Service) -> None:
    """Add /metrics and Healthchecks' per-project metrics URLs to ``app``."""

    def with_header(project: str = "") -> str:
        return _reply(service)  # the auth="api" option checked the Bearer key

    def with_key_in_path(project: str, key: str) -> str:
        if service.accounts.authenticate_api_key(key) is None:
            bottle.response.status = 401
            bottle.response.content_type = "text/plain; charset=utf-8"
            bottle.response.set_header("Cache-Control", "no-store")
            return "a valid API key is required\n"
        return _reply(service)

    app.route("/metrics", "GET", with_header, auth="api")
    app.route("/projects/<project>/metrics/", "GET", with_header, auth="api")
    app.route("/projects/<project>/metrics/<key>", "GET", with_key_in_path, auth="public")
    app.route("/projects/<project>/checks/metrics/<key>", "GET", with_key_in_path, auth="public")
