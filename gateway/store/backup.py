"""Backups and restores with SQLite's online backup API: a consistent snapshot taken inside one
read transaction, so it is safe while the daemon writes (WAL readers never block the writer)."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

from gateway.store.errors import StoreError
from gateway.store.schema import SCHEMA_VERSION

_HBGW_TABLES = frozenset({"checks", "pings", "events", "outbox", "inbox", "settings"})


@dataclasses.dataclass(frozen=True)
class DatabaseInfo:
    """What a backup or restore copied: schema version, number of checks, size in bytes."""

    path: Path
    schema: int
    checks: int
    size: int


def _uri(path: Path, mode: str) -> str:
    from urllib.parse import quote

    return f"file:{quote(str(path.absolute()))}?mode={mode}"


def _inspect(conn: sqlite3.Connection, path: Path, what: str) -> DatabaseInfo:
    """Raise StoreError unless ``conn`` holds an intact hbgw database of a schema we know."""
    try:
        ok = conn.execute("PRAGMA quick_check").fetchone()[0]
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as e:
        raise StoreError(f"{what} is not an hbgw database: {e}") from None
    if ok != "ok":
        raise StoreError(f"{what} is damaged (integrity check: {ok})")
    missing = _HBGW_TABLES - tables
    if version < 1 or missing:
        raise StoreError(
            f"{what} is not an hbgw database (schema v{version}, missing tables: {', '.join(sorted(missing)) or '-'})"
        )
    if version > SCHEMA_VERSION:
        raise StoreError(f"{what} has schema v{version}, newer than this hbgw (v{SCHEMA_VERSION}): upgrade hbgw first")
    checks = int(conn.execute("SELECT count(*) FROM checks").fetchone()[0])
    return DatabaseInfo(path, version, checks, path.stat().st_size if path.exists() else 0)


def _copy(src_uri: str, dest: Path, what: str) -> DatabaseInfo:
    """Copy the database at ``src_uri`` into the new file ``dest`` (mode 0600, single file:
    journal_mode=DELETE), check it and fsync it. Removes ``dest`` again on any failure."""
    import os

    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    try:
        src = sqlite3.connect(src_uri, uri=True, timeout=10)
        try:
            dst = sqlite3.connect(dest, isolation_level=None)
            try:
                src.backup(dst)
                dst.execute("PRAGMA journal_mode=DELETE")
                info = _inspect(dst, dest, what)
            finally:
                dst.close()
        finally:
            src.close()
        fd = os.open(dest, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return dataclasses.replace(info, size=dest.stat().st_size)
    except sqlite3.DatabaseError as e:
        dest.unlink(missing_ok=True)
        raise StoreError(f"{what} is not an hbgw database: {e}") from None
    except sqlite3.Error as e:
        dest.unlink(missing_ok=True)
        raise StoreError(f"cannot read {what}: {e}") from None
    except BaseException:
        dest.unlink(missing_ok=True)
        raise


def _fsync_dir(path: Path) -> None:
    import os

    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def backup_database(db_path: Path, dest: Path) -> DatabaseInfo:
    """Write a consistent copy of the database at ``db_path`` to ``dest`` (replaced atomically,
    mode 0600: it holds tokens and the admin password hash). Safe while the daemon runs.
    Raises StoreError."""
    import os

    if not db_path.is_file():
        raise StoreError(f"no database at {db_path}")
    dest = Path(dest)
    if dest.is_dir():
        raise StoreError(f"{dest} is a directory: give the backup file's name")
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        # mode=rw, not ro: a read-only connection would leave -wal/-shm files owned by whoever
        # ran the backup (root) in the data dir, which the service user then cannot open.
        info = _copy(_uri(db_path, "rw"), tmp, str(db_path))
        os.replace(tmp, dest)
        _fsync_dir(dest.parent)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise StoreError(f"cannot write backup {dest}: {e.strerror or e}") from None
    return dataclasses.replace(info, path=dest)


def restore_database(source: Path, db_path: Path) -> tuple[DatabaseInfo, Path | None]:
    """Replace the database at ``db_path`` with the backup ``source``, after checking that it is
    an intact hbgw database of a schema this version knows (older ones are migrated at the next
    start). The old database is kept as ``<name>.bak``; returns (info, that path or None).
    The daemon must not be running (the caller checks). Raises StoreError."""
    import os

    source = Path(source)
    if not source.is_file():
        raise StoreError(f"no backup file at {source}")
    db_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = db_path.with_name(db_path.name + ".restore-tmp")
    tmp.unlink(missing_ok=True)
    try:
        info = _copy(_uri(source, "ro"), tmp, str(source))
    except OSError as e:
        raise StoreError(f"cannot restore into {db_path.parent}: {e.strerror or e}") from None
    bak: Path | None = None
    try:
        # The restored file belongs to whoever owns the data (the service user), not to root.
        owner = (db_path if db_path.exists() else db_path.parent).stat()
        if os.geteuid() == 0:
            os.chown(tmp, owner.st_uid, owner.st_gid)
        if db_path.exists():
            conn = sqlite3.connect(_uri(db_path, "rw"), uri=True, timeout=10)
            try:  # fold the write-ahead log into the old file, so the .bak is complete alone
                busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            finally:
                conn.close()
            wal = db_path.with_name(db_path.name + "-wal")
            if busy or (wal.exists() and wal.stat().st_size > 0):
                raise StoreError(f"{db_path} is in use (is the gateway running?)")
            bak = db_path.with_name(db_path.name + ".bak")
            os.replace(db_path, bak)
            for suffix in ("-wal", "-shm"):
                db_path.with_name(db_path.name + suffix).unlink(missing_ok=True)
        os.replace(tmp, db_path)
        _fsync_dir(db_path.parent)
    except sqlite3.Error as e:
        tmp.unlink(missing_ok=True)
        raise StoreError(f"cannot restore into {db_path}: {e}") from None
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise StoreError(f"cannot restore into {db_path}: {e.strerror or e}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dataclasses.replace(info, path=db_path), bak
