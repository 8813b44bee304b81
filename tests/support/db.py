"""Read a gateway's database the way an outsider would: read-only, while the daemon runs."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any


def query(data_dir: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(f"file:{data_dir / 'hbgw.sqlite3'}?mode=ro", uri=True)
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


def pings_of(data_dir: Path, name: str) -> list[tuple[Any, ...]]:
    """(kind, exit_status, source, remote_addr, method, user_agent, body) per ping, oldest first."""
    return query(
        data_dir,
        "SELECT kind, exit_status, source, remote_addr, method, user_agent, body FROM pings"
        " JOIN checks ON checks.id = pings.check_id WHERE checks.name = ? ORDER BY pings.id",
        (name,),
    )
