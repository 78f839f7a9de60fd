"""The baseline: the benchmarked operations on plain SQLite with an external-content FTS5 index kept by triggers."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable
from datetime import UTC, datetime

from mcp_sessions.backend import slice_bounds
from mcp_sessions.models import (
    SEARCH_MESSAGES_LIMIT_DEFAULT,
    ChatMessage,
    MessageHit,
    MessagePage,
    SessionMetadata,
    SessionQuery,
    TimestampedMessage,
)

SNIPPET_CHARS = 300

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    last_activity TEXT NOT NULL,
    message_count INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS sessions_last_activity ON sessions (last_activity);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    session_id INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (session_id, idx)
);
CREATE VIRTUAL TABLE IF NOT EXISTS messages_fts USING fts5(
    content, content='messages', content_rowid='id', tokenize='porter unicode61 remove_diacritics 2'
);
CREATE TRIGGER IF NOT EXISTS messages_ai AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts (rowid, content) VALUES (new.id, new.content);
END;
CREATE TRIGGER IF NOT EXISTS messages_ad AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, content) VALUES ('delete', old.id, old.content);
END;
CREATE TRIGGER IF NOT EXISTS messages_au AFTER UPDATE OF content ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, content) VALUES ('delete', old.id, old.content);
    INSERT INTO messages_fts (rowid, content) VALUES (new.id, new.content);
END;
"""

# FTS5 "words" are runs of letters and digits (unicode61); anything else would be query syntax.
_WORD = re.compile(r"[^\W_]+")


def _now() -> str:
    return datetime.now(UTC).isoformat()


def fts_query(text: str) -> str | None:
    """Words of text OR'ed, each quoted so it is searched as a word, never run as FTS5 syntax."""
    words = dict.fromkeys(_WORD.findall(text))
    return " OR ".join(f'"{word}"' for word in words) or None


def _metadata(row: tuple[str, str, str, int]) -> SessionMetadata:
    key, created_at, last_activity, count = row
    return SessionMetadata(
        key=key,
        created_at=datetime.fromisoformat(created_at),
        last_activity=datetime.fromisoformat(last_activity),
        message_count=count,
    )


