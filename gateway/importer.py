"""Bring checks over from Healthchecks (its v3 API, or that API's JSON saved to a file) and from
Uptime Kuma (its SQLite database), keeping their ping tokens so the cron lines and scripts that
ping them keep working: ``/ping/<Healthchecks UUID>`` and ``/api/push/<Kuma push token>``.

Three layers, as everywhere else:

* reading a source (:func:`fetch_healthchecks`, :func:`read_json_file`, :func:`read_kuma`):
  I/O only, raises :class:`SourceError` when the whole source is unusable;
* mapping (:func:`plan_healthchecks`, :func:`plan_kuma`, :func:`changes_for`): pure functions
  from source records to :class:`CheckSpec`; a record that cannot become a check is reported
  as failed with the reason, the others still come over;
* applying (:func:`apply_plan`): one service call per check (plus a pause for a check that
  arrives paused), never SQL.

Decisions:

* Idempotent by token: a check whose token is here already is updated (name, schedule, tags,
  description, slug, manual resume, methods), or left alone when nothing differs. Whether it is
  paused is decided at its first import only; after that pausing and resuming are the owner's.
* A name taken here by a check with another token is a per-check failure, never silently
  renamed: the owner picks which one to rename. Names repeated *inside* one source (Kuma and
  Healthchecks both allow that) become unique in source order: "backup", "backup (2)", ...
* Uptime Kuma's push monitor goes DOWN when no push came for ``interval`` seconds and then
  ``maxretries`` more checks, ``retry_interval`` seconds apart (``interval`` when 0), found
  nothing either. So period = ``interval`` and grace = ``maxretries`` times that retry interval,
  but at least :data:`KUMA_MIN_GRACE` (Kuma's own 1 s slack is too little for a push sent by
  cron at the very second it is due), and at most our schedule maximum.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sqlite3
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.errors import ValidationError
from gateway.model import Check, Schedule
from gateway.rules import checkfields
from gateway.rules import schedule as sched
from gateway.rules.slugs import slugify
from gateway.store import Conflict, NotFound

if TYPE_CHECKING:
    from gateway.service import Service

logger = logging.getLogger(__name__)

KUMA_MIN_GRACE = 60.0
HTTP_TIMEOUT = 30.0
MAX_RESPONSE = 64 * 1024 * 1024  # a few hundred thousand checks' worth of JSON


class SourceError(Exception):
    """A source that cannot be imported at all (unreachable, key refused, not the format
    expected); the message says what to do."""


class RecordError(ValueError):
    """One source record that cannot become a check; the message says why."""


class Action(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    SKIPPED = "skipped"
    FAILED = "failed"


@dataclass(frozen=True)
class CheckSpec:
    """A check as a source describes it, checked against our rules (pure data, no token in
    ``origin``). ``period`` is None for a cron check (the default period is kept)."""

    origin: str  # where it came from, for the report: "Healthchecks check 3", "Uptime Kuma monitor 12"
    token: str
    name: str
    period: float | None
    grace: float
    cron: str | None = None
    tz: str = "UTC"
    slug: str = ""
    tags: str = ""
    desc: str = ""
    manual_resume: bool = False
    methods: str = ""
    paused: bool = False
    order: int = 0  # its place in the source, for the report

    @property
    def fields(self) -> dict[str, Any]:
        """The non-schedule fields, as :meth:`Service.add_check` takes them."""
        return {
            "slug": self.slug,
            "tags": self.tags,
            "desc": self.desc,
            "manual_resume": self.manual_resume,
            "methods": self.methods,
        }


@dataclass(frozen=True)
class Outcome:
    """What became of one source record."""

    action: Action
    name: str
    origin: str
    detail: str = ""
    order: int = 0  # its place in the source: the report lists records in source order

    def to_json(self) -> dict[str, str]:
        return {"action": str(self.action), "name": self.name, "origin": self.origin, "detail": self.detail}


@dataclass(frozen=True)
class Plan:
    """A source mapped: the checks to bring over, and the records that will not come (skipped
    on purpose, or failed with a reason)."""

    source: str
    specs: list[CheckSpec] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    skipped_types: dict[str, int] = field(default_factory=dict)  # Kuma: monitors not of type push


@dataclass(frozen=True)
class Report:
    source: str
    dry_run: bool
    outcomes: list[Outcome]
    skipped_types: dict[str, int]

    @property
    def ok(self) -> bool:
        return not any(o.action is Action.FAILED for o in self.outcomes)

    def counts(self) -> dict[str, int]:
        c = Counter(o.action for o in self.outcomes)
        return {str(a): c[a] for a in Action}

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "dry_run": self.dry_run,
            "ok": self.ok,
            "counts": self.counts(),
            "skipped_types": self.skipped_types,
            "checks": [o.to_json() for o in self.outcomes],
        }


# --------------------------------------------------------------------------- pure mapping


def _seconds(record: Mapping[str, Any], key: str, *, low: float, what: str) -> float:
    value = record.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RecordError(f"{key}: expected a number of seconds, got {value!r}")
    if not low <= value <= sched.MAX_PERIOD:
        raise RecordError(f"{key}: {what} {value:g}s is outside {low:g}s to 365 days")
    return float(value)


def _checked(spec: CheckSpec) -> CheckSpec:
    """``spec`` with its fields normalized by our own rules (the ones add_check applies), so a
    record is refused here, before anything is written. Raises RecordError."""
    try:
        name = checkfields.validate_name(spec.name)
        checkfields.validate_token(spec.token)
        fields = checkfields.validate(spec.fields)
        sched.validate(Schedule(spec.period or 60.0, spec.grace, spec.cron, spec.tz))
    except ValidationError as e:
        raise RecordError(f"{e.field}: {e}") from None
    except sched.ScheduleError as e:
        raise RecordError(str(e)) from None
    return dataclasses.replace(spec, name=name, **fields)


def _clean_name(name: Any, fallback: str) -> str:
    """A name our rules take: "/" (kept out of URLs) becomes "-", an empty name ``fallback``."""
    if not isinstance(name, str):
        return fallback
    name = name.replace("/", "-").strip()
    return name[: checkfields.NAME_MAX].strip() or fallback


def healthchecks_spec(record: Mapping[str, Any], origin: str, order: int = 0) -> CheckSpec:
    """One check of Healthchecks' ``GET /api/v3/checks/`` list as ours. Simple checks keep
    ``timeout`` as period; cron checks keep ``schedule`` and ``tz`` (OnCalendar expressions have
    no equivalent here and are refused). Raises RecordError."""
    if not isinstance(record, Mapping):
        raise RecordError(f"expected a JSON object, got {type(record).__name__}")
    token = record.get("uuid")
    if not token and isinstance(record.get("ping_url"), str):  # API v1/v2 lists: the URL's last part
        token = urllib.parse.urlsplit(record["ping_url"]).path.rstrip("/").rsplit("/", 1)[-1]
    if not isinstance(token, str) or not token:
        if "unique_key" in record:
            raise RecordError("no uuid: this comes from a read-only API key")
        raise RecordError("no uuid and no ping_url: cannot keep its ping URL")
    slug = record.get("slug") or ""
    name = _clean_name(record.get("name"), slug or f"check {token[:8]}")
    grace = _seconds(record, "grace", low=0.0, what="grace")
    schedule = record.get("schedule")
    if schedule:
        if not isinstance(schedule, str) or len(schedule.split()) != 5:
            raise RecordError(f"schedule {schedule!r}: only 5-field cron expressions can come over (not OnCalendar)")
        period, cron, tz = None, schedule, record.get("tz") or "UTC"
    else:
        period, cron, tz = _seconds(record, "timeout", low=1.0, what="timeout"), None, "UTC"
    spec = CheckSpec(
        origin=origin,
        order=order,
        token=token,
        name=name,
        period=period,
        grace=grace,
        cron=cron,
        tz=tz,
        slug=slug,
        tags=record.get("tags") or "",
        desc=record.get("desc") or "",
        manual_resume=bool(record.get("manual_resume", False)),
        methods=record.get("methods") or "",
        paused=record.get("status") == "paused",
    )
    return _checked(spec)


def healthchecks_records(data: Any) -> list[Any]:
    """The check list in a Healthchecks API answer (``{"checks": [...]}``) or a saved list.
    Raises SourceError when it is neither, or when it comes from a read-only key."""
    checks = data.get("checks") if isinstance(data, dict) else data
    if not isinstance(checks, list):
        raise SourceError('expected Healthchecks\' check list: {"checks": [...]} or [...]')
    readonly = [c for c in checks if isinstance(c, dict) and "unique_key" in c and not c.get("uuid")]
    if readonly:
        raise SourceError(
            "these checks come from a read-only API key: they have no UUIDs, and without them"
            " the existing ping URLs cannot keep working; use a read-write API key"
        )
    return checks


def plan_healthchecks(data: Any) -> Plan:
    """Healthchecks' check list (see :func:`healthchecks_records`) as a plan. Raises SourceError."""
    plan = Plan("healthchecks")
    for i, record in enumerate(healthchecks_records(data), 1):
        origin = f"Healthchecks check {i}"
        try:
            plan.specs.append(healthchecks_spec(record, origin, i))
        except RecordError as e:
            name = record.get("name") if isinstance(record, dict) else None
            plan.outcomes.append(Outcome(Action.FAILED, str(name or ""), origin, str(e), i))
    return _deduplicated(plan)


