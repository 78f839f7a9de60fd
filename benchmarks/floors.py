"""What one durable write and one point read cost each engine by itself, in-process: the floor under a tool call.

Over the wire an append pays the MCP round trip (the same on both servers: compare get_session_metadata) plus
the engine's write. If the engine's bare one-row write is already close to the SQLite server's whole call,
no per-call work of ours can bring an append under a ratio of 1.5 while that write is in the call's path.
"""

from __future__ import annotations

import sqlite3
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import duckdb

from mcp_sessions import pandas_absent  # noqa: F401  (as the server runs DuckDB: see that module)
from mcp_sessions.models import ChatMessage
from mcp_sessions.store.duckdb import DuckDBSessionBackend

CALLS = 300
# Idle time between calls, as a client leaves between tool calls (a tight loop keeps caches and threads warm).
GAP_S = 0.002
TEXT = "the pipeline timed out again while retrying the database migration"


def _p50_ms(write: Callable[[int], object]) -> float:
    times = []
    for i in range(CALLS):
        time.sleep(GAP_S)
        started = time.perf_counter()
        write(i)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def _row_writes(db: duckdb.DuckDBPyConnection | sqlite3.Connection) -> float:
    """p50 of one row into db's table t per transaction; closes db."""
    try:
        return _p50_ms(
            lambda i: (db.execute("BEGIN"), db.execute("INSERT INTO t VALUES (?, ?)", [i, TEXT]), db.execute("COMMIT"))
        )
    finally:
        db.close()


def duckdb_row(folder: Path) -> float:
    """One row of (BIGINT, VARCHAR) into a table without indexes, in its own transaction."""
    db = duckdb.connect(str(folder / "floor.duckdb"))
    db.execute("CREATE TABLE t (id BIGINT, text VARCHAR)")
    return _row_writes(db)


def duckdb_point_read(folder: Path) -> float:
    """One row by its primary key from a 100,000-row table: the least a read of the store costs."""
    db = duckdb.connect(str(folder / "read.duckdb"))
    db.execute("CREATE TABLE t (id BIGINT PRIMARY KEY, text VARCHAR)")
    db.execute("INSERT INTO t SELECT i, 'row ' || i FROM range(100000) r(i)")
    try:
        return _p50_ms(lambda i: db.execute(f"SELECT text FROM t WHERE id = {i * 7 % 100000}").fetchall())
    finally:
        db.close()


def sqlite_point_read(folder: Path) -> float:
    db = sqlite3.connect(str(folder / "read.db"), isolation_level=None)
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, text TEXT)")
    with db:  # one transaction
        db.execute("BEGIN")
        db.executemany("INSERT INTO t VALUES (?, ?)", ((i, f"row {i}") for i in range(100000)))
    try:
        return _p50_ms(lambda i: db.execute("SELECT text FROM t WHERE id = ?", [i * 7 % 100000]).fetchall())
    finally:
        db.close()


def sqlite_row(folder: Path, synchronous: str) -> float:
    db = sqlite3.connect(str(folder / f"floor-{synchronous}.db"), isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute(f"PRAGMA synchronous = {synchronous}")
    db.execute("CREATE TABLE t (id INTEGER, text TEXT)")
    return _row_writes(db)


def our_append(folder: Path) -> float:
    """Our append in-process (a known session, live index, session row): what the tool's thread spends."""
    store = DuckDBSessionBackend(str(folder / "append.duckdb"))
    message = ChatMessage(role="user", content=TEXT)
    try:
        for k in range(5):
            store.append(f"s{k}", message)
        return _p50_ms(lambda i: store.append(f"s{i % 5}", message))
    finally:
        store.close()


def measure(folder: Path) -> dict[str, float]:
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*"):
        old.unlink()
    return {
        "duckdb_row": duckdb_row(folder),
        "sqlite_normal_row": sqlite_row(folder, "NORMAL"),
        "sqlite_full_row": sqlite_row(folder, "FULL"),
        "our_append": our_append(folder),
        "duckdb_read": duckdb_point_read(folder),
        "sqlite_read": sqlite_point_read(folder),
    }


def table(floors: dict[str, float]) -> str:
    rows = [
        ("DuckDB: one-row INSERT + COMMIT, no index", floors["duckdb_row"]),
        ("our append in-process (one message to a known session, indexed)", floors["our_append"]),
        ("SQLite WAL, synchronous NORMAL: one-row INSERT + COMMIT", floors["sqlite_normal_row"]),
        ("SQLite WAL, synchronous FULL: one-row INSERT + COMMIT", floors["sqlite_full_row"]),
        ("DuckDB: one row by primary key of 100,000", floors["duckdb_read"]),
        ("SQLite: one row by primary key of 100,000", floors["sqlite_read"]),
    ]
    lines = ["| engine floor, in-process, same run | p50 ms |", "|---|---:|"]
    lines += [f"| {label} | {value:.3f} |" for label, value in rows]
    return "\n".join(lines)
