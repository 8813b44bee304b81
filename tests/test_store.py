"""The SQLite store: migrations, group commit with per-job isolation, bounded ping history."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway import store as storemod
from gateway.model import Flip, PingKind, PingMeta, Schedule, Status
from gateway.rules import lifecycle
from gateway.rules.settings import Settings
from gateway.store import Conflict, Store, StoreError

T0 = 1_800_000_000.0
S = Schedule(period=60, grace=60)
SETTINGS = Settings()


def ping(
    store: Store, token: str, kind: PingKind, meta: PingMeta, now: float
) -> concurrent.futures.Future[storemod.PingResult | None]:
    """A ping as the service submits it: the store writes what the pure lifecycle decides."""
    return store.submit_ping(
        token,
        None,
        lambda c, body, counted, parents: lifecycle.ping(c, counted, None, now, SETTINGS, body, None, parents),
        meta,
        kind,
        None,
        now,
    )


def advance(store: Store, now: float) -> list[Flip]:
    return [
        d.flip for d in store.advance(now, lambda c, parents: lifecycle.advance(c, now, SETTINGS, parents)) if d.flip
    ]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "hbgw.sqlite3").open()
    yield s
    s.close()


def test_it_creates_the_schema_in_wal_mode_and_records_its_version(store: Store) -> None:
    con = sqlite3.connect(store.path)
    try:
        assert con.execute("PRAGMA user_version").fetchone()[0] == storemod.SCHEMA_VERSION
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        con.close()
    assert {"checks", "pings", "events", "outbox", "inbox", "sessions", "settings"} <= tables


def test_it_refuses_a_database_from_a_newer_version(tmp_path: Path) -> None:
    path = tmp_path / "future.sqlite3"
    con = sqlite3.connect(path)
    con.execute(f"PRAGMA user_version = {storemod.SCHEMA_VERSION + 1}")
    con.close()
    with pytest.raises(StoreError, match="newer than this hbgw"):
        Store(path).open()


def test_it_commits_many_concurrent_pings_and_isolates_a_failing_job(store: Store) -> None:
    check = store.add_check("web1", "tok" * 8, S, T0)

    def boom(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO settings (key, value) VALUES ('half', 'done')")
        raise RuntimeError("job bug")

    futures = [ping(store, check.token, PingKind.SUCCESS, PingMeta(), T0 + i) for i in range(200)]
    bad: concurrent.futures.Future[Any] = store.submit(boom)
    futures += [ping(store, check.token, PingKind.SUCCESS, PingMeta(), T0 + 200 + i) for i in range(200)]
    concurrent.futures.wait([*futures, bad])
    assert all(f.result() is not None for f in futures)
    with pytest.raises(RuntimeError, match="job bug"):
        bad.result()
    assert store.get_setting("half") is None  # the failing job left nothing behind
    got = store.get_check("web1")
    assert got is not None and got.n_pings == 400 and got.status is Status.UP


def test_it_keeps_only_the_newest_pings_per_check(store: Store) -> None:
    check = store.add_check("chatty", "tok" * 8, S, T0)
    other = store.add_check("quiet", "tik" * 8, S, T0)
    ping(store, other.token, PingKind.SUCCESS, PingMeta(), T0).result()
    for i in range(storemod.PING_HISTORY + 120):
        ping(store, check.token, PingKind.SUCCESS, PingMeta(body=str(i)), T0 + i)
    ping(store, check.token, PingKind.LOG, PingMeta(body="last"), T0 + 5000).result()
    n = store.count_pings(check.id)
    assert storemod.PING_HISTORY <= n < storemod.PING_HISTORY + storemod.PRUNE_EVERY
    assert store.list_pings(check.id, 1)[0].body == "last"
    assert store.count_pings(other.id) == 1


def test_it_rejects_duplicate_names_case_insensitively_and_enforces_the_cap(store: Store) -> None:
    store.add_check("Web1", "a" * 24, S, T0)
    with pytest.raises(Conflict, match="exists"):
        store.add_check("web1", "b" * 24, S, T0)
    store.add_check("web2", "c" * 24, S, T0, max_checks=2)
    with pytest.raises(Conflict, match="limit of 2"):
        store.add_check("web3", "d" * 24, S, T0, max_checks=2)


def test_it_fails_writes_clearly_when_the_database_becomes_read_only(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        # root ignores file modes; use SQLite's own read-only switch on the writer instead
        s = Store(tmp_path / "db.sqlite3").open()
        s.add_check("web1", "a" * 24, S, T0)
        s.write(lambda conn: conn.execute("PRAGMA query_only = ON"))
    else:
        s = Store(tmp_path / "db.sqlite3").open()
        s.add_check("web1", "a" * 24, S, T0)
        os.chmod(tmp_path / "db.sqlite3", 0o444)
    try:
        with pytest.raises(StoreError):
            s.add_check("web2", "b" * 24, S, T0)
        assert [c.name for c in s.list_checks()] == ["web1"]
    finally:
        s.close()


def test_it_advances_only_checks_whose_deadline_passed(store: Store) -> None:
    a = store.add_check("a", "a" * 24, Schedule(period=10, grace=10), T0)
    b = store.add_check("b", "b" * 24, Schedule(period=100, grace=10), T0)
    ping(store, a.token, PingKind.SUCCESS, PingMeta(), T0).result()
    ping(store, b.token, PingKind.SUCCESS, PingMeta(), T0).result()
    assert store.min_deadline() == T0 + 10
    flips = advance(store, T0 + 15)
    assert [(f.check_id, f.old, f.new) for f in flips] == [(a.id, Status.UP, Status.LATE)]
    assert store.min_deadline() == T0 + 20
    flips = advance(store, T0 + 25)
    assert [(f.old, f.new) for f in flips] == [(Status.LATE, Status.DOWN)]
    assert store.min_deadline() == T0 + 100


def test_a_ping_submitted_from_an_event_loop_is_awaited_not_blocked_on(tmp_path: Path) -> None:
    """Service.submit_ping: what the HTTP loop awaits. The outcome arrives after COMMIT; a waiter
    that gives up (cancelled) neither loses the ping nor breaks the writer."""
    import asyncio
    import dataclasses

    from gateway.config import Config
    from gateway.service import PingOutcome, Service

    config = Config(data_dir=tmp_path)
    config = dataclasses.replace(
        config,
        security=dataclasses.replace(config.security, ping_key="site-key-0123456789", auto_create=True, max_checks=2),
    )
    with Store(tmp_path / "db.sqlite3") as store:
        service = Service(store, config)
        check = service.add_check("web1")

        async def main() -> list[PingOutcome]:
            got = [await asyncio.wrap_future(service.submit_ping(check.token, None, PingKind.SUCCESS))]
            for key, name in (
                ("site-key-0123456789", "web1"),
                ("wrong-key-0123456789", "web1"),
                ("site-key-0123456789", "newbox"),
                ("site-key-0123456789", "third"),
            ):
                got.append(await asyncio.wrap_future(service.submit_ping(key, name, PingKind.SUCCESS)))
            waiter = asyncio.ensure_future(asyncio.wrap_future(service.submit_ping(check.token, None, PingKind.LOG)))
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
            return got

        outcomes = asyncio.run(main())
        assert outcomes == [
            PingOutcome.OK,
            PingOutcome.OK,
            PingOutcome.NOT_FOUND,
            PingOutcome.CREATED,
            PingOutcome.LIMIT,
        ]
        assert ping(store, check.token, PingKind.SUCCESS, PingMeta(), 1e9).result() is not None  # writer alive
        kinds = [p.kind for p in store.list_pings(check.id)]
        assert kinds[:2] == [PingKind.SUCCESS, PingKind.LOG]  # the cancelled waiter's ping was stored
        assert len(kinds) == 4


def test_prune_forgets_old_history_but_never_pending_messages_or_the_newest_ids(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(storemod, "_PRUNE_BATCH", 2)  # several batches per table
    day = 86400.0
    now = 1_000 * day
    check = store.add_check("web1", "tok-prune-0001", Schedule(60, 60), now - 500 * day)
    for i in range(5):
        store.add_event(check.id, now - (500 - i) * day, "note")
    store.add_event(check.id, now - 10 * day, "recent")
    # outbox: old sent, old failed, old pending (never sent: must stay), recent sent
    ids = {
        k: store.queue_message("note", "sms", "+33600000001", k, t)
        for k, t in (
            ("old-sent", now - 200 * day),
            ("old-failed", now - 200 * day),
            ("old-pending", now - 200 * day),
            ("new-sent", now - day),
        )
    }
    claimed = [r.id for g in asyncio.run(store.claim_due(now, 60)) for r in g]
    assert sorted(claimed) == sorted(ids.values())
    asyncio.run(store.mark_sent([ids["old-sent"], ids["new-sent"]], "1", now))
    asyncio.run(store.mark_failed([ids["old-failed"]], "CMS 500", (), now))
    asyncio.run(store.mark_retry([ids["old-pending"]], "busy", now + 60))
    asyncio.run(store.add_inbox("+33600000001", "STATUS", now - 100 * day, True))
    asyncio.run(store.add_inbox("+33600000001", "ACK web1", now - day, True))

    removed = asyncio.run(store.prune(now))

    assert removed == {"events": 6, "outbox": 2, "inbox": 1}  # "created" event + 5 old notes
    kinds = [e.kind for e in store.list_events(check.id)]
    assert kinds == ["recent"]
    left = {r[0] for r in storemod_rows(store, "SELECT text FROM outbox")}
    assert left == {"old-pending", "new-sent"}
    assert [r[0] for r in storemod_rows(store, "SELECT text FROM inbox")] == ["ACK web1"]
    assert asyncio.run(store.prune(now)) == {"events": 0, "outbox": 0, "inbox": 0}
    # everything old: the newest event and outbox row still stay, so ids never restart
    assert asyncio.run(store.prune(now + 1_000 * day)) == {"events": 0, "outbox": 0, "inbox": 1}
    assert len(store.list_events(check.id)) == 1
    assert {r[0] for r in storemod_rows(store, "SELECT text FROM outbox")} == {"old-pending", "new-sent"}


def storemod_rows(store: Store, sql: str) -> list[tuple[object, ...]]:
    import sqlite3 as sq

    con = sq.connect(f"file:{store.path}?mode=ro", uri=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_it_commits_a_ping_with_fsync_before_answering(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 200 means the ping is on the disk: the batch that stores it runs with synchronous=FULL
    (the SQL the writer executes, traced), not NORMAL, which a power cut or a card going
    read-only can undo."""
    executed: list[str] = []
    connect = Store._connect_writer

    def traced(self: Store) -> sqlite3.Connection:
        conn = connect(self)
        conn.set_trace_callback(executed.append)
        return conn

    monkeypatch.setattr(Store, "_connect_writer", traced)
    with Store(tmp_path / "db.sqlite3") as store:
        check = store.add_check("web1", "tok" * 8, S, T0)
        executed.clear()
        assert ping(store, check.token, PingKind.SUCCESS, PingMeta(), T0 + 1).result() is not None
    insert = next(i for i, sql in enumerate(executed) if sql.startswith("INSERT INTO pings"))
    settings = [sql for sql in executed[:insert] if sql.startswith("PRAGMA synchronous")]
    assert settings[-1:] == ["PRAGMA synchronous=FULL"]
    assert "COMMIT" in executed[insert:]


def test_a_check_read_from_its_row_has_every_field_and_reads_back_the_same(tmp_path: Path) -> None:
    """check_from_row fills the record without __init__ (the ping path's speed): a field added
    to Check and not to the row mapping would be missing, not defaulted."""
    import dataclasses

    from gateway.store.rows import CHECK_COLUMNS, check_from_row

    with Store(tmp_path / "db.sqlite3") as store:
        made = store.add_check("web1", "t" * 24, Schedule(900, 60, "*/15 * * * *", "Europe/Paris"), 1.0)
        row = store._reader().execute(f"SELECT {CHECK_COLUMNS} FROM checks").fetchone()
        check = check_from_row(row)
        assert set(vars(check)) == {f.name for f in dataclasses.fields(check)}
        assert check == made and check.schedule.tz == "Europe/Paris" and check.status.value == "new"