@dataclass(frozen=True)
class KumaMonitor:
    """The columns of Uptime Kuma's ``monitor`` table that matter here, and its tags as
    (name, value) pairs."""

    id: int
    name: str | None
    type: str | None
    active: bool
    interval: float | None
    retry_interval: float | None
    maxretries: int | None
    push_token: str | None
    description: str | None = None
    tags: tuple[tuple[str, str | None], ...] = ()


def kuma_grace(interval: float, retry_interval: float | None, maxretries: int | None) -> float:
    """How long after a missed push Kuma would call a monitor DOWN, as our grace (see the
    module docstring)."""
    retry = retry_interval if retry_interval and retry_interval > 0 else interval
    grace = max(0, maxretries or 0) * retry
    return float(min(max(grace, KUMA_MIN_GRACE), sched.MAX_PERIOD))


def kuma_tags(pairs: Iterable[tuple[str, str | None]]) -> str:
    """Kuma's tags as ours: "name", or "name:value" when it has a value; white space inside
    becomes "-" (ours are space-separated)."""
    out = []
    for name, value in pairs:
        tag = "-".join(name.split())
        if value and value.strip():
            tag += ":" + "-".join(value.split())
        if tag:
            out.append(tag)
    return " ".join(out)


def kuma_spec(m: KumaMonitor) -> CheckSpec:
    """One Uptime Kuma push monitor as ours. Raises RecordError."""
    if not m.push_token:
        raise RecordError("push monitor without a push token")
    interval = m.interval
    if isinstance(interval, bool) or not isinstance(interval, int | float) or not 1 <= interval <= sched.MAX_PERIOD:
        raise RecordError(f"interval: {m.interval!r} is not 1 second to 365 days")
    name = _clean_name(m.name, f"monitor {m.id}")
    spec = CheckSpec(
        origin=f"Uptime Kuma monitor {m.id}",
        order=m.id,
        token=m.push_token,
        name=name,
        period=float(interval),
        grace=kuma_grace(interval, m.retry_interval, m.maxretries),
        slug=slugify(name),
        tags=kuma_tags(m.tags),
        desc=m.description or "",
        paused=not m.active,
    )
    return _checked(spec)