class SQLiteFTSBackend:
    """A session store on SQLite FTS5 with the method names and results of DuckDBSessionBackend."""

    def __init__(self, path: str = ":memory:", synchronous: str = "NORMAL") -> None:
        # Autocommit mode: each method opens its own transaction where it writes more than one row.
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode = WAL")
        # NORMAL: a commit survives a crash of the process, not always a power loss; FULL syncs every commit.
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be NORMAL or FULL, got {synchronous!r}")
        self._conn.execute(f"PRAGMA synchronous = {synchronous}")
        self._conn.executescript(_SCHEMA)

    def close(self) -> None:
        """Checkpoint the WAL and close."""
        self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._conn.close()

    def _session(self, session_key: str) -> tuple[int, int] | None:
        row = self._conn.execute("SELECT id, message_count FROM sessions WHERE key = ?", (session_key,)).fetchone()
        return None if row is None else (row[0], row[1])

    def append(self, session_key: str, message: ChatMessage) -> int:
        """Add one message at the end of the session, creating the session; returns the new message count."""
        now = _now()
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            session_id, count = conn.execute(
                "INSERT INTO sessions (key, created_at, last_activity, message_count) VALUES (?, ?, ?, 1)"
                " ON CONFLICT (key) DO UPDATE SET message_count = message_count + 1,"
                " last_activity = excluded.last_activity"
                " RETURNING id, message_count",
                (session_key, now, now),
            ).fetchone()
            conn.execute(
                "INSERT INTO messages (session_id, idx, role, content, created_at) VALUES (?, ?, ?, ?, ?)",
                (session_id, count - 1, message.role, message.content, now),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return count

    def append_many(self, items: Iterable[tuple[str, ChatMessage]]) -> int:
        """Bulk import in one transaction; returns how many messages were added."""
        conn = self._conn
        now = _now()
        conn.execute("BEGIN IMMEDIATE")
        try:
            known: dict[str, list[int]] = {
                key: [sid, count] for sid, key, count in conn.execute("SELECT id, key, message_count FROM sessions")
            }
            next_id = (conn.execute("SELECT max(id) FROM sessions").fetchone()[0] or 0) + 1
            touched: dict[str, list[int]] = {}
            added = 0

            def rows() -> Iterable[tuple[int, int, str, str, str]]:
                nonlocal next_id, added
                for key, message in items:
                    state = touched.get(key)
                    if state is None:
                        state = known.get(key)
                        if state is None:
                            state = [next_id, 0]
                            next_id += 1
                        touched[key] = state
                    yield state[0], state[1], message.role, message.content, now
                    state[1] += 1
                    added += 1

            conn.executemany(
                "INSERT INTO messages (session_id, idx, role, content, created_at) VALUES (?, ?, ?, ?, ?)", rows()
            )
            conn.executemany(
                "INSERT INTO sessions (id, key, created_at, last_activity, message_count) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (key) DO UPDATE SET message_count = excluded.message_count,"
                " last_activity = excluded.last_activity",
                ((sid, key, now, now, count) for key, (sid, count) in touched.items()),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return added

    def optimize(self) -> None:
        """Merge the FTS5 index b-trees into one (FTS5's 'optimize' command)."""
        self._conn.execute("INSERT INTO messages_fts (messages_fts) VALUES ('optimize')")

    def update_last(self, session_key: str, message: ChatMessage) -> bool:
        """Replace the last message; False if the session is empty or missing."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            session = self._session(session_key)
            if session is None or session[1] == 0:
                conn.execute("COMMIT")
                return False
            session_id, count = session
            now = _now()
            conn.execute(
                "UPDATE messages SET role = ?, content = ?, created_at = ? WHERE session_id = ? AND idx = ?",
                (message.role, message.content, now, session_id, count - 1),
            )
            conn.execute("UPDATE sessions SET last_activity = ? WHERE id = ?", (now, session_id))
            conn.execute("COMMIT")
            return True
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def remove_last(self, session_key: str) -> bool:
        """Remove the last message; False if the session is empty or missing."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            session = self._session(session_key)
            if session is None or session[1] == 0:
                conn.execute("COMMIT")
                return False
            session_id, count = session
            conn.execute("DELETE FROM messages WHERE session_id = ? AND idx = ?", (session_id, count - 1))
            conn.execute(
                "UPDATE sessions SET message_count = ?, last_activity = ? WHERE id = ?", (count - 1, _now(), session_id)
            )
            conn.execute("COMMIT")
            return True
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def load_page(self, session_key: str, offset: int | None = None, limit: int | None = None) -> MessagePage:
        """A Python-style slice of the session's messages and its total count."""
        session = self._session(session_key)
        if session is None:
            return MessagePage(messages=[], total=0)
        session_id, total = session
        start, stop = slice_bounds(total, offset, limit)
        rows = self._conn.execute(
            "SELECT role, content, created_at, idx FROM messages WHERE session_id = ? AND idx >= ? AND idx < ?"
            " ORDER BY idx",
            (session_id, start, stop),
        )
        return MessagePage(
            messages=[
                TimestampedMessage(role=role, content=content, created_at=datetime.fromisoformat(at), index=idx)
                for role, content, at, idx in rows
            ],
            total=total,
        )

    def get_session_metadata(self, session_key: str) -> SessionMetadata | None:
        row = self._conn.execute(
            "SELECT key, created_at, last_activity, message_count FROM sessions WHERE key = ?", (session_key,)
        ).fetchone()
        return None if row is None else _metadata(row)

    def list_sessions_with_metadata(self, limit: int | None = None, offset: int = 0) -> list[SessionMetadata]:
        """Sessions, most recent activity first, paged."""
        rows = self._conn.execute(
            "SELECT key, created_at, last_activity, message_count FROM sessions"
            " ORDER BY last_activity DESC LIMIT ? OFFSET ?",
            (-1 if limit is None else limit, offset),
        )
        return [_metadata(row) for row in rows]

    def search(self, query: SessionQuery) -> list[SessionMetadata]:
        """Sessions ranked by their best message's bm25, ties to the more recent; empty keyword lists recent ones."""
        match = fts_query(query.keyword or "")
        if not (query.keyword or "").strip():
            rows = self._conn.execute(
                "SELECT key, created_at, last_activity, message_count FROM sessions"
                " ORDER BY last_activity DESC LIMIT ?",
                (query.limit,),
            )
            return [_metadata(row) for row in rows]
        if match is None:
            return []
        # bm25() is lower for better matches and is not allowed inside an aggregate: rank the hits first.
        rows = self._conn.execute(
            "WITH hits AS MATERIALIZED ("
            "  SELECT rowid AS id, bm25(messages_fts) AS score FROM messages_fts WHERE messages_fts MATCH ?"
            "), best AS ("
            "  SELECT m.session_id, min(hits.score) AS score FROM hits JOIN messages m ON m.id = hits.id"
            "  GROUP BY m.session_id"
            ") SELECT s.key, s.created_at, s.last_activity, s.message_count"
            " FROM best JOIN sessions s ON s.id = best.session_id"
            " ORDER BY best.score, s.last_activity DESC LIMIT ?",
            (match, query.limit),
        )
        return [_metadata(row) for row in rows]

    def search_messages(
        self, query: str, limit: int | None = SEARCH_MESSAGES_LIMIT_DEFAULT, session_key: str | None = None
    ) -> list[MessageHit]:
        """Messages matching any word of query, best bm25 first, with a snippet around a matched word."""
        match = fts_query(query)
        if match is None:
            return []
        where, params = "messages_fts MATCH ?", [match]
        if session_key is not None:
            where += " AND m.session_id = (SELECT id FROM sessions WHERE key = ?)"
            params.append(session_key)
        rows = self._conn.execute(
            "SELECT s.key, m.idx, m.role, snippet(messages_fts, 0, '', '', '…', 40), m.created_at, bm25(messages_fts)"
            " FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid JOIN sessions s ON s.id = m.session_id"
            f" WHERE {where} ORDER BY bm25(messages_fts) LIMIT ?",
            (*params, -1 if limit is None else limit),
        )
        return [
            MessageHit(
                session_key=key,
                index=idx,
                role=role,
                snippet=snippet[:SNIPPET_CHARS],
                created_at=datetime.fromisoformat(at),
                score=-score,
            )
            for key, idx, role, snippet, at, score in rows
        ]
