"""The ``hbgw`` command. Exit codes: 0 done, 1 the operation failed, 2 usage or configuration error."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import getpass
import json
import logging
import os
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gateway import __version__
from gateway import config as cfgmod
from gateway.config import Config, ConfigError
from gateway.errors import ValidationError
from gateway.model import ApiKey, OutboxRow, iso
from gateway.rules import policy
from gateway.rules.durations import format_duration, parse_duration
from gateway.rules.settings import E164
from gateway.runtime.process import running_daemon
from gateway.service import Service, url_secret
from gateway.store import Conflict, NotFound, Store, StoreError

logger = logging.getLogger("hbgw")

DEFAULT_CONFIG = Path(os.environ.get("HBGW_CONFIG", "/etc/hbgw/hbgw.toml"))
EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
SERVICE_USER = "hbgw"  # User= in systemd/hbgw.service


class UsageError(Exception):
    pass


# Duration arguments (dest -> how the user wrote it): read after argparse, so that the error names
# the flag in hbgw's own words ("hbgw: --period: "10" needs a unit, e.g. 10s or 10m", exit 2).
_DURATION_ARGS = {"period": "--period", "grace": "--grace", "duration": "duration"}


def _read_durations(args: argparse.Namespace) -> None:
    """Replace each duration argument's text by its seconds. Raises UsageError naming the flag."""
    for dest, flag in _DURATION_ARGS.items():
        text = getattr(args, dest, None)
        if isinstance(text, str):
            try:
                setattr(args, dest, parse_duration(text))
            except ValueError as e:
                raise UsageError(f"{flag}: {e}") from None


