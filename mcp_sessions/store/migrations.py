"""The schema's history: a migration runner and every mNNN_ function, applied in order when a store opens."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

import duckdb

from .params import rows_param, rows_sql
from .postings import index_messages

Migration = Callable[[duckdb.DuckDBPyConnection], None]
MIGRATIONS: list[Migration] = []
log = logging.getLogger(__name__)


def migration(fn: Migration) -> Migration:
    """Register a migration; registration order is run order. Never edit or reorder a shipped one."""
    MIGRATIONS.append(fn)
    return fn


def applied(conn: duckdb.DuckDBPyConnection, *, create: bool = True) -> list[str]:
    """Names of the migrations already applied to this database (create=False: never writes)."""
    if create:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS _migrations (name VARCHAR PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL)"
        )
    elif not conn.execute("SELECT 1 FROM duckdb_tables() WHERE table_name = '_migrations'").fetchall():
        return []
    return [row[0] for row in conn.execute("SELECT name FROM _migrations ORDER BY applied_at, name").fetchall()]


def pending(conn: duckdb.DuckDBPyConnection, *, create: bool = True) -> list[Migration]:
    """Migrations not yet applied."""
    done = set(applied(conn, create=create))
    return [m for m in MIGRATIONS if m.__name__ not in done]


def migrate(conn: duckdb.DuckDBPyConnection, stop_before: str | None = None) -> list[str]:
    """Apply pending migrations, each in its own transaction with its _migrations row; return their names."""
    ran: list[str] = []
    for fn in pending(conn):
        if fn.__name__ == stop_before:
            break
        conn.execute("BEGIN TRANSACTION")
        try:
            fn(conn)
            conn.execute("INSERT INTO _migrations VALUES (?, ?)", [fn.__name__, datetime.now(UTC)])
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        log.info("applied migration %s", fn.__name__)
        ran.append(fn.__name__)
    return ran


@migration
def m001_sessions_and_messages(conn: duckdb.DuckDBPyConnection) -> None:
    # The trait's data: one row per session (metadata, routing context, run state) and its messages.
    # idx is the 0-based position in the session; created_at is NULL for rows imported without a time.
    # DuckDB's indexes answer equality, not ranges, so two indexed keys stand in for (session_id, idx):
    # pos packs both (one message, and a guard against two messages at one place), page packs the
    # session and idx // 64 (a slice of a session is a few page lookups, whatever the table's size).
    conn.execute("CREATE SEQUENCE session_ids START 1")
    conn.execute("CREATE SEQUENCE message_ids START 1")
    conn.execute(
        """
        CREATE TABLE sessions (
            id BIGINT PRIMARY KEY,
            key VARCHAR NOT NULL UNIQUE,
            name VARCHAR,
            agent_alias VARCHAR,
            channel_id VARCHAR,
            room_id VARCHAR,
            sender_id VARCHAR,
            state VARCHAR,
            turn_id VARCHAR,
            turn_started_at TIMESTAMPTZ,
            created_at TIMESTAMPTZ NOT NULL,
            last_activity TIMESTAMPTZ NOT NULL,
            message_count BIGINT NOT NULL
        )
        """
    )
    conn.execute(
        """
        CREATE TABLE messages (
            id BIGINT PRIMARY KEY,
            session_id BIGINT NOT NULL,
            idx BIGINT NOT NULL,
            pos BIGINT NOT NULL UNIQUE,
            page BIGINT NOT NULL,
            role VARCHAR NOT NULL,
            content VARCHAR NOT NULL,
            created_at TIMESTAMPTZ
        )
        """
    )
    conn.execute("CREATE INDEX messages_page ON messages (page)")


@migration
def m002_search_postings(conn: duckdb.DuckDBPyConnection) -> None:
    # Live full-text search: an inverted index written in each write's own transaction.
    # _postings holds merged postings sorted by term id (zone maps prune by term); _postings_recent
    # takes each write's postings until the next merge; _dead_messages lists ids of messages that
    # are gone while their merged postings are still stored (purged by optimize). messages.dl is the message's
    # term count, for BM25's length normalisation. Messages written before this are indexed here.
    for table in ("_postings", "_postings_recent"):
        conn.execute(
            f"CREATE TABLE {table} (term BIGINT NOT NULL, message_id BIGINT NOT NULL,"
            " session_id BIGINT NOT NULL, tf INTEGER NOT NULL, dl INTEGER NOT NULL)"
        )
    conn.execute("CREATE TABLE _dead_messages (message_id BIGINT NOT NULL)")
    conn.execute("ALTER TABLE messages ADD COLUMN dl INTEGER")
    rows = conn.execute("SELECT id, session_id, content FROM messages ORDER BY id").fetchall()
    lengths = index_messages(conn, rows, table="_postings")
    conn.execute(
        f"UPDATE messages SET dl = l.dl FROM {rows_sql({'id': 'BIGINT', 'dl': 'INTEGER'})} AS l"
        " WHERE messages.id = l.id",
        [rows_param(id=lengths, dl=lengths.values())],
    )


@migration
def m003_imports(conn: duckdb.DuckDBPyConnection) -> None:
    # `mcp-sessions import` must add nothing when a file is imported again, and only the new lines when a
    # runtime has appended to it since. Each row says the first `bytes` bytes (`lines` lines, SHA-256
    # `sha256`) of a file are in session_key; it is written in the transaction that appends those messages.
    # source is the path as given, for people; imported_at lets marks older than the session's
    # (re)creation be ignored.
    conn.execute(
        "CREATE TABLE _imports (session_key VARCHAR NOT NULL, bytes BIGINT NOT NULL, lines BIGINT NOT NULL,"
        " sha256 VARCHAR NOT NULL, source VARCHAR, imported_at TIMESTAMPTZ NOT NULL)"
    )


@migration
def m004_terms_in_messages(conn: duckdb.DuckDBPyConnection) -> None:
    # A write's postings travel in its message row, so an append is one INSERT and not two: terms holds
    # " <term id>:<count> <term id>:<count> " (text, so rewriting a recent message is an in-place update),
    # and is set back to NULL once a merge has moved the postings into _postings as a term-sorted run.
    # _index_state.merged_upto is the boundary: messages with id <= merged_upto have their postings in
    # _postings, later ones in their terms. Every posting written before this is merged here; _postings_recent goes.
    conn.execute("ALTER TABLE messages ADD COLUMN terms VARCHAR")
    conn.execute("INSERT INTO _postings SELECT * FROM _postings_recent ORDER BY term, message_id")
    conn.execute("DROP TABLE _postings_recent")
    # scattered_rows counts postings merged in small runs since the last optimize(): each such run spans every
    # term, so zone maps cannot skip its row groups; past a share of sorted_rows, the merge thread optimizes.
    conn.execute(
        "CREATE TABLE _index_state (merged_upto BIGINT NOT NULL, scattered_rows BIGINT NOT NULL,"
        " sorted_rows BIGINT NOT NULL)"
    )
    conn.execute(
        "INSERT INTO _index_state SELECT coalesce(max(id), 0), 0, (SELECT count(*) FROM _postings) FROM messages"
    )
