"""The maintenance page (``/maintenance``): the windows in force with "End now", and a small
form to add one (CSRF like every form, post/redirect/get). The use cases are
:mod:`gateway.quiet`; rendering goes through :class:`web.pages.Pages`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import bottle

from gateway.errors import ValidationError
from gateway.quiet import WindowRequest
from gateway.service import parse_duration_field
from gateway.store import NotFound

if TYPE_CHECKING:
    from web.pages import Pages

FORM_FIELDS = ("scope", "checks", "tag", "start", "cron", "tz", "length")


def install(pages: Pages) -> None:
    """Add the maintenance routes to ``pages``' app."""
    r = pages.app.route
    r("/maintenance", "GET", lambda: show(pages), auth="page")
    r("/maintenance", "POST", lambda: add(pages), auth="page")
    r("/maintenance/<wid:int>/end", "POST", lambda wid: end(pages, wid), auth="page")


def show(
    pages: Pages, *, status: int = 200, values: dict[str, str] | None = None, errors: dict[str, str] | None = None
) -> bytes:
    quiet = pages.service.quiet
    names = quiet.check_names()
    windows = [quiet.describe(w, names) for w in quiet.windows()]
    added = bottle.request.query.get("added") or ""
    return pages.render(
        "maintenance.html",
        status,
        windows=windows,
        values={**dict.fromkeys(FORM_FIELDS, ""), "scope": "checks", "length": "1h", **(values or {})},
        errors=errors or {},
        checks=sorted(names.values(), key=str.casefold),
        tags=quiet.tags(),
        added=added,
        tz=pages.service.settings.tz,
    )


def add(pages: Pages) -> bytes:
    f = pages.form()
    values: dict[str, Any] = {k: (f.get(k) or "").strip() for k in FORM_FIELDS}
    scope = values["scope"]
    try:
        length = parse_duration_field("length", values["length"])
        if length is None:
            raise ValidationError("length", "how long, e.g. 1h")
        req = WindowRequest(
            length=length,
            checks=tuple(n.strip() for n in values["checks"].split(",") if n.strip()) if scope == "checks" else (),
            tag=values["tag"] if scope == "tag" else None,
            all_checks=scope == "all",
            start=values["start"] or None,
            cron=values["cron"] or None,
            tz=values["tz"] or None,
        )
        w = pages.service.quiet.add(req, "web")
    except ValidationError as e:
        field = {"for": "length", "from": "start", "scope": "checks"}.get(e.field, e.field)
        return show(pages, status=400, values=values, errors={field: str(e)})
    except NotFound as e:
        return show(pages, status=400, values=values, errors={"checks": f"no check named {e}"})
    pages.redirect(f"/maintenance?added={w.id}")


def end(pages: Pages, wid: int) -> bytes:
    try:
        pages.service.quiet.end(wid, "web")
    except NotFound:
        return pages.render(
            "error.html", 404, title="No such window", message="That maintenance window does not exist."
        )
    pages.redirect("/maintenance")
