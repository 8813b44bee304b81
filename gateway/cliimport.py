"""``hbgw import healthchecks|uptime-kuma``: bring checks over, keeping their ping URLs
(see :mod:`gateway.importer`). Exit 0 when no check failed, 1 otherwise, 2 for usage errors."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from gateway import importer
from gateway.importer import Action, Plan, Report, SourceError

API_KEY_ENV = "HC_API_KEY"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``import`` and its sources to ``hbgw``'s subcommands (run by :func:`cmd_import`)."""
    p = sub.add_parser(
        "import",
        help="bring checks over from Healthchecks or Uptime Kuma, keeping their ping URLs (run again to update)",
    )
    isub = p.add_subparsers(dest="source", required=True, metavar="SOURCE")

    a = isub.add_parser("healthchecks", help="from a Healthchecks site's API (read-write key) or its saved JSON")
    where = a.add_mutually_exclusive_group(required=True)
    where.add_argument("--url", help="the site, e.g. https://healthchecks.io or https://hc.example.com")
    where.add_argument("--file", type=Path, help="GET /api/v3/checks/'s answer saved to a file")
    a.add_argument(
        "--api-key",
        metavar="KEY",
        help=f"a project's read-write API key (or set {API_KEY_ENV}, which keeps it out of `ps`)",
    )
    _common(a)

    a = isub.add_parser("uptime-kuma", help="the push monitors of an Uptime Kuma database (read, never written)")
    a.add_argument("--db", type=Path, required=True, help="Uptime Kuma's kuma.db (in its data directory)")
    _common(a)


def _common(p: argparse.ArgumentParser) -> None:
    from gateway.cli import _data_args

    p.add_argument("--dry-run", action="store_true", help="show what would change, write nothing")
    p.add_argument("--json", action="store_true", help="the report as JSON")
    _data_args(p)


def read_plan(args: argparse.Namespace) -> Plan:
    """The source named on the command line, read and mapped. Raises SourceError, UsageError."""
    from gateway.cli import UsageError

    if args.source == "uptime-kuma":
        return importer.plan_kuma(importer.read_kuma(args.db))
    if args.file is not None:
        return importer.plan_healthchecks(importer.read_json_file(args.file))
    key = args.api_key or os.environ.get(API_KEY_ENV, "")
    if not key:
        raise UsageError(f"--url needs --api-key KEY (or {API_KEY_ENV} in the environment)")
    return importer.plan_healthchecks(importer.fetch_healthchecks(args.url, key))


def cmd_import(args: argparse.Namespace) -> int:
    from gateway.cli import EXIT_FAIL, EXIT_OK, _open, _poke_daemon, resolve_config

    config = resolve_config(args)
    # Into an existing database only (as every command but serve and init): checked before the
    # source is read, so a mistyped --data-dir costs no download.
    store, service = _open(config, args)
    try:
        try:
            plan = read_plan(args)
        except SourceError as e:
            print(f"hbgw: {e}", file=sys.stderr)
            return EXIT_FAIL
        report = importer.apply_plan(service, plan, dry_run=args.dry_run)
    finally:
        store.close()
    counts = report.counts()
    if not args.dry_run and (counts["created"] or counts["updated"]):
        _poke_daemon(config)
    print(json.dumps(report.to_json(), indent=2) if args.json else render(report))
    return EXIT_OK if report.ok else EXIT_FAIL


def render(report: Report) -> str:
    """The report for people: one line per record, then the totals."""
    rows = [(str(o.action), o.name or "-", o.origin, o.detail) for o in report.outcomes]
    lines = []
    if rows:
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        for r in rows:
            lines.append("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=False)) + ("  " + r[3] if r[3] else ""))
        lines = [line.rstrip() for line in lines]
    c = report.counts()
    would = "would be " if report.dry_run else ""
    total = ", ".join(f"{c[str(a)]} {would}{a}" for a in (Action.CREATED, Action.UPDATED) if c[str(a)])
    parts = [total] if total else []
    parts += [f"{c[str(a)]} {a}" for a in (Action.UNCHANGED, Action.SKIPPED, Action.FAILED) if c[str(a)]]
    lines.append(f"{report.source}: " + ("; ".join(parts) if parts else "nothing to import"))
    if report.skipped_types:
        kinds = ", ".join(f"{t} {n}" for t, n in sorted(report.skipped_types.items()))
        lines.append(f"not push monitors, so not imported: {kinds}")
    if report.dry_run:
        lines.append("dry run: nothing was written")
    return "\n".join(lines)
