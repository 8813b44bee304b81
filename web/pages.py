"""The admin pages: parse the request, (the plugin authenticates), one service call, render.

Every page is a Jinja2 template under ``web/templates`` extending ``base.html``; the one
``Environment`` autoescapes and uses ``StrictUndefined``, so a server called ``<script>`` is
text and a typo in a template is an error, not an empty string. Every state change is a POST
answered with a redirect (303), or with the form again and the error next to the field (400).
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import logging
import re
import threading
import urllib.parse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import bottle
import jinja2
from markupsafe import Markup, escape

from gateway.accounts import LoginRefused
from gateway.config import Config
from gateway.errors import ValidationError
from gateway.model import ModemLogRow, Ping, iso
from gateway.readmodels import BEATS, CheckPage, ModemPage, beat_letters, by_tag, show_recipient
from gateway.rules import dependencies as deps
from gateway.rules.durations import format_duration, humanize, run_time
from gateway.rules.settings import format_quiet_hours
from gateway.rules.status import STATUS_ORDER
from gateway.service import Service, parse_duration_field
from gateway.store import Conflict, NotFound
from web import badges
from web.auth import Auth, safe_next

logger = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
PARTIAL_HEADER = "X-Hbgw-Partial"
GZIP_MIN = 1400  # bytes; smaller pages are not worth compressing


def quote(name: str) -> str:
    """A check name as one URL path segment."""
    return urllib.parse.quote(name, safe="")


def split_list(text: str) -> list[str]:
    """Textarea or comma-separated input → items (empty ones dropped)."""
    return [p.strip() for p in re.split(r"[\n,;]+", text) if p.strip()]


BEAT_CLASS = {"o": "ok", "f": "f", "s": "s", "i": "i", "e": "e"}  # beat letters to CSS classes


def beats_svg(pings: Sequence[Ping], slots: int, label: Callable[[Ping], str]) -> Markup:
    """The heartbeat bar of the check page: one bar per ping, oldest left, newest right,
    coloured by outcome (success green, fail red, start and log grey, ignored faint), each with
    its tooltip; empty slots on the left are pings not made yet. Only numbers and escaped text
    go in."""
    letters = beat_letters([(p.kind.value, p.exit_status) for p in reversed(pings)])
    pad = slots - len(pings)
    bars = [f'<rect class="e" x="{i * 6}" y="0" width="4" height="18" rx="1.5"/>' for i in range(pad)]
    for i, (p, letter) in enumerate(zip(pings, letters, strict=True), start=pad):
        bars.append(
            f'<rect class="{BEAT_CLASS[letter]}" x="{i * 6}" y="0" width="4" height="18" rx="1.5">'
            f"<title>{escape(label(p))}</title></rect>"
        )
    return _beats_frame(slots, len(pings), bars)


def beat_bar(letters: str, slots: int) -> Markup:
    """The overview's heartbeat bar (see :func:`gateway.readmodels.beat_letters`): the same
    picture without tooltips, each colour one ``path``, so a thousand rows stay small (0.5 kB
    a row instead of 4)."""
    paths: dict[str, list[str]] = {}
    pad = slots - len(letters)
    for i, letter in enumerate("e" * pad + letters):
        paths.setdefault(BEAT_CLASS[letter], []).append(f"M{i * 6} 0h4v18h-4z")
    return _beats_frame(slots, len(letters), [f'<path class="{c}" d="{"".join(d)}"/>' for c, d in paths.items()])


def _beats_frame(slots: int, n: int, bars: list[str]) -> Markup:
    summary = f"last {n} ping{'' if n == 1 else 's'}" if n else "no pings yet"
    return Markup(
        f'<svg class="beats" viewBox="0 0 {slots * 6 - 2} 18" role="img" aria-label="{summary}">{"".join(bars)}</svg>'
    )


def durations_svg(pings: Sequence[Ping], label: Callable[[Ping], str]) -> Markup:
    """Run durations (success and fail pings with a matching /start), oldest left, as bars on a
    time axis from 0 to the longest run; failed runs red."""
    runs = [p for p in reversed(pings) if p.duration is not None][-40:]
    if not runs:
        return Markup("")
    top = max(p.duration or 0.0 for p in runs) or 1.0
    width, height, left = 480.0, 110.0, 52.0
    step = min(24.0, (width - left - 4) / max(len(runs), 1))  # a lone run is a bar, not a wall
    bars = []
    for i, p in enumerate(runs):
        h = max(1.5, (p.duration or 0.0) / top * (height - 26))
        cls = ' class="f"' if p.kind == "fail" or (p.exit_status or 0) != 0 else ""
        x = left + i * step + step * 0.15
        bars.append(
            f'<rect{cls} x="{x:.1f}" y="{height - 16 - h:.1f}" width="{step * 0.7:.1f}" height="{h:.1f}">'
            f"<title>{escape(label(p))}</title></rect>"
        )
    axis = (
        f'<line x1="{left}" x2="{width}" y1="{height - 16}" y2="{height - 16}"/>'
        f'<line x1="{left}" x2="{width}" y1="10" y2="10" class="g"/>'
        f'<text x="{left - 6}" y="14" text-anchor="end">{escape(run_time(top))}</text>'
        f'<text x="{left - 6}" y="{height - 13}" text-anchor="end">0</text>'
        f'<text x="{left}" y="{height - 2}">older</text>'
        f'<text x="{width}" y="{height - 2}" text-anchor="end">newest</text>'
    )
    return Markup(
        f'<svg class="chart durations" viewBox="0 0 {width:.0f} {height:.0f}" role="img"'
        f' aria-label="run durations of the last {len(runs)} runs"><g class="axis">{axis}</g>{"".join(bars)}</svg>'
    )


def bars_svg(bars: int | None) -> Markup:
    """Signal bars like a phone's (0-5 filled)."""
    n = bars or 0
    rects = []
    for i in range(5):
        on = ' class="on"' if i < n else ""
        rects.append(f'<rect{on} x="{i * 4}" y="{10 - 2 * i}" width="3" height="{2 * i + 2}"/>')
    return Markup(f'<svg class="bars" viewBox="0 0 19 12" aria-hidden="true">{"".join(rects)}</svg>')


