"""``hbgw check ...``: add, list, show, change, pause, resume, remove checks and read their pings
(the parser is in :mod:`gateway.cli`, with the other commands)."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from gateway.cli import EXIT_OK, UsageError, _open, _poke_daemon, _print_json, resolve_config
from gateway.errors import ValidationError
from gateway.model import Check, Status
from gateway.rules import dependencies as deps
from gateway.rules.durations import format_duration, humanize, run_time
from gateway.service import Service


def _render_list(service: Service, rows: list[dict[str, Any]]) -> str:
    header = ("NAME", "STATUS", "LAST PING", "SCHEDULE", "GRACE", "SMS", "TAGS")
    now = service.clock()
    lines = [header]
    for r in rows:
        last = "never"
        if r["last_ping"]:
            check = service.get_check(r["name"])
            last = humanize(now - (check.last_ping or now)) + " ago"
        schedule = f"cron {r['cron']} {r['tz']}" if r["cron"] else "every " + format_duration(r["period"])
        lines.append(
            (
                r["name"],
                deps.label(Status(r["status"]), r["behind"]),
                last,
                schedule,
                format_duration(r["grace"]),
                "on" if r["sms_enabled"] else "off",
                " ".join(r["tags"]),
            )
        )
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(str(v).ljust(w) for v, w in zip(line, widths, strict=True)).rstrip() for line in lines)


def _render_show(d: dict[str, Any], check: Check, service: Service) -> str:
    """One check for people: the ``--json`` fields, with durations, switches and empties in words;
    only the addresses that work (see :func:`_addresses`)."""
    slug_url, email, note = _slug_url(service, check), _email(service, check), _base_url_note(service)
    schedule = f"cron {d['cron']} ({d['tz']})" if d["cron"] else "every " + format_duration(d["period"])
    status = deps.label(Status(d["status"]), d["behind"])
    if check.last_start is not None:
        status += f" (running since {_clock_time(check.last_start)})"
    rows = [
        ("name", d["name"]),
        ("status", status),
        ("last ping", d["last_ping"] or "never"),
        ("schedule", f"{schedule}, grace {format_duration(d['grace'])}"),
        ("late at", d["late_at"] or "-"),
        ("down at", d["down_at"] or "-"),
        ("last exit status", "-" if d["last_exit_status"] is None else d["last_exit_status"]),
        ("last run", "-" if d["last_duration"] is None else run_time(d["last_duration"])),
        ("SMS alerts", "on" if d["sms_enabled"] else "off"),
        ("email alerts", "on" if d["email_enabled"] else "off"),
        ("pings", d["n_pings"]),
        ("created", d["created"]),
        ("email filters", json.dumps(d["filters"]) if d["filters"] else "none"),
        ("ping URL", d["ping_url"]),
        ("slug", d["slug"] or "-"),
        *([("slug ping URL", slug_url)] if slug_url else []),
        *([("email", email)] if email else []),
        ("tags", " ".join(d["tags"]) or "-"),
        ("depends on", ", ".join(d["depends_on"]) or "-"),
        ("description", d["desc"] or "-"),
        ("manual resume", "on" if d["manual_resume"] else "off"),
        ("POST only", "yes" if d["methods"] == "POST" else "no (HEAD, GET and POST count)"),
        *([("note", note)] if note else []),
    ]
    width = max(len(k) for k, _ in rows) + 2
    return "\n".join(f"{k + ':':{width}}{v}" for k, v in rows)


def _clock_time(ts: float) -> str:
    """A moment in local time: "12:03" today, "2026-12-04 12:03" before."""
    t = time.localtime(ts)
    return time.strftime("%H:%M" if t[:3] == time.localtime()[:3] else "%Y-%m-%d %H:%M", t)


def _slug_url(service: Service, check: Check) -> str | None:
    return f"{service.base_url}/ping/{service.ping_key}/{check.slug}" if check.slug else None


def _email(service: Service, check: Check) -> str | None:
    """The check's email address, None while nothing listens for email ([smtp] listen unset)."""
    return service.email_address(check) if service.config.smtp.listen else None


def _base_url_note(service: Service) -> str | None:
    """Why a printed URL may not work from the servers: [http] base_url unset, so the URL is made
    from the listen address or this host's name."""
    if service.config.http.base_url or service.config.demo:  # the demo's URLs are for this machine
        return None
    host = service.base_url.split("//", 1)[-1].rsplit(":", 1)[0]
    return (
        f"[http] base_url is not set, so these URLs use {host!r}; if your servers reach this box"
        " by another name, set base_url in the config"
    )


def _addresses(service: Service, check: Check) -> list[tuple[str, str]]:
    """The ways to reach ``check`` that work: its ping URL, its slug URL when it has a slug, its
    email address when [smtp] listens, and a note when [http] base_url is unset."""
    rows = [("ping URL", service.ping_url(check))]
    slug_url = _slug_url(service, check)
    if slug_url:
        rows.append(("slug URL", slug_url))
    email = _email(service, check)
    if email:
        rows.append(("email", email))
    note = _base_url_note(service)
    if note:
        rows.append(("note", note))
    return rows


def _print_rows(rows: list[tuple[str, str]]) -> None:
    width = max(len(k) for k, _ in rows) + 2
    for k, v in rows:
        print(f"{k + ':':{width}}{v}")