def _hostport(text: str) -> str:
    try:
        cfgmod.parse_hostport(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help=f"TOML config file (default {DEFAULT_CONFIG})")
    p.add_argument("--data-dir", type=Path, help="data directory (overrides the config's data_dir)")
    p.add_argument("--demo", action="store_true", help="use the demo configuration and data")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hbgw", description="heartbeat-gateway: server heartbeats in, SMS alerts out."
    )
    parser.add_argument("--version", action="version", version=f"hbgw {__version__}")
    parser.add_argument(
        "--demo",
        dest="demo_anywhere",
        action="store_true",
        help="use the demo's configuration and data (like --demo after the command)",
    )
    parser.add_argument(
        "--log-level", default=os.environ.get("HBGW_LOG_LEVEL", "INFO"), choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("serve", help="run the gateway")
    _data_args(p)
    p.add_argument("--http", type=_hostport, metavar="HOST:PORT", help="HTTP listen address")
    p.add_argument("--smtp", type=_hostport, metavar="HOST:PORT", help="SMTP listen address")
    p.add_argument(
        "--reset",
        action="store_true",
        help=f"with --demo: delete the demo's data ({cfgmod.DEMO_DATA_DIR}) first, back to its story",
    )

    p = sub.add_parser("init", help="write a config file with fresh secrets, set the admin password")
    p.add_argument("--config", type=Path, default=None, help=f"where to write it (default {DEFAULT_CONFIG})")
    p.add_argument("--data-dir", type=Path, default=Path("/var/lib/hbgw"))
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.add_argument(
        "--user",
        default=SERVICE_USER,
        help=f"run as root: the user the service runs as (default {SERVICE_USER}, as in systemd/hbgw.service),"
        " who gets the data dir and reads the config (mode 0640, its group)",
    )

    p = sub.add_parser("check", help="add, list, show, change, pause, resume and remove checks")
    csub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = csub.add_parser("add", help="add a check; prints its ping URL (and email address, when [smtp] listens)")
    a.add_argument("name")
    a.add_argument("--period", help="expected ping interval (e.g. 15m)")
    a.add_argument("--grace", help="how late a ping may be before DOWN (e.g. 15m)")
    a.add_argument("--cron", help='cron expression instead of a period, e.g. "*/15 * * * *"')
    a.add_argument("--tz", help="time zone of the cron expression (e.g. Europe/Paris)")
    a.add_argument(
        "--token",
        help="keep an existing ping token (a Healthchecks UUID, an Uptime Kuma push token) instead of a new one",
    )
    a.add_argument("--slug", help="its slug for /ping/<ping key>/<slug> (default: made from the name)")
    a.add_argument("--tags", help='space-separated tags, e.g. "prod db"')
    a.add_argument("--desc", help="a description")
    a.add_argument("--manual-resume", action="store_true", help="when paused, ignore pings until resumed by hand")
    a.add_argument("--post-only", action="store_true", help="count only POST pings (HEAD and GET are ignored)")
    a.add_argument("--json", action="store_true", help="print the new check as JSON")
    _data_args(a)
    a = csub.add_parser("list", help="all checks with their status")
    a.add_argument("--json", action="store_true")
    _data_args(a)
    a = csub.add_parser("show", help="one check, with crontab and email snippets")
    a.add_argument("name")
    a.add_argument("--json", action="store_true")
    _data_args(a)
    a = csub.add_parser("set", help="change a check: name, slug, tags, SMS/email alerts on or off, schedule")
    a.add_argument("name")
    a.add_argument("--name", dest="new_name", metavar="NEW", help="rename it (its ping URL stays the same)")
    a.add_argument("--slug", help='its slug for /ping/<ping key>/<slug> ("" for none)')
    a.add_argument("--tags", help='space-separated tags ("" for none)')
    a.add_argument("--depends-on", metavar="NAMES", help='its parents, e.g. "router,switch" ("" for none)')
    a.add_argument("--desc", help="a description")
    a.add_argument("--manual-resume", choices=["on", "off"], help="when paused, ignore pings until resumed by hand")
    a.add_argument("--methods", choices=["any", "post"], help="which ping methods count: any, or POST only")
    a.add_argument("--sms", choices=["on", "off"], help="SMS alerts for this check")
    a.add_argument("--email", choices=["on", "off"], help="email alerts for this check")
    a.add_argument("--period")
    a.add_argument("--grace")
    a.add_argument("--cron")
    a.add_argument("--tz")
    a.add_argument(
        "--ladder", metavar="NAME", help='its escalation ladder: a [alerts.ladders] name, "none", or "" (the default)'
    )
    a.add_argument(
        "--filters",
        metavar="JSON",
        help='email keyword filters, e.g. \'{"subject": true, "fail": ["FAIL"]}\' ("{}" clears)',
    )
    a.add_argument("--json", action="store_true", help="print the changed check as JSON")
    _data_args(a)
    for verb, text in (
        ("rm", "remove a check and its history"),
        ("pause", "stop alerting"),
        ("resume", "resume a paused check"),
        ("new-url", "replace a check's ping URL and email address (the old ones stop working at once)"),
    ):
        a = csub.add_parser(verb, help=text)
        a.add_argument("name")
        a.add_argument("--json", action="store_true", help="print the check as JSON (rm: as it was)")
        _data_args(a)
    a = csub.add_parser("pings", help="a check's latest pings: kind, time, source, method, exit status, run, duration")
    a.add_argument("name")
    a.add_argument("--limit", type=int, default=50, help="at most this many, newest first (1-1000, default 50)")
    a.add_argument("--json", action="store_true")
    _data_args(a)

    p = sub.add_parser("apikey", help="add, list and revoke API keys")
    ksub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = ksub.add_parser("add", help="make an API key; prints the key, which is shown only this once")
    a.add_argument("label", help="what the key is for, e.g. ansible")
    scope = a.add_mutually_exclusive_group()
    scope.add_argument("--read-only", action="store_true", help="may only read checks, flips and metrics")
    scope.add_argument(
        "--sms-only", action="store_true", help="may only use the SMS API (send through the gateway, /api/v1/sms)"
    )
    a.add_argument("--json", action="store_true")
    _data_args(a)
    a = ksub.add_parser("list", help="API keys, revoked ones too (never the keys themselves)")
    a.add_argument("--json", action="store_true")
    _data_args(a)
    a = ksub.add_parser("rm", help="revoke an API key: it stops working at once")
    a.add_argument("id", type=int, help="its id, from `hbgw apikey list`")
    a.add_argument("--json", action="store_true", help="print the revoked key as JSON")
    _data_args(a)

    p = sub.add_parser("sms", help="send an SMS through the modem; show the outbox and inbox")
    ssub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = ssub.add_parser("send", help="send an SMS now, straight through the modem (prints message references)")
    a.add_argument("number")
    a.add_argument("text")
    a.add_argument("--json", action="store_true")
    _data_args(a)
    for verb, text in (("outbox", "messages queued, sent and failed"), ("inbox", "messages received")):
        a = ssub.add_parser(verb, help=text)
        a.add_argument("--json", action="store_true")
        a.add_argument("--limit", type=int, default=50)
        _data_args(a)

    p = sub.add_parser("modem", help="talk to the modem directly")
    msub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = msub.add_parser("probe", help="model, SIM, registration, operator, signal, SMSC")
    a.add_argument("--json", action="store_true")
    a.add_argument(
        "--device", help="try this port (e.g. /dev/ttyUSB2) with the AT driver instead of the configured modem"
    )
    _data_args(a)

    p = sub.add_parser(
        "status",
        help="is the gateway running, is the modem up, what is down"
        " (exit 0 all well, 1 not running, 3 alerts cannot go out as they should)",
    )
    p.add_argument("--json", action="store_true")
    _data_args(p)

    p = sub.add_parser("ack", help="acknowledge a check's outage: no more reminders or escalation steps")
    p.add_argument("name", help="a check, or tag:NAME for every check with that tag")
    p.add_argument("--json", action="store_true", help="print the check as JSON")
    _data_args(p)
    p = sub.add_parser(
        "mute", help="no alerts for a check for a while (e.g. hbgw mute web1 2h, hbgw mute tag:office 2h)"
    )
    p.add_argument("name", help="a check, or tag:NAME for every check with that tag")
    p.add_argument("duration", help="1m to 30d, e.g. 30m, 2h, 1d")
    p.add_argument("--json", action="store_true", help="print the check as JSON")
    _data_args(p)
    p = sub.add_parser("unmute", help="end a mute (every check's, without NAME)")
    p.add_argument("name", nargs="?", help="a check, or tag:NAME for every check with that tag")
    p.add_argument("--json", action="store_true", help="print the unmuted checks as a JSON list")
    _data_args(p)

    p = sub.add_parser("backup", help="copy the database to FILE (safe while the gateway runs)")
    p.add_argument("file", type=Path)
    p.add_argument("--json", action="store_true")
    _data_args(p)
    p = sub.add_parser(
        "restore",
        help="replace the database with the backup FILE (stop the gateway"
        " first); the old one is kept as hbgw.sqlite3.bak",
    )
    p.add_argument("file", type=Path)
    p.add_argument("--json", action="store_true")
    _data_args(p)

    p = sub.add_parser("passwd", help="set the web admin password")
    p.add_argument("--password-stdin", action="store_true", help="read the new password from stdin")
    _data_args(p)

    from gateway import cliimport  # here, not at the top: it imports helpers from this module

    cliimport.register(sub)
    from gateway import climaint  # here, not at the top: it imports helpers from this module

    climaint.register(sub)

    p = sub.add_parser("simulate-modem", help="run a simulated GSM modem on a pty or TCP port")
    from modem import simulator

    simulator.add_cli_arguments(p)
    return parser


# --------------------------------------------------------------------------------- config


def resolve_config(args: argparse.Namespace) -> Config:
    """The config for a command: --config, else the default file if it exists, else --demo or
    --data-dir defaults. Raises ConfigError / UsageError.

    Notes on ``args`` where the data dir came from (``--data-dir``, ``--demo`` or a config
    file): :func:`_open` refuses to create a database for the first two, where a typo or a demo
    that never ran would otherwise give a new empty one."""
    path: Path | None = args.config
    if path is None and DEFAULT_CONFIG.is_file() and not args.demo:
        path = DEFAULT_CONFIG
    origin = "config"
    if path is not None:
        config = cfgmod.load(path)
        if args.demo:
            config, origin = cfgmod.demo(config), "demo"
    elif args.demo:
        config, origin = cfgmod.demo(), "demo"
    elif args.data_dir is not None:
        config, origin = Config(data_dir=args.data_dir), "flag"
    else:
        raise UsageError(
            f"no config file at {DEFAULT_CONFIG}: create one with `hbgw init`, or"
            " pass --config FILE, --data-dir DIR or --demo"
        )
    if args.data_dir is not None:
        config, origin = dataclasses.replace(config, data_dir=args.data_dir), "flag"
    args.data_origin = origin
    return config


def _no_database(config: Config, args: argparse.Namespace | None) -> UsageError:
    """The error for a command that needs a database where there is none."""
    if getattr(args, "data_origin", "") == "demo":
        return UsageError(
            f"no demo database at {config.data_dir}: start the demo first"
            " (./bootstrap demo, or .venv/bin/hbgw serve --demo), then run this again"
        )
    return UsageError(f"no database at {config.data_dir}: is --data-dir right? (hbgw init creates one)")


def _open(config: Config, args: argparse.Namespace | None = None, *, create: bool = False) -> tuple[Store, Service]:
    """The store and service of ``config``. Only ``serve`` and ``init`` pass ``create``; other
    commands refuse to make a database where the data dir came from --data-dir or --demo
    (raises UsageError), and say so on stderr when a config file's data_dir has none yet."""
    if not create and not config.db_path.exists():
        if getattr(args, "data_origin", "config") != "config":
            raise _no_database(config, args)
        print(f"hbgw: no database at {config.data_dir} yet (the config's data_dir): creating one", file=sys.stderr)
    store = Store(config.db_path).open()
    return store, Service(store, config)


def _check_names(config: Config) -> list[str]:
    """The names of the existing checks (none when there is no database)."""
    if not config.db_path.exists():
        return []
    store, service = _open(config)
    try:
        return [c.name for c in service.list_checks()]
    finally:
        store.close()


def _no_such_check(name: str, args: argparse.Namespace) -> str:
    """ "no check named 'webl' (did you mean web1?)": the SMS commands' matcher."""
    from gateway.rules.commands import closest_name

    try:
        guess = closest_name(name, _check_names(resolve_config(args)))
    except (ConfigError, UsageError, StoreError, sqlite3.Error):
        guess = None
    return f"no check named {name!r}" + (f" (did you mean {guess}?)" if guess else "")


def _poke_daemon(config: Config) -> None:
    """Tell a running daemon on the same data dir to re-read deadlines (best effort)."""
    pid = running_daemon(config.data_dir)
    if pid:
        try:
            os.kill(pid, signal.SIGHUP)
        except OSError:
            pass


# --------------------------------------------------------------------------------- commands


def cmd_serve(args: argparse.Namespace) -> int:
    from gateway.runtime.daemon import Daemon

    config = resolve_config(args)
    if args.reset:
        _reset_demo(args, config)
    if args.http:
        config = dataclasses.replace(config, http=dataclasses.replace(config.http, listen=args.http))
    if args.smtp:
        config = dataclasses.replace(config, smtp=dataclasses.replace(config.smtp, listen=args.smtp))
    if config.demo:
        threading.Thread(target=_announce_demo, args=(config,), name="demo-announce", daemon=True).start()
    try:
        return asyncio.run(Daemon(config).run())
    except (StoreError, sqlite3.Error, OSError) as e:
        # Exit 1 with one clear line (systemd logs it and restarts with backoff), no traceback.
        print(f"hbgw: cannot start: {e}{_data_dir_hint(config)}", file=sys.stderr)
        return EXIT_FAIL


def _reset_demo(args: argparse.Namespace, config: Config) -> None:
    """``serve --demo --reset``: delete the demo's data dir, so the demo starts its story again.
    Only the demo's own dir (never one from --data-dir or a config file). Raises UsageError."""
    import shutil

    if not args.demo:
        raise UsageError("--reset works only with --demo (it deletes the demo's data)")
    if config.data_dir != cfgmod.DEMO_DATA_DIR:
        raise UsageError(f"--reset deletes only the demo's own data ({cfgmod.DEMO_DATA_DIR}), not {config.data_dir}")
    pid = running_daemon(config.data_dir)
    if pid is not None:
        raise UsageError(f"the demo is running{f' (pid {pid})' if pid else ''}: stop it first (Ctrl-C), then reset")
    shutil.rmtree(config.data_dir, ignore_errors=True)
    print(f"hbgw demo: reset (deleted {config.data_dir})", file=sys.stderr)


def _announce_demo(config: Config, timeout: float = 60.0) -> None:
    """Print the one line a demo visitor needs, once the daemon is serving (its run file names
    this process and the address it bound)."""
    from gateway.runtime.process import read_run_file

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = read_run_file(config.data_dir) or {}
        if info.get("pid") == os.getpid() and info.get("http"):
            try:
                print(f"hbgw demo: open http://{info['http']}/ (password on the login page)", flush=True)
            except OSError:  # stdout closed: nobody to tell
                pass
            return
        time.sleep(0.1)


def _data_dir_hint(config: Config) -> str:
    """Why the data dir may be unusable: read-only, not writable by this user, or a full disk."""
    d, db = config.data_dir, config.db_path
    try:
        fs = os.statvfs(d)
    except OSError:
        return ""
    if fs.f_flag & os.ST_RDONLY:
        return f" ({d} is on a read-only file system)"
    if not os.access(d, os.W_OK) or (db.exists() and not os.access(db, os.W_OK)):
        return f" ({d} or {db.name} is not writable by uid {os.geteuid()})"
    if fs.f_bavail * fs.f_frsize < 1024 * 1024:
        return f" (the disk holding {d} is full)"
    return ""


def cmd_init(args: argparse.Namespace) -> int:
    """Write the config with fresh secrets, make the database, print the admin password once.

    Run as root (the install), the config stays root's but readable by the service user's group
    (0640) and the data dir becomes the service user's, so ``systemctl start hbgw`` works next;
    otherwise both stay this user's (0600)."""
    import pwd

    from gateway.passwords import generate_password

    path: Path = args.config or DEFAULT_CONFIG
    if path.exists() and not args.force:
        print(f"hbgw: {path} exists; use --force to overwrite it", file=sys.stderr)
        return EXIT_FAIL
    owner: pwd.struct_passwd | None = None
    if os.geteuid() == 0 and args.user:
        try:
            owner = pwd.getpwnam(args.user)
        except KeyError:
            print(
                f"hbgw: warning: no user {args.user!r} yet, so {path} stays readable by root only (0600):"
                f" create it first (useradd --system --home /var/lib/hbgw --shell /usr/sbin/nologin"
                f" --groups dialout {args.user}) and run init again with --force",
                file=sys.stderr,
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    data_dir = args.data_dir.resolve()
    text = cfgmod.render_template(data_dir, url_secret(24))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    mode = 0o600 if owner is None else 0o640
    if owner is not None:
        os.chown(path, 0, owner.pw_gid)
    os.chmod(path, mode)
    config = cfgmod.load(path)
    password = generate_password()
    store, service = _open(config, create=True)
    try:
        service.accounts.set_password(password)
    finally:
        store.close()
    if owner is not None:
        _give(data_dir, owner.pw_uid, owner.pw_gid)
        print(f"wrote {path} (mode 0640, root:{_group_name(owner.pw_gid)}); data in {data_dir} (owned by {args.user})")
    else:
        print(f"wrote {path} (mode 0600); data in {data_dir}")
    print(f"web admin password (shown once; change it with `hbgw passwd`): {password}")
    return EXIT_OK


def _give(data_dir: Path, uid: int, gid: int) -> None:
    """Hand the data dir and everything in it to the service user (mode 0750 for the dir)."""
    os.chown(data_dir, uid, gid)
    os.chmod(data_dir, 0o750)
    for root, dirs, files in os.walk(data_dir):
        for name in dirs + files:
            os.chown(os.path.join(root, name), uid, gid, follow_symlinks=False)


def _group_name(gid: int) -> str:
    import grp

    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _print_json(value: Any) -> None:
    """The one JSON document a ``--json`` command writes on stdout."""
    print(json.dumps(value, indent=2))


def _key_json(key: ApiKey) -> dict[str, Any]:
    """An API key's JSON form: never the key itself, only its first characters."""
    return {
        "id": key.id,
        "label": key.label,
        "prefix": key.prefix,
        "scope": key.scope,
        "created": iso(key.created),
        "last_used": iso(key.last_used),
        "revoked": iso(key.revoked),
    }


def _render_keys(keys: list[ApiKey]) -> str:
    header = ("ID", "LABEL", "PREFIX", "SCOPE", "CREATED", "LAST USED", "REVOKED")
    lines = [header]
    for k in keys:
        lines.append(
            (
                str(k.id),
                k.label,
                k.prefix + "…",
                k.scope,
                iso(k.created) or "-",
                iso(k.last_used) or "never",
                iso(k.revoked) or "-",
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip() for line in lines)


def cmd_apikey(args: argparse.Namespace) -> int:
    """``hbgw apikey add|list|rm``: the settings page's API keys. The key itself is printed once,
    on stdout, and never logged (the store keeps only its SHA-256)."""
    config = resolve_config(args)
    store, service = _open(config, args)
    try:
        accounts = service.accounts
        if args.action == "add":
            scope = "read" if args.read_only else "sms" if args.sms_only else "write"
            key, secret = accounts.create_api_key(args.label, scope)
            if args.json:
                _print_json({**_key_json(key), "key": secret})
            else:
                kind = {"read": "read-only", "sms": "SMS API only"}.get(key.scope, "read-write")
                print(f"added API key {key.id} ({key.label}, {kind})")
                print(f"key (shown only now; it is not stored): {secret}")
        elif args.action == "list":
            keys = accounts.list_api_keys()
            if args.json:
                _print_json([_key_json(k) for k in keys])
            else:
                print(_render_keys(keys) if keys else "no API keys")
        else:
            try:
                accounts.revoke_api_key(args.id)
            except NotFound:
                print(f"hbgw: no API key with id {args.id} (or it is revoked already)", file=sys.stderr)
                return EXIT_FAIL
            revoked = next(k for k in accounts.list_api_keys() if k.id == args.id)
            if args.json:
                _print_json(_key_json(revoked))
            else:
                print(f"revoked API key {revoked.id} ({revoked.label}): it no longer works")
        return EXIT_OK
    finally:
        store.close()


def cmd_passwd(args: argparse.Namespace) -> int:
    config = resolve_config(args)
    store, service = _open(config, args)  # before asking: no password typed for nothing
    try:
        if args.password_stdin:
            password = sys.stdin.readline().rstrip("\n")
        else:
            password = getpass.getpass("new admin password: ")
            if getpass.getpass("again: ") != password:
                print("hbgw: the passwords differ", file=sys.stderr)
                return EXIT_FAIL
        dropped = service.accounts.set_password(password)
    except ValidationError as e:
        print(f"hbgw: {e}", file=sys.stderr)
        return EXIT_FAIL
    finally:
        store.close()
    if dropped:
        print(f"{dropped} web session(s) logged out")
    print("admin password changed")
    return EXIT_OK


async def _with_modem(config: Config, action: Any) -> Any:
    """Open the configured modem directly (stop the daemon first: one owner per port)."""
    from modem.driver import create_modem

    m = config.modem
    if m.backend in ("none", "simulator"):
        raise UsageError(f"[modem] backend is {m.backend!r}: configure 'at' or 'gammu' and a device")
    modem = create_modem(m.backend, m.device, baudrate=m.baudrate, pin=m.pin, smsc=m.smsc)
    await modem.open()
    try:
        return await action(modem)
    finally:
        await modem.close()


def cmd_sms(args: argparse.Namespace) -> int:
    from modem.errors import ModemError

    config = resolve_config(args)
    if args.action == "send":
        if not E164.fullmatch(args.number):
            raise UsageError(f"{args.number!r} is not an E.164 number (e.g. +15551234567)")
        try:
            refs = asyncio.run(_with_modem(config, lambda m: m.send_sms(args.number, args.text)))
        except ModemError as e:
            print(f"hbgw: sending failed: {e}{'' if e.permanent else ' (a retry may help)'}", file=sys.stderr)
            return EXIT_FAIL
        if args.json:
            _print_json({"to": args.number, "references": list(refs)})
        else:
            print("sent; message reference(s): " + " ".join(str(r) for r in refs))
        return EXIT_OK
    store, service = _open(config, args)
    try:
        rows = service.views.outbox(args.limit) if args.action == "outbox" else service.views.inbox(args.limit)
    finally:
        store.close()
    if args.json:
        print(json.dumps([r.to_json() for r in rows], indent=2))
        return EXIT_OK
    for r in rows:
        if isinstance(r, OutboxRow):
            err = f"  ({r.error})" if r.error else ""
            print(
                f"{r.id:>5} {iso(r.created)} {r.channel:5} {r.recipient:18} {r.state:8}"
                f" x{r.attempts} {r.text[:60]}{err}"
            )
        else:
            flag = "" if r.allowed else "  [not allow-listed]"
            print(f"{r.id:>5} {iso(r.received)} {r.sender:18} {r.text[:60]}{flag}")
    return EXIT_OK


def cmd_modem(args: argparse.Namespace) -> int:
    from modem.errors import ModemError

    config = resolve_config(args)
    if args.device:
        backend = config.modem.backend if config.modem.backend in ("at", "gammu") else "at"
        config = dataclasses.replace(
            config, modem=dataclasses.replace(config.modem, backend=backend, device=args.device)
        )
    try:
        status = asyncio.run(_with_modem(config, lambda m: m.status()))
    except ModemError as e:
        print(f"hbgw: modem not usable: {e}", file=sys.stderr)
        return EXIT_FAIL
    d = dataclasses.asdict(status)
    trouble = policy.modem_trouble(True, status.sim, status.registration, status.radio)
    d["verdict"] = "yes" if trouble is None else f"no, because {trouble}"
    if args.json:
        print(json.dumps(d, indent=2))
    else:
        for k, v in d.items():
            if k != "verdict":
                print(f"{k + ':':14} {v if v is not None else '-'}")
        print(f"this modem can send alerts here: {d['verdict']}")
    return EXIT_OK


EXIT_DEGRADED = 3


def cmd_ack(args: argparse.Namespace) -> int:
    """``hbgw ack NAME``, ``hbgw mute NAME 2h``, ``hbgw unmute [NAME]``: the owner's actions,
    the same use cases as the SMS commands, the page and the API (recorded as by "cli")."""
    config = resolve_config(args)
    store, service = _open(config, args)
    try:
        if args.name and args.name.casefold().startswith("tag:"):
            from gateway import climaint

            return climaint.tagged_action(args, config, service)
        if args.command == "ack":
            before = service.get_check(args.name)
            if before.acked:
                message, check = f"{before.name} was acknowledged already, by {before.acked_by}", before
            else:
                check = service.ack(args.name, "cli")
                message = (
                    f"acknowledged {check.name}: no more reminders or escalation for this outage"
                    if check.acked
                    else f"{check.name} is not down: nothing to acknowledge"
                )
            result: Any = service.views.describe(check)
        elif args.command == "mute":
            check = service.mute(args.name, args.duration, "cli")
            message, result = f"muted {check.name} for {format_duration(args.duration)}", service.views.describe(check)
        else:
            names = [args.name] if args.name else [c.name for c in service.list_checks() if c.muted_until]
            result = [service.views.describe(service.unmute(name, "cli")) for name in names]
            message = f"unmuted {', '.join(names)}" if names else "nothing was muted"
        _poke_daemon(config)  # the daemon re-reads alert times
        if args.json:
            _print_json(result)
        else:
            print(message)
        return EXIT_OK
    finally:
        store.close()


def cmd_maintenance(args: argparse.Namespace) -> int:
    from gateway import climaint

    return climaint.cmd_maintenance(args)


def cmd_snooze(args: argparse.Namespace) -> int:
    from gateway import climaint

    return climaint.cmd_snooze(args)


def cmd_status(args: argparse.Namespace) -> int:
    config = resolve_config(args)
    if not config.db_path.exists():
        raise _no_database(config, args)
    pid = running_daemon(config.data_dir)
    store, service = _open(config, args)
    try:
        h = service.views.health(pid)
    finally:
        store.close()
    if pid:
        from gateway.runtime.process import read_run_file

        info = read_run_file(config.data_dir) or {}
        if info.get("pid") == pid:
            h["daemon"].update({k: info[k] for k in ("http", "smtp") if k in info})
    print(json.dumps(h, indent=2) if args.json else _render_health(h))
    if not h["daemon"]["running"]:
        return EXIT_FAIL
    return EXIT_OK if h["ok"] else EXIT_DEGRADED


def _render_health(h: dict[str, Any]) -> str:
    d, m, c, o = h["daemon"], h["modem"], h["checks"], h["outbox"]
    if d["running"]:
        where = ", ".join(f"{k} {d[k]}" for k in ("http", "smtp") if k in d)
        daemon = f"running, pid {d['pid'] or '?'}" + (f", {where}" if where else "")
    else:
        daemon = "NOT RUNNING"
    if m is None:
        modem = "none configured"
    elif not m["as_of"]:
        modem = f"{m['backend']}: no report in the last minutes"
    elif m["connected"]:
        signal = f", {m['signal_dbm']} dBm" if m.get("signal_dbm") is not None else ""
        modem = f"connected, {m.get('registration') or '?'}, {m.get('operator') or '?'}{signal} (as of {m['as_of']})"
    else:
        modem = f"NOT CONNECTED: {m.get('error') or 'no error recorded'} (as of {m['as_of']})"
    if m is not None and m.get("recovery"):
        modem += f"; recovery: {m['recovery']}"
    total = sum(c.values())
    checks = f"{total}: " + ", ".join(f"{n} {s}" for s, n in c.items() if n) if total else "none"
    lines = [("gateway", daemon), ("modem", modem), ("checks", checks)]
    lines += [(s, ", ".join(h[s])) for s in ("down", "late") if h[s]]
    outbox = f"{o['waiting']} waiting, {o['failed_24h']} failed in the last 24 h"
    lines.append(("messages", outbox))
    p = h.get("sms_path")
    if p is not None:
        proven = f"last proven {p['proven_at']}" if p["proven_at"] else "not proven yet"
        lines.append(("sms path", "BROKEN (see trouble)" if p["broken"] else proven))
    lines += [("trouble", t) for t in h["troubles"]]
    return "\n".join(f"{k + ':':10}{v}" for k, v in lines)


def cmd_backup(args: argparse.Namespace) -> int:
    from gateway.store import backup_database

    config = resolve_config(args)
    if not config.db_path.exists():
        raise _no_database(config, args)
    info = backup_database(config.db_path, args.file)
    if args.json:
        _print_json({"path": str(info.path), "checks": info.checks, "schema": info.schema, "size": info.size})
    else:
        print(f"backed up to {info.path} ({_n_checks(info.checks)}, schema v{info.schema}, {info.size} bytes)")
    return EXIT_OK


def _n_checks(n: int) -> str:
    return f"{n} check" + ("" if n == 1 else "s")


def cmd_restore(args: argparse.Namespace) -> int:
    from gateway.store import restore_database

    config = resolve_config(args)
    if not config.data_dir.is_dir():
        raise UsageError(f"no data dir at {config.data_dir}: is --data-dir right? (hbgw init creates one)")
    pid = running_daemon(config.data_dir)
    if pid is not None:
        print(
            f"hbgw: the gateway is running on {config.data_dir}{f' (pid {pid})' if pid else ''}:"
            " stop it first (systemctl stop hbgw)",
            file=sys.stderr,
        )
        return EXIT_FAIL
    info, bak = restore_database(args.file, config.db_path)
    if args.json:
        _print_json(
            {
                "path": str(info.path),
                "checks": info.checks,
                "schema": info.schema,
                "size": info.size,
                "previous": None if bak is None else str(bak),
            }
        )
        return EXIT_OK
    print(f"restored {args.file} into {info.path} ({_n_checks(info.checks)}, schema v{info.schema})")
    if bak is not None:
        print(f"the previous database is kept as {bak}")
    return EXIT_OK


def cmd_simulate_modem(args: argparse.Namespace) -> int:
    from modem import simulator

    return int(simulator.cli_main(args))


def cmd_check(args: argparse.Namespace) -> int:
    from gateway import clicheck  # it uses this module's helpers

    return clicheck.cmd_check(args)


def cmd_import(args: argparse.Namespace) -> int:
    from gateway import cliimport

    return cliimport.cmd_import(args)


COMMANDS = {
    "serve": cmd_serve,
    "init": cmd_init,
    "check": cmd_check,
    "apikey": cmd_apikey,
    "passwd": cmd_passwd,
    "sms": cmd_sms,
    "modem": cmd_modem,
    "simulate-modem": cmd_simulate_modem,
    "backup": cmd_backup,
    "restore": cmd_restore,
    "import": cmd_import,
    "status": cmd_status,
    "ack": cmd_ack,
    "mute": cmd_ack,
    "unmute": cmd_ack,
    "maintenance": cmd_maintenance,
    "snooze": cmd_snooze,
}


def setup_logging(level: str) -> None:
    under_systemd = "JOURNAL_STREAM" in os.environ
    fmt = "%(levelname)s %(name)s: %(message)s" if under_systemd else "%(asctime)s %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=level, format=fmt, stream=sys.stderr)
    if logging.getLogger().level > logging.DEBUG:  # uvicorn's start/stop lines repeat ours
        logging.getLogger("uvicorn").setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except BrokenPipeError:  # `hbgw --help | head -1`
        return _quiet_broken_pipe()
    setup_logging(args.log_level)
    try:
        if args.demo_anywhere:  # a subcommand's own --demo default would hide the top-level one
            if not hasattr(args, "demo"):
                raise UsageError(f"--demo does not apply to {args.command}")
            args.demo = True
        _read_durations(args)
        code = COMMANDS[args.command](args)
        sys.stdout.flush()  # here, so that a closed pipe is caught below rather than at exit
        return code
    except (ConfigError, UsageError) as e:
        print(f"hbgw: {e}", file=sys.stderr)
        return EXIT_USAGE
    except ValidationError as e:
        print(f"hbgw: {e.field}: {e}", file=sys.stderr)
        return EXIT_USAGE
    except NotFound as e:
        print(f"hbgw: {_no_such_check(str(e), args)}", file=sys.stderr)
        return EXIT_FAIL
    except (Conflict, StoreError) as e:
        print(f"hbgw: {e}", file=sys.stderr)
        return EXIT_FAIL
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # stdout closed early (`hbgw check list | head`): no traceback
        return _quiet_broken_pipe()


def _quiet_broken_pipe() -> int:
    """Exit 1 without a word when the reader of stdout went away; stdout now points at
    /dev/null, so that the interpreter's last flush cannot fail in its turn."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_FAIL