SIGNAL_SPANS = (3600.0, 3 * 3600.0, 6 * 3600.0, 12 * 3600.0, 86400.0)


def signal_span(history: Sequence[ModemLogRow], now: float) -> float:
    """The chart's time span: the shortest of 1, 3, 6, 12 or 24 h holding every reading, so a new
    modem's first minutes are a line, not a dot at the right edge of a day."""
    first = history[0].at if history else now
    return next((span for span in SIGNAL_SPANS if now - first <= span), SIGNAL_SPANS[-1])


def signal_svg(history: Sequence[ModemLogRow], now: float) -> Markup:
    """Signal readings as a step line on axes: dBm on the left, bars on the right, time ago below,
    over ``signal_span``. A reading holds until the next one (or now); disconnected stretches are
    gaps (shaded), as is the time before the first reading."""
    width, height, left, right, bottom, top = 520.0, 160.0, 44.0, 30.0, 20.0, 18.0
    span = signal_span(history, now)
    since = now - span

    def x(at: float) -> float:
        return left + (max(since, min(now, at)) - since) / span * (width - left - right)

    def y(dbm: float) -> float:
        return top + (-51 - max(-113, min(-51, dbm))) / 62 * (height - top - bottom)

    lines: list[list[str]] = [[]]
    gaps: list[tuple[float, float]] = []
    for i, row in enumerate(history):
        dbm = row.signal_dbm
        until = history[i + 1].at if i + 1 < len(history) else now
        if not row.connected or dbm is None:
            gaps.append((row.at, until))
            if lines[-1]:
                lines.append([])
            continue
        lines[-1] += [f"{x(row.at):.1f},{y(dbm):.1f}", f"{x(until):.1f},{y(dbm):.1f}"]
    polys = "".join(f'<polyline points="{" ".join(pts)}"/>' for pts in lines if pts)
    parts = []
    for dbm in (-51, -73, -93, -113):
        parts.append(f'<line class="g" x1="{left}" x2="{width - right}" y1="{y(dbm):.1f}" y2="{y(dbm):.1f}"/>')
        parts.append(f'<text x="{left - 5}" y="{y(dbm) + 3:.1f}" text-anchor="end">{dbm}</text>')
    for bars, dbm in ((5, -73), (4, -83), (3, -93), (2, -103), (1, -111)):
        parts.append(f'<text x="{width - right + 5}" y="{y(dbm) + 3:.1f}">{bars}▮</text>')
    for k in range(5):
        ago = span * (4 - k) / 4
        label = "now" if k == 4 else f"{humanize(ago)} ago"
        anchor = "end" if k == 4 else "start" if k == 0 else "middle"
        parts.append(f'<text x="{x(now - ago):.1f}" y="{height - 5}" text-anchor="{anchor}">{label}</text>')
    parts.append(f'<text x="{left - 5}" y="10" text-anchor="end" class="u">dBm</text>')
    parts.append(f'<text x="{width - right + 5}" y="10" class="u">bars</text>')
    first = history[0].at if history else now
    shade = ""
    for a, b in ([(since, first)] if first > since + span / 100 else []) + gaps:
        w = x(b) - x(a)
        if w > 0.5:
            shade += f'<rect class="nodata" x="{x(a):.1f}" y="{top}" width="{w:.1f}" height="{height - top - bottom}"/>'
    return Markup(
        f'<svg class="chart signal" viewBox="0 0 {width:.0f} {height:.0f}" role="img"'
        f' aria-label="signal over the last {humanize(span)}, in dBm and bars">{shade}'
        f'<g class="axis">{"".join(parts)}</g>{polys}</svg>'
    )


