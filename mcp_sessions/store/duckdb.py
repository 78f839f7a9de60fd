"""DuckDBSessionBackend: every SessionBackend operation over an embedded DuckDB file, one transaction each;
the parts it is made of are connection, writes, live_index, search, pages, session_view, tails and imports."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from datetime import timedelta

from ..backend import SessionBackend
from ..errors import StoreReadOnly
from ..models import (
    DEFAULT_MAX_CONTENT_BYTES,
    ChatMessage,
    MessagePage,
    MessageSearch,
    MessageSearchPage,
    SessionContext,
    SessionMetadata,
    SessionQuery,
    SessionState,
    TimestampedMessage,
    is_blank,
)
from ..recall import Candidate, assemble
from ..terms import Analyzer
from .connection import Connection
from .engine_errors import engine_errors
from .imports import ImportMark
from .live_index import LiveIndex
from .migrations import migrate, pending
from .pages import Slot, load_page
from .search import fetch_messages, fetch_neighbours, score_messages, score_sessions
from .session_view import ANSWERED_BY_VIEW, COLUMNS, SessionRow, SessionView, utc
from .settings import Tuning
from .sql import MAX_HOURS, MAX_ROWS, META, POS, Cursor, ago, first, meta, now, or_null, rows, session_range
from .tails import Tails
from .transfer import Transfers
from .writes import SLOTS_MAX, Writer

__all__ = ["DuckDBSessionBackend", "ImportMark", "Tuning"]


class DuckDBSessionBackend(Transfers, SessionBackend):
    """Sessions, messages and a live inverted index in one DuckDB file; safe to call from many threads."""

    @engine_errors
    def __init__(
        self,
        path: str | os.PathLike[str] = ":memory:",
        *,
        read_only: bool = False,
        max_content_bytes: int = DEFAULT_MAX_CONTENT_BYTES,
        analyzer: Analyzer | None = None,
        tuning: Tuning | None = None,
    ) -> None:
        self.path = str(path)
        self.max_content_bytes = max_content_bytes
        self._analyzer = analyzer or Analyzer.shared()
        self._conn = Connection(self.path, read_only=read_only, tuning=tuning or Tuning())
        if self._conn.read_only:
            if pending(self._conn.db, create=False):
                raise StoreReadOnly(f"{self.path} needs a schema upgrade: open it once without --read-only")
        else:
            migrate(self._conn.db)
        self._index = LiveIndex(self._conn)
        self._view = self._load_view()
        self._tails = Tails()
        self._writer = Writer(self._conn, self._index, self._analyzer, self._view, self._tails)
        # session id -> key, for search hits (see _session_keys).
        self._keys: dict[int, str] = {}

    def _load_view(self) -> SessionView | None:  # every row, unless more than the tuning's session_view_max
        limit = self.tuning.session_view_max
        found = rows(self._conn.db, f"SELECT {COLUMNS} FROM sessions LIMIT {int(limit) + 1}") if limit > 0 else []
        return SessionView(found) if limit > 0 and len(found) <= limit else None

    def answers_from_memory(self, tool: str, arguments: dict[str, object]) -> bool:
        if self._view is None:
            return False
        if tool == "list_sessions_with_metadata":
            return arguments.get("agent_alias") is None  # a filter may scan every row
        if tool in ("load", "load_with_timestamps"):
            key, offset, limit = arguments.get("session_key"), arguments.get("offset"), arguments.get("limit")
            return isinstance(key, str) and self._tails.holds(key, offset, limit)  # type: ignore[arg-type]
        return tool in ANSWERED_BY_VIEW

    @property
    def read_only(self) -> bool:
        """Whether writes are refused (asked for, or the file could only be opened for reading)."""
        return self._conn.read_only

    @property
    def tuning(self) -> Tuning:
        return self._conn.tuning

    @engine_errors
    def close(self) -> None:
        """Checkpoint and close; later calls fail."""
        if self._conn.closed:
            return
        self._conn.closed = True
        self._index.stop()
        self._writer.close()
        self._conn.close()

    def __enter__(self) -> DuckDBSessionBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Upkeep.

    @engine_errors
    def optimize(self) -> None:
        """Rewrite the index sorted by term without the postings of removed messages, then checkpoint."""
        self._index.optimize()

    @engine_errors
    def merge(self) -> None:
        """Move recent messages' postings into the term-sorted table now (upkeep does it every merge_messages)."""
        with self._conn.write_lock:
            self._index.merge(self._conn.cursor())

    # Required operations.

    def load(self, session_key: str) -> list[ChatMessage]:
        return [ChatMessage(role=m.role, content=m.content) for m in self.load_page(session_key).messages]

    @engine_errors
    def append(self, session_key: str, message: ChatMessage) -> int:
        self.check_message(message)
        return self._writer.append_one(session_key, message)

    @engine_errors
    def remove_last(self, session_key: str) -> bool:
        writer = self._writer
        with writer.transaction() as cur:
            slot = writer.slot(cur, session_key, last=True)
            if slot is None or slot.count == 0:
                return False
            if slot.last_id is not None:
                writer.kill(cur, "id = ?", [slot.last_id])
            else:
                writer.kill(cur, "pos = ?", [slot.session_id * POS + slot.count - 1])
            at = now()
            cur.execute(
                "UPDATE sessions SET message_count = ?, last_activity = ? WHERE id = ?",
                [slot.count - 1, at, slot.session_id],
            )
            writer.remember(session_key, Slot(slot.session_id, slot.count - 1))
            writer.touched(session_key, message_count=slot.count - 1, last_activity=at)
            writer.after_commit(lambda: self._tails.removed_last(session_key))
            return True

    @engine_errors
    def list_sessions(self) -> list[str]:
        return [
            row[0] for row in rows(self._conn.cursor(), "SELECT key FROM sessions ORDER BY last_activity DESC, id DESC")
        ]

    # Provided operations, in the trait's order.

    def load_with_timestamps(self, session_key: str) -> list[TimestampedMessage]:
        return self.load_page(session_key).messages

    @engine_errors
    def update_last(self, session_key: str, message: ChatMessage) -> bool:
        self.check_message(message)
        writer = self._writer
        (indexed,), tids = writer.analyze([message.content])
        with writer.transaction() as cur:
            slot = writer.slot(cur, session_key, last=True)
            if slot is None or slot.count == 0:
                return False
            at = now()
            dl = indexed.dl
            self._index.add_terms(tids)
            rewritten = 0
            last_pos = slot.session_id * POS + slot.count - 1
            # The session's new time goes in the same call to DuckDB as the message's first statement (our own
            # time and int written into the SQL; DuckDB binds the parameters of the last statement).
            touch = f"UPDATE sessions SET last_activity = '{at}' WHERE id = {int(slot.session_id)}; "
            if slot.last_id is not None and slot.last_id > self._index.merged_upto:
                # Its postings are in its own row: rewrite the row in place (text columns update in place).
                row = first(
                    cur,
                    # The place is checked too: a slot that were wrong must not rewrite another message.
                    touch + "UPDATE messages SET role = ?, content = ?, created_at = ?, dl = ?, terms = ?"
                    " WHERE id = ? AND pos = ?",
                    [message.role, message.content, at, dl, indexed.text, slot.last_id, last_pos],
                )
                touch = ""
                rewritten = 0 if row is None else int(row[0])
            if rewritten == 1:
                self._index.count(0, dl - (slot.last_dl or 0))
                self._index.written([(slot.last_id, slot.session_id, dl, indexed.text)], writer.after_commit)
                updated = Slot(slot.session_id, slot.count, slot.last_id, dl)
            else:
                # Merged postings are masked by id: the new text is a new message in the same place.
                writer.kill(cur, "pos = ?", [last_pos])
                added = writer.insert_messages(
                    cur,
                    [(slot.session_id, slot.count - 1, message.role, message.content, at, indexed)],
                    before=touch,
                )
                updated = Slot(slot.session_id, slot.count, *added[0])
            writer.remember(session_key, updated)
            writer.touched(session_key, last_activity=at)
            last = TimestampedMessage(
                role=message.role, content=message.content, created_at=utc(at), index=slot.count - 1
            )
            writer.after_commit(lambda: self._tails.replaced_last(session_key, last))
            return True

    @engine_errors
    def list_sessions_with_metadata(
        self, limit: int | None = None, offset: int = 0, agent_alias: str | None = None
    ) -> list[SessionMetadata]:
        if self._view is not None:
            return [row.metadata() for row in self._view.newest(limit, offset, agent_alias)]
        where, params = ("WHERE agent_alias = ?", [agent_alias]) if agent_alias is not None else ("", [])
        limit_sql = f"LIMIT {min(int(limit), MAX_ROWS)}" if limit is not None else ""
        offset = min(int(offset), MAX_ROWS)
        found = rows(
            self._conn.cursor(),
            f"SELECT {META} FROM sessions {where}"
            f" ORDER BY last_activity DESC, id DESC {limit_sql} OFFSET {int(offset)}",
            params,
        )
        return [meta(row) for row in found]

    @engine_errors
    def compact(self, session_key: str) -> int:
        writer = self._writer
        with writer.transaction() as cur:
            writer.forget(session_key)  # its message count changes
            writer.after_commit(lambda: self._tails.forget([session_key]))
            found = writer.session(cur, session_key)
            if found is None or found[1] < 2:
                return 0
            session_id, _ = found
            messages = rows(
                cur,
                # The time as text with its offset goes back in unchanged, whatever the session's TimeZone.
                "SELECT role, content, created_at::VARCHAR FROM messages WHERE pos >= ? AND pos < ? ORDER BY pos",
                session_range(session_id),
            )
            kept = [r for i, r in enumerate(messages) if i == 0 or r[:2] != messages[i - 1][:2]]
            removed = len(messages) - len(kept)
            if removed:
                writer.kill(cur, "pos >= ? AND pos < ?", session_range(session_id))
                indexed, tids = writer.analyze([row[1] for row in kept])
                self._index.add_terms(tids)
                writer.insert_messages(
                    cur, [(session_id, i, *row, ix) for i, (row, ix) in enumerate(zip(kept, indexed, strict=True))]
                )
                at = now()
                cur.execute(
                    "UPDATE sessions SET message_count = ?, last_activity = ? WHERE id = ?",
                    [len(kept), at, session_id],
                )
                writer.touched(session_key, message_count=len(kept), last_activity=at)
            return removed

    @engine_errors
    def cleanup_stale(self, ttl_hours: int) -> int:
        cutoff = ago(timedelta(hours=min(ttl_hours, MAX_HOURS)))
        writer = self._writer
        with writer.transaction() as cur:
            writer.forget()
            ids = [
                row[0]
                for row in rows(
                    cur,
                    "SELECT id FROM sessions WHERE last_activity < ? AND state IS DISTINCT FROM 'running'",
                    [cutoff],
                )
            ]
            writer.delete_sessions(cur, ids)
            return len(ids)

    @engine_errors
    def search(self, query: SessionQuery, agent_alias: str | None = None) -> list[SessionMetadata]:
        if is_blank(query.keyword):
            return self.list_sessions_with_metadata(limit=query.limit, agent_alias=agent_alias)
        terms = self._analyzer.query_terms(query.keyword or "")
        if not terms:
            return []
        cur, best = self._index.run_search(
            lambda cur, corpus: score_sessions(cur, terms, corpus, agent_alias, query.limit)
        )
        if not best:
            return []
        if self._view is not None:
            view = self._view
            sessions = [r for r in (view.get(view.key_of(i) or "") for i in best) if r is not None and r.id in best]
        else:
            ids = ", ".join(str(int(i)) for i in best)
            sessions = [
                SessionRow.from_sql(r) for r in rows(cur, f"SELECT {COLUMNS} FROM sessions WHERE id IN ({ids})")
            ]
        # Best message first; ties go to the more recent session (last_activity, then the later id).
        sessions.sort(key=lambda r: (best[r.id], *r.order()), reverse=True)
        return [r.metadata() for r in sessions[: query.limit]]

    @engine_errors
    def clear_messages(self, session_key: str) -> int:
        writer = self._writer
        with writer.transaction() as cur:
            writer.forget(session_key)  # its message count changes
            writer.after_commit(lambda: self._tails.forget([session_key]))
            found = writer.session(cur, session_key)
            if found is None or found[1] == 0:
                return 0
            session_id, _ = found
            removed = writer.kill(cur, "pos >= ? AND pos < ?", session_range(session_id))
            at = now()
            cur.execute("UPDATE sessions SET message_count = 0, last_activity = ? WHERE id = ?", [at, session_id])
            writer.touched(session_key, message_count=0, last_activity=at)
            return removed

    @engine_errors
    def delete_session(self, session_key: str) -> bool:
        writer = self._writer
        with writer.transaction() as cur:
            writer.forget(session_key)  # its message count changes
            found = writer.session(cur, session_key)
            if found is None:
                return False
            writer.delete_sessions(cur, [found[0]])
            return True

    def _set(self, session_key: str, assignments: dict[str, object]) -> SessionRow:
        """Set columns of the session (creating it) and read its row back, in one transaction."""
        writer = self._writer
        with writer.transaction() as cur:
            session_id = writer.ensure_session(cur, session_key)
            if assignments:
                columns = ", ".join(f"{column} = ?" for column in assignments)
                sql = f"UPDATE sessions SET {columns} WHERE id = ? RETURNING {COLUMNS}"
            else:
                sql = f"SELECT {COLUMNS} FROM sessions WHERE id = ?"
            row = first(cur, sql, [*assignments.values(), session_id])
            assert row is not None
            writer.stored(row)
            return SessionRow.from_sql(row)

    def _row(self, session_key: str) -> SessionRow | None:
        """The session's row: from the view, else from the file."""
        if self._view is not None:
            return self._view.get(session_key)
        row = first(self._conn.cursor(), f"SELECT {COLUMNS} FROM sessions WHERE key = ?", [session_key])
        return None if row is None else SessionRow.from_sql(row)

    @engine_errors
    def set_session_name(self, session_key: str, name: str) -> str | None:
        return self._set(session_key, {"name": or_null(name)}).name

    @engine_errors
    def get_session_name(self, session_key: str) -> str | None:
        row = self._row(session_key)
        return None if row is None else row.name

    @engine_errors
    def set_session_agent_alias(self, session_key: str, agent_alias: str) -> str | None:
        return self._set(session_key, {"agent_alias": or_null(agent_alias)}).agent_alias

    @engine_errors
    def get_session_agent_alias(self, session_key: str) -> str | None:
        row = self._row(session_key)
        return None if row is None else row.agent_alias

    @engine_errors
    def set_session_context(self, session_key: str, context: SessionContext) -> SessionContext:
        given = context.model_dump(exclude_none=True)
        row = self._set(session_key, {field: or_null(value) for field, value in given.items()})
        return SessionContext(channel_id=row.channel_id, room_id=row.room_id, sender_id=row.sender_id)

    @engine_errors
    def get_session_metadata(self, session_key: str) -> SessionMetadata | None:
        row = self._row(session_key)
        return None if row is None else row.metadata()

    @engine_errors
    def set_session_state(self, session_key: str, state: str, turn_id: str | None = None) -> SessionState:
        started = now() if state == "running" else None
        return self._set(
            session_key, {"state": state, "turn_id": or_null(turn_id), "turn_started_at": started}
        ).run_state()

    @engine_errors
    def get_session_state(self, session_key: str) -> SessionState | None:
        row = self._row(session_key)
        return None if row is None else row.run_state()

    @engine_errors
    def list_running_sessions(self) -> list[SessionMetadata]:
        if self._view is not None:
            return [row.metadata() for row in self._view.running()]
        found = rows(
            self._conn.cursor(), f"SELECT {META} FROM sessions WHERE state = 'running' ORDER BY turn_started_at, id"
        )
        return [meta(row) for row in found]

    @engine_errors
    def list_stuck_sessions(self, threshold_secs: int) -> list[SessionMetadata]:
        cutoff = ago(timedelta(hours=min(threshold_secs // 3600, MAX_HOURS), seconds=threshold_secs % 3600))
        if self._view is not None:
            since = utc(cutoff)
            return [
                r.metadata() for r in self._view.running() if r.turn_started_at and since and r.turn_started_at < since
            ]
        found = rows(
            self._conn.cursor(),
            f"SELECT {META} FROM sessions WHERE state = 'running' AND turn_started_at < ? ORDER BY turn_started_at, id",
            [cutoff],
        )
        return [meta(row) for row in found]

    # Beyond the trait.

    def append_many(self, items: Iterable[tuple[str, ChatMessage]], marks: Sequence[ImportMark] = ()) -> int:
        """Append many messages (to any sessions, in order) in one transaction; return how many. marks record
        which import files they come from, so a stopped import resumes where it stopped (see import_marks)."""
        batch = list(items)
        self._append(batch, marks)
        return len(batch)

    @engine_errors
    def _append(self, batch: list[tuple[str, ChatMessage]], marks: Sequence[ImportMark] = ()) -> dict[str, int]:
        for _, message in batch:
            self.check_message(message)
        return self._writer.append(batch, marks)

    @engine_errors
    def load_page(self, session_key: str, offset: int | None = None, limit: int | None = None) -> MessagePage:
        cached = self._tails.page(session_key, offset, limit)
        if cached is not None:
            return cached
        version = self._tails.version(session_key)
        page = load_page(self._conn, self._writer.slots, session_key, offset, limit)
        self._tails.fill(session_key, version, page)
        return page

    @engine_errors
    def search_messages_page(self, search: MessageSearch) -> MessageSearchPage:
        terms = self._analyzer.query_terms(search.query)
        if not terms:
            return MessageSearchPage(hits=[])
        stop = None if search.limit is None else search.offset + search.limit
        # One more than the page holds tells whether a next page exists.
        want = None if stop is None else stop + 1
        cur, ranked = self._index.run_search(
            lambda cur, corpus: score_messages(cur, terms, corpus, search.filters, want)
        )
        more = stop is not None and len(ranked) > stop
        page = ranked[search.offset : stop]
        if search.context:
            with self._conn.read() as cur:  # hits and neighbours from one snapshot
                found = fetch_messages(cur, [message_id for message_id, _, _ in page])
                neighbours = fetch_neighbours(cur, list(found.values()), search.context)
                keys = self._session_keys(cur, (row[4] for row in found.values()))
        else:
            found = fetch_messages(cur, [message_id for message_id, _, _ in page])
            neighbours = {}
            keys = self._session_keys(cur, (row[4] for row in found.values()))
        candidates: list[Candidate] = []
        for message_id, _, score in page:
            if message_id not in found or found[message_id][4] not in keys:
                continue  # removed since it was scored
            idx, role, content, created_at, session_id = found[message_id]
            around = neighbours.get(session_id * POS + idx, ())
            candidates.append(Candidate(keys[session_id], idx, role, content, created_at, score, around))
        return assemble(search, candidates, more, self._analyzer)

    def _session_keys(self, cur: Cursor, ids: Iterable[int]) -> dict[int, str]:
        """Keys of these session ids. A session's id and key never change and ids are never reused: kept."""
        missing = {int(i) for i in ids} - self._keys.keys()
        if missing:
            found = rows(cur, f"SELECT id, key FROM sessions WHERE id IN ({', '.join(map(str, missing))})")
            if len(self._keys) > SLOTS_MAX:
                self._keys.clear()
            self._keys.update(found)
        return self._keys
