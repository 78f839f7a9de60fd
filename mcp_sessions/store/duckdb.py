"""DuckDBSessionBackend: every SessionBackend operation over an embedded DuckDB file, one transaction each."""

from __future__ import annotations

import itertools
import logging
import os
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import duckdb

from ..backend import SessionBackend, slice_bounds
from ..models import (
    DEFAULT_MAX_CONTENT_BYTES,
    SEARCH_MESSAGES_LIMIT_DEFAULT,
    ChatMessage,
    MessageHit,
    MessagePage,
    SessionContext,
    SessionMetadata,
    SessionQuery,
    SessionState,
    TimestampedMessage,
)
from ..terms import Analyzer, make_snippet
from .errors import StoreLocked, StoreReadOnly
from .migrations import migrate, pending
from .params import rows_param, rows_sql
from .postings import index_texts, parse_terms_text, unnested_sql
from .search import Corpus, Filters, fetch_messages, score_messages, score_sessions

log = logging.getLogger(__name__)

# Indexed keys of a message (see m001): pos = session_id * _POS + idx, page = pos // PAGE_SIZE.
_POS = 1 << 32
PAGE_SIZE = 64
# A slice spanning more pages than this is read in one scan rather than page by page.
_MAX_PAGE_LOOKUPS = 8
_FIELDS = "key, name, created_at, last_activity, message_count, agent_alias, channel_id, room_id, sender_id"
# Times come back as UTC wall-clock TIMESTAMPs (DuckDB's TIMESTAMPTZ to Python needs pytz); models add UTC.
_META = _FIELDS.replace("created_at", "timezone('UTC', created_at)").replace(
    "last_activity", "timezone('UTC', last_activity)"
)
# Messages per INSERT statement of a bulk append.
_INSERT_CHUNK = 2_000
# Messages written since the last merge keep their postings in their own rows (see m004); once there are
# this many, a merge moves them into the term-sorted table. Search scans these rows' term lists.
MERGE_MESSAGES = 2_000
# Merges run on a thread of their own (see _merge_loop); tests may switch it off to merge in the write.
MERGE_IN_BACKGROUND = True
# A merge of fewer postings than this makes a run that spans every term in a row group or two: scattered.
# Once scattered postings pass SCATTERED_MIN_ROWS and SCATTERED_SHARE of the sorted ones, the merge thread
# runs optimize(), which sorts them in (live appends alone would otherwise make every search scan them).
SORTED_RUN_ROWS = 500_000
SCATTERED_MIN_ROWS = 250_000
SCATTERED_SHARE = 0.1
# Ids of removed messages whose merged postings are masked, kept in memory up to this many.
_DEAD_IDS_MAX = 100_000
# Sessions whose (id, message count) the writer remembers, so an append to one reads nothing first.
_SLOTS_MAX = 10_000
# Checkpoints are ours, not DuckDB's automatic ones, so a failed checkpoint never fails a durable commit.
CHECKPOINT_WAL_BYTES = 64 << 20
# DuckDB's memory: small while serving (DuckDB would otherwise keep most of the machine's memory as cache;
# a serving process stays under 200 MB at a million messages, as fast), large for the length of a bulk
# write, a merge or optimize() (sorts spill to <file>.tmp past it), then small again once a checkpoint has
# moved what they left in memory to the file.
MEMORY_LIMIT = "100MB"
BULK_MEMORY_LIMIT = "2GB"
_LOCK_HOLDER = re.compile(r"PID (\d+)")
_REFUSED = re.compile(r"Read-only file system|Permission denied")
_IDS = rows_sql({"id": "BIGINT"})
_ADDED_ROWS = rows_sql({"key": "VARCHAR", "added": "BIGINT", "now": "TIMESTAMPTZ"})
_MESSAGE_COLUMNS = {
    "id": "BIGINT",
    "session_id": "BIGINT",
    "idx": "BIGINT",
    "role": "VARCHAR",
    "content": "VARCHAR",
    "created_at": "TIMESTAMPTZ",
    "dl": "INTEGER",
    "terms": "VARCHAR",
}
_MESSAGE_ROWS = rows_sql(_MESSAGE_COLUMNS)
_INSERT_MESSAGE = f"INSERT INTO messages (pos, page, {', '.join(_MESSAGE_COLUMNS)})"


def _now() -> str:
    # Times go to DuckDB as ISO 8601 text: a tz-aware datetime parameter costs ~1 ms to convert.
    return datetime.now(UTC).isoformat()


def _meta(row: Sequence[object]) -> SessionMetadata:
    return SessionMetadata.model_validate(dict(zip(_FIELDS.split(", "), row, strict=True)))


# Durations past this (about 11,000 years) reach back before any stored time.
_MAX_HOURS = 10**8
# DuckDB's OFFSET and LIMIT are signed 64-bit; past this every list is already exhausted.
_MAX_ROWS = 1 << 62


def _ago(duration: timedelta) -> str:
    """The time duration before now, clamped to the start of the calendar."""
    try:
        return (datetime.now(UTC) - duration).isoformat()
    except OverflowError:
        return datetime.min.replace(tzinfo=UTC).isoformat()


