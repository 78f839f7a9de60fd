"""`mcp-sessions export --to zeroclaw FILE.db`: every session in ZeroClaw's own session store schema, which
ZeroClaw opens as <data_dir>/sessions/sessions.db and `import --from zeroclaw` reads back."""

from __future__ import annotations

import itertools
import sqlite3
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from .display import Progress, plural
from .models import InvalidArgument

if TYPE_CHECKING:
    from .store.duckdb import DuckDBSessionBackend

# ZeroClaw's tables as its SqliteSessionBackend creates them, with the session_metadata columns it added since.
SCHEMA = """
PRAGMA journal_mode = WAL;
CREATE TABLE sessions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session_key TEXT NOT NULL,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX idx_sessions_key ON sessions(session_key);
CREATE INDEX idx_sessions_key_id ON sessions(session_key, id);
CREATE TABLE session_metadata (
    session_key TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    last_activity TEXT NOT NULL,
    message_count INTEGER NOT NULL DEFAULT 0,
    name TEXT,
    state TEXT NOT NULL DEFAULT 'idle',
    turn_id TEXT,
    turn_started_at TEXT,
    agent_alias TEXT,
    channel_id TEXT,
    room_id TEXT,
    sender_id TEXT
);
CREATE INDEX idx_session_metadata_agent_alias ON session_metadata(agent_alias);
CREATE INDEX idx_session_metadata_channel_id ON session_metadata(channel_id);
CREATE INDEX idx_session_metadata_room_id ON session_metadata(room_id);
CREATE INDEX idx_session_metadata_sender_id ON session_metadata(sender_id);
CREATE TABLE jsonl_import_receipts (
    source_name TEXT PRIMARY KEY,
    session_key TEXT NOT NULL,
    source_hash TEXT NOT NULL,
    source_len INTEGER NOT NULL,
    imported_at TEXT NOT NULL
);
CREATE VIRTUAL TABLE sessions_fts USING fts5(session_key, content, content=sessions, content_rowid=id);
CREATE TRIGGER sessions_ai AFTER INSERT ON sessions BEGIN
    INSERT INTO sessions_fts(rowid, session_key, content) VALUES (new.id, new.session_key, new.content);
END;
CREATE TRIGGER sessions_ad AFTER DELETE ON sessions BEGIN
    INSERT INTO sessions_fts(sessions_fts, rowid, session_key, content)
    VALUES ('delete', old.id, old.session_key, old.content);
END;
CREATE TRIGGER sessions_au AFTER UPDATE ON sessions BEGIN
    INSERT INTO sessions_fts(sessions_fts, rowid, session_key, content)
    VALUES ('delete', old.id, old.session_key, old.content);
    INSERT INTO sessions_fts(rowid, session_key, content) VALUES (new.id, new.session_key, new.content);
END;
"""
_BATCH = 10_000


def rfc3339(iso: str | None) -> str | None:
    """Our ISO text as ZeroClaw writes times (chrono's to_rfc3339: UTC, +00:00, the digits it has)."""
    if iso is None:
        return None
    return datetime.fromisoformat(iso).isoformat()


def cmd_export_zeroclaw(store: DuckDBSessionBackend, target: Path, progress: Progress) -> int:
    """Write every session and message into a new ZeroClaw session store at target; return 0."""
    if target.exists():
        raise InvalidArgument(f"FILE must not exist yet (ZeroClaw's store is written whole): {target}")
    started = time.monotonic()
    target.parent.mkdir(parents=True, exist_ok=True)
    sessions = store.stored_sessions()
    summaries = {m.key: m for m in store.list_sessions_with_metadata()}
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    conn = sqlite3.connect(partial)
    try:
        conn.executescript(SCHEMA)
        written = 0
        messages = store.stored_messages()
        with conn:
            while batch := list(itertools.islice(messages, _BATCH)):
                conn.executemany(
                    "INSERT INTO sessions (session_key, role, content, created_at) VALUES (?, ?, ?, ?)",
                    [(key, m.role, m.content, rfc3339(m.created_at)) for key, m in batch],
                )
                written += len(batch)
                progress.advance(len(batch))
            rows = []
            for session in sessions:
                summary = summaries.get(session.key)
                created = rfc3339(session.created_at) or datetime.now(UTC).isoformat()
                last = rfc3339(summary.last_activity.isoformat()) if summary and summary.last_activity else created
                rows.append(
                    (
                        session.key,
                        created,
                        last,
                        summary.message_count if summary else 0,
                        session.name,
                        session.state or "idle",
                        session.turn_id,
                        rfc3339(session.turn_started_at),
                        session.agent_alias,
                        session.channel_id,
                        session.room_id,
                        session.sender_id,
                    )
                )
            conn.executemany(
                "INSERT INTO session_metadata (session_key, created_at, last_activity, message_count, name, state,"
                " turn_id, turn_started_at, agent_alias, channel_id, room_id, sender_id)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
    finally:
        conn.close()
    partial.rename(target)
    progress.close()
    seconds = time.monotonic() - started
    what = f"{plural(written, 'message')} of {plural(len(sessions), 'session')}"
    print(f"wrote {what} to {target} (ZeroClaw's session store) in {seconds:.1f} s", file=sys.stderr)
    return 0
