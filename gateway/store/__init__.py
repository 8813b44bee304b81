"""All SQL lives here. SQLite in WAL mode with one writer thread.

Writes are queued to a single writer thread that owns the only write connection. It takes every
job waiting in the queue and runs them in one ``BEGIN IMMEDIATE`` transaction, each job inside
its own SAVEPOINT so one failing job does not undo the others (group commit: under load a commit
carries many pings). A job's future resolves only after COMMIT, so a heartbeat acknowledged with
200 is in the database. Jobs marked ``durable`` (heartbeats, status flips, alert decisions,
outbox changes) commit with ``synchronous=FULL``: the write-ahead log is on the disk before the
future resolves, so they survive power loss and an OS crash, not only ``kill -9``. One fsync
covers the whole group, so under load it costs little (docs/design-notes.md has the figures).
Housekeeping (sessions, settings, the modem log) commits with NORMAL.

Reads use per-thread connections opened read-only.

Transaction functions (:mod:`gateway.store.tx`) load rows, hand them to a pure decision from
:mod:`gateway.rules.lifecycle` that the caller chose, and write the result, so a
read-modify-write is atomic. No business rule lives here: only SQL and row mapping.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from gateway.model import (
    ApiKey,
    Check,
    Event,
    InboxRow,
    ModemLogRow,
    OutboxRow,
    Ping,
    PingKind,
    PingMeta,
    Schedule,
)
from gateway.rules.lifecycle import Decision
from gateway.rules.maintenance import Window
from gateway.rules.slugs import slugify
from gateway.store import tx
from gateway.store.backup import DatabaseInfo, backup_database, restore_database
from gateway.store.errors import Ambiguous, Conflict, NotFound, Refused, StoreError
from gateway.store.rows import (
    API_KEY_COLUMNS,
    CHECK_COLUMNS,
    OUTBOX_COLUMNS,
    WINDOW_COLUMNS,
    api_key_from_row,
    check_from_row,
    outbox_from_row,
    window_from_row,
)
from gateway.store.schema import MIGRATIONS, SCHEMA_VERSION
from gateway.store.tx import BODY_EXCERPT, PING_HISTORY, PRUNE_EVERY, Decide, DecideAll, DecidePing, PingResult

__all__ = [
    "BODY_EXCERPT",
    "PING_HISTORY",
    "PRUNE_EVERY",
    "SCHEMA_VERSION",
    "Ambiguous",
    "Conflict",
    "DatabaseInfo",
    "Decide",
    "DecideAll",
    "DecidePing",
    "NotFound",
    "PingResult",
    "Refused",
    "Store",
    "StoreError",
    "backup_database",
    "restore_database",
]

logger = logging.getLogger(__name__)


T = TypeVar("T")


# History kept by prune(): events (flips, owner actions) for 400 days; finished outbox rows and
# received SMS for 90 days. Pending or in-flight messages are never pruned.
KEEP_EVENTS = 400 * 86400


KEEP_MESSAGES = 90 * 86400


_PRUNE_BATCH = 2000  # rows per write transaction, so pings keep flowing while it runs


@dataclasses.dataclass
class _Job:
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    future: concurrent.futures.Future[Any]
    durable: bool


_STOP = object()


class Store:
    """The SQLite database of one gateway. Thread-safe; see the module docstring."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._local = threading.local()
        self._closed = False

    # ---------------------------------------------------------------- lifecycle

    def open(self) -> Store:
        """Create the file if needed, run migrations, start the writer thread.

        Raises StoreError with a readable message when the file cannot be opened or written.
        """
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = self._connect_writer()
        except (OSError, sqlite3.Error) as e:
            raise StoreError(f"cannot open database {self.path}: {e}") from None
        try:
            self._migrate(conn)
        except sqlite3.Error as e:
            conn.close()
            raise StoreError(f"cannot prepare database {self.path}: {e}") from None
        started = threading.Event()
        self._writer = threading.Thread(
            target=self._writer_loop, args=(conn, started), name="hbgw-store-writer", daemon=True
        )
        self._writer.start()
        started.wait()
        return self

    def close(self) -> None:
        """Finish queued writes, stop the writer, close every connection. Idempotent."""
        if self._closed:
            return
        self._closed = True
        # Readers first: the writer's connection, closing last, then checkpoints the WAL into
        # the main file (a read-only connection left open would prevent that).
        with self._readers_lock:
            for c in self._readers:
                c.close()
            self._readers.clear()
        if self._writer is not None:
            self._queue.put(_STOP)
            self._writer.join(timeout=30)

    def __enter__(self) -> Store:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _connect_writer(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10)
        conn.row_factory = sqlite3.Row  # rows are read by column name
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=10000")
        conn.create_function("slugify", 1, slugify, deterministic=True)  # schema v7 fills slugs with it
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(f"database schema v{version} is newer than this hbgw (v{SCHEMA_VERSION})")
        for v in range(version, SCHEMA_VERSION):
            logger.info("migrating database to schema v%d", v + 1)
            conn.execute("BEGIN IMMEDIATE")
            try:
                for stmt in MIGRATIONS[v].split(";\n"):
                    if stmt.strip():
                        conn.execute(stmt)
                conn.execute(f"PRAGMA user_version = {v + 1}")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise StoreError("store is closed")
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False, timeout=10)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA busy_timeout=10000")
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    # ---------------------------------------------------------------- the writer

    def submit(self, fn: Callable[..., T], *args: Any, durable: bool = False) -> concurrent.futures.Future[T]:
        """Queue ``fn(conn, *args)`` for the writer; the future resolves after COMMIT."""
        if self._closed:
            raise StoreError("store is closed")
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._queue.put(_Job(fn, args, fut, durable))
        return fut

    def write(self, fn: Callable[..., T], *args: Any, durable: bool = False) -> T:
        """Run ``fn(conn, *args)`` in a write transaction and wait for it (sync callers)."""
        return self.submit(fn, *args, durable=durable).result()

    async def awrite(self, fn: Callable[..., T], *args: Any, durable: bool = False) -> T:
        """Run ``fn(conn, *args)`` in a write transaction; awaits the commit without parking a
        thread (async callers)."""
        return await asyncio.wrap_future(self.submit(fn, *args, durable=durable))

    async def awrite_message(
        self, kind: str, channel: str, recipient: str, text: str, now: float, check_id: int | None = None
    ) -> int:
        """:meth:`queue_message` for async callers."""
        return await self.awrite(tx.queue_message, kind, channel, recipient, text, now, check_id, durable=True)

    async def log_modem(
        self,
        at: float,
        connected: bool,
        signal_dbm: int | None,
        registration: str | None,
        operator: str | None,
        error: str | None,
        storage: tuple[int | None, int | None] = (None, None),
        recovery: str | None = None,
    ) -> None:
        """One row of the modem's health (``storage``: SIM message slots used, and in all;
        ``recovery``: the recovery ladder's step, while it climbs)."""
        await self.awrite(tx.log_modem, at, connected, signal_dbm, registration, operator, error, storage, recovery)

    async def apply_delivery_report(self, recipient: str, reference: int, state: str, note: str, at: float) -> int:
        """A delivery report for the SMS to ``recipient`` with message reference ``reference``."""
        return int(await self.awrite(tx.apply_delivery_report, recipient, reference, state, note, at))

    async def queue_noted(
        self, key: str, value: str, kind: str, channel: str, recipient: str, text: str, now: float
    ) -> int:
        """Queue a message and set ``key`` to ``value``, both or neither."""
        return int(await self.awrite(tx.queue_noted, key, value, kind, channel, recipient, text, now, durable=True))

    async def aset_setting(self, key: str, value: str) -> None:
        await self.awrite(tx.set_setting, key, value)

    async def queue_once(
        self, key: str, mark: str, kind: str, channel: str, recipients: Sequence[str], text: str, now: float
    ) -> int:
        """Queue ``text`` to each recipient unless the setting ``key`` already holds ``mark``, and
        set it, in one transaction. Returns the rows queued."""
        return await self.awrite(tx.queue_once, key, mark, kind, channel, tuple(recipients), text, now, durable=True)

    async def achange_check(self, name: str, decide: Decide, now: float) -> Decision:
        """:meth:`change_check` for async callers."""
        return await self.awrite(tx.change_check, name, decide, now, durable=True)

    async def aadd_event(self, check_name: str | None, at: float, kind: str, detail: str | None) -> None:
        """An event row, for the check called ``check_name`` (if it still exists) or the gateway."""
        await self.awrite(tx.add_named_event, check_name, at, kind, detail)

    async def aadvance(self, now: float, decide: Decide) -> list[Decision]:
        """:meth:`advance` for async callers (the watchdog)."""
        return await self.awrite(tx.advance, now, decide, durable=True)

    async def afresh_start(self, now: float, decide: DecideAll) -> list[Decision]:
        return await self.awrite(tx.decide_all, tx.DEADLINE_PASSED, now, decide, durable=True)

    async def aclock_back(self, now: float, decide: DecideAll) -> list[Decision]:
        return await self.awrite(tx.decide_all, tx.STAMPED_AFTER, now, decide, durable=True)

    async def release_leases(self) -> int:
        return await self.awrite(tx.release_leases, durable=True)

    async def queue_relay(
        self, recipients: Sequence[str], text: str, origin: str, now: float, room: Callable[[int, int], str | None]
    ) -> list[int]:
        """Queue a relayed SMS per recipient, durably, if ``room`` allows (tx.queue_relay);
        returns the outbox ids. Raises Refused."""
        return await self.awrite(tx.queue_relay, recipients, text, origin, now, room, durable=True)

    def queue_relay_now(
        self, recipients: Sequence[str], text: str, origin: str, now: float, room: Callable[[int, int], str | None]
    ) -> list[int]:
        """:meth:`queue_relay` for threads (the web API): waits for the commit."""
        return self.write(tx.queue_relay, recipients, text, origin, now, room, durable=True)

    def get_message(self, outbox_id: int) -> OutboxRow | None:
        r = self._reader().execute(f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE id = ?", (outbox_id,)).fetchone()
        return outbox_from_row(r) if r else None

    def relayed_since(self, since: float) -> dict[str, int]:
        """Relayed messages queued since ``since``, by origin (the /modem page's shares)."""
        rows = self._reader().execute(
            "SELECT origin, count(*) FROM outbox WHERE kind = 'relay' AND created >= ? GROUP BY origin", (since,)
        )
        return {origin or "": n for origin, n in rows}

    async def claim_due(self, now: float, lease: float) -> list[list[OutboxRow]]:
        return await self.awrite(tx.claim_due, now, lease, durable=True)

    async def mark_sent(self, ids: list[int], refs: str, now: float) -> None:
        await self.awrite(tx.mark_sent, ids, refs, now, durable=True)

    async def mark_retry(self, ids: list[int], error: str, not_before: float) -> None:
        await self.awrite(tx.mark_retry, ids, error, not_before, durable=True)

    async def mark_retries(self, not_before: dict[int, float], error: str) -> None:
        """Claimed rows back to pending, each row at its own time (outbox id -> not before)."""
        await self.awrite(tx.mark_retries, not_before, error, durable=True)

    async def mark_superseded(self, ids: list[int], now: float) -> None:
        """Claimed rows done without a message: the checks' state now made them stale."""
        await self.awrite(tx.mark_superseded, ids, now, durable=True)

    async def mark_failed(self, ids: list[int], error: str, fallback_to: tuple[str, ...], now: float) -> int:
        return await self.awrite(tx.mark_failed, ids, error, fallback_to, now, durable=True)

    async def add_inbox(self, sender: str, text: str, received: float, allowed: bool) -> int:
        return await self.awrite(tx.add_inbox, sender, text, received, allowed, durable=True)

    async def mark_inbox_handled(self, inbox_id: int, reply: str | None) -> None:
        await self.awrite(tx.mark_inbox, inbox_id, reply)

    async def prune(self, now: float) -> dict[str, int]:
        """Forget old history (events for KEEP_EVENTS, finished outbox rows and received SMS for
        KEEP_MESSAGES; never a pending message, never the newest event or outbox id), a batch per
        transaction so pings keep flowing. Returns the rows removed per table."""
        removed = {}
        for table in tx.PRUNE:
            removed[table] = 0
            keep = KEEP_EVENTS if table == "events" else KEEP_MESSAGES
            while True:
                n = await self.awrite(tx.prune, table, now - keep, _PRUNE_BATCH)
                removed[table] += n
                if n < _PRUNE_BATCH:
                    break
        return removed

    def _writer_loop(self, conn: sqlite3.Connection, started: threading.Event) -> None:
        started.set()
        stopping = False
        try:
            while not stopping:
                item = self._queue.get()
                batch: list[_Job] = []
                while True:
                    if item is _STOP:
                        stopping = True
                    else:
                        batch.append(item)
                    if len(batch) >= 512:
                        break
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                if batch:
                    self._run_batch(conn, batch)
        finally:
            try:
                conn.execute("PRAGMA optimize")
            except sqlite3.Error:
                pass
            conn.close()

    def _run_batch(self, conn: sqlite3.Connection, batch: list[_Job]) -> None:
        live = [j for j in batch if j.future.set_running_or_notify_cancel()]
        if not live:
            return
        durable = any(j.durable for j in live)
        outcomes: list[tuple[_Job, Any, BaseException | None]] = []
        try:
            if durable:
                conn.execute("PRAGMA synchronous=FULL")
            conn.execute("BEGIN IMMEDIATE")
            for job in live:
                conn.execute("SAVEPOINT job")
                try:
                    result = job.fn(conn, *job.args)
                except Exception as e:  # the job's own error: undo just this job
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                    outcomes.append((job, None, e))
                else:
                    conn.execute("RELEASE job")
                    outcomes.append((job, result, None))
            conn.execute("COMMIT")
        except sqlite3.Error as e:
            # The transaction as a whole failed (disk full, read-only file, ...): nothing of it
            # is stored, so every job in it fails with this error.
            logger.error("database write failed: %s", e)
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            err = StoreError(f"database write failed: {e}")
            outcomes = [(j, None, err) for j in live]
        finally:
            if durable:
                conn.execute("PRAGMA synchronous=NORMAL")
        for job, result, exc in outcomes:
            if exc is None:
                job.future.set_result(result)
            else:
                job.future.set_exception(exc)

    # ---------------------------------------------------------------- checks: reads

    def list_checks(self) -> list[Check]:
        rows = self._reader().execute(f"SELECT {CHECK_COLUMNS} FROM checks ORDER BY name").fetchall()
        return [check_from_row(r) for r in rows]

    def get_check(self, name: str) -> Check | None:
        r = self._reader().execute(f"SELECT {CHECK_COLUMNS} FROM checks WHERE name = ?", (name,)).fetchone()
        return check_from_row(r) if r else None

    def get_check_by_slug(self, slug: str) -> Check | None:
        """The check a ``/ping/<ping key>/<slug>`` URL names (its slug, else its name). Raises
        Ambiguous when two checks share the slug."""
        return tx.load_by_slug(self._reader(), slug)

    def min_deadline(self) -> float | None:
        """The earliest moment any check changes status on its own (uses the partial index)."""
        r = (
            self._reader()
            .execute(
                "SELECT (SELECT min(next_deadline) FROM checks WHERE next_deadline IS NOT NULL),"
                " (SELECT min(alert_at) FROM checks WHERE alert_at IS NOT NULL)"
            )
            .fetchone()
        )
        times = [t for t in r if t is not None]
        return min(times) if times else None

    def list_pings(self, check_id: int, limit: int = 100, ping_id: int | None = None) -> list[Ping]:
        """A check's newest pings, newest first (or only the one with ``ping_id``)."""
        only = "AND id = ?" if ping_id is not None else ""
        rows = (
            self._reader()
            .execute(
                "SELECT id, check_id, at, kind, exit_status, source, remote_addr, method, user_agent,"
                f" body, rid, duration FROM pings WHERE check_id = ? {only} ORDER BY id DESC LIMIT ?",
                (check_id, ping_id, limit) if ping_id is not None else (check_id, limit),
            )
            .fetchall()
        )
        return [Ping(r[0], r[1], r[2], PingKind(r[3]), r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11]) for r in rows]

    def recent_outcomes(self, check_id: int, limit: int) -> list[tuple[str, int | None]]:
        """(kind, exit status) of a check's newest pings, newest first: a heartbeat bar's data."""
        cur = self._reader().cursor()
        cur.row_factory = None  # plain tuples: the overview reads 30 of these per check
        cur.execute(
            "SELECT kind, exit_status FROM pings WHERE check_id = ? ORDER BY id DESC LIMIT ?", (check_id, limit)
        )
        return cur.fetchall()

    def count_pings(self, check_id: int) -> int:
        return int(self._reader().execute("SELECT count(*) FROM pings WHERE check_id = ?", (check_id,)).fetchone()[0])

    def list_events(self, check_id: int | None = None, limit: int = 100) -> list[Event]:
        if check_id is None:
            rows = (
                self._reader()
                .execute(
                    "SELECT id, check_id, at, kind, old_status, new_status, detail FROM events"
                    " ORDER BY id DESC LIMIT ?",
                    (limit,),
                )
                .fetchall()
            )
        else:
            rows = (
                self._reader()
                .execute(
                    "SELECT id, check_id, at, kind, old_status, new_status, detail FROM events"
                    " WHERE check_id = ? ORDER BY id DESC LIMIT ?",
                    (check_id, limit),
                )
                .fetchall()
            )
        return [Event(*r) for r in rows]

    def get_setting(self, key: str) -> str | None:
        r = self._reader().execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return r[0] if r else None

    # ---------------------------------------------------------------- checks: writes

    def add_check(
        self,
        name: str,
        token: str,
        schedule: Schedule,
        now: float,
        max_checks: int | None = None,
        fields: dict[str, Any] | None = None,
    ) -> Check:
        """Insert a new check (``fields``: other Check fields to set, such as slug, tags, desc).
        Raises Conflict if the name or token exists or the cap is reached."""
        return self.write(tx.add_check, name, token, schedule, now, max_checks, fields)

    def remove_check(self, name: str) -> Check:
        return self.write(tx.remove_check, name)

    def change_check(self, name: str, decide: Decide, now: float) -> Decision:
        """Load the named check, ``decide`` what becomes of it (a pure function of the check as
        loaded), write that, all in one transaction. Raises NotFound."""
        return self.write(tx.change_check, name, decide, now, durable=True)

    def submit_ping(
        self,
        token: str | None,
        name: str | None,
        decide: DecidePing,
        meta: PingMeta,
        kind: PingKind,
        exit_status: int | None,
        now: float,
        create: tuple[str, Schedule, int] | None = None,
    ) -> concurrent.futures.Future[PingResult | None]:
        """Queue a ping for the check with ``token``, or else the one called ``name`` (created
        when ``create`` = (token, schedule, max_checks) is given and it does not exist):
        ``decide`` says what the ping does to the check; the ping row is stored beside it. The
        future resolves after COMMIT: None when there is no such check; Conflict when creating
        it would pass the cap."""
        return self.submit(tx.record_ping, token, name, decide, meta, kind, exit_status, now, create, durable=True)

    def advance(self, now: float, decide: Decide) -> list[Decision]:
        """``decide`` for every check whose deadline or reminder time is at or before ``now``
        (the partial indexes); returns the decisions written."""
        return self.write(tx.advance, now, decide, durable=True)

    def fresh_start(self, now: float, decide: DecideAll) -> list[Decision]:
        """``decide`` for the checks whose deadline is at or before ``now`` (at start-up, after
        a clock jump forward), all at once; returns the decisions written."""
        return self.write(tx.decide_all, tx.DEADLINE_PASSED, now, decide, durable=True)

    def clock_back(self, now: float, decide: DecideAll) -> list[Decision]:
        """``decide`` for the checks anchored or alerted after ``now`` (the clock went back)."""
        return self.write(tx.decide_all, tx.STAMPED_AFTER, now, decide, durable=True)

    def retime_down(self, now: float, decide: DecideAll) -> list[Decision]:
        """``decide`` for the checks that are down (a maintenance window was added or ended:
        their next alert times move)."""
        return self.write(tx.decide_all, tx.DOWN_NOW, now, decide, durable=True)

    # ---------------------------------------------------------------- maintenance windows

    def add_window(self, w: Window, detail: str) -> Window:
        """Store a maintenance window (and an event row with ``detail``); returns it with its id."""
        return self.write(tx.add_window, w, detail, durable=True)

    def end_window(self, wid: int, now: float, by: str) -> Window | None:
        """End window ``wid`` now (once: ending it again changes nothing); None: no such window."""
        return self.write(tx.end_window, wid, now, by, durable=True)

    async def aadd_window(self, w: Window, detail: str) -> Window:
        return await self.awrite(tx.add_window, w, detail, durable=True)

    async def aend_window(self, wid: int, now: float, by: str) -> Window | None:
        return await self.awrite(tx.end_window, wid, now, by, durable=True)

    async def aretime_down(self, now: float, decide: DecideAll) -> list[Decision]:
        return await self.awrite(tx.decide_all, tx.DOWN_NOW, now, decide, durable=True)

    def list_windows(self, since: float | None = None) -> list[Window]:
        """Maintenance windows, newest first; with ``since``, only those still in force then
        (not ended early before it, recurring or ending after it)."""
        sql = f"SELECT {WINDOW_COLUMNS} FROM maintenance"
        args: tuple[Any, ...] = ()
        if since is not None:
            sql += ' WHERE (ended_early IS NULL OR ended_early > ?) AND (cron IS NOT NULL OR "end" > ?)'
            args = (since, since)
        rows = self._reader().execute(sql + " ORDER BY id DESC", args).fetchall()
        return [window_from_row(r) for r in rows]

    def set_setting(self, key: str, value: str) -> None:
        self.write(tx.set_setting, key, value)

    def setting_or_create(self, key: str, make: Callable[[], str]) -> str:
        """The stored value for ``key``, storing ``make()`` first if there is none."""
        return self.write(tx.setting_or_create, key, make)

    def add_event(self, check_id: int | None, at: float, kind: str, detail: str | None = None) -> None:
        self.write(tx.add_event, check_id, at, kind, None, None, detail)

    # ---------------------------------------------------------------- outbox and inbox

    def queue_message(
        self, kind: str, channel: str, recipient: str, text: str, now: float, check_id: int | None = None
    ) -> int:
        """Queue one message to send as soon as possible; returns its outbox id."""
        return self.write(tx.queue_message, kind, channel, recipient, text, now, check_id, durable=True)

    def next_due_message(self) -> float | None:
        r = (
            self._reader()
            .execute(
                "SELECT min(CASE WHEN state = 'sending' THEN lease_until ELSE not_before END)"
                " FROM outbox WHERE state IN ('pending', 'sending')"
            )
            .fetchone()
        )
        return r[0] if r else None

    def sms_sent_since(self, since: float) -> int:
        """SMS messages sent since ``since`` (rows merged into one message count once)."""
        r = (
            self._reader()
            .execute(
                "SELECT count(DISTINCT sent_at) FROM outbox WHERE channel = 'sms' AND state = 'sent'"
                " AND sent_at >= ? AND refs IS NOT NULL",  # refs NULL: superseded, never sent
                (since,),
            )
            .fetchone()
        )
        return int(r[0])

    def count_outbox(self) -> dict[str, int]:
        rows = (
            self._reader()
            .execute("SELECT channel || ':' || state, count(*) FROM outbox GROUP BY channel, state")
            .fetchall()
        )
        return {k: n for k, n in rows}

    def check_statuses(self, ids: list[int]) -> dict[int, str]:
        """The current status of each of these checks (by id) that still exists: what a merged
        message describes."""
        if not ids:
            return {}
        marks = ", ".join("?" * len(ids))
        rows = self._reader().execute(f"SELECT id, status FROM checks WHERE id IN ({marks})", ids)
        return {int(r[0]): str(r[1]) for r in rows}

    def set_parents(self, name: str, parents: Sequence[str], now: float) -> tuple[str, ...]:
        """Make ``parents`` the parents of ``name`` (gateway.rules.dependencies). Raises
        NotFound, CycleError."""
        return self.write(tx.set_parents, name, list(parents), now, durable=True)

    def parents_of(self, check_id: int) -> list[tuple[str, str]]:
        """(name, status) of each parent of a check, by name."""
        rows = self._reader().execute(
            "SELECT c.name, c.status FROM check_parents p JOIN checks c ON c.id = p.parent_id"
            " WHERE p.child_id = ? ORDER BY c.name",
            (check_id,),
        )
        return [(str(r[0]), str(r[1])) for r in rows]

    def behind_map(self) -> dict[int, list[str]]:
        """For each check behind a down parent, the names of its parents down now."""
        rows = self._reader().execute(
            "SELECT p.child_id, c.name FROM check_parents p JOIN checks c ON c.id = p.parent_id"
            " WHERE c.status = 'down' ORDER BY c.name"
        )
        out: dict[int, list[str]] = {}
        for r in rows:
            out.setdefault(int(r[0]), []).append(str(r[1]))
        return out

    def children_of(self, ids: list[int]) -> dict[int, list[tuple[str, str, bool]]]:
        """For each of these checks that has children: (name, status now, involved) of each,
        ``involved``: down now, or back from an outage after the parent last went down (what
        the parent's messages say of them)."""
        if not ids:
            return {}
        marks = ", ".join("?" * len(ids))
        rows = self._reader().execute(
            "SELECT p.parent_id, c.name, c.status,"
            " (SELECT max(at) FROM events e WHERE e.check_id = c.id AND e.kind = 'flip' AND e.old_status = 'down'),"
            " (SELECT max(at) FROM events e WHERE e.check_id = p.parent_id AND e.kind = 'flip'"
            "  AND e.new_status = 'down')"
            f" FROM check_parents p JOIN checks c ON c.id = p.child_id WHERE p.parent_id IN ({marks})"
            " ORDER BY c.name",
            ids,
        )
        out: dict[int, list[tuple[str, str, bool]]] = {}
        for parent, name, status, back_at, down_at in rows:
            involved = status == "down" or (back_at is not None and down_at is not None and back_at >= down_at)
            out.setdefault(int(parent), []).append((str(name), str(status), involved))
        return out

    def list_outbox(self, limit: int = 100) -> list[OutboxRow]:
        rows = self._reader().execute(f"SELECT {OUTBOX_COLUMNS} FROM outbox ORDER BY id DESC LIMIT ?", (limit,))
        return [outbox_from_row(r) for r in rows]

    def recent_alerted_names(self, limit: int) -> list[str]:
        rows = (
            self._reader()
            .execute(
                "SELECT check_name FROM outbox WHERE kind IN ('down', 'fail', 'reminder')"
                " AND check_name IS NOT NULL ORDER BY id DESC LIMIT ?",
                (limit,),
            )
            .fetchall()
        )
        return list(dict.fromkeys(r[0] for r in rows))

    def list_inbox(self, limit: int = 100) -> list[InboxRow]:
        rows = self._reader().execute(
            "SELECT id, received, sender, text, allowed, handled, reply FROM inbox ORDER BY id DESC LIMIT ?", (limit,)
        )
        return [
            InboxRow(r["id"], r["received"], r["sender"], r["text"], bool(r["allowed"]), bool(r["handled"]), r["reply"])
            for r in rows
        ]

    def get_check_by_token(self, token: str) -> Check | None:
        """The check whose ping token is ``token`` (exact, case-sensitive), or None."""
        r = self._reader().execute(f"SELECT {CHECK_COLUMNS} FROM checks WHERE token = ?", (token,)).fetchone()
        return check_from_row(r) if r else None

    # ---- web admin (sessions, API keys, settings, listings) ----

    def add_session(self, sid_hash: str, csrf: str, created: float, expires: float, remote_addr: str | None) -> None:
        """Store a session under the hash of its cookie value (the cookie itself is never stored)."""
        self.write(tx.add_session, sid_hash, csrf, created, expires, remote_addr)

    def get_session(self, sid_hash: str) -> tuple[str, float, float] | None:
        """``(csrf, created, expires)`` of a stored session, expired or not; None if unknown."""
        r = self._reader().execute("SELECT csrf, created, expires FROM sessions WHERE id = ?", (sid_hash,)).fetchone()
        return (str(r[0]), float(r[1]), float(r[2])) if r else None

    def extend_session(self, sid_hash: str, expires: float) -> None:
        self.write(tx.execute, "UPDATE sessions SET expires = ? WHERE id = ?", (expires, sid_hash))

    def delete_session(self, sid_hash: str) -> None:
        self.write(tx.execute, "DELETE FROM sessions WHERE id = ?", (sid_hash,))

    def set_password(self, key: str, digest: str, *, forget: Sequence[str], keep_session: str | None) -> int:
        """Store a new password hash under ``key``, empty the settings ``forget`` and end every
        session but ``keep_session``, in one transaction. Returns the sessions ended."""
        return self.write(tx.set_password, key, digest, tuple(forget), keep_session)

    def reserve_login_attempt(self, remote_addr: str, at: float, since: float, limit: int) -> tuple[bool, float | None]:
        """Count the login attempts from ``remote_addr`` since ``since`` and, if there are fewer
        than ``limit``, record this one, in one transaction: concurrent attempts can never all
        see room (a check, then a record, could). Returns (allowed, the oldest attempt counted).
        Attempts older than ``since`` (any address) are forgotten on the way."""
        return self.write(tx.reserve_login_attempt, remote_addr, at, since, limit)

    def clear_login_failures(self, remote_addr: str) -> None:
        self.write(tx.execute, "DELETE FROM login_attempts WHERE remote_addr = ?", (remote_addr,))

    def add_api_key(self, label: str, prefix: str, digest: str, created: float, scope: str = "write") -> int:
        """Store an API key by its hash; returns its id."""
        return self.write(
            tx.insert,
            "INSERT INTO api_keys (label, prefix, hash, created, scope) VALUES (?, ?, ?, ?, ?)",
            (label, prefix, digest, created, scope),
        )

    def list_api_keys(self) -> list[ApiKey]:
        rows = self._reader().execute(f"SELECT {API_KEY_COLUMNS} FROM api_keys ORDER BY revoked IS NOT NULL, id DESC")
        return [api_key_from_row(r) for r in rows]

    def find_api_key(self, digest: str) -> ApiKey | None:
        """The live (not revoked) key with this hash, or None."""
        r = (
            self._reader()
            .execute(f"SELECT {API_KEY_COLUMNS} FROM api_keys WHERE hash = ? AND revoked IS NULL", (digest,))
            .fetchone()
        )
        return api_key_from_row(r) if r else None

    def revoke_api_key(self, key_id: int, at: float) -> bool:
        """Revoke a key; False when there is no live key with that id."""
        return bool(
            self.write(tx.execute, "UPDATE api_keys SET revoked = ? WHERE id = ? AND revoked IS NULL", (at, key_id))
        )

    def touch_api_key(self, key_id: int, at: float) -> None:
        self.write(tx.execute, "UPDATE api_keys SET last_used = ? WHERE id = ?", (at, key_id))

    def set_settings(self, values: dict[str, str]) -> None:
        """Store several settings in one transaction."""
        self.write(tx.set_settings, values)

    def ping_histogram(
        self, since: float, bucket: float, until: float | None = None
    ) -> dict[int, dict[int, tuple[int, int]]]:
        """Pings from ``since`` (to ``until``, exclusive) per check and per ``bucket``-second
        slot: ``{check_id: {slot: (pings, failures)}}`` (slot 0 starts at ``since``)."""
        conn = self._reader()
        first = tx.first_ping_id_at(conn, since)
        if first is None:
            return {}
        rows = conn.execute(
            "SELECT check_id, CAST((at - ?) / ? AS INTEGER), count(*),"
            " sum(kind = 'fail' OR coalesce(exit_status, 0) != 0)"
            " FROM pings WHERE id >= ? AND at >= ? AND at < ? AND kind != 'log' GROUP BY 1, 2",
            (since, bucket, first, since, float("inf") if until is None else until),
        ).fetchall()
        out: dict[int, dict[int, tuple[int, int]]] = {}
        for check_id, slot, n, fails in rows:
            out.setdefault(check_id, {})[slot] = (int(n), int(fails or 0))
        return out

    def list_outbox_for_check(self, check_id: int, limit: int = 100) -> list[OutboxRow]:
        rows = self._reader().execute(
            f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE check_id = ? ORDER BY id DESC LIMIT ?", (check_id, limit)
        )
        return [outbox_from_row(r) for r in rows]

    def outbox_backlog(self, now: float) -> tuple[int, float | None]:
        """Messages waiting to go out, and since when the longest-overdue one could have gone
        (a message held for quiet hours or a retry's backoff is not overdue)."""
        waiting, overdue = (
            self._reader()
            .execute(
                "SELECT count(*), min(CASE WHEN state = 'pending' AND not_before <= :now THEN not_before"
                " WHEN state = 'sending' AND lease_until <= :now THEN lease_until END)"
                " FROM outbox WHERE state IN ('pending', 'sending')",
                {"now": now},
            )
            .fetchone()
        )
        return int(waiting), overdue

    def count_failed(self, since: float) -> int:
        """Messages queued since ``since`` that failed for good."""
        return int(
            self._reader()
            .execute("SELECT count(*) FROM outbox WHERE state = 'failed' AND created >= ?", (since,))
            .fetchone()[0]
        )

    def modem_history(self, since: float) -> list[ModemLogRow]:
        rows = self._reader().execute(
            "SELECT at, connected, signal_dbm, registration, operator, error, storage_used, storage_total,"
            " recovery FROM modem_log WHERE at >= ? ORDER BY at",
            (since,),
        )
        return [
            ModemLogRow(
                r["at"],
                bool(r["connected"]),
                r["signal_dbm"],
                r["registration"],
                r["operator"],
                r["error"],
                r["storage_used"],
                r["storage_total"],
                r["recovery"],
            )
            for r in rows
        ]

    def count_watched(self) -> int:
        """Checks that are watched for pings (not paused, pinged at least once)."""
        return int(
            self._reader().execute("SELECT count(*) FROM checks WHERE status NOT IN ('paused', 'new')").fetchone()[0]
        )

    def total_pings(self) -> int:
        """Pings received, ever: the checks' own counts plus those of checks since removed."""
        return int(
            self._reader()
            .execute(
                "SELECT coalesce(sum(n_pings), 0) + coalesce((SELECT value FROM counters"
                " WHERE name = 'pings_of_removed_checks'), 0) FROM checks"
            )
            .fetchone()[0]
        )

    def counters(self) -> dict[str, int]:
        """The kept counters: messages by ``<channel>:<state>`` pruned from the outbox, pings of
        removed checks."""
        return tx.counters(self._reader())

    # ---- Healthchecks' management API (web.hcapi) ----

    def list_flips(
        self, check_id: int, start: float | None = None, end: float | None = None, limit: int = 1000
    ) -> list[Event]:
        """A check's status changes, newest first: at or after ``start``, before ``end``."""
        rows = (
            self._reader()
            .execute(
                "SELECT id, check_id, at, kind, old_status, new_status, detail FROM events"
                " WHERE check_id = ? AND kind = 'flip' AND at >= ? AND at < ? ORDER BY id DESC LIMIT ?",
                (check_id, -1e18 if start is None else start, 1e18 if end is None else end, limit),
            )
            .fetchall()
        )
        return [Event(*r) for r in rows]

    def count_checks(self) -> int:
        return int(self._reader().execute("SELECT count(*) FROM checks").fetchone()[0])
