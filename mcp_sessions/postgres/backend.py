"""PostgresSessionBackend: every SessionBackend operation over one PostgreSQL database, which servers on many
machines share; the parts it is made of are pool, schema, writes, sessions and search."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path

import psycopg

from ..backend import SessionBackend
from ..errors import StoreReadOnly, StoreUnavailable
from ..models import (
    DEFAULT_MAX_CONTENT_BYTES,
    ChatMessage,
    InvalidArgument,
    MessagePage,
    MessageSearch,
    MessageSearchPage,
    SessionContext,
    SessionMetadata,
    SessionQuery,
    SessionState,
    TimestampedMessage,
)
from ..recall import Candidate, assemble
from ..store.imports import ImportMark, parquet_from_jsonl
from ..terms import Analyzer, term_id
from . import search, sessions, writes
from .bulk import PostgresBulkImport
from .bulk import open_bulk as write_bulk
from .pool import POOL_MAX, Database, connect, db_errors, shown
from .schema import migrate, pending
from .search import neighbours
from .search import search_messages as ranked_messages
from .writes import exact

__all__ = ["PostgresSessionBackend"]

read = db_errors(write=False)
write = db_errors(write=True)


class PostgresSessionBackend(SessionBackend):
    """Sessions, messages and their search terms in PostgreSQL; safe to call from many threads and processes."""

    def __init__(
        self,
        conninfo: str,
        *,
        read_only: bool = False,
        max_content_bytes: int = DEFAULT_MAX_CONTENT_BYTES,
        analyzer: Analyzer | None = None,
        pool_max: int = POOL_MAX,
    ) -> None:
        self.conninfo = conninfo
        self.path = shown(conninfo)
        self.max_content_bytes = max_content_bytes
        self._analyzer = analyzer or Analyzer.shared()
        self._read_only = read_only
        try:
            with connect(conninfo) as conn:
                if read_only:
                    if pending(conn):
                        raise StoreReadOnly(f"{self.path} needs a schema upgrade: open it once without --read-only")
                else:
                    migrate(conn)
        except psycopg.Error as exc:
            raise StoreUnavailable(f"cannot use the database {self.path}: {' '.join(str(exc).split())}") from exc
        self._db = Database(conninfo, read_only=read_only, pool_max=pool_max)
        try:
            self._db.open()
        except psycopg.Error as exc:
            raise StoreUnavailable(f"cannot connect to the database {self.path}: {exc}") from exc

    @property
    def read_only(self) -> bool:
        return self._read_only

    def close(self) -> None:
        """Close the pool's connections; later calls fail."""
        if not self._db.closed:
            self._db.close()

    def __enter__(self) -> PostgresSessionBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Required operations.

    def load(self, session_key: str) -> list[ChatMessage]:
        return [ChatMessage(role=m.role, content=m.content) for m in self.load_page(session_key).messages]

    @write
    def append(self, session_key: str, message: ChatMessage) -> int:
        self.check_message(message)
        indexed = writes.index_text(self._analyzer, message.content)
        with self._db.cursor() as cur:
            return writes.append(cur, session_key, message, indexed)

    @write
    def remove_last(self, session_key: str) -> bool:
        with self._db.transaction() as cur:
            return writes.remove_last(cur, session_key)

    @read
    def list_sessions(self) -> list[str]:
        with self._db.cursor() as cur:
            return sessions.list_keys(cur)

    # Provided operations, in the trait's order.

    def load_with_timestamps(self, session_key: str) -> list[TimestampedMessage]:
        return self.load_page(session_key).messages

    @write
    def update_last(self, session_key: str, message: ChatMessage) -> bool:
        self.check_message(message)
        indexed = writes.index_text(self._analyzer, message.content)
        with self._db.transaction() as cur:
            return writes.update_last(cur, session_key, message, indexed)

    @read
    def list_sessions_with_metadata(
        self, limit: int | None = None, offset: int = 0, agent_alias: str | None = None
    ) -> list[SessionMetadata]:
        with self._db.cursor() as cur:
            return [sessions.metadata(r) for r in sessions.list_rows(cur, limit, offset, agent_alias)]

    @write
    def compact(self, session_key: str) -> int:
        with self._db.transaction() as cur:
            return writes.compact(cur, session_key)

    @write
    def cleanup_stale(self, ttl_hours: int) -> int:
        with self._db.transaction() as cur:
            return writes.cleanup_stale(cur, ttl_hours)

    @read
    def search(self, query: SessionQuery, agent_alias: str | None = None) -> list[SessionMetadata]:
        keyword = (query.keyword or "").strip()
        if not keyword:
            return self.list_sessions_with_metadata(limit=query.limit, agent_alias=agent_alias)
        tids = [term_id(t) for t in self._analyzer.query_terms(keyword)]
        if not tids:
            return []
        # One snapshot: the bounds read and the postings scored must agree (see search_sessions).
        with self._db.snapshot() as cur:
            return [sessions.metadata(r) for r in search.search_sessions(cur, tids, agent_alias, query.limit)]

    @write
    def clear_messages(self, session_key: str) -> int:
        with self._db.transaction() as cur:
            return writes.clear_messages(cur, session_key)

    @write
    def delete_session(self, session_key: str) -> bool:
        with self._db.transaction() as cur:
            return writes.delete_session(cur, session_key)

    def _set(self, session_key: str, values: dict[str, str], params: list[object]) -> sessions.Row:
        with self._db.cursor() as cur:
            return writes.set_columns(cur, session_key, values, params)

    def _row(self, session_key: str) -> sessions.Row | None:
        with self._db.cursor() as cur:
            return sessions.session(cur, session_key)

    @write
    def set_session_name(self, session_key: str, name: str) -> str | None:
        return sessions.field(self._set(session_key, {"name": "%s"}, [name or None]), "name")

    @read
    def get_session_name(self, session_key: str) -> str | None:
        row = self._row(session_key)
        return None if row is None else sessions.field(row, "name")

    @write
    def set_session_agent_alias(self, session_key: str, agent_alias: str) -> str | None:
        row = self._set(session_key, {"agent_alias": "%s"}, [agent_alias or None])
        return sessions.field(row, "agent_alias")

    @read
    def get_session_agent_alias(self, session_key: str) -> str | None:
        row = self._row(session_key)
        return None if row is None else sessions.field(row, "agent_alias")

    @write
    def set_session_context(self, session_key: str, context: SessionContext) -> SessionContext:
        given = context.model_dump(exclude_none=True)
        row = self._set(session_key, dict.fromkeys(given, "%s"), [value or None for value in given.values()])
        return SessionContext(
            channel_id=sessions.field(row, "channel_id"),
            room_id=sessions.field(row, "room_id"),
            sender_id=sessions.field(row, "sender_id"),
        )

    @read
    def get_session_metadata(self, session_key: str) -> SessionMetadata | None:
        row = self._row(session_key)
        return None if row is None else sessions.metadata(row)

    @write
    def set_session_state(self, session_key: str, state: str, turn_id: str | None = None) -> SessionState:
        row = self._set(
            session_key,
            {"state": "%s", "turn_id": "%s", "turn_started_at": "CASE WHEN %s THEN clock_timestamp() END"},
            [state, turn_id or None, state == "running"],
        )
        return sessions.run_state(row)

    @read
    def get_session_state(self, session_key: str) -> SessionState | None:
        row = self._row(session_key)
        return None if row is None else sessions.run_state(row)

    @read
    def list_running_sessions(self) -> list[SessionMetadata]:
        with self._db.cursor() as cur:
            return [sessions.metadata(r) for r in sessions.running(cur)]

    @read
    def list_stuck_sessions(self, threshold_secs: int) -> list[SessionMetadata]:
        with self._db.cursor() as cur:
            return [sessions.metadata(r) for r in sessions.running(cur, threshold_secs)]

    # Beyond the trait.

    @read
    def load_page(self, session_key: str, offset: int | None = None, limit: int | None = None) -> MessagePage:
        with self._db.cursor() as cur:
            return sessions.load_page(cur, session_key, offset, limit)

    @read
    def search_messages_page(self, search: MessageSearch) -> MessageSearchPage:
        terms = self._analyzer.query_terms(search.query)
        if not terms:
            return MessageSearchPage(hits=[])
        stop = None if search.limit is None else search.offset + search.limit
        # One more than the page holds tells whether a next page exists.
        want = None if stop is None else stop + 1
        tids = [term_id(t) for t in terms]
        with self._db.transaction() as cur:
            # Hits and their neighbours from one snapshot.
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            ranked = ranked_messages(cur, tids, search.filters, want)
            page = ranked[search.offset : stop]
            around = neighbours(cur, page, search.context)
        candidates = [
            Candidate(key, idx, role, content, created_at, score, around.get((key, idx), ()))
            for score, idx, role, content, created_at, key in page
        ]
        return assemble(search, candidates, stop is not None and len(ranked) > stop, self._analyzer)

    @write
    def append_many(self, items: Iterable[tuple[str, ChatMessage]], marks: Sequence[ImportMark] = ()) -> int:
        """Append many messages (to any sessions, in order) in one transaction; return how many. marks record
        which import files they come from, so a stopped import resumes where it stopped."""
        batch = list(items)
        for _, message in batch:
            self.check_message(message)
        indexed = [(key, m, writes.index_text(self._analyzer, m.content)) for key, m in batch]
        with self._db.transaction() as cur:
            writes.append_many(cur, indexed, marks)
        return len(batch)

    @read
    def import_marks(self) -> dict[str, list[ImportMark]]:
        """What earlier imports read, by session key (see importers/run.py)."""
        with self._db.cursor() as cur:
            return writes.import_marks(cur)

    def bulk_import(self) -> AbstractContextManager[PostgresBulkImport]:
        """One import transaction, fed message by message (see postgres/bulk.py)."""
        return write_bulk(self)

    def merge(self) -> None:
        """Nothing to do: the postings table is indexed as each write commits (the embedded store merges)."""

    def export_messages(self, path: str | os.PathLike[str], format: str) -> int:
        """Write every message to one file, format 'json' (JSON Lines) or 'parquet', as the embedded store writes
        them: Parquet is the JSON Lines, streamed to a file beside the target and converted by DuckDB."""
        if format not in ("json", "parquet"):
            raise InvalidArgument(f"format must be 'json' or 'parquet', got {format!r}")
        if format == "json":
            return self._export_jsonl(path)
        target = Path(path)
        lines = target.with_name(target.name + ".jsonl.partial")
        try:
            self._export_jsonl(lines)
            return parquet_from_jsonl(lines, target)
        finally:
            lines.unlink(missing_ok=True)

    @read
    def _export_jsonl(self, path: str | os.PathLike[str]) -> int:
        count = 0
        with self._db.transaction() as cur, open(path, "w", encoding="utf-8") as out:
            rows = cur.stream(
                "SELECT s.key, m.idx, m.role, m.content, m.raw,"
                " to_char(m.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), s.name, s.agent_alias"
                " FROM messages AS m JOIN sessions AS s ON s.id = m.session_id ORDER BY m.session_id, m.idx"
            )
            for key, idx, stored_role, stored_content, raw, created_at, name, alias in rows:
                role, content = exact(stored_role, stored_content, raw)
                record = {
                    "session_key": key,
                    "index": idx,
                    "role": role,
                    "content": content,
                    "created_at": created_at,
                    "session_name": name,
                    "agent_alias": alias,
                }
                out.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
                count += 1
        return count

    @read
    def optimize(self) -> None:
        """Vacuum and analyze the tables: searches read the postings index alone once its pages are all-visible."""
        with self._db.cursor() as cur:
            cur.execute("VACUUM (ANALYZE) postings, messages, sessions")

    @read
    def database_bytes(self) -> int:
        """The database's size on the server's disk."""
        with self._db.cursor() as cur:
            row = cur.execute("SELECT pg_database_size(current_database())").fetchone()
            return 0 if row is None else int(row[0])
