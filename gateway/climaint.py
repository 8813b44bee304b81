"""``hbgw maintenance add|list|end`` and ``hbgw snooze``: planned quiet times from the command
line (the use cases are :mod:`gateway.quiet`). A running daemon on the same data dir is sent a
SIGHUP, which puts the windows in force there too."""

from __future__ import annotations

import argparse

from gateway.cli import EXIT_OK, UsageError, _open, _poke_daemon, _print_json, resolve_config
from gateway.config import Config
from gateway.quiet import WindowRequest
from gateway.rules import maintenance as mt
from gateway.rules.durations import format_duration, parse_duration
from gateway.rules.policy import clock
from gateway.service import Service


def _data_args(p: argparse.ArgumentParser) -> None:
    from gateway.cli import _data_args as data_args

    data_args(p)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``maintenance`` and ``snooze`` to ``hbgw``'s subcommands."""
    p = sub.add_parser("maintenance", help="maintenance windows: no alerts start while one is open")
    msub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = msub.add_parser(
        "add",
        help="add a window: one-off (--from 02:00 --for 1h) or recurring"
        " (--cron '0 3 * * 0' --tz Europe/Paris --for 30m)",
    )
    who = a.add_mutually_exclusive_group(required=True)
    who.add_argument("--checks", metavar="NAME,NAME", help="the checks it covers, by name")
    who.add_argument("--tag", help="every check with this tag")
    who.add_argument("--all", action="store_true", help="every check")
    when = a.add_mutually_exclusive_group()
    when.add_argument(
        "--from", dest="start", metavar="TIME", help="02:00 (the next one) or 2027-01-17T02:00; default now"
    )
    when.add_argument("--cron", help="a recurring window's 5-field cron schedule, e.g. '0 3 * * 0' (Sundays 03:00)")
    a.add_argument("--tz", help="the time zone of --from and --cron (default: [alerts] tz)")
    a.add_argument("--for", dest="length", required=True, metavar="DURATION", help="how long, e.g. 30m, 1h, 2d")
    a.add_argument("--json", action="store_true")
    _data_args(a)
    a = msub.add_parser("list", help="the windows in force (--all: past and ended ones too)")
    a.add_argument("--all", action="store_true")
    a.add_argument("--json", action="store_true")
    _data_args(a)
    a = msub.add_parser("end", help="end a window now: checks still down in it alert now")
    a.add_argument("id", type=int)
    a.add_argument("--json", action="store_true")
    _data_args(a)

    p = sub.add_parser("snooze", help="mute a check for a while, e.g. before a planned reboot (hbgw snooze web1 30m)")
    p.add_argument("name")
    p.add_argument("duration", help="1m to 7d, e.g. 30m, 2h")
    p.add_argument("--until-up", action="store_true", help="end the snooze at the check's first good ping")
    p.add_argument("--json", action="store_true", help="print the check as JSON")
    _data_args(p)


def cmd_maintenance(args: argparse.Namespace) -> int:
    config = resolve_config(args)
    store, service = _open(config, args)
    try:
        quiet = service.quiet
        if args.action == "list":
            windows = quiet.windows(all_windows=args.all)
            names = quiet.check_names()
            rows = [quiet.describe(w, names) for w in windows]
            if args.json:
                _print_json(rows)
            elif not rows:
                print("no maintenance windows" + ("" if args.all else " in force"))
            else:
                s = service.settings
                for r, w in zip(rows, windows, strict=True):
                    state = ""
                    if w.ended_early is not None:
                        state = "  (ended)"
                    elif (end := mt.open_until(w, service.clock())) is not None:
                        state = f"  (open until {clock(end, s)})"
                    print(f"{w.id:>4}  {r['applies_to']}  {r['when']}{state}")
            return EXIT_OK
        if args.action == "end":
            w = quiet.end(args.id, "cli")
            _poke_daemon(config)
            if args.json:
                _print_json(quiet.describe(w))
            else:
                print(f"maintenance window {w.id} ended")
            return EXIT_OK
        try:
            length = parse_duration(args.length)
        except ValueError as e:
            raise UsageError(f"--for: {e}") from None
        req = WindowRequest(
            length=length,
            checks=tuple(n.strip() for n in (args.checks or "").split(",") if n.strip()),
            tag=args.tag,
            all_checks=args.all,
            start=args.start,
            cron=args.cron,
            tz=args.tz,
        )
        if args.checks is not None and not req.checks:
            raise UsageError("--checks: give check names, e.g. --checks web1,db1")
        w = quiet.add(req, "cli")
        _poke_daemon(config)  # the daemon puts the window in force
        if args.json:
            _print_json(quiet.describe(w))
        else:
            shown = quiet.describe(w)
            print(f"maintenance window {w.id} added: {shown['applies_to']}, {shown['when']}")
        return EXIT_OK
    finally:
        store.close()


def cmd_snooze(args: argparse.Namespace) -> int:
    config = resolve_config(args)
    store, service = _open(config, args)
    try:
        check = service.quiet.snooze(args.name, args.duration, args.until_up, "cli")
        _poke_daemon(config)
        if args.json:
            _print_json(service.views.describe(check))
        else:
            tail = ", or until its first good ping" if args.until_up else ""
            print(f"snoozed {check.name} for {format_duration(args.duration)}{tail}")
        return EXIT_OK
    finally:
        store.close()


def tagged_action(args: argparse.Namespace, config: Config, service: Service) -> int:
    """``hbgw ack|mute|unmute tag:NAME``: the action on every check with that tag."""
    tag = args.name[4:]
    quiet = service.quiet
    if args.command == "ack":
        checks = quiet.ack_tag(tag, "cli")
        message = f"acknowledged {', '.join(c.name for c in checks)}" if checks else f"no check tagged {tag} is down"
    elif args.command == "mute":
        checks = quiet.mute_tag(tag, args.duration, "cli")
        message = f"muted {', '.join(c.name for c in checks)} for {format_duration(args.duration)}"
    else:
        checks = quiet.unmute_tag(tag, "cli")
        message = f"unmuted {', '.join(c.name for c in checks)}"
    _poke_daemon(config)
    if args.json:
        _print_json([service.views.describe(c) for c in checks])
    else:
        print(message)
    return EXIT_OK