def plan_kuma(monitors: Sequence[KumaMonitor]) -> Plan:
    """Uptime Kuma's monitors as a plan: push monitors come over; the others are skipped, and
    counted by type."""
    plan = Plan("uptime-kuma")
    for m in sorted(monitors, key=lambda m: m.id):
        origin = f"Uptime Kuma monitor {m.id}"
        if m.type != "push":
            kind = m.type or "unknown"
            plan.skipped_types[kind] = plan.skipped_types.get(kind, 0) + 1
            plan.outcomes.append(
                Outcome(Action.SKIPPED, m.name or "", origin, f"type {kind}: only push monitors can come over", m.id)
            )
            continue
        try:
            plan.specs.append(kuma_spec(m))
        except RecordError as e:
            plan.outcomes.append(Outcome(Action.FAILED, m.name or "", origin, str(e), m.id))
    return _deduplicated(plan)


def unique_names(names: Sequence[str]) -> list[str]:
    """``names`` with repeats (case-insensitive, as our names are) made unique in order:
    "backup", "backup (2)", "backup (3)"."""
    taken = {n.casefold() for n in names}
    seen: set[str] = set()
    out = []
    for name in names:
        key = name.casefold()
        if key in seen:
            n = 2
            while f"{name} ({n})".casefold() in taken | seen:
                n += 1
            name = f"{name} ({n})"
            key = name.casefold()
        seen.add(key)
        out.append(name)
    return out


