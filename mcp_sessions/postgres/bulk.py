"""Imports into PostgreSQL: the importers' bulk interface (see store/bulk.py) over append_many, with each
message's own time and the source's session metadata."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import psycopg

from ..errors import StoreFailure
from ..imported import ImportedMessage, ImportedSession
from ..models import ChatMessage
from ..store.imports import ImportMark
from . import writes
from .pool import Cursor

if TYPE_CHECKING:
    from .backend import PostgresSessionBackend


class PostgresBulkImport:
    """Messages and sessions of one import transaction, written when it finishes."""

    def __init__(self, backend: PostgresSessionBackend, cur: Cursor) -> None:
        self.backend = backend
        self.cur = cur
        self.announced: dict[str, ImportedSession] = {}
        self.pending: list[tuple[str, ImportedMessage]] = []
        self.marks: list[ImportMark] = []
        self.added = 0

    def session(self, session: ImportedSession) -> None:
        self.announced[session.key] = session

    def add(self, key: str, message: ImportedMessage) -> None:
        self.pending.append((key, message))

    def mark(self, mark: ImportMark) -> None:
        self.marks.append(mark)

    def finish(self) -> int:
        """Append the messages (their own times), then set each touched session's times and metadata."""
        cur, analyzer = self.cur, self.backend._analyzer
        keys = sorted({key for key, _ in self.pending} | set(self.announced))
        before = dict(cur.execute("SELECT key, last_activity FROM sessions WHERE key = ANY(%s)", [keys]).fetchall())
        batch = [
            (key, ChatMessage(role=m.role, content=m.content), writes.index_text(analyzer, m.content))
            for key, m in self.pending
        ]
        if batch:
            writes.append_many(cur, batch, [], times=[m.created_at for _, m in self.pending])
        now = datetime.now(UTC).isoformat()
        first: dict[str, str] = {}
        last: dict[str, str] = {}
        for key, message in self.pending:
            first[key] = min(first.get(key, message.created_at), message.created_at)
            last[key] = max(last.get(key, message.created_at), message.created_at)
        for key in keys:
            source = self.announced.get(key) or ImportedSession(key)
            given = source.metadata()
            new = key not in before
            known = [t for t in (source.created_at, first.get(key)) if t is not None]
            # Not after now, however the runtime's clock ran: marks older than the session do not count.
            created = min(min(known), now) if known else None
            newest = last.get(key) or created
            if key not in first:  # metadata alone: the session exists, or comes into being now
                cur.execute(
                    "INSERT INTO sessions (key, created_at, last_activity, message_count) VALUES (%s, %s, %s, 0)"
                    " ON CONFLICT (key) DO NOTHING",
                    [key, created or now, newest or now],
                )
            sets = [f"{field} = %s" for field in given]
            params: list[object] = list(given.values())
            if new and created is not None:
                sets += ["created_at = %s", "last_activity = %s"]
                params += [created, newest]
            elif not new and newest is not None:
                # An old session keeps its creation; its last activity only moves forward.
                sets.append("last_activity = greatest(%s::timestamptz, %s::timestamptz)")
                params += [before[key], newest]
            if sets:
                cur.execute(f"UPDATE sessions SET {', '.join(sets)} WHERE key = %s", [*params, key])
        writes.record_imports(cur, self.marks)
        self.added = len(batch)
        return self.added


@contextmanager
def open_bulk(backend: PostgresSessionBackend) -> Iterator[PostgresBulkImport]:
    """One import transaction: all of what was fed commits, or none of it; PostgreSQL's errors as StoreFailure."""
    try:
        with backend._db.transaction() as cur:
            bulk = PostgresBulkImport(backend, cur)
            yield bulk
            bulk.finish()
    except psycopg.Error as exc:
        raise StoreFailure(f"the import's transaction failed, nothing of it was written: {exc}") from exc
