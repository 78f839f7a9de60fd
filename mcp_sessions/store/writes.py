"""Writer: write transactions, what the writer remembers of each session (its slot), inserts and removals,
and appends from one message (one call to DuckDB) to a bulk import (chunks inserted while the next is indexed)."""

from __future__ import annotations

import functools
import itertools
import json
import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import duckdb

from ..errors import StoreReadOnly
from ..models import ChatMessage, TimestampedMessage
from ..terms import Analyzer
from .analysis import Analysis
from .connection import Connection
from .imports import ImportMark, record_imports
from .inserts import FILE_MIN, INSERT_MESSAGE, MESSAGE_COLUMNS, MESSAGE_ROWS, VALUES_MAX, Indexed, Row, values_sql
from .live_index import LiveIndex
from .pages import Slot
from .params import file_rows_sql, rows_param, rows_sql, spooled
from .postings import Encoded, index_texts
from .session_view import SessionRow, SessionView, utc
from .sql import BEGIN, PAGE_SIZE, POS, Cursor, first, now, rows
from .tails import Tails

log = logging.getLogger(__name__)

# Sessions whose slot the writer remembers, so an append to one reads nothing first.
SLOTS_MAX = 10_000
_IDS = rows_sql({"id": "BIGINT"})
_ADDED_ROWS = rows_sql({"key": "VARCHAR", "added": "BIGINT", "now": "TIMESTAMPTZ"})


@dataclass(eq=False)
class _Waiting:
    """An append waiting for its group's commit, and then its outcome."""

    key: str
    message: ChatMessage
    indexed: Indexed
    tids: set[int]
    done: bool = False
    count: int = 0
    error: BaseException | None = None


