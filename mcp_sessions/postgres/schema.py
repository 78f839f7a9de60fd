"""The PostgreSQL schema's history: a migration runner and every mNNN_ function, applied when a store opens.

Servers on many machines may open one database at once: the runner holds an advisory lock while it reads what
is applied and applies the rest, so exactly one of them migrates and the others then find nothing pending."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import psycopg

Conn = psycopg.Connection[Any]
Migration = Callable[[Conn], None]
MIGRATIONS: list[Migration] = []
log = logging.getLogger(__name__)

# The advisory lock's key: any constant that other applications sharing the database are unlikely to use.
MIGRATION_LOCK = 0x6D63_7073_6573_7301  # "mcpsess\x01"
# Corpus statistics are kept in this many rows, a session's in row (session id % SHARDS): appends to different
# sessions rarely wait for one another's row, and a search sums them all.
SHARDS = 64


def migration(fn: Migration) -> Migration:
    """Register a migration; registration order is run order. Never edit or reorder a shipped one."""
    MIGRATIONS.append(fn)
    return fn


def applied(conn: Conn) -> list[str]:
    """Names of the migrations already applied (none, without writing, when there is no _migrations table)."""
    if conn.execute("SELECT to_regclass('_migrations')").fetchone() == (None,):
        return []
    return [row[0] for row in conn.execute("SELECT name FROM _migrations ORDER BY applied_at, name").fetchall()]


def pending(conn: Conn) -> list[Migration]:
    done = set(applied(conn))
    return [m for m in MIGRATIONS if m.__name__ not in done]


def migrate(conn: Conn, stop_before: str | None = None) -> list[str]:
    """Apply pending migrations under the advisory lock, each in its own transaction with its _migrations row;
    return their names. conn is in autocommit."""
    conn.execute("SELECT pg_advisory_lock(%s)", [MIGRATION_LOCK])
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL)")
        ran: list[str] = []
        for fn in pending(conn):
            if fn.__name__ == stop_before:
                break
            with conn.transaction():
                fn(conn)
                conn.execute("INSERT INTO _migrations VALUES (%s, clock_timestamp())", [fn.__name__])
            log.info("applied migration %s", fn.__name__)
            ran.append(fn.__name__)
        return ran
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", [MIGRATION_LOCK])


@migration
def m001_sessions_and_messages(conn: Conn) -> None:
    # The trait's data: one row per session (metadata, routing context, run state) and its messages. A
    # session's row is the lock every change to its messages takes first, so message_count and the idx of
    # its messages (0-based, gapless) agree whatever number of servers write at once.
    conn.execute(
        """
        CREATE TABLE sessions (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            key TEXT NOT NULL UNIQUE,
            name TEXT,
            agent_alias TEXT,
            channel_id TEXT,
            room_id TEXT,
            sender_id TEXT,
            state TEXT,
            turn_id TEXT,
            turn_started_at TIMESTAMPTZ,
            created_at TIMESTAMPTZ NOT NULL,
            last_activity TIMESTAMPTZ NOT NULL,
            message_count INTEGER NOT NULL DEFAULT 0
        )"""
    )
    conn.execute("CREATE INDEX sessions_by_activity ON sessions (last_activity DESC, id DESC)")
    conn.execute("CREATE INDEX sessions_by_agent ON sessions (agent_alias, last_activity DESC, id DESC)")
    conn.execute("CREATE INDEX sessions_running ON sessions (turn_started_at, id) WHERE state = 'running'")
    # A message's words as the project's analyzer finds them (terms.py), for BM25: terms holds each distinct
    # term's hashed id (terms.term_id), tfs its count at the same place, dl the message's term total. Hashed ids
    # have no length limit (a text[] element over 2,712 bytes cannot be indexed) and compare as integers.
    conn.execute(
        """
        CREATE TABLE messages (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            session_id BIGINT NOT NULL REFERENCES sessions (id),
            idx INTEGER NOT NULL,
            role TEXT NOT NULL,
            content TEXT NOT NULL,
            -- TEXT cannot hold NUL: when role or content does, role and content hold it as U+FFFD and raw
            -- holds both exactly (JSON of [role, content] in UTF-8); NULL otherwise.
            raw BYTEA,
            created_at TIMESTAMPTZ,
            dl INTEGER NOT NULL,
            terms BIGINT[] NOT NULL,
            tfs INTEGER[] NOT NULL,
            UNIQUE (session_id, idx)
        )"""
    )
    # fastupdate: an append adds its terms to the GIN's pending list rather than to every term's posting tree.
    conn.execute("CREATE INDEX messages_terms ON messages USING gin (terms) WITH (fastupdate = on)")
    # BM25's corpus statistics (messages, their term total), kept in the writes' own transactions.
    conn.execute("CREATE TABLE _corpus (shard INTEGER PRIMARY KEY, docs BIGINT NOT NULL, terms BIGINT NOT NULL)")
    conn.execute("INSERT INTO _corpus SELECT s, 0, 0 FROM generate_series(0, %s) AS s", [SHARDS - 1])


@migration
def m002_imports(conn: Conn) -> None:
    # What imports read, per session and file prefix (see store/imports.py's ImportMark): a stopped or repeated
    # import adds only what it has not added yet.
    conn.execute(
        """
        CREATE TABLE _imports (
            session_key TEXT NOT NULL,
            bytes BIGINT NOT NULL,
            lines BIGINT NOT NULL,
            sha256 TEXT NOT NULL,
            source TEXT,
            imported_at TIMESTAMPTZ NOT NULL
        )"""
    )
    conn.execute("CREATE INDEX imports_by_session ON _imports (session_key, bytes)")