def _render_pings(rows: list[dict[str, Any]]) -> str:
    header = ("TIME", "KIND", "SOURCE", "METHOD", "EXIT", "RUN", "DURATION")
    lines = [header]
    for p in rows:
        source = p["source"] + (f" {p['remote_addr']}" if p["remote_addr"] else "")
        lines.append(
            (
                p["at"],
                p["kind"],
                source,
                p["method"] or "-",
                "-" if p["exit_status"] is None else str(p["exit_status"]),
                p["rid"][:8] if p["rid"] else "-",
                "-" if p["duration"] is None else run_time(p["duration"]),
            )
        )
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(str(v).ljust(w) for v, w in zip(line, widths, strict=True)).rstrip() for line in lines)


def snippets(service: Service, name: str) -> str:
    """The check page's copy-paste snippets, as text: a title, then the lines indented."""
    out = []
    for snippet in service.views.snippets(service.get_check(name)):
        if snippet.key == "email" and _email(service, service.get_check(name)) is None:
            continue  # nothing listens for email: an address that bounces is worse than none
        out.append(snippet.title + ":")
        out.extend(f"  {line}" if line else "" for line in snippet.text.splitlines())
    return "\n".join(out)


def cmd_check(args: argparse.Namespace) -> int:
    config = resolve_config(args)
    store, service = _open(config, args)
    try:
        if args.action == "add":
            fields: dict[str, Any] = {
                k: getattr(args, k) for k in ("slug", "tags", "desc") if getattr(args, k) is not None
            }
            if args.manual_resume:
                fields["manual_resume"] = True
            if args.post_only:
                fields["methods"] = "POST"
            check = service.add_check(
                args.name, period=args.period, grace=args.grace, cron=args.cron, tz=args.tz, token=args.token, **fields
            )
            _poke_daemon(config)
            if args.json:
                _print_json(service.views.describe(check))
                return EXIT_OK
            print(f"added {check.name}")
            _print_rows(_addresses(service, check))
        elif args.action == "list":
            rows = [service.views.describe(c) for c in service.list_checks()]
            print(json.dumps(rows, indent=2) if args.json else _render_list(service, rows))
        elif args.action == "show":
            check = service.get_check(args.name)
            d = service.views.describe(check)
            if args.json:
                _print_json(d)
            else:
                print(_render_show(d, check, service))
                print()
                print(snippets(service, check.name))
        elif args.action == "pings":
            if not 1 <= args.limit <= 1000:
                raise UsageError("--limit takes a number from 1 to 1000")
            pings = service.views.ping_log(args.name, args.limit)
            if args.json:
                _print_json({"pings": pings})
            elif pings:
                print(_render_pings(pings))
            else:
                print(f"no pings for {args.name} yet")
        elif args.action == "set":
            changes: dict[str, Any] = {}
            if args.new_name is not None:
                changes["name"] = args.new_name
            for key in ("slug", "tags", "desc"):
                if getattr(args, key) is not None:
                    changes[key] = getattr(args, key)
            if args.manual_resume:
                changes["manual_resume"] = args.manual_resume == "on"
            if args.methods:
                changes["methods"] = "POST" if args.methods == "post" else ""
            if args.sms:
                changes["sms_enabled"] = args.sms == "on"
            if args.email:
                changes["email_enabled"] = args.email == "on"
            if args.ladder is not None:
                changes["ladder"] = args.ladder
            if args.filters is not None:
                try:
                    changes["filters"] = json.loads(args.filters)
                except ValueError:
                    raise ValidationError("filters", "--filters takes a JSON object") from None
                if not isinstance(changes["filters"], dict):
                    raise ValidationError("filters", "--filters takes a JSON object")
            for key in ("period", "grace", "cron", "tz"):
                if getattr(args, key) is not None:
                    changes[key] = getattr(args, key)
            if args.depends_on is not None:
                check = service.deps.set(args.name, args.depends_on)
            if changes or args.depends_on is None:
                check = service.patch_check(args.name, **changes)
            _poke_daemon(config)
            if args.json:
                _print_json(service.views.describe(check))
            elif check.name != args.name:
                print(f"updated {check.name} (was {args.name})")
            else:
                print(f"updated {check.name}")
        elif args.action == "rm":
            check = service.remove_check(args.name)
            _poke_daemon(config)
            _done(service, check, args.json, f"removed {check.name}")
        elif args.action == "pause":
            check = service.pause(args.name)
            _poke_daemon(config)
            _done(service, check, args.json, f"paused {check.name}")
        elif args.action == "resume":
            check = service.resume(args.name)
            _poke_daemon(config)
            _done(service, check, args.json, f"resumed {check.name}")
        elif args.action == "new-url":
            check = service.replace_token(args.name)
            if args.json:
                _print_json(service.views.describe(check))
                return EXIT_OK
            print(f"replaced the ping URL of {check.name}; the old URL and address now answer 404")
            _print_rows(_addresses(service, check))
        return EXIT_OK
    finally:
        store.close()


def _done(service: Service, check: Check, as_json: bool, said: str) -> None:
    """What a command that changed ``check`` prints: its JSON form, or ``said``."""
    if as_json:
        _print_json(service.views.describe(check))
    else:
        print(said)