def _slice_query(first: int, stop: int, also: Iterable[int] = ()) -> str:
    """SQL reading (role, content, created_at as epoch µs, idx, pos) rows holding every message with
    first <= pos < stop (and those on the pages of the positions also), in no order: _slice_rows keeps
    the slice's and orders them."""
    # Times as epoch microseconds: cheaper than a time zone conversion in SQL, exact in Python.
    columns = "SELECT role, content, epoch_us(created_at), idx, pos FROM messages"
    pages = sorted({*range(first // PAGE_SIZE, (stop - 1) // PAGE_SIZE + 1), *(p // PAGE_SIZE for p in also)})
    if len(pages) > _MAX_PAGE_LOOKUPS:
        return f"{columns} WHERE pos >= {int(min(first, *also))} AND pos < {int(max(stop, *(p + 1 for p in also)))}"
    # Whole pages, one equality each, answered by the page index (a range filter or ORDER BY on top
    # costs more in DuckDB than sorting 64 rows in Python).
    return " UNION ALL ".join(f"{columns} WHERE page = {int(page)}" for page in pages)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _slice_rows(rows: Iterable[tuple[Any, ...]], first: int, stop: int) -> list[TimestampedMessage]:
    kept = sorted((r for r in rows if first <= r[4] < stop), key=lambda r: r[4])
    return [
        TimestampedMessage(
            role=r[0],
            content=r[1],
            created_at=None if r[2] is None else _EPOCH + timedelta(microseconds=r[2]),
            index=r[3],
        )
        for r in kept
    ]


def _rows(cur: duckdb.DuckDBPyConnection, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
    return cur.execute(sql, params).fetchall()


def _first(cur: duckdb.DuckDBPyConnection, sql: str, params: Sequence[object] = ()) -> tuple[Any, ...] | None:
    """The first row of a one-statement read, reading the result to its end."""
    # fetchone() can leave the result, and so its transaction, open until the cursor's next statement,
    # and CHECKPOINT fails while any other cursor has a transaction open: our checkpoints never ran.
    rows = cur.execute(sql, params).fetchall()
    return rows[0] if rows else None


_T = TypeVar("_T")
# Starts a write's transaction inside its first call to DuckDB (see _write's begin=False).
_BEGIN = "BEGIN TRANSACTION; "


class _Indexed(NamedTuple):
    """A message's postings, ready to store: its term count and its terms text (see m004)."""

    dl: int
    text: str


class _Slot(NamedTuple):
    """What the writer remembers of a session: its id, message count, and its last message's id and term
    count (None until needed)."""

    session_id: int
    count: int
    last_id: int | None = None
    last_dl: int | None = None


def _or_null(value: str | None) -> str | None:
    return value or None


class DuckDBSessionBackend(SessionBackend):
    """Sessions, messages and a live inverted index in one DuckDB file; safe to call from many threads."""

    def __init__(
        self,
        path: str | os.PathLike[str] = ":memory:",
        *,
        read_only: bool = False,
        max_content_bytes: int = DEFAULT_MAX_CONTENT_BYTES,
        analyzer: Analyzer | None = None,
    ) -> None:
        self.path = str(path)
        self.read_only = read_only
        self.max_content_bytes = max_content_bytes
        self._analyzer = analyzer or Analyzer.shared()
        self._db = self._connect()
        self._local = threading.local()
        self._cursors: list[duckdb.DuckDBPyConnection] = []
        # Bumped when the database is reopened (see _reopen): cursors of an older generation are dead.
        self._generation = 0
        self._dead = False
        self._cursors_lock = threading.Lock()
        self._write_lock = threading.RLock()
        self._stats: list[int] | None = None
        self._stats_lock = threading.Lock()
        self._pending = [0, 0]
        self._writes_since_check = 0
        self._closed = False
        # session key -> (id, message count) as last committed; read and written under the write lock only.
        self._slots: dict[str, _Slot] = {}
        self._merger: threading.Thread | None = None
        self._memory_raised = False
        self._insert_pool: ThreadPoolExecutor | None = None
        # Even while no merge is moving the boundary between merged and recent postings (see _search).
        self._index_seq = 0
        self._merge_wanted = threading.Event()
        # session id -> key, for search hits (see _session_keys).
        self._keys: dict[int, str] = {}
        if self.read_only:
            if pending(self._db, create=False):
                raise StoreReadOnly(f"{self.path} needs a schema upgrade: open it once without --read-only")
        else:
            migrate(self._db)
        # Messages with ids up to _merged_upto have their postings in the term-sorted table, later ones in
        # their rows (see m004); _last_id is the last message id given out (ids are ours, never reused).
        self._merged_upto, self._last_id, self._scattered, self._sorted_rows = self._index_state(self._db)
        # The most recently active sessions are the likely next reads and writes: know their slots.
        for key, session_id, count in _rows(
            self._db,
            "SELECT key, id, message_count FROM sessions ORDER BY last_activity DESC LIMIT ?",
            [_SLOTS_MAX],
        )[::-1]:
            self._slots[key] = _Slot(session_id, count)
        # What searches know without asking the store, so a rare word's search reads only what it needs:
        # _any_dead is False only while no merged posting is masked (set before a removal commits);
        # _dead_ids are the masked ids (None: too many to keep, the mask is applied in SQL), added after it commits;
        # _recent_terms are the term ids of messages above the merge boundary (added before their write commits).
        dead = [row[0] for row in _rows(self._db, f"SELECT message_id FROM _dead_messages LIMIT {_DEAD_IDS_MAX + 1}")]
        self._any_dead = bool(dead)
        self._dead_ids: set[int] | None = set(dead) if len(dead) <= _DEAD_IDS_MAX else None
        self._recent_terms: set[int] = set()
        for (text,) in _rows(self._db, "SELECT terms FROM messages WHERE id > ?", [self._merged_upto]):
            self._recent_terms |= parse_terms_text(text)

    def _connect(self) -> duckdb.DuckDBPyConnection:
        memory = self.path == ":memory:"
        if not memory and self.read_only and not Path(self.path).exists():
            raise StoreReadOnly(f"no store at {self.path} to open read-only")
        if not memory and not self.read_only:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            db = duckdb.connect(self.path, read_only=self.read_only and not memory)
        except duckdb.IOException as exc:
            text = str(exc)
            if "lock" in text.lower():
                holder = _LOCK_HOLDER.search(text)
                who = f"process {holder.group(1)}" if holder else "another process"
                raise StoreLocked(f"{self.path} is held by {who}: {text}") from exc
            if not memory and not self.read_only and _REFUSED.search(text) and Path(self.path).exists():
                # A read-only file system (or a file this user may not write) still holds a store worth reading.
                log.warning(
                    "%s cannot be opened for writing (%s): serving it read-only, writes are refused", self.path, text
                )
                self.read_only = True
                return duckdb.connect(self.path, read_only=True)
            if "replaying WAL" not in text or self.read_only:
                raise
            # A log DuckDB cannot replay (a torn or corrupted write) would stop the store from ever
            # opening: keep it aside for inspection and open what the main file holds.
            wal = Path(self.path + ".wal")
            kept = wal.with_name(f"{wal.name}.unreplayable-{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}")
            wal.rename(kept)
            log.error("the write-ahead log of %s could not be replayed (%s); moved it to %s", self.path, text, kept)
            db = duckdb.connect(self.path)
        if not memory and not self.read_only:
            db.execute("SET checkpoint_threshold = '1TB'")
        if not memory:
            db.execute(f"SET memory_limit = '{MEMORY_LIMIT}'")
        return db

    # Connections, transactions, upkeep.

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        # One DuckDB connection is not thread-safe; each worker thread gets its own cursor.
        cur: duckdb.DuckDBPyConnection | None = getattr(self._local, "cursor", None)
        if cur is None or getattr(self._local, "generation", None) != self._generation:
            if self._closed:
                raise RuntimeError("the store is closed")
            if self._dead:
                self._reopen()
            with self._cursors_lock:
                cur = self._db.cursor()
                self._cursors.append(cur)
                self._local.generation = self._generation
            self._local.cursor = cur
        return cur

    @contextmanager
    def _read(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A snapshot for reads made of several statements."""
        cur = self._cursor()
        cur.begin()
        try:
            yield cur
        finally:
            cur.rollback()

    @contextmanager
    def _write(self, *, begin: bool = True) -> Iterator[duckdb.DuckDBPyConnection]:
        """One write transaction: all of it commits, or none of it. begin=False: the caller's first statement
        begins it (a round trip less: see _BEGIN)."""
        if self.read_only:
            raise StoreReadOnly(f"the store {self.path} is open read-only: writes are refused")
        with self._write_lock:
            cur = self._cursor()
            self._pending = [0, 0]
            self._after_commit: list[Callable[[], None]] = []
            if begin:
                cur.begin()
            try:
                yield cur
                cur.commit()
            except BaseException as exc:
                self._slots.clear()
                try:
                    cur.rollback()
                except duckdb.Error:
                    pass  # the failed statement or commit already ended the transaction
                if isinstance(exc, duckdb.FatalException):
                    self._reopen()
                raise
            for then in self._after_commit:
                then()
            with self._stats_lock:
                if self._stats is not None:
                    self._stats[0] += self._pending[0]
                    self._stats[1] += self._pending[1]
            self._upkeep(cur)

    def _upkeep(self, cur: duckdb.DuckDBPyConnection) -> None:
        """After a commit: merge recent postings when they pile up, checkpoint when the log grows."""
        self._writes_since_check += 1
        try:
            if self._last_id - self._merged_upto >= MERGE_MESSAGES:
                if MERGE_IN_BACKGROUND:
                    self._request_merge()
                else:
                    self._merge_recent(cur)
                    self._after_merge()
            # Every 64th write, or after a bulk write: its log may be big.
            if self._writes_since_check < 64 and not self._memory_raised:
                return
            self._writes_since_check = 0
            wal = Path(self.path + ".wal")
            if self.path != ":memory:" and wal.exists() and wal.stat().st_size >= CHECKPOINT_WAL_BYTES:
                self._checkpoint()
        except duckdb.Error as exc:
            # The write before this is already durable in the log; upkeep retries on a later write.
            log.warning("store upkeep failed (writes are safe, will retry): %s", exc)

    def _raise_memory(self) -> None:
        """Before a bulk write, a merge or optimize(): the big limit (see MEMORY_LIMIT). Under the write lock."""
        if self.path != ":memory:" and not self._memory_raised:
            self._db.execute(f"SET memory_limit = '{BULK_MEMORY_LIMIT}'")
            self._memory_raised = True

    def _lower_memory(self) -> None:
        """After the merge that follows bulk writes: checkpoint, so what they left in memory is in the file,
        and go back to the small limit. Under the write lock."""
        if not self._memory_raised:
            return
        self._checkpoint()
        try:
            self._db.execute(f"SET memory_limit = '{MEMORY_LIMIT}'")
            self._memory_raised = False
        except duckdb.Error as exc:  # still more in use than that: the next merge tries again
            log.info("memory limit kept at %s for now: %s", BULK_MEMORY_LIMIT, exc)

    def _request_merge(self) -> None:
        """Wake the merging thread (started on first need): the write that asked returns at once."""
        with self._cursors_lock:
            if self._merger is None:
                self._merger = threading.Thread(target=self._merge_loop, name="mcp-sessions-merge", daemon=True)
                self._merger.start()
        self._merge_wanted.set()

    def _merge_loop(self) -> None:
        # Merges run here, under the write lock like any write, while the caller that asked for one (a
        # bulk import analysing its next batch, say) goes on: the sort runs in DuckDB, off the GIL.
        while True:
            self._merge_wanted.wait()
            self._merge_wanted.clear()
            with self._write_lock:
                if self._closed:
                    return
                try:
                    if self._last_id - self._merged_upto >= MERGE_MESSAGES:
                        self._merge_recent(self._cursor())
                    self._after_merge()
                except Exception as exc:  # noqa: BLE001 - a merge is retried by the next write that asks
                    log.warning("merging recent postings failed (searches still see them): %s", exc)

    def _merge_recent(self, cur: duckdb.DuckDBPyConnection) -> None:
        """Move the postings of messages written since the last merge into the term-sorted table, as one sorted run."""
        upto = self._last_id
        if upto - self._merged_upto > MERGE_MESSAGES:
            self._raise_memory()  # a bulk write's worth to sort
        self._index_seq += 1  # odd while the boundary moves: see _search
        cur.begin()
        try:
            bounds = [self._merged_upto, upto]
            inserted = cur.execute(
                f"INSERT INTO _postings {unnested_sql('id > ? AND id <= ?')} ORDER BY term, message_id", bounds
            ).fetchall()[0][0]
            # Merged postings are read from _postings alone: the text is no longer needed.
            cur.execute("UPDATE messages SET terms = NULL WHERE id > ? AND id <= ?", bounds)
            scattered = self._scattered + (inserted if inserted < SORTED_RUN_ROWS else 0)
            cur.execute("UPDATE _index_state SET merged_upto = ?, scattered_rows = ?", [upto, scattered])
            cur.commit()
            self._scattered = scattered
            self._set_index_state(upto)
        except BaseException:
            cur.rollback()
            raise
        finally:
            self._index_seq += 1

    def _set_index_state(self, merged_upto: int, *, purged: bool = False, sorted_rows: int | None = None) -> None:
        """After a merge or an optimize commits. A search reads the boundary before its snapshot, and takes
        from _postings only ids up to the boundary it read, so whichever side of a merge it lands on it sees
        each message once; it reads _recent_terms before the boundary, so it never skips messages above it."""
        self._merged_upto = merged_upto
        self._recent_terms = set()
        if purged:
            self._any_dead = False
            self._dead_ids = set()
        if sorted_rows is not None:
            self._sorted_rows, self._scattered = sorted_rows, 0

    def _after_merge(self) -> None:
        """After a merge, under the write lock: sort scattered postings in once they weigh (see SCATTERED_SHARE)."""
        if self._scattered > max(SCATTERED_MIN_ROWS, SCATTERED_SHARE * self._sorted_rows):
            log.info("optimizing the index: %d postings merged in small runs", self._scattered)
            self.optimize()
        self._lower_memory()

    def _index_state(self, cur: duckdb.DuckDBPyConnection) -> tuple[int, int, int, int]:
        """(merged_upto, last message id given out, scattered_rows, sorted_rows) as stored."""
        row = _first(
            cur,
            "SELECT merged_upto, greatest((SELECT max(id) FROM messages), (SELECT max(message_id) FROM _dead_messages),"
            " merged_upto), scattered_rows, sorted_rows FROM _index_state",
        )
        assert row is not None
        return int(row[0]), int(row[1]), int(row[2]), int(row[3])

    def optimize(self) -> None:
        """Rewrite the index sorted by term without the postings of removed messages, then checkpoint."""
        with self._write_lock:
            self._index_seq += 1  # odd while the boundary moves: see _search
            self._raise_memory()
            try:
                self._optimize()
            finally:
                self._index_seq += 1
            self._lower_memory()
        self._checkpoint()

    def _optimize(self) -> None:
        with self._write() as cur:
            upto = self._last_id
            cur.execute(
                f"""CREATE TABLE _postings_sorted AS
                   SELECT * FROM (
                       SELECT * FROM _postings WHERE message_id NOT IN (SELECT message_id FROM _dead_messages)
                       UNION ALL
                       {unnested_sql("id > ?")})
                   ORDER BY term, message_id""",
                [self._merged_upto],
            )
            cur.execute("UPDATE messages SET terms = NULL WHERE id > ?", [self._merged_upto])
            cur.execute("DROP TABLE _postings")
            cur.execute("ALTER TABLE _postings_sorted RENAME TO _postings")
            cur.execute("DELETE FROM _dead_messages")
            (sorted_rows,) = cur.execute(
                "UPDATE _index_state SET merged_upto = ?, scattered_rows = 0,"
                " sorted_rows = (SELECT count(*) FROM _postings) RETURNING sorted_rows",
                [upto],
            ).fetchall()[0]
            self._after_commit.append(lambda: self._set_index_state(upto, purged=True, sorted_rows=sorted_rows))

    def _checkpoint(self) -> None:
        """Fold the write-ahead log into the file; on failure the log keeps every write, and a later try folds it."""
        if self.path == ":memory:" or self.read_only:
            return
        # On the first connection, under the write lock: from a cursor that has just committed a
        # write, DuckDB 1.5 refuses CHECKPOINT ("other write transactions active").
        with self._write_lock:
            try:
                self._db.execute("CHECKPOINT")
            except duckdb.Error as exc:
                log.warning("checkpoint deferred: %s", exc)
                if isinstance(exc, duckdb.FatalException):
                    self._reopen()

    def _reopen(self) -> None:
        """Replace a database DuckDB has invalidated after a fatal error; the log replays every commit."""
        # DuckDB 1.5 invalidates the whole database when a CHECKPOINT fails (a full disk), refusing even
        # reads until it is reopened; the write-ahead log still holds every commit.
        with self._cursors_lock:
            if not self._dead:
                self._dead = True
                self._generation += 1
                for cur in [*self._cursors, self._db]:
                    try:
                        cur.close()
                    except duckdb.Error:
                        pass
                self._cursors.clear()
            # Should this fail too, the next call tries again (see _cursor).
            self._db = self._connect()
            self._dead = False
        log.warning("reopened %s after a fatal error", self.path)

    def close(self) -> None:
        """Checkpoint and close; later calls fail."""
        if self._closed:
            return
        self._closed = True
        self._merge_wanted.set()
        if self._merger is not None and self._merger is not threading.current_thread():
            self._merger.join()
        if self._insert_pool is not None:
            self._insert_pool.shutdown(wait=True)
        with self._write_lock:
            # Cursors first: DuckDB refuses a checkpoint while another connection keeps a transaction.
            with self._cursors_lock:
                for cur in self._cursors:
                    cur.close()
                self._cursors.clear()
            if not self.read_only and self.path != ":memory:":
                try:
                    self._db.execute("CHECKPOINT")
                except duckdb.Error as exc:
                    log.warning("checkpoint at close failed (the log keeps every write): %s", exc)
            self._db.close()

    def __enter__(self) -> DuckDBSessionBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Helpers shared by the operations.

    def _session(self, cur: duckdb.DuckDBPyConnection, key: str) -> tuple[int, int] | None:
        row = cur.execute("SELECT id, message_count FROM sessions WHERE key = ?", [key]).fetchone()
        return None if row is None else (row[0], row[1])

    def _slot(self, cur: duckdb.DuckDBPyConnection, key: str, *, last: bool = False) -> _Slot | None:
        """The session's slot, read from the store when the writer does not know it; last: with the last
        message's id and term count. Call under the write lock."""
        slot = self._slots.get(key)
        if slot is None:
            found = self._session(cur, key)
            if found is None:
                return None
            slot = _Slot(*found)
        if last and slot.count and slot.last_id is None:
            pos = slot.session_id * _POS + slot.count - 1
            row = _first(cur, "SELECT id, dl FROM messages WHERE page = ? AND pos = ?", [pos // PAGE_SIZE, pos])
            if row is not None:
                slot = _Slot(slot.session_id, slot.count, row[0], row[1])
        return slot

    def _remember(self, key: str, slot: _Slot) -> None:
        """Keep the slot as it will be once the open write commits (a failed commit forgets them all, see _write)."""
        self._slots.pop(key, None)
        self._slots[key] = slot
        if len(self._slots) > _SLOTS_MAX:
            # Forget the least recently written quarter.
            for stale in list(itertools.islice(self._slots, _SLOTS_MAX // 4)):
                del self._slots[stale]

    def _ensure_session(self, cur: duckdb.DuckDBPyConnection, key: str) -> int:
        """The session's id, creating it (no messages, last_activity now) if missing."""
        found = self._session(cur, key)
        if found is not None:
            return found[0]
        now = _now()
        row = cur.execute(
            "INSERT INTO sessions (id, key, created_at, last_activity, message_count)"
            " VALUES (nextval('session_ids'), ?, ?, ?, 0) RETURNING id",
            [key, now, now],
        ).fetchone()
        assert row is not None
        return row[0]

    def _index(self, contents: Sequence[str]) -> tuple[list[_Indexed], set[int]]:
        """Each text's terms: pure Python, done before taking the write lock."""
        rows, tids = index_texts(self._analyzer, contents)
        return [_Indexed(*row) for row in rows], tids

    def _insert_messages(
        self,
        cur: duckdb.DuckDBPyConnection,
        rows: Sequence[tuple[int, int, str, str, str | None, _Indexed]],
        before: str = "",
    ) -> list[tuple[int, int]]:
        """Insert (session_id, idx, role, content, created_at, indexed) rows, each with its postings (see m004);
        return each one's (id, term count)."""
        values: list[tuple[object, ...]] = []
        for session_id, idx, role, content, created_at, indexed in rows:
            self._last_id += 1
            values.append((self._last_id, session_id, idx, role, content, created_at, indexed.dl, indexed.text))
        if len(values) == 1:
            pos = int(values[0][1]) * _POS + int(values[0][2])  # type: ignore[call-overload]
            # before: statements without parameters sent in the same call (DuckDB binds the last one's).
            cur.execute(
                f"{before}{_INSERT_MESSAGE} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [pos, pos // PAGE_SIZE, *values[0]]
            )
        else:
            assert not before, "statements before an INSERT go with a single row"
            keys = f"session_id * {_POS} + idx, (session_id * {_POS} + idx) // {PAGE_SIZE}"
            columns = list(zip(*values, strict=True))
            cur.execute(
                f"{_INSERT_MESSAGE} SELECT {keys}, * FROM {_MESSAGE_ROWS}",
                [rows_param(**dict(zip(_MESSAGE_COLUMNS, columns, strict=True)))],
            )
        added = [(int(v[0]), int(v[6])) for v in values]  # type: ignore[call-overload]
        self._count(len(rows), sum(dl for _, dl in added))
        return added

    def _insert_chunk(
        self, cur: duckdb.DuckDBPyConnection, rows: Sequence[tuple[int, int, str, str, str | None, _Indexed]]
    ) -> dict[int, tuple[int, int]]:
        """_insert_messages; return session id -> (id, term count) of its last message in rows."""
        return dict(zip((row[0] for row in rows), self._insert_messages(cur, rows), strict=True))

    def _inserter(self) -> ThreadPoolExecutor:
        """The thread a bulk append's INSERTs run on, one at a time, while the next chunk is indexed."""
        with self._cursors_lock:
            if self._insert_pool is None:
                self._insert_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mcp-sessions-insert")
            return self._insert_pool

    def _kill(self, cur: duckdb.DuckDBPyConnection, where: str, params: list[object]) -> int:
        """Delete the messages matching where, and their postings; return how many went."""
        gone = cur.execute(f"DELETE FROM messages WHERE {where} RETURNING id, dl", params).fetchall()
        ids = [row[0] for row in gone]
        self._count(-len(gone), -sum(row[1] or 0 for row in gone))
        # A recent message's postings went with its row; merged ones stay in the term-sorted table.
        merged = [i for i in ids if i <= self._merged_upto]
        if merged:
            # Set before the commit: a search that reads False began before this removal returns.
            self._any_dead = True
            self._after_commit.append(lambda: self._add_dead(merged))
            # Deleting from the big term-sorted table would scan it: mark them dead until optimize().
            cur.execute(f"INSERT INTO _dead_messages SELECT id FROM {_IDS}", [rows_param(id=merged)])
        return len(ids)

    def _add_dead(self, ids: list[int]) -> None:
        if self._dead_ids is not None:
            self._dead_ids.update(ids)
            if len(self._dead_ids) > _DEAD_IDS_MAX:
                self._dead_ids = None

    @staticmethod
    def _session_range(session_id: int) -> list[object]:
        return [session_id * _POS, (session_id + 1) * _POS]

    def _search_stats(self, cur: duckdb.DuckDBPyConnection) -> tuple[int, float]:
        """Message count and mean term count, for BM25; read once, then kept up to date by the writes."""
        with self._stats_lock:
            if self._stats is None:
                row = cur.execute("SELECT count(*), coalesce(sum(dl), 0) FROM messages").fetchone()
                assert row is not None
                self._stats = [int(row[0]), int(row[1])]
            docs, terms = self._stats
        return docs, terms / docs if docs else 0.0

    def _count(self, docs: int, terms: int) -> None:
        """Record messages added (or removed, negative) by the open write; applied when it commits."""
        self._pending[0] += docs
        self._pending[1] += terms

    # Required operations.

    def load(self, session_key: str) -> list[ChatMessage]:
        return [ChatMessage(role=m.role, content=m.content) for m in self.load_page(session_key).messages]

    def append(self, session_key: str, message: ChatMessage) -> int:
        return self._append([(session_key, message)])[session_key]

    def remove_last(self, session_key: str) -> bool:
        with self._write() as cur:
            slot = self._slot(cur, session_key, last=True)
            if slot is None or slot.count == 0:
                return False
            if slot.last_id is not None:
                self._kill(cur, "id = ?", [slot.last_id])
            else:
                self._kill(cur, "pos = ?", [slot.session_id * _POS + slot.count - 1])
            cur.execute(
                "UPDATE sessions SET message_count = ?, last_activity = ? WHERE id = ?",
                [slot.count - 1, _now(), slot.session_id],
            )
            self._remember(session_key, _Slot(slot.session_id, slot.count - 1))
            return True

    def list_sessions(self) -> list[str]:
        return [
            row[0]
            for row in self._cursor()
            .execute("SELECT key FROM sessions ORDER BY last_activity DESC, id DESC")
            .fetchall()
        ]

    # Provided operations, in the trait's order.

    def load_with_timestamps(self, session_key: str) -> list[TimestampedMessage]:
        return self.load_page(session_key).messages

    def update_last(self, session_key: str, message: ChatMessage) -> bool:
        self.check_message(message)
        (indexed,), tids = self._index([message.content])
        with self._write() as cur:
            slot = self._slot(cur, session_key, last=True)
            if slot is None or slot.count == 0:
                return False
            now = _now()
            dl = indexed.dl
            self._recent_terms.update(tids)  # under the write lock, before the commit: see _recent_terms
            rewritten = 0
            if slot.last_id is not None and slot.last_id > self._merged_upto:
                # Its postings are in its own row: rewrite the row in place (text columns update in place).
                row = _first(
                    cur,
                    # The place is checked too: a slot that were wrong must not rewrite another message.
                    "UPDATE messages SET role = ?, content = ?, created_at = ?, dl = ?, terms = ?"
                    " WHERE id = ? AND pos = ?",
                    [
                        message.role,
                        message.content,
                        now,
                        dl,
                        indexed.text,
                        slot.last_id,
                        slot.session_id * _POS + slot.count - 1,
                    ],
                )
                rewritten = 0 if row is None else int(row[0])
            if rewritten == 1:
                self._count(0, dl - (slot.last_dl or 0))
                updated = _Slot(slot.session_id, slot.count, slot.last_id, dl)
            else:
                # Merged postings are masked by id: the new text is a new message in the same place.
                self._kill(cur, "pos = ?", [slot.session_id * _POS + slot.count - 1])
                added = self._insert_messages(
                    cur, [(slot.session_id, slot.count - 1, message.role, message.content, now, indexed)]
                )
                updated = _Slot(slot.session_id, slot.count, *added[0])
            cur.execute("UPDATE sessions SET last_activity = ? WHERE id = ?", [now, slot.session_id])
            self._remember(session_key, updated)
            return True

    def list_sessions_with_metadata(
        self, limit: int | None = None, offset: int = 0, agent_alias: str | None = None
    ) -> list[SessionMetadata]:
        where, params = ("WHERE agent_alias = ?", [agent_alias]) if agent_alias is not None else ("", [])
        limit_sql = f"LIMIT {min(int(limit), _MAX_ROWS)}" if limit is not None else ""
        offset = min(int(offset), _MAX_ROWS)
        rows = (
            self._cursor()
            .execute(
                f"SELECT {_META} FROM sessions {where}"
                f" ORDER BY last_activity DESC, id DESC {limit_sql} OFFSET {int(offset)}",
                params,
            )
            .fetchall()
        )
        return [_meta(row) for row in rows]

    def compact(self, session_key: str) -> int:
        with self._write() as cur:
            self._slots.pop(session_key, None)  # its message count changes
            found = self._session(cur, session_key)
            if found is None or found[1] < 2:
                return 0
            session_id, count = found
            rows = cur.execute(
                # The time as text with its offset goes back in unchanged, whatever the session's TimeZone.
                "SELECT role, content, created_at::VARCHAR FROM messages WHERE pos >= ? AND pos < ? ORDER BY pos",
                self._session_range(session_id),
            ).fetchall()
            kept = [r for i, r in enumerate(rows) if i == 0 or r[:2] != rows[i - 1][:2]]
            removed = len(rows) - len(kept)
            if removed:
                self._kill(cur, "pos >= ? AND pos < ?", self._session_range(session_id))
                indexed, tids = self._index([row[1] for row in kept])
                self._recent_terms.update(tids)  # before the commit: see _recent_terms
                self._insert_messages(
                    cur, [(session_id, i, *row, ix) for i, (row, ix) in enumerate(zip(kept, indexed, strict=True))]
                )
                cur.execute(
                    "UPDATE sessions SET message_count = ?, last_activity = ? WHERE id = ?",
                    [len(kept), _now(), session_id],
                )
            return removed

    def cleanup_stale(self, ttl_hours: int) -> int:
        cutoff = _ago(timedelta(hours=min(ttl_hours, _MAX_HOURS)))
        with self._write() as cur:
            self._slots.clear()
            ids = [
                row[0]
                for row in cur.execute(
                    "SELECT id FROM sessions WHERE last_activity < ? AND state IS DISTINCT FROM 'running'", [cutoff]
                ).fetchall()
            ]
            self._delete_sessions(cur, ids)
            return len(ids)

    def _delete_sessions(self, cur: duckdb.DuckDBPyConnection, ids: list[int]) -> None:
        if not ids:
            return
        self._kill(cur, f"session_id IN (SELECT id FROM {_IDS})", [rows_param(id=ids)])
        cur.execute(f"DELETE FROM sessions WHERE id IN (SELECT id FROM {_IDS})", [rows_param(id=ids)])

    def search(self, query: SessionQuery, agent_alias: str | None = None) -> list[SessionMetadata]:
        keyword = (query.keyword or "").strip()
        if not keyword:
            return self.list_sessions_with_metadata(limit=query.limit, agent_alias=agent_alias)
        terms = self._analyzer.query_terms(keyword)
        if not terms:
            return []
        cur, best = self._search(lambda cur, corpus: score_sessions(cur, terms, corpus, agent_alias, query.limit))
        if not best:
            return []
        rows = cur.execute(
            f"SELECT id, {_META} FROM sessions WHERE id IN ({', '.join(str(int(i)) for i in best)})"
        ).fetchall()
        # Best message first; ties go to the more recent session (last_activity, then the later id).
        rows.sort(key=lambda row: (best[row[0]], row[4], row[0]), reverse=True)
        return [_meta(row[1:]) for row in rows[: query.limit]]

    def _search(self, score: Callable[[duckdb.DuckDBPyConnection, Corpus], _T]) -> tuple[duckdb.DuckDBPyConnection, _T]:
        """Run a scoring that no merge overlapped. Its statements read their own snapshots and take postings
        by the merge boundary read first (see search._branches); a merge committing meanwhile (it also clears
        the merged messages' terms text) could hide messages from it, so such a run is done again."""
        for _ in range(5):
            seq = self._index_seq
            if seq % 2 == 0:
                cur, corpus = self._search_start()
                result = score(cur, corpus)
                if self._index_seq == seq:
                    return cur, result
        with self._write_lock:  # merges keep turning up: hold them off (they take this lock) for one run
            cur, corpus = self._search_start()
            return cur, score(cur, corpus)

    def _search_start(self) -> tuple[duckdb.DuckDBPyConnection, Corpus]:
        """A cursor and what scoring needs. The merge boundary is read before any statement of the search
        (see search._branches); each statement then reads its own snapshot, and hits removed since are dropped."""
        # In this order: see _set_index_state.
        recent_terms, dead_ids, any_dead = self._recent_terms, self._dead_ids, self._any_dead
        upto = self._merged_upto
        cur = self._cursor()
        docs, avgdl = self._search_stats(cur)
        return cur, Corpus(
            merged_upto=upto,
            recent_terms=recent_terms,
            any_dead=any_dead,
            dead_ids=dead_ids,
            docs=docs,
            avgdl=avgdl,
        )

    def _session_keys(self, cur: duckdb.DuckDBPyConnection, ids: Iterable[int]) -> dict[int, str]:
        """Keys of these session ids. A session's id and key never change and ids are never reused: kept."""
        missing = {int(i) for i in ids} - self._keys.keys()
        if missing:
            found = cur.execute(f"SELECT id, key FROM sessions WHERE id IN ({', '.join(map(str, missing))})")
            if len(self._keys) > _SLOTS_MAX:
                self._keys.clear()
            self._keys.update(found.fetchall())
        return self._keys

    def clear_messages(self, session_key: str) -> int:
        with self._write() as cur:
            self._slots.pop(session_key, None)  # its message count changes
            found = self._session(cur, session_key)
            if found is None or found[1] == 0:
                return 0
            session_id, _ = found
            removed = self._kill(cur, "pos >= ? AND pos < ?", self._session_range(session_id))
            cur.execute("UPDATE sessions SET message_count = 0, last_activity = ? WHERE id = ?", [_now(), session_id])
            return removed

    def delete_session(self, session_key: str) -> bool:
        with self._write() as cur:
            self._slots.pop(session_key, None)  # its message count changes
            found = self._session(cur, session_key)
            if found is None:
                return False
            self._delete_sessions(cur, [found[0]])
            return True

    def _set(self, session_key: str, assignments: dict[str, object]) -> None:
        with self._write() as cur:
            session_id = self._ensure_session(cur, session_key)
            if assignments:
                columns = ", ".join(f"{column} = ?" for column in assignments)
                cur.execute(f"UPDATE sessions SET {columns} WHERE id = ?", [*assignments.values(), session_id])

    def _get(self, session_key: str, column: str) -> str | None:
        row = _first(self._cursor(), f"SELECT {column} FROM sessions WHERE key = ?", [session_key])
        return None if row is None else row[0]

    def set_session_name(self, session_key: str, name: str) -> None:
        self._set(session_key, {"name": _or_null(name)})

    def get_session_name(self, session_key: str) -> str | None:
        return self._get(session_key, "name")

    def set_session_agent_alias(self, session_key: str, agent_alias: str) -> None:
        self._set(session_key, {"agent_alias": _or_null(agent_alias)})

    def get_session_agent_alias(self, session_key: str) -> str | None:
        return self._get(session_key, "agent_alias")

    def set_session_context(self, session_key: str, context: SessionContext) -> None:
        given = context.model_dump(exclude_none=True)
        self._set(session_key, {field: _or_null(value) for field, value in given.items()})

    def get_session_metadata(self, session_key: str) -> SessionMetadata | None:
        row = _first(self._cursor(), f"SELECT {_META} FROM sessions WHERE key = ?", [session_key])
        return None if row is None else _meta(row)

    def set_session_state(self, session_key: str, state: str, turn_id: str | None = None) -> None:
        started = _now() if state == "running" else None
        self._set(session_key, {"state": state, "turn_id": _or_null(turn_id), "turn_started_at": started})

    def get_session_state(self, session_key: str) -> SessionState | None:
        row = _first(
            self._cursor(),
            "SELECT state, turn_id, timezone('UTC', turn_started_at) FROM sessions WHERE key = ?",
            [session_key],
        )
        if row is None:
            return None
        return SessionState(state=row[0] or "idle", turn_id=row[1], turn_started_at=row[2])

    def list_running_sessions(self) -> list[SessionMetadata]:
        rows = (
            self._cursor()
            .execute(f"SELECT {_META} FROM sessions WHERE state = 'running' ORDER BY turn_started_at, id")
            .fetchall()
        )
        return [_meta(row) for row in rows]

    def list_stuck_sessions(self, threshold_secs: int) -> list[SessionMetadata]:
        cutoff = _ago(timedelta(hours=min(threshold_secs // 3600, _MAX_HOURS), seconds=threshold_secs % 3600))
        rows = (
            self._cursor()
            .execute(
                f"SELECT {_META} FROM sessions WHERE state = 'running' AND turn_started_at < ?"
                " ORDER BY turn_started_at, id",
                [cutoff],
            )
            .fetchall()
        )
        return [_meta(row) for row in rows]

    # Beyond the trait.

    def append_many(self, items: Iterable[tuple[str, ChatMessage]], marks: Sequence[ImportMark] = ()) -> int:
        """Append many messages (to any sessions, in order) in one transaction; return how many.

        marks record how much of which import files these messages come from, in the same transaction,
        so an import that stops half-way resumes where it stopped (see import_marks)."""
        batch = list(items)
        self._append(batch, marks)
        return len(batch)

    def _append(self, batch: list[tuple[str, ChatMessage]], marks: Sequence[ImportMark] = ()) -> dict[str, int]:
        """Append the batch in one transaction; return each session's message count after it."""
        for _, message in batch:
            self.check_message(message)
        if not batch:
            if marks:
                with self._write() as cur:
                    self._record_imports(cur, marks, _now())
            return {}
        added = Counter(key for key, _ in batch)
        # A batch of one statement is indexed before the write lock; a bigger one chunk by chunk under it,
        # each chunk's indexing (Python) overlapping the previous chunk's INSERT (DuckDB, off the GIL).
        bulk = len(batch) > _INSERT_CHUNK
        indexed, tids = ([], set()) if bulk else self._index([message.content for _, message in batch])
        if len(batch) == 1 and not marks:
            fast = self._append_one(batch[0][0], batch[0][1], indexed[0], tids)
            if fast is not None:
                return fast
        with self._write() as cur:
            self._recent_terms.update(tids)  # under the write lock, before the commit: see _recent_terms
            if bulk:
                self._raise_memory()
            now = _now()
            if len(added) == 1:
                # The common case, one message to a session the writer knows: one UPDATE and one INSERT.
                key = batch[0][0]
                slot = self._slot(cur, key)
                found = [] if slot is None else [(key, slot.session_id, slot.count + len(batch))]
                if slot is not None:
                    cur.execute(
                        "UPDATE sessions SET message_count = ?, last_activity = ? WHERE id = ?",
                        [slot.count + len(batch), now, slot.session_id],
                    )
            else:
                found = self._add_counts(cur, added, now)
            slots = {key: (session_id, count - added[key]) for key, session_id, count in found}
            new = [key for key in added if key not in slots]
            if new:
                created = cur.execute(
                    "INSERT INTO sessions (id, key, created_at, last_activity, message_count)"
                    f" SELECT nextval('session_ids'), key, now, now, added FROM {_ADDED_ROWS} RETURNING key, id",
                    [rows_param(key=new, added=(added[k] for k in new), now=[now] * len(new))],
                ).fetchall()
                slots.update((key, (session_id, 0)) for key, session_id in created)
            lasts: dict[int, tuple[int, int]] = {}  # session id -> (id, term count) of its last new message
            pending: Future[dict[int, tuple[int, int]]] | None = None
            try:
                # Bounded statements keep a big import's memory flat; the transaction stays one.
                for start in range(0, len(batch), _INSERT_CHUNK):
                    part = batch[start : start + _INSERT_CHUNK]
                    if bulk:
                        part_indexed, part_tids = self._index([message.content for _, message in part])
                        self._recent_terms.update(part_tids)
                    else:
                        part_indexed = indexed[start : start + _INSERT_CHUNK]
                    rows: list[tuple[int, int, str, str, str | None, _Indexed]] = []
                    for (key, message), index in zip(part, part_indexed, strict=True):
                        session_id, idx = slots[key]
                        slots[key] = (session_id, idx + 1)
                        rows.append((session_id, idx, message.role, message.content, now, index))
                    if not bulk:
                        lasts.update(self._insert_chunk(cur, rows))
                        continue
                    if pending is not None:
                        lasts.update(pending.result())
                    pending = self._inserter().submit(self._insert_chunk, cur, rows)
                if pending is not None:
                    lasts.update(pending.result())
            finally:
                # Never leave an INSERT running on the cursor that is about to roll back.
                if pending is not None:
                    wait([pending])
            self._record_imports(cur, marks, now)
            for key, (session_id, count) in slots.items():
                self._remember(key, _Slot(session_id, count, *lasts[session_id]))
        return {key: count for key, (_, count) in slots.items()}

    def _append_one(self, key: str, message: ChatMessage, indexed: _Indexed, tids: set[int]) -> dict[str, int] | None:
        """The common write: one message to a session the writer knows, in one call to DuckDB and a commit.
        None when the session is not known here (the caller takes the general way)."""
        with self._write_lock:
            slot = self._slots.get(key)
            if slot is None:
                return None
            with self._write(begin=False) as cur:
                self._recent_terms.update(tids)  # under the write lock, before the commit: see _recent_terms
                now = _now()
                count = slot.count + 1
                # Our own int and time written into the SQL; the message goes as parameters of the last statement.
                update = (
                    f"UPDATE sessions SET message_count = {int(count)}, last_activity = '{now}'"
                    f" WHERE id = {int(slot.session_id)}; "
                )
                row = (slot.session_id, slot.count, message.role, message.content, now, indexed)
                ((message_id, dl),) = self._insert_messages(cur, [row], before=_BEGIN + update)
                self._remember(key, _Slot(slot.session_id, count, message_id, dl))
        return {key: count}

    @staticmethod
    def _add_counts(cur: duckdb.DuckDBPyConnection, added: Counter[str], now: str) -> list[tuple[str, int, int]]:
        """Add to the message counts of existing sessions; return (key, id, new count) of each."""
        return cur.execute(
            "UPDATE sessions SET message_count = message_count + n.added, last_activity = n.now"
            f" FROM {_ADDED_ROWS} AS n WHERE sessions.key = n.key"
            " RETURNING sessions.key, sessions.id, sessions.message_count",
            [rows_param(key=added, added=added.values(), now=[now] * len(added))],
        ).fetchall()

    def load_page(self, session_key: str, offset: int | None = None, limit: int | None = None) -> MessagePage:
        cur = self._cursor()
        # Guess the session's id and count from what the writer knows, then read the slice in one statement
        # (one snapshot) that also shows whether the guess holds.
        slot = self._slots.get(session_key)
        if slot is not None and slot.count > 0:
            # A session's messages fill positions base .. base + count - 1 without a gap: with the message
            # at base + count - 1 there and none at base + count, the count is the one guessed.
            start, stop = slice_bounds(slot.count, offset, limit)
            base = slot.session_id * _POS
            first, end, last = base + start, base + stop, base + slot.count
            rows = cur.execute(_slice_query(first, end, also=(last - 1, last))).fetchall()
            held = {row[4] for row in rows}
            if last - 1 in held and last not in held:
                return MessagePage(messages=_slice_rows(rows, first, end), total=slot.count)
        for _ in range(3):
            if slot is None:
                found = _first(cur, "SELECT id, message_count FROM sessions WHERE key = ?", [session_key])
                if found is None:
                    return MessagePage(messages=[], total=0)
                slot = _Slot(*found)
            session_id, total = slot.session_id, slot.count
            start, stop = slice_bounds(total, offset, limit)
            first, end = session_id * _POS + start, session_id * _POS + stop
            # The count comes back as a row of its own, told apart by pos -1. Ids are never reused: a session
            # deleted since (or made again under the same key) has no row with this id.
            rows = cur.execute(
                f"SELECT NULL, NULL, NULL, message_count, -1 AS pos FROM sessions WHERE id = {int(session_id)}"
                + (f" UNION ALL {_slice_query(first, end)}" if start < stop else "")
            ).fetchall()
            if any(r[4] == -1 and r[3] == total for r in rows):
                return MessagePage(messages=_slice_rows(rows, first, end), total=total)
            slot = None  # changed since: read it afresh
        with self._read() as cur:  # busy writes to this session: read count and slice in one transaction
            found = self._session(cur, session_key)
            if found is None:
                return MessagePage(messages=[], total=0)
            start, stop = slice_bounds(found[1], offset, limit)
            first, end = found[0] * _POS + start, found[0] * _POS + stop
            rows = cur.execute(_slice_query(first, end)).fetchall() if start < stop else []
        return MessagePage(messages=_slice_rows(rows, first, end), total=found[1])

    def search_messages(
        self,
        query: str,
        limit: int | None = SEARCH_MESSAGES_LIMIT_DEFAULT,
        session_key: str | None = None,
        agent_alias: str | None = None,
        role: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[MessageHit]:
        terms = self._analyzer.query_terms(query)
        if not terms:
            return []
        filters = Filters(session_key=session_key, agent_alias=agent_alias, role=role, since=since, until=until)
        cur, ranked = self._search(lambda cur, corpus: score_messages(cur, terms, corpus, filters, limit))
        rows = fetch_messages(cur, [message_id for message_id, _, _ in ranked])
        keys = self._session_keys(cur, (row[4] for row in rows.values()))
        wanted = set(terms)
        hits: list[MessageHit] = []
        for message_id, _, score in ranked:
            if message_id not in rows or rows[message_id][4] not in keys:
                continue  # removed since it was scored
            idx, role_, content, created_at, session_id = rows[message_id]
            snippet = make_snippet(content, wanted, self._analyzer)
            hits.append(
                MessageHit(
                    session_key=keys[session_id],
                    index=idx,
                    role=role_,
                    snippet=snippet,
                    created_at=created_at,
                    score=score,
                )
            )
        return hits

    def import_marks(self, session_key: str) -> list[ImportMark]:
        """What earlier imports into this session read: one mark per file prefix, shortest first.

        Marks from before the session was last created (it was deleted since) no longer count."""
        rows = (
            self._cursor()
            .execute(
                "SELECT i.session_key, i.bytes, i.lines, i.sha256 FROM _imports AS i JOIN sessions AS s"
                " ON s.key = i.session_key WHERE i.session_key = ? AND i.imported_at >= s.created_at"
                " ORDER BY i.bytes",
                [session_key],
            )
            .fetchall()
        )
        return [ImportMark(session_key=r[0], bytes=r[1], lines=r[2], sha256=r[3]) for r in rows]

    @staticmethod
    def _record_imports(cur: duckdb.DuckDBPyConnection, marks: Sequence[ImportMark], now: str) -> None:
        for mark in marks:
            if mark.replaces is not None:
                cur.execute(
                    "DELETE FROM _imports WHERE session_key = ? AND sha256 = ?", [mark.session_key, mark.replaces]
                )
            cur.execute(
                "INSERT INTO _imports (session_key, bytes, lines, sha256, source, imported_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [mark.session_key, mark.bytes, mark.lines, mark.sha256, mark.source, now],
            )

    def export_messages(self, path: str | os.PathLike[str], format: str) -> int:
        """Write every message (session_key, index, role, content, created_at, with the session's name and
        agent_alias) to one file, format 'json' (JSON Lines) or 'parquet'; return how many."""
        if format not in ("json", "parquet"):
            raise ValueError(f"format must be 'json' or 'parquet', got {format!r}")
        # COPY takes no parameter for its target: the path goes in as a quoted literal.
        target = "'" + str(path).replace("'", "''") + "'"
        with self._read() as cur:
            row = cur.execute(
                "COPY (SELECT s.key AS session_key, m.idx AS index, m.role, m.content,"
                " strftime(timezone('UTC', m.created_at), '%Y-%m-%dT%H:%M:%S.%fZ') AS created_at,"
                " s.name AS session_name, s.agent_alias"
                " FROM messages AS m JOIN sessions AS s ON s.id = m.session_id ORDER BY m.session_id, m.idx)"
                f" TO {target} (FORMAT {format})"
            ).fetchone()
        return 0 if row is None else int(row[0])


@dataclass(frozen=True)
class ImportMark:
    """The first `bytes` bytes (`lines` lines, digest `sha256`) of an import file are in session_key.

    replaces names the digest of the shorter mark of the same file this one extends, deleted as it is written.
    """

    session_key: str
    bytes: int
    lines: int
    sha256: str
    source: str | None = None
    replaces: str | None = None