class Writer:
    """Every write goes through here, one at a time (the connection's write lock)."""

    def __init__(
        self, conn: Connection, index: LiveIndex, analyzer: Analyzer, view: SessionView | None, tails: Tails
    ) -> None:
        self.conn = conn
        # Told of every change to a session's last messages once it commits.
        self.tails = tails
        # Told of every change to a session row once it commits (None: rows are read from the file).
        self.view = view
        self.index = index
        self.analyzer = analyzer
        self.tuning = conn.tuning
        # session key -> slot as last committed; read and written under the write lock only.
        self.slots: dict[str, Slot] = {}
        self._after_commit: list[Callable[[], None]] = []
        self._writes_since_check = 0
        self._folded = False
        self._insert_pool: ThreadPoolExecutor | None = None
        # Where a bulk import's chunks are analysed (see analysis.py).
        self.analysis = Analysis(analyzer)
        self._pool_lock = threading.Lock()
        # Single appends waiting for the writer (see append_one).
        self._queue: list[_Waiting] = []
        self._queue_lock = threading.Lock()
        # The most recently active sessions are the likely next reads and writes: know their slots.
        for key, session_id, count in rows(
            conn.db, "SELECT key, id, message_count FROM sessions ORDER BY last_activity DESC LIMIT ?", [SLOTS_MAX]
        )[::-1]:
            self.slots[key] = Slot(session_id, count)

    @contextmanager
    def transaction(self, *, begin: bool = True, merge_after: int | None = None) -> Iterator[Cursor]:
        """One write transaction: all of it commits, or none of it. begin=False: the caller's first statement
        begins it (a round trip less: see sql.BEGIN). merge_after: recent messages that make a merge (default:
        the tuning's merge_messages)."""
        if self.conn.read_only:
            raise StoreReadOnly(f"the store {self.conn.path} is open read-only: writes are refused")
        with self.conn.write_lock:
            cur = self.conn.cursor()
            self.index.begin()
            self._after_commit = []
            self._folded = False  # set when the body's last statement committed (see insert_messages)
            if begin:
                cur.begin()
            try:
                yield cur
                if not self._folded:
                    cur.commit()
            except BaseException as exc:
                self.slots.clear()
                try:
                    cur.rollback()
                except duckdb.Error:
                    pass  # the failed statement or commit already ended the transaction
                if isinstance(exc, duckdb.FatalException):
                    self.conn.reopen()
                raise
            for then in self._after_commit:
                then()
            self.index.committed()
            self._upkeep(cur, merge_after)

    def _upkeep(self, cur: Cursor, merge_after: int | None) -> None:
        """After a commit: merge recent postings when they pile up, checkpoint when the log grows."""
        self._writes_since_check += 1
        try:
            if self.index.wants_merge(merge_after):
                self.index.merge_soon(cur)
            # Every 64th write, or after a bulk write: its log may be big.
            if self._writes_since_check < 64 and not self.conn.memory_raised:
                return
            self._writes_since_check = 0
            if self.conn.wal_bytes() >= self.tuning.checkpoint_wal_bytes:
                self.conn.checkpoint()
        except duckdb.Error as exc:
            # The write before this is already durable in the log; upkeep retries on a later write.
            log.warning("store upkeep failed (writes are safe, will retry): %s", exc)

    def after_commit(self, then: Callable[[], None]) -> None:
        """Run then once the open write has committed (not at all if it fails), before the write returns."""
        self._after_commit.append(then)

    def touched(self, key: str, **changes: Any) -> None:
        """The open write changes these columns of the session's row (times as ISO text): tell the view on commit."""
        view = self.view
        if view is not None:
            for column in ("created_at", "last_activity", "turn_started_at"):
                if column in changes:
                    changes[column] = utc(changes[column])
            self._after_commit.append(lambda: view.update(key, **changes))

    def stored(self, row: tuple[Any, ...]) -> None:
        """The open write leaves this session row (read with session_view.COLUMNS): tell the view on commit."""
        view = self.view
        if view is not None:
            session = SessionRow.from_sql(row)
            self._after_commit.append(lambda: view.put(session))

    def close(self) -> None:
        if self._insert_pool is not None:
            self._insert_pool.shutdown(wait=True)
        self.analysis.close()

    # Sessions and what the writer remembers of them.

    @staticmethod
    def session(cur: Cursor, key: str) -> tuple[int, int] | None:
        """(id, message count) of the session, as stored."""
        row = first(cur, "SELECT id, message_count FROM sessions WHERE key = ?", [key])
        return None if row is None else (row[0], row[1])

    def slot(self, cur: Cursor, key: str, *, last: bool = False) -> Slot | None:
        """The session's slot, read from the store when the writer does not know it; last: with the last
        message's id and term count. Call under the write lock."""
        slot = self.slots.get(key)
        if slot is None:
            found = self.session(cur, key)
            if found is None:
                return None
            slot = Slot(*found)
        if last and slot.count and slot.last_id is None:
            pos = slot.session_id * POS + slot.count - 1
            row = first(cur, "SELECT id, dl FROM messages WHERE page = ? AND pos = ?", [pos // PAGE_SIZE, pos])
            if row is not None:
                slot = Slot(slot.session_id, slot.count, row[0], row[1])
        return slot

    def remember(self, key: str, slot: Slot) -> None:
        """Keep the slot as it will be once the open write commits (a failed commit forgets them all)."""
        self.slots.pop(key, None)
        self.slots[key] = slot
        if len(self.slots) > SLOTS_MAX:
            # Forget the least recently written quarter.
            for stale in list(itertools.islice(self.slots, SLOTS_MAX // 4)):
                del self.slots[stale]

    def forget(self, key: str | None = None) -> None:
        """Forget a session's slot (its message count is about to change another way), or every slot."""
        if key is None:
            self.slots.clear()
        else:
            self.slots.pop(key, None)

    def ensure_session(self, cur: Cursor, key: str) -> int:
        """The session's id, creating it (no messages, last_activity now) if missing."""
        found = self.session(cur, key)
        if found is not None:
            return found[0]
        at = now()
        row = first(
            cur,
            "INSERT INTO sessions (id, key, created_at, last_activity, message_count)"
            " VALUES (nextval('session_ids'), ?, ?, ?, 0) RETURNING id",
            [key, at, at],
        )
        assert row is not None
        return row[0]

    # Messages.

    def analyze(self, contents: Sequence[str]) -> tuple[list[Indexed], set[int]]:
        """Each text's terms: pure Python, done before taking the write lock."""
        indexed, tids = index_texts(self.analyzer, contents)
        return [Indexed(*row) for row in indexed], tids

    def insert_messages(
        self, cur: Cursor, batch: Sequence[Row], before: str = "", *, commit: bool = False
    ) -> list[tuple[int, int]]:
        """Insert the rows, each with its postings (see m004); return each one's (id, term count). commit: the
        same call to DuckDB commits, when the texts can go into the SQL (see transaction)."""
        ids = [self.index.next_id() for _ in batch]
        if len(batch) <= VALUES_MAX:
            # Our own ints written into the SQL, the texts and the time as parameters, or as literals when the
            # same call commits. before: statements without parameters (DuckDB binds the last one's).
            values, params, inline = values_sql(ids, batch, inline=commit)
            sql = f"{before}{INSERT_MESSAGE} VALUES {values}"
            if inline:
                cur.execute(f"{sql}; COMMIT")
                self._folded = True
            else:
                cur.execute(sql, params)
        else:
            assert not before, "statements before an INSERT go with a few rows only"
            flat = [(i, *row[:5], row[5].dl, row[5].text) for i, row in zip(ids, batch, strict=True)]
            columns = zip(*flat, strict=True)
            self._insert_json(cur, rows_param(**dict(zip(MESSAGE_COLUMNS, columns, strict=True))), len(batch))
        added = [(message_id, row[5].dl) for message_id, row in zip(ids, batch, strict=True)]
        self.index.count(len(batch), sum(dl for _, dl in added))
        docs = [(i, row[0], row[5].dl, row[5].text) for i, row in zip(ids, batch, strict=True)]
        self.index.written(docs, self.after_commit)
        return added

    def insert_encoded(
        self, cur: Cursor, keys: Sequence[tuple[int, int, str, str | None]], parts: list[Encoded]
    ) -> None:
        """Insert the (session_id, idx, role, created_at) rows whose contents and postings are the parts, in order."""
        ids = [self.index.next_id() for _ in keys]
        self.index.unlisted()
        columns = zip(*keys, strict=True)

        def joined(field: str) -> str:
            return "[" + ", ".join(body for part in parts if (body := getattr(part, field))) + "]"

        known = {"id": ids, **dict(zip(("session_id", "idx", "role", "created_at"), columns, strict=True))}
        text = (
            "{"
            + ", ".join(f'"{name}": {json.dumps(list(values), ensure_ascii=False)}' for name, values in known.items())
            + f', "content": {joined("contents")}, "dl": {joined("dls")}, "terms": {joined("terms")}}}'
        )
        self._insert_json(cur, text, len(keys))
        self.index.count(len(keys), sum(part.dl_total for part in parts))

    def _insert_json(self, cur: Cursor, text: str, count: int) -> None:
        """Insert the count messages of this JSON text (MESSAGE_COLUMNS, see params.rows_param): as a parameter,
        or from FILE_MIN rows on (a bulk import's chunks) as a temporary file, which DuckDB parses faster."""
        sql = f"{INSERT_MESSAGE} SELECT session_id * {POS} + idx, (session_id * {POS} + idx) // {PAGE_SIZE}, *"
        if count < FILE_MIN or self.conn.memory:
            cur.execute(f"{sql} FROM {MESSAGE_ROWS}", [text])
        else:
            with spooled(text) as (path, size):
                cur.execute(f"{sql} FROM {file_rows_sql(MESSAGE_COLUMNS, path, size)}")

    def _insert_chunk(self, cur: Cursor, batch: Sequence[Row]) -> dict[int, tuple[int, int]]:
        """insert_messages; return session id -> (id, term count) of its last message in the batch."""
        return dict(zip((row[0] for row in batch), self.insert_messages(cur, batch), strict=True))

    def _inserter(self) -> ThreadPoolExecutor:
        """The thread a bulk append's INSERTs run on, one at a time, while the next chunk is indexed."""
        with self._pool_lock:
            if self._insert_pool is None:
                self._insert_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mcp-sessions-insert")
            return self._insert_pool

    def kill(self, cur: Cursor, where: str, params: list[object]) -> int:
        """Delete the messages matching where, and their postings; return how many went."""
        gone = cur.execute(f"DELETE FROM messages WHERE {where} RETURNING id, dl", params).fetchall()
        self.index.count(-len(gone), -sum(row[1] or 0 for row in gone))
        self.index.mask(cur, [row[0] for row in gone], self._after_commit)
        return len(gone)

    def delete_sessions(self, cur: Cursor, ids: list[int]) -> None:
        if not ids:
            return
        self.kill(cur, f"session_id IN (SELECT id FROM {_IDS})", [rows_param(id=ids)])
        deleted = f"DELETE FROM sessions WHERE id IN (SELECT id FROM {_IDS}) RETURNING key"
        gone = [r[0] for r in rows(cur, deleted, [rows_param(id=ids)])]
        self.after_commit(lambda: self.tails.forget(gone))
        view = self.view
        if view is not None:
            self.after_commit(lambda: view.drop(gone))

    # Appends.

    def append_one(self, key: str, message: ChatMessage) -> int:
        """One message (checked), from one of many calls at once; return the session's count with it.

        Group commit: appends that queue while another holds the writer go into one transaction when their
        turn comes, each returning once that commit is durable, so a commit's cost is shared among them.
        """
        indexed, tids = self.analyze([message.content])
        waiting = _Waiting(key, message, indexed[0], tids)
        with self._queue_lock:
            self._queue.append(waiting)
        with self.conn.write_lock:
            if not waiting.done:  # else an earlier holder committed it with its own
                with self._queue_lock:
                    group, self._queue = self._queue, []
                self._commit_group(group)
        if waiting.error is not None:
            raise waiting.error
        return waiting.count

    def _commit_group(self, group: list[_Waiting]) -> None:
        """One transaction for the group, in queue order; each is told its own count, or the failure."""
        try:
            batch = [(w.key, w.message) for w in group]
            analyzed = [w.indexed for w in group], set().union(*(w.tids for w in group))
            counts = self.append(batch, analyzed=analyzed)
            # A session's count after the group, less its appends queued after each one.
            later = Counter(w.key for w in group)
            for w in group:
                later[w.key] -= 1
                w.count = counts[w.key] - later[w.key]
        except BaseException as exc:
            for w in group:
                w.error = exc
            raise
        finally:
            for w in group:
                w.done = True

    def append(
        self,
        batch: list[tuple[str, ChatMessage]],
        marks: Sequence[ImportMark] = (),
        analyzed: tuple[list[Indexed], set[int]] | None = None,
    ) -> dict[str, int]:
        """Append the batch (checked) in one transaction; return each session's message count after it.
        analyzed: the batch's terms, when the caller has them (see analyze)."""
        if not batch:
            if marks:
                with self.transaction() as cur:
                    record_imports(cur, marks, now())
            return {}
        added = Counter(key for key, _ in batch)
        # A batch of one statement is indexed before the write lock; a bigger one chunk by chunk under it,
        # each chunk's indexing (Python) overlapping the previous chunk's INSERT (DuckDB, off the GIL).
        chunk = self.tuning.insert_chunk
        bulk = len(batch) > chunk
        if analyzed is not None and not bulk:
            indexed, tids = analyzed
        else:
            indexed, tids = ([], set()) if bulk else self.analyze([message.content for _, message in batch])
        if not bulk and len(batch) <= VALUES_MAX and not marks:
            fast = self._append_known(batch, indexed, tids)
            if fast is not None:
                return fast
        with self.transaction() as cur:
            self.index.add_terms(tids)
            if bulk:
                self.conn.raise_memory()
            at = now()
            if len(added) == 1:
                # The common case, one message to a session the writer knows: one UPDATE and one INSERT.
                key = batch[0][0]
                slot = self.slot(cur, key)
                found = [] if slot is None else [(key, slot.session_id, slot.count + len(batch))]
                if slot is not None:
                    cur.execute(
                        "UPDATE sessions SET message_count = ?, last_activity = ? WHERE id = ?",
                        [slot.count + len(batch), at, slot.session_id],
                    )
            else:
                found = self._add_counts(cur, added, at)
            places = {key: (session_id, count - added[key]) for key, session_id, count in found}
            new = [key for key in added if key not in places]
            if new:
                created = cur.execute(
                    "INSERT INTO sessions (id, key, created_at, last_activity, message_count)"
                    f" SELECT nextval('session_ids'), key, now, now, added FROM {_ADDED_ROWS} RETURNING key, id",
                    [rows_param(key=new, added=(added[k] for k in new), now=[at] * len(new))],
                ).fetchall()
                places.update((key, (session_id, 0)) for key, session_id in created)
                if self.view is not None:
                    for key, session_id in created:
                        self.stored((session_id, key, None, at, at, added[key], *[None] * 7))
            lasts: dict[int, tuple[int, int]] = {}  # session id -> (id, term count) of its last new message
            pending: Future[dict[int, tuple[int, int]]] | None = None
            try:
                # Bounded statements keep a big import's memory flat; the transaction stays one.
                for start in range(0, len(batch), chunk):
                    part = batch[start : start + chunk]
                    if bulk:
                        part_indexed, part_tids = self.analyze([message.content for _, message in part])
                        self.index.add_terms(part_tids)
                    else:
                        part_indexed = indexed[start : start + chunk]
                    chunk_rows: list[Row] = []
                    for (key, message), one in zip(part, part_indexed, strict=True):
                        session_id, idx = places[key]
                        places[key] = (session_id, idx + 1)
                        chunk_rows.append((session_id, idx, message.role, message.content, at, one))
                    if not bulk:
                        lasts.update(self._insert_chunk(cur, chunk_rows))
                        continue
                    if pending is not None:
                        lasts.update(pending.result())
                    pending = self._inserter().submit(self._insert_chunk, cur, chunk_rows)
                if pending is not None:
                    lasts.update(pending.result())
            finally:
                # Never leave an INSERT running on the cursor that is about to roll back.
                if pending is not None:
                    wait([pending])
            record_imports(cur, marks, at)
            for key, _, count in found:
                self.touched(key, message_count=count, last_activity=at)
            touched = list(added)
            self.after_commit(lambda: self.tails.forget(touched))
            for key, (session_id, count) in places.items():
                self.remember(key, Slot(session_id, count, *lasts[session_id]))
        return {key: count for key, (_, count) in places.items()}

    def _append_known(
        self, batch: list[tuple[str, ChatMessage]], indexed: list[Indexed], tids: set[int]
    ) -> dict[str, int] | None:
        """The common write: a few messages to sessions the writer knows, in one call to DuckDB and a commit.
        None when a session is not known here (the caller takes the general way)."""
        with self.conn.write_lock:
            slots: dict[str, Slot] = {}
            for key, _ in batch:
                slot = slots.get(key) or self.slots.get(key)
                if slot is None:
                    return None
                slots[key] = slot
            with self.transaction(begin=False) as cur:
                self.index.add_terms(tids)
                at = now()
                counts = {key: slot.count for key, slot in slots.items()}
                new_rows: list[Row] = []
                added: dict[str, list[TimestampedMessage]] = {key: [] for key in slots}
                for (key, message), one in zip(batch, indexed, strict=True):
                    new_rows.append((slots[key].session_id, counts[key], message.role, message.content, at, one))
                    added[key].append(
                        TimestampedMessage(
                            role=message.role, content=message.content, created_at=utc(at), index=counts[key]
                        )
                    )
                    counts[key] += 1
                # Our own ints and time written into the SQL; the messages go as parameters of the INSERT.
                updates = "".join(
                    f"UPDATE sessions SET message_count = {int(counts[key])}, last_activity = '{at}'"
                    f" WHERE id = {int(slot.session_id)}; "
                    for key, slot in slots.items()
                )
                ids = self.insert_messages(cur, new_rows, before=BEGIN + updates, commit=True)
                lasts = {key: last for (key, _), last in zip(batch, ids, strict=True)}
                for key, slot in slots.items():
                    self.remember(key, Slot(slot.session_id, counts[key], *lasts[key]))
                    self.touched(key, message_count=counts[key], last_activity=at)
                    self.after_commit(functools.partial(self.tails.appended, key, counts[key], added[key]))
        return counts

    @staticmethod
    def _add_counts(cur: Cursor, added: Counter[str], at: str) -> list[tuple[str, int, int]]:
        """Add to the message counts of existing sessions; return (key, id, new count) of each."""
        return cur.execute(
            "UPDATE sessions SET message_count = message_count + n.added, last_activity = n.now"
            f" FROM {_ADDED_ROWS} AS n WHERE sessions.key = n.key"
            " RETURNING sessions.key, sessions.id, sessions.message_count",
            [rows_param(key=added, added=added.values(), now=[at] * len(added))],
        ).fetchall()