def schedule_text(check: Any) -> str:
    """A check's schedule for the overview: "every 15 min" or "cron 0 3 * * *"."""
    sched = check.schedule
    return f"cron {sched.cron}" if sched.cron else f"every {humanize(sched.period)}"


class Pages:
    """The admin pages of one app. Routes are added by :meth:`install`."""

    def __init__(
        self,
        app: bottle.Bottle,
        service: Service,
        config: Config,
        auth: Auth,
        client_addr: Callable[[], str | None],
        *,
        demo_phone: Any = None,
    ) -> None:
        self.app = app
        self.service = service
        self.config = config
        self.auth = auth
        self.client_addr = client_addr
        self.demo_phone = demo_phone
        self.demo_password = service.accounts.ensure_demo_password() if config.demo else None
        self.assets = {p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:10] for p in STATIC.iterdir() if p.is_file()}
        env = jinja2.Environment(
            loader=jinja2.PackageLoader("web"),
            autoescape=jinja2.select_autoescape(),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        env.filters.update(
            ago=self._ago,
            when=self._when,
            hm=lambda ts: dt.datetime.fromtimestamp(ts, self._zone()).strftime("%H:%M"),
            iso=iso,
            dur=humanize,
            runtime=run_time,
            urlpath=lambda url: urlsplit(url).path,
            fdur=format_duration,
            q=quote,
            recipient=lambda r, channel=None: show_recipient(channel, r),
            pct=lambda share: "—" if share is None else f"{share * 100:.3g} %" if share < 1 else "100 %",
            schedule=schedule_text,
        )
        env.globals.update(
            beats=lambda pings: beats_svg(pings, BEATS, self._beat_label),
            beat_bar=lambda letters: beat_bar(letters, BEATS),
            durations=lambda pings: durations_svg(pings, self._beat_label),
            bars_svg=bars_svg,
            signal_svg=signal_svg,
            signal_span=signal_span,
            asset=self.asset,
            statuses=list(STATUS_ORDER),
            # the end of the maintenance window a check is in now, or None
            maintenance_until=lambda check: self.service.quiet.open_for(check),
            # the parents a check depends on, and those of them down now ("behind router")
            parents_of=lambda check: self.service.deps.parents(check),
            behind=lambda check: self.service.deps.behind(check),
        )
        self.env = env
        # The one-time messages for a session (a new API key, shown once after the redirect):
        # memory only, by session key; lost on restart, which is fine for "shown once".
        self._flash: dict[str, tuple[float, Any]] = {}
        self._flash_lock = threading.Lock()

    # ------------------------------------------------------------------ helpers

    def asset(self, name: str) -> str:
        """URL of a static file, with a content hash so it can be cached for long."""
        return f"/static/{name}?v={self.assets.get(name, '0')}"

    def _zone(self) -> dt.tzinfo:
        return self.service.settings.zone

    def _when(self, ts: float | None) -> str:
        if ts is None:
            return ""
        return dt.datetime.fromtimestamp(ts, self._zone()).strftime("%Y-%m-%d %H:%M:%S %Z")

    def _beat_label(self, p: Ping) -> str:
        what = p.kind.value if p.kind.value != "ign" else "ignored"
        if p.exit_status:
            what += f" (exit {p.exit_status})"
        if p.duration is not None:
            what += f", ran {run_time(p.duration)}"
        return f"{self._when(p.at)}: {what}"

    def flash(self, value: Any) -> None:
        """Keep ``value`` for this session's next page (and only that one)."""
        session = self.auth.session()
        if session is None:
            return
        now = self.service.clock()
        with self._flash_lock:
            self._flash = {k: v for k, v in self._flash.items() if v[0] > now - 600}
            self._flash[session.key] = (now, value)

    def take_flash(self) -> Any:
        """This session's one-time value (None when there is none); it is gone afterwards."""
        session = self.auth.session()
        if session is None:
            return None
        with self._flash_lock:
            entry = self._flash.pop(session.key, None)
        return entry[1] if entry and entry[0] > self.service.clock() - 600 else None

    def _ago(self, ts: float | None, now: float) -> str:
        if ts is None:
            return "never"
        delta = now - ts
        if delta < 5:
            return "just now" if delta > -5 else "in " + humanize(-delta)
        return humanize(delta) + " ago"

    def render(self, template: str, status: int = 200, **ctx: Any) -> bytes:
        session = self.auth.session()
        ctx.setdefault("errors", {})
        ctx.setdefault("live", "/partial/banner" if session else "")
        ctx.setdefault("every", 10000)
        html = self.env.get_template(template).render(
            csrf=session.csrf if session else "",
            logged_in=session is not None,
            demo=self.config.demo,
            path=bottle.request.path,
            banner=self.service.views.banner() if session else None,
            **ctx,
        )
        resp = bottle.response
        resp.status = status
        resp.content_type = "text/html; charset=utf-8"
        resp.set_header("Cache-Control", "no-store")
        return self._encode(html)

    def _encode(self, html: str) -> bytes:
        data = html.encode()
        if len(data) >= GZIP_MIN and "gzip" in bottle.request.get_header("Accept-Encoding", ""):
            bottle.response.set_header("Content-Encoding", "gzip")
            bottle.response.set_header("Vary", "Accept-Encoding")
            return gzip.compress(data, compresslevel=5, mtime=0)
        return data

    def form(self) -> bottle.FormsDict:
        """The POSTed form fields, decoded as UTF-8."""
        forms: bottle.FormsDict = bottle.request.forms.decode()
        return forms

    def redirect(self, url: str) -> NoReturn:
        bottle.redirect(url, 303)
        raise AssertionError("unreachable")

    def forbidden(self, reason: str) -> bytes:
        return self.render(
            "error.html",
            403,
            title="Not allowed",
            message="This form has expired or did not come from this site. Go back, reload the page and try again.",
        )

    def login_redirect(self) -> None:
        target = bottle.request.fullpath
        if bottle.request.query_string:
            target += "?" + bottle.request.query_string
        self.redirect("/login?next=" + urllib.parse.quote(target, safe="/"))

    def not_found(self, name: str) -> bytes:
        return self.render(
            "error.html",
            404,
            title="No such server",
            message=f"There is no server called “{name}”. It may have been deleted.",
        )

    def wants_partial(self) -> bool:
        return bool(bottle.request.get_header(PARTIAL_HEADER, "") == "overview")

    # ------------------------------------------------------------------ routes

    def install(self) -> None:
        app, r = self.app, self.app.route
        r("/static/<path:path>", "GET", self.static, auth="public")
        r("/login", ["GET", "POST"], self.login, auth="login")
        r("/logout", "POST", self.logout, auth="page")
        r("/", "GET", self.index, auth="page")
        r("/partial/overview", "GET", self.partial_overview, auth="page")
        r("/partial/banner", "GET", self.partial_banner, auth="page")
        r("/partial/check/<name>", "GET", self.partial_check, auth="page")
        r("/partial/modem", "GET", self.partial_modem, auth="page")
        r("/checks", "POST", self.add_check, auth="page")
        r("/sms", "POST", self.toggle_sms, auth="page")
        r("/checks/<name>", ["GET", "POST"], self.check, auth="page")
        r("/checks/<name>/delete", ["GET", "POST"], self.delete, auth="page")
        r("/checks/<name>/pause", "POST", self.pause, auth="page")
        r("/checks/<name>/resume", "POST", self.resume, auth="page")
        r("/checks/<name>/ack", "POST", self.ack, auth="page")
        r("/checks/<name>/mute", "POST", self.mute, auth="page")
        r("/checks/<name>/unmute", "POST", self.unmute, auth="page")
        r("/checks/<name>/new-url", "POST", self.new_url, auth="page")
        r("/modem", "GET", self.modem, auth="page")
        r("/modem/test-sms", "POST", self.test_sms, auth="page")
        r("/modem/phone", "POST", self.phone_reply, auth="page")
        r("/modem/phone/call", "POST", self.phone_call, auth="page")
        r("/settings", "GET", self.settings, auth="page")
        r("/settings/alerts", "POST", self.save_alerts, auth="page")
        r("/settings/alerts/reset", "POST", self.reset_alerts, auth="page")
        r("/settings/password", "POST", self.change_password, auth="page")
        r("/settings/api-keys", "POST", self.create_api_key, auth="page")
        r("/settings/api-keys/<key_id:int>/revoke", "POST", self.revoke_api_key, auth="page")
        from web import maintpages

        maintpages.install(self)
        app.add_hook("before_request", self._styled_errors)

    def _styled_errors(self) -> None:
        """A browser asking for an unknown page (or with the wrong method, like a bookmarked
        ``GET /logout``) gets the answer in the page layout; the APIs keep their plain errors."""
        req = bottle.request
        if "text/html" not in req.get_header("Accept", "") or req.path.startswith(("/api/", "/hc-api/", "/ping/")):
            return
        try:
            self.app.router.match(req.environ)
        except bottle.HTTPError as e:
            if e.status_code == 404:
                body = self.render(
                    "error.html", 404, title="Page not found", message=f"There is no page at {req.path}."
                )
            elif e.status_code == 405:
                body = self.render(
                    "error.html",
                    405,
                    title="Use the button",
                    message="This address takes a form's button, not a link or a reload.",
                    logout=req.path == "/logout" and self.auth.session() is not None,
                )
            else:
                return
            resp = bottle.HTTPResponse(body, e.status_code)
            for k, v in bottle.response.headerlist:
                resp.set_header(k, v)
            raise resp from None

    def static(self, path: str) -> Any:
        resp = bottle.static_file(path, root=str(STATIC))
        if resp.status_code == 200 and bottle.request.query.get("v"):
            resp.set_header("Cache-Control", "public, max-age=31536000, immutable")
        return resp

    # -- login

    def login(self) -> bytes:
        nxt = safe_next(bottle.request.query.get("next") or bottle.request.forms.get("next"))
        if bottle.request.method == "GET":
            if self.auth.session() is not None:
                self.redirect(nxt)
            return self._login_page(nxt)
        f = self.form()
        try:
            session = self.service.accounts.login(f.get("password", ""), self.client_addr())
        except LoginRefused as e:
            if e.retry_after is not None:
                bottle.response.set_header("Retry-After", str(int(e.retry_after) + 1))
                minutes = max(1, round(e.retry_after / 60))
                return self._login_page(
                    nxt, 429, f"Too many failed attempts from your address. Try again in {minutes} min."
                )
            message = (
                "No admin password is set yet: run `hbgw passwd` on the gateway."
                if "no admin password" in str(e)
                else "Wrong password."
            )
            return self._login_page(nxt, 401, message)
        self.auth.start_session(session)
        self.redirect(nxt)

    def _login_page(self, nxt: str, status: int = 200, error: str | None = None) -> bytes:
        return self.render(
            "login.html",
            status,
            next=nxt,
            login_token=self.auth.login_token(),
            error=error,
            demo_password=self.demo_password,
        )

    def logout(self) -> None:
        self.auth.end_session()
        self.redirect("/login")

    # -- the status table

    def _filter(self) -> dict[str, str]:
        query = bottle.request.query
        return {
            "q": (query.getunicode("q") or "").strip(),
            "tag": (query.getunicode("tag") or "").strip(),
            "group": "tag" if query.getunicode("group") == "tag" else "",
        }

    def _overview_ctx(self, **ctx: Any) -> dict[str, Any]:
        flt = self._filter()
        qs = urllib.parse.urlencode({k: v for k, v in flt.items() if v})
        ov = self.service.views.overview(flt["q"], flt["tag"])
        return {
            "ov": ov,
            "rows": by_tag(ov.rows, grouped=flt["group"] == "tag"),
            "flt": flt,
            "qs": qs,
            "live": "/partial/overview" + ("?" + qs if qs else ""),
            **ctx,
        }

    def index(self) -> bytes:
        return self.render("index.html", add={}, errors={}, **self._overview_ctx())

    def partial_overview(self) -> bytes:
        return self.render("_partial.html", parts=["overview"], **self._overview_ctx())

    def partial_banner(self) -> bytes:
        return self.render("_partial.html", parts=[])

    def partial_check(self, name: str) -> bytes:
        try:
            page = self.service.views.check_page(name)
        except NotFound:
            return self.not_found(name)
        return self.render(
            "_partial.html", parts=["check_status", "check_chart", "check_pings", "check_events"], page=page
        )

    def partial_modem(self) -> bytes:
        page = self.service.views.modem_page()
        return self.render(
            "_partial.html",
            parts=["modem_status", "phone_screen", "outbox", "inbox"],
            page=page,
            phone=self._phone(page),
        )

    def add_check(self) -> bytes:
        f = self.form()
        values = {k: f.get(k, "") for k in ("name", "period", "grace")}
        try:
            check = self.service.add_check(
                values["name"],
                period=parse_duration_field("period", values["period"]),
                grace=parse_duration_field("grace", values["grace"]),
            )
        except ValidationError as e:
            return self.render("index.html", 400, add=values, errors={e.field: str(e)}, **self._overview_ctx())
        except Conflict as e:
            return self.render("index.html", 400, add=values, errors={"name": str(e)}, **self._overview_ctx())
        self.redirect(f"/checks/{quote(check.name)}")

    def toggle_sms(self) -> bytes:
        f = self.form()
        name, enabled = (f.get("on"), True) if f.get("on") is not None else (f.get("off"), False)
        if name is None:
            bottle.abort(400)
        try:
            self.service.set_sms_enabled(name, enabled)
        except NotFound:
            return self.not_found(name)
        if self.wants_partial():
            return self.partial_overview()
        self.redirect(safe_next(f.get("next")))

    # -- one check

    def check(self, name: str) -> bytes:
        if bottle.request.method == "GET":
            try:
                page = self.service.views.check_page(name)
            except NotFound:
                return self.not_found(name)
            return self._check_page(page, self._check_values(page), {})
        f = self.form()
        values = {
            k: f.get(k, "")
            for k in (
                "period",
                "grace",
                "cron",
                "tz",
                "repeat",
                "ladder",
                "filter_success",
                "filter_fail",
                "filter_start",
                "slug",
                "tags",
                "desc",
                "depends_on",
            )
        }
        values.update(
            sms=f.get("sms") == "1",
            email=f.get("email") == "1",
            filter_subject=f.get("filter_subject") == "1",
            filter_body=f.get("filter_body") == "1",
            manual_resume=f.get("manual_resume") == "1",
            post_only=f.get("post_only") == "1",
        )
        try:
            current = self.service.deps.parents(self.service.get_check(name))
            if list(deps.parse_list(values["depends_on"])) != current:
                self.service.deps.set(name, values["depends_on"])  # its own transaction, checked first
            # every other field of the form at once, in one transaction (Service.patch_check)
            self.service.patch_check(
                name,
                slug=values["slug"],
                tags=values["tags"],
                desc=values["desc"],
                manual_resume=values["manual_resume"],
                methods="POST" if values["post_only"] else "",
                period=parse_duration_field("period", values["period"]),
                grace=parse_duration_field("grace", values["grace"]),
                cron=values["cron"].strip() or None,
                tz=values["tz"].strip() or None,
                repeat=parse_duration_field("repeat", values["repeat"]),
                ladder=values["ladder"] or None,
                sms_enabled=values["sms"],
                email_enabled=values["email"],
                filters={
                    "subject": values["filter_subject"],
                    "body": values["filter_body"],
                    "success": split_list(values["filter_success"]),
                    "fail": split_list(values["filter_fail"]),
                    "start": split_list(values["filter_start"]),
                },
            )
        except NotFound:
            return self.not_found(name)
        except ValidationError as e:
            try:
                page = self.service.views.check_page(name)
            except NotFound:
                return self.not_found(name)
            return self._check_page(page, values, {e.field: str(e)}, 400)
        self.redirect(f"/checks/{quote(name)}?saved=1")

    def _check_page(self, page: CheckPage, values: dict[str, Any], errors: dict[str, str], status: int = 200) -> bytes:
        return self.render(
            "check.html",
            status,
            page=page,
            values=values,
            errors=errors,
            ping_url=self.service.ping_url(page.check),
            slug_url=f"{self.service.base_url}/ping/{self.service.ping_key}/{page.check.slug}"
            if page.check.slug
            else "",
            badge=badges.badge_urls(self.service, page.check),
            saved=bool(bottle.request.query.get("saved")) and not errors,
            new_url=bool(bottle.request.query.get("new-url")),
            ladders=self.service.settings.ladder_names,
            has_ladder=bool(self.service.settings.escalation),
            live=f"/partial/check/{quote(page.check.name)}",
        )

    def _check_values(self, page: CheckPage) -> dict[str, Any]:
        c, fl = page.check, page.filters
        return {
            "period": format_duration(c.schedule.period),
            "grace": format_duration(c.schedule.grace),
            "cron": c.schedule.cron or "",
            "tz": c.schedule.tz,
            "repeat": format_duration(c.repeat) if c.repeat else "",
            "ladder": c.ladder or "",
            "sms": c.sms_enabled,
            "email": c.email_enabled,
            "filter_success": ", ".join(fl.success),
            "filter_fail": ", ".join(fl.fail),
            "filter_start": ", ".join(fl.start),
            "filter_subject": fl.subject,
            "filter_body": fl.body,
            "slug": c.slug,
            "tags": c.tags,
            "desc": c.desc,
            "depends_on": ", ".join(self.service.deps.parents(c)),
            "manual_resume": c.manual_resume,
            "post_only": c.methods == "POST",
        }

    def delete(self, name: str) -> bytes:
        if bottle.request.method == "GET":
            try:
                check = self.service.get_check(name)
            except NotFound:
                return self.not_found(name)
            return self.render("delete.html", check=check)
        try:
            self.service.remove_check(name)
        except NotFound:
            return self.not_found(name)
        self.redirect("/")

    def pause(self, name: str) -> bytes:
        return self._pause_resume(name, self.service.pause)

    def resume(self, name: str) -> bytes:
        return self._pause_resume(name, self.service.resume)

    def ack(self, name: str) -> bytes:
        return self._pause_resume(name, lambda n: self.service.ack(n, "web"))

    def mute(self, name: str) -> bytes:
        raw = self.form().get("for") or "1h"
        return self._pause_resume(name, lambda n: self.service.mute(n, parse_duration_field("for", raw) or 0.0, "web"))

    def unmute(self, name: str) -> bytes:
        return self._pause_resume(name, lambda n: self.service.unmute(n, "web"))

    def new_url(self, name: str) -> bytes:
        try:
            self.service.replace_token(name)
        except NotFound:
            return self.not_found(name)
        self.redirect(f"/checks/{quote(name)}?new-url=1#snip-h")

    def _pause_resume(self, name: str, action: Callable[[str], Any]) -> bytes:
        try:
            action(name)
        except NotFound:
            return self.not_found(name)
        except ValidationError:
            bottle.abort(400)  # only a hand-made form gets here: the page offers valid choices
        self.redirect(safe_next(self.form().get("next"), f"/checks/{quote(name)}"))

    # -- modem

    def modem(
        self,
        *,
        status: int = 200,
        sms: dict[str, str] | None = None,
        errors: dict[str, str] | None = None,
        reply: str = "",
    ) -> bytes:
        page = self.service.views.modem_page()
        return self.render(
            "modem.html",
            status,
            page=page,
            live="/partial/modem",
            every=3000,
            sms=sms or {"number": page.owner_numbers[0] if page.owner_numbers else "", "text": ""},
            errors=errors or {},
            phone=self._phone(page),
            reply=reply,
            queued=bottle.request.query.get("queued"),
        )

    def _phone(self, page: ModemPage) -> dict[str, Any] | None:
        """The demo phone's conversation: what the gateway sent to the owner's number and what
        the owner sent back, oldest first."""
        if self.demo_phone is None:
            return None
        number = page.owner_numbers[0] if page.owner_numbers else None
        if number is None:
            return {"number": None, "messages": []}
        messages = [
            {"at": m.at.timestamp(), "text": m.text, "out": False} for m in self.demo_phone.sent() if m.number == number
        ]
        messages += [{"at": m.received, "text": m.text, "out": True} for m in page.inbox if m.sender == number]
        messages.sort(key=lambda m: m["at"])
        return {"number": number, "messages": messages[-30:], "ringing": self.demo_phone.ringing(number)}

    def test_sms(self) -> bytes:
        f = self.form()
        sms = {"number": f.get("number", "").strip(), "text": f.get("text", "")}
        try:
            self.service.send_test_sms(sms["number"], sms["text"])
        except ValidationError as e:
            return self.modem(status=400, sms=sms, errors={e.field: str(e)})
        self.redirect("/modem?queued=1#outbox")

    def phone_reply(self) -> bytes:
        if self.demo_phone is None:
            return self.render(
                "error.html", 404, title="Not here", message="The simulated phone exists only in demo mode."
            )
        text = self.form().get("reply", "").strip()
        owner = self.service.settings.sms_to
        if not text or len(text) > 480:
            return self.modem(status=400, errors={"reply": "write 1 to 480 characters"}, reply=text)
        if not owner:
            return self.modem(status=400, errors={"reply": "no owner number is set"}, reply=text)
        self.demo_phone.inject(owner[0], text)
        self.redirect("/modem#phone")

    def phone_call(self) -> bytes:
        """The visitor answers or rejects the call the gateway is making to the demo phone."""
        if self.demo_phone is None:
            return self.render(
                "error.html", 404, title="Not here", message="The simulated phone exists only in demo mode."
            )
        if self.form().get("answer"):
            self.demo_phone.answer()
        else:
            self.demo_phone.reject()
        self.redirect("/modem#phone")

    # -- settings

    def settings(
        self,
        *,
        status: int = 200,
        errors: dict[str, str] | None = None,
        alerts: dict[str, str] | None = None,
        key_label: str = "",
        password_changed: bool = False,
    ) -> bytes:
        view = self.service.settings_view()
        owner = view.in_force
        if alerts is None:
            alerts = {
                "sms_to": "\n".join(owner.sms_to),
                "email_to": "\n".join(owner.email_to),
                "sms_allow": "\n".join(owner.sms_allow),
                "sms_pin": owner.sms_pin or "",
                "repeat": format_duration(owner.repeat),
                "quiet_hours": format_quiet_hours(owner.quiet_hours),
                "max_sms_per_hour": str(owner.max_sms_per_hour),
            }
        file = view.file
        from_file = {
            "sms_to": ", ".join(file.sms_to) or "none",
            "email_to": ", ".join(file.email_to) or "none",
            "sms_allow": ", ".join(file.sms_allow) or "none",
            "sms_pin": "set" if file.sms_pin else "none",
            "repeat": format_duration(file.repeat),
            "quiet_hours": format_quiet_hours(file.quiet_hours) or "none",
            "max_sms_per_hour": str(file.max_sms_per_hour),
        }
        return self.render(
            "settings.html",
            status,
            owner=view,
            from_file=from_file,
            alerts=alerts,
            errors=errors or {},
            email=self.config.email,
            config_file=self.config.source,
            keys=self.service.accounts.list_api_keys(),
            new_key=self.take_flash() if status == 200 else None,
            key_label=key_label,
            password_changed=password_changed or bool(bottle.request.query.get("password")),
            saved=bool(bottle.request.query.get("saved")),
            now=self.service.clock(),
        )

    def save_alerts(self) -> bytes:
        f = self.form()
        alerts = {
            k: f.get(k, "")
            for k in ("sms_to", "email_to", "sms_allow", "sms_pin", "repeat", "quiet_hours", "max_sms_per_hour")
        }
        try:
            self.service.update_owner_settings(**alerts)
        except ValidationError as e:
            return self.settings(status=400, errors={e.field: str(e)}, alerts=alerts)
        self.redirect("/settings?saved=1")

    def reset_alerts(self) -> bytes:
        self.service.use_file_settings()
        self.redirect("/settings?saved=1")

    def change_password(self) -> bytes:
        f = self.form()
        session = self.auth.session()
        assert session is not None  # the plugin let us in
        try:
            self.service.accounts.change_password(session, f.get("current", ""), f.get("new", ""), f.get("again", ""))
        except ValidationError as e:
            return self.settings(status=400, errors={e.field: str(e)})
        self.redirect("/settings?password=1#password")

    def create_api_key(self) -> bytes:
        f = self.form()
        label = f.get("label", "")
        try:
            new_key = self.service.accounts.create_api_key(label, f.get("scope") or "write")
        except ValidationError as e:
            return self.settings(status=400, errors={e.field: str(e)}, key_label=label)
        # Post/redirect/get: the key waits server-side for this session's next page, where it
        # is shown once; it never travels in a URL, and reloading creates no second key.
        self.flash(new_key)
        self.redirect("/settings#api-keys")

    def revoke_api_key(self, key_id: int) -> bytes:
        try:
            self.service.accounts.revoke_api_key(key_id)
        except NotFound:
            return self.render(
                "error.html", 404, title="No such key", message="That API key does not exist or was already revoked."
            )
        self.redirect("/settings#api-keys")
