"""The admin pages: parse the request, (the plugin authenticates), one service call, render.

Every page is a Jinja2 template under ``web/templates`` extending ``base.html``; the one
``Environment`` autoescapes and uses ``StrictUndefined``, so a server called ``<script>`` is
text and a typo in a template is an error, not an empty string. Every state change is a POST
answered with a redirect (303), or with the form again and the error next to the field (400).
"""

from __future__ import annotations

import datetime as dt
import functools
import gzip
import hashlib
import logging
import re
import urllib.parse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import bottle
import jinja2
from markupsafe import Markup

from gateway.accounts import LoginRefused
from gateway.config import Config
from gateway.errors import ValidationError
from gateway.model import ApiKey, ModemLogRow, iso
from gateway.readmodels import CheckPage, ModemPage
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


@functools.lru_cache(maxsize=4096)  # many servers share a pattern (pinged every N minutes)
def spark_svg(slots: tuple[tuple[int, int], ...]) -> Markup:
    """A 24-slot ping histogram as a small inline SVG: one bar per hour with pings (height by
    count), red where a ping failed; gaps are silent hours. Only numbers go into the markup."""
    total = sum(n for n, _ in slots)
    failed = sum(f for _, f in slots)
    peak = max((n for n, _ in slots), default=0)
    ok: list[str] = []
    bad: list[str] = []
    for i, (n, f) in enumerate(slots):
        if n:
            height = 5 + round(9 * n / peak)
            (bad if f else ok).append(f"M{4 * i + 2} 16V{16 - height}")
    paths = "".join(f'<path{cls} d="{"".join(d)}"/>' for cls, d in (("", ok), (' class="f"', bad)) if d)
    pings = "1 ping" if total == 1 else f"{total} pings"
    return Markup(
        f'<svg class="spark" viewBox="0 0 96 16"><title>{pings}, {failed} failed, last 24 h</title>{paths}</svg>'
    )


def bars_svg(bars: int | None) -> Markup:
    """Signal bars like a phone's (0-5 filled)."""
    n = bars or 0
    rects = []
    for i in range(5):
        on = ' class="on"' if i < n else ""
        rects.append(f'<rect{on} x="{i * 4}" y="{10 - 2 * i}" width="3" height="{2 * i + 2}"/>')
    return Markup(f'<svg class="bars" viewBox="0 0 19 12" aria-hidden="true">{"".join(rects)}</svg>')


def signal_svg(history: Sequence[ModemLogRow], now: float) -> Markup:
    """The last 24 h of signal readings (dBm) as a step line: a reading holds until the next one
    (or now); disconnected stretches are gaps."""
    width, height, since = 480.0, 80.0, now - 86400

    def x(at: float) -> float:
        return 3 + (max(since, min(now, at)) - since) / 86400 * (width - 6)

    def y(dbm: int) -> float:
        return (-51 - max(-113, min(-51, dbm))) / 62 * (height - 8) + 4

    lines: list[list[str]] = [[]]
    for i, row in enumerate(history):
        dbm = row.signal_dbm
        if not row.connected or dbm is None:
            if lines[-1]:
                lines.append([])
            continue
        until = history[i + 1].at if i + 1 < len(history) else now
        lines[-1] += [f"{x(row.at):.1f},{y(dbm):.1f}", f"{x(until):.1f},{y(dbm):.1f}"]
    polys = "".join(f'<polyline points="{" ".join(pts)}"/>' for pts in lines if pts)
    grid = "".join(f'<line x1="0" x2="{width:.0f}" y1="{g}" y2="{g}"/>' for g in (21, 41, 61))
    return Markup(
        f'<svg class="signal" viewBox="0 0 {width:.0f} {height:.0f}" role="img"'
        f' aria-label="signal over the last 24 hours"><g class="grid">{grid}</g>'
        f"{polys}</svg>"
    )


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
            iso=iso,
            dur=humanize,
            runtime=run_time,
            urlpath=lambda url: urlsplit(url).path,
            fdur=format_duration,
            q=quote,
        )
        env.globals.update(
            spark=spark_svg, bars_svg=bars_svg, signal_svg=signal_svg, asset=self.asset, statuses=list(STATUS_ORDER)
        )
        self.env = env

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
        html = self.env.get_template(template).render(
            csrf=session.csrf if session else "",
            logged_in=session is not None,
            demo=self.config.demo,
            path=bottle.request.path,
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
        assert app is self.app

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

    def index(self) -> bytes:
        return self.render("index.html", ov=self.service.views.overview(), add={}, errors={})

    def partial_overview(self) -> bytes:
        return self.render("_overview.html", ov=self.service.views.overview())

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
            return self.render(
                "index.html", 400, ov=self.service.views.overview(), add=values, errors={e.field: str(e)}
            )
        except Conflict as e:
            return self.render("index.html", 400, ov=self.service.views.overview(), add=values, errors={"name": str(e)})
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
            # every field of the form at once, in one transaction (Service.patch_check)
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
            sms=sms or {"number": "", "text": ""},
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
        new_key: tuple[ApiKey, str] | None = None,
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
            new_key=new_key,
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
        # Rendered, not redirected: the key is shown this once and never travels in a URL.
        return self.settings(new_key=new_key)

    def revoke_api_key(self, key_id: int) -> bytes:
        try:
            self.service.accounts.revoke_api_key(key_id)
        except NotFound:
            return self.render(
                "error.html", 404, title="No such key", message="That API key does not exist or was already revoked."
            )
        self.redirect("/settings#api-keys")
