"""`mcp-sessions export --to zeroclaw FILE.db`: every session in ZeroClaw's own session store schema, which
ZeroClaw opens as <data_dir>/sessions/sessions.db and `import --from zeroclaw` reads back."""

from __future__ import annotations

import sqlite3
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from .display import Progress, plural
from .models import InvalidArgument

if TYPE_CHECKING:
    from .backend import SessionBackend

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
# Messages per load_page call.
EXPORT_PAGE = 10_000


def rfc3339(value: datetime | None) -> str | None:
    """A time as ZeroClaw writes them (chrono's to_rfc3339): UTC, +00:00, the digits it has."""
    return None if value is None else value.astimezone(UTC).isoformat()


def cmd_export_zeroclaw(store: SessionBackend, target: Path, progress: Progress) -> int:
    """Write every session and message into a new ZeroClaw session store at target; return 0. Only reads that
    a relay serves too, so it runs while a server holds the store."""
    if target.exists():
        raise InvalidArgument(f"FILE must not exist yet (ZeroClaw's store is written whole): {target}")
    started = time.monotonic()
    target.parent.mkdir(parents=True, exist_ok=True)
    sessions = store.list_sessions_with_metadata()
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    conn = sqlite3.connect(partial)
    written = 0
    try:
        conn.executescript(SCHEMA)
        with conn:
            for meta in sorted(sessions, key=lambda m: (m.created_at or datetime.max.replace(tzinfo=UTC), m.key)):
                for offset in range(0, meta.message_count, EXPORT_PAGE):
                    page = store.load_page(meta.key, offset, EXPORT_PAGE)  # type: ignore[attr-defined]
                    at = meta.created_at
                    rows = [(meta.key, m.role, m.content, rfc3339(m.created_at or at)) for m in page.messages]
                    conn.executemany(
                        "INSERT INTO sessions (session_key, role, content, created_at) VALUES (?, ?, ?, ?)", rows
                    )
                    written += len(page.messages)
                    progress.advance(len(page.messages))
                run = store.get_session_state(meta.key)
                created = rfc3339(meta.created_at) or rfc3339(datetime.now(UTC))
                conn.execute(
                    "INSERT INTO session_metadata (session_key, created_at, last_activity, message_count, name,"
                    " state, turn_id, turn_started_at, agent_alias, channel_id, room_id, sender_id)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        meta.key,
                        created,
                        rfc3339(meta.last_activity) or created,
                        meta.message_count,
                        meta.name,
                        run.state if run else "idle",
                        run.turn_id if run else None,
                        rfc3339(run.turn_started_at) if run else None,
                        meta.agent_alias,
                        meta.channel_id,
                        meta.room_id,
                        meta.sender_id,
                    ],
                )
    finally:
        conn.close()
    partial.rename(target)
    progress.close()
    seconds = time.monotonic() - started
    what = f"{plural(written, 'message')} of {plural(len(sessions), 'session')}"
    print(f"wrote {what} to {target} (ZeroClaw's session store) in {seconds:.1f} s", file=sys.stderr)
    return 0