def _deduplicated(plan: Plan) -> Plan:
    """``plan`` with repeated names made unique (a renamed Kuma monitor gets the slug of its new
    name) and a second record with a token already seen refused."""
    specs: list[CheckSpec] = []
    outcomes = list(plan.outcomes)
    by_token: dict[str, str] = {}
    for spec in plan.specs:
        if spec.token in by_token:
            detail = f"the same ping token as {by_token[spec.token]}"
            outcomes.append(Outcome(Action.FAILED, spec.name, spec.origin, detail, spec.order))
            continue
        by_token[spec.token] = spec.origin
        specs.append(spec)
    renamed = []
    for spec, name in zip(specs, unique_names([s.name for s in specs]), strict=True):
        if name != spec.name:
            slug = slugify(name) if plan.source == "uptime-kuma" else spec.slug
            spec = dataclasses.replace(spec, name=name[: checkfields.NAME_MAX], slug=slug)
        renamed.append(spec)
    return dataclasses.replace(plan, specs=renamed, outcomes=outcomes)


def changes_for(check: Check, spec: CheckSpec) -> dict[str, Any]:
    """What :meth:`Service.patch_check` must change so ``check`` matches ``spec`` ({} when
    nothing differs). A cron check's period is left as it is (it is not used)."""
    changes: dict[str, Any] = {}
    if check.name != spec.name:
        changes["name"] = spec.name
    for key, value in spec.fields.items():
        if getattr(check, key) != value:
            changes[key] = value
    s = check.schedule
    if spec.cron is None and s.period != spec.period:
        changes["period"] = spec.period
    if s.grace != spec.grace:
        changes["grace"] = spec.grace
    if s.cron != spec.cron:
        changes["cron"] = spec.cron
    if s.tz != spec.tz:
        changes["tz"] = spec.tz
    return changes


# --------------------------------------------------------------------------- reading sources


def fetch_healthchecks(url: str, api_key: str, *, timeout: float = HTTP_TIMEOUT) -> Any:
    """``GET {url}/api/v3/checks/`` with the key in ``X-Api-Key``; the decoded JSON.
    Raises SourceError (refused key, HTTP error, unreachable, not JSON)."""
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise SourceError(f"{url!r} is not an http:// or https:// URL (e.g. https://healthchecks.io)")
    endpoint = url.rstrip("/") + "/api/v3/checks/"
    request = urllib.request.Request(endpoint, headers={"X-Api-Key": api_key, "Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read(MAX_RESPONSE + 1)
    except urllib.error.HTTPError as e:
        e.close()
        if e.code in (401, 403):
            raise SourceError(
                f"{endpoint} refused the API key (HTTP {e.code}): use a project's read-write API key"
                " (Project Settings → API Access)"
            ) from None
        raise SourceError(f"{endpoint} answered HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = e.reason if isinstance(e, urllib.error.URLError) else e
        raise SourceError(f"cannot reach {endpoint}: {reason}") from None
    if len(body) > MAX_RESPONSE:
        raise SourceError(f"{endpoint} answered more than {MAX_RESPONSE} bytes")
    try:
        return json.loads(body)
    except ValueError:
        raise SourceError(f"{endpoint} did not answer JSON: is {url} a Healthchecks site?") from None


def read_json_file(path: Path) -> Any:
    """The JSON in ``path``. Raises SourceError."""
    try:
        with open(path, "rb") as f:
            return json.load(f)
    except OSError as e:
        raise SourceError(f"cannot read {path}: {e.strerror or e}") from None
    except ValueError as e:
        raise SourceError(f"{path} is not JSON: {e}") from None


_KUMA_NEEDED = ("id", "name", "active", "interval", "type", "push_token", "retry_interval", "maxretries")


def read_kuma(path: Path) -> list[KumaMonitor]:
    """The monitors in Uptime Kuma's database ``path``, with their tags, read without writing
    (``mode=ro``: safe while Kuma runs). Raises SourceError."""
    if not path.is_file():
        raise SourceError(f"{path}: no such file (Uptime Kuma keeps it in its data directory as kuma.db)")
    uri = "file:" + urllib.parse.quote(str(path.resolve())) + "?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True)
    except sqlite3.Error as e:
        raise SourceError(f"cannot open {path}: {e}") from None
    try:
        conn.row_factory = sqlite3.Row
        columns = {r["name"] for r in conn.execute("PRAGMA table_info(monitor)")}
        missing = [c for c in _KUMA_NEEDED if c not in columns]
        if missing:
            raise SourceError(
                f"{path} is not an Uptime Kuma database (its monitor table lacks {', '.join(missing)})"
                if columns
                else f"{path} is not an Uptime Kuma database (no monitor table)"
            )
        desc = "description" if "description" in columns else "NULL"
        rows = conn.execute(f"SELECT {', '.join(_KUMA_NEEDED)}, {desc} AS description FROM monitor ORDER BY id")
        monitors = [
            KumaMonitor(
                id=r["id"],
                name=r["name"],
                type=r["type"],
                active=bool(r["active"]),
                interval=r["interval"],
                retry_interval=r["retry_interval"],
                maxretries=r["maxretries"],
                push_token=r["push_token"],
                description=r["description"],
            )
            for r in rows
        ]
        tags: dict[int, list[tuple[str, str | None]]] = {}
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if {"tag", "monitor_tag"} <= tables:
            for r in conn.execute(
                "SELECT monitor_tag.monitor_id, tag.name, monitor_tag.value FROM monitor_tag"
                " JOIN tag ON tag.id = monitor_tag.tag_id ORDER BY monitor_tag.id"
            ):
                tags.setdefault(r[0], []).append((str(r[1]), r[2]))
    except sqlite3.Error as e:
        raise SourceError(f"cannot read {path}: {e}") from None
    finally:
        conn.close()
    return [dataclasses.replace(m, tags=tuple(tags.get(m.id, ()))) for m in monitors]


# --------------------------------------------------------------------------- applying


def apply_plan(service: Service, plan: Plan, *, dry_run: bool = False) -> Report:
    """Create or update a check per spec of ``plan`` (nothing written when ``dry_run``); one
    failure does not stop the others."""
    outcomes = list(plan.outcomes)
    for spec in plan.specs:
        try:
            outcomes.append(_apply_one(service, spec, dry_run))
        except (ValidationError, Conflict, NotFound) as e:
            outcomes.append(Outcome(Action.FAILED, spec.name, spec.origin, _why(service, spec, e), spec.order))
    outcomes.sort(key=lambda o: o.order)
    done = Counter(o.action for o in outcomes)
    logger.info(
        "import from %s%s: %s",
        plan.source,
        " (dry run)" if dry_run else "",
        ", ".join(f"{done[a]} {a}" for a in Action),
    )
    return Report(plan.source, dry_run, outcomes, dict(plan.skipped_types))


def _apply_one(service: Service, spec: CheckSpec, dry_run: bool) -> Outcome:
    existing = service.find_check_by_token(spec.token)
    if existing is None:
        _name_free(service, spec.name)
        if not dry_run:
            service.add_check(
                spec.name,
                period=spec.period,
                grace=spec.grace,
                cron=spec.cron,
                tz=spec.tz,
                token=spec.token,
                **spec.fields,
            )
            if spec.paused:
                service.pause(spec.name)
        return Outcome(Action.CREATED, spec.name, spec.origin, "paused" if spec.paused else "", spec.order)
    changes = changes_for(existing, spec)
    if not changes:
        return Outcome(Action.UNCHANGED, spec.name, spec.origin, "", spec.order)
    if "name" in changes:
        _name_free(service, spec.name, existing.id)
    if not dry_run:
        service.patch_check(existing.name, **changes)
    detail = ", ".join(sorted(changes))
    if "name" in changes:
        detail += f" (was {existing.name!r})"
    return Outcome(Action.UPDATED, spec.name, spec.origin, detail, spec.order)


def _name_free(service: Service, name: str, own_id: int | None = None) -> None:
    """Raise Conflict when another check is called ``name`` (checked first, so a dry run
    reports it too)."""
    try:
        other = service.get_check(name)
    except NotFound:
        return
    if other.id != own_id:
        raise Conflict(f"name {name!r} taken")


def _why(service: Service, spec: CheckSpec, e: Exception) -> str:
    if isinstance(e, ValidationError):
        return f"{e.field}: {e}"
    try:
        other = service.get_check(spec.name)
    except NotFound:
        return str(e)
    if other.token != spec.token:
        return f"a check named {other.name!r} exists here with another ping URL; rename one of them and import again"
    return str(e)
