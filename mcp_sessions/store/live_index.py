"""LiveIndex: where each message's postings are (its own row, or the term-sorted table), merges, optimize,
and the consistent view a search scores against while merges run."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TypeVar

import duckdb

from ..errors import StoreReadOnly
from .connection import Connection
from .params import rows_param, rows_sql
from .postings import listed_sql, unnested_sql
from .recent import RecentPostings
from .search import Corpus, recent_ids_sql
from .sql import Cursor, first, rows

log = logging.getLogger(__name__)

_T = TypeVar("_T")
# Ids of removed messages whose merged postings are masked, kept in memory up to this many.
_DEAD_IDS_MAX = 100_000


class LiveIndex:
    """The index's state as committed, kept in memory so a search reads only what it needs.

    Messages with ids up to merged_upto have their postings in the term-sorted table, later ones in their
    rows (see m004); last_id is the last message id given out (ids are ours, never reused)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.tuning = conn.tuning
        db = conn.db
        row = first(
            db,
            "SELECT merged_upto, greatest((SELECT max(id) FROM messages), (SELECT max(message_id) FROM _dead_messages),"
            " merged_upto), scattered_rows, sorted_rows FROM _index_state",
        )
        assert row is not None
        self.merged_upto, self.last_id, self.scattered, self.sorted_rows = (int(v) for v in row)
        # Messages above this id are written by this process, whose terms texts list each term once (see
        # index_texts): a merge need not add up their counts. A store written before may list a term twice.
        self.listed_after = self.last_id
        # Odd while the boundary between merged and recent postings moves (see run_search).
        self.seq = 0
        self._merge_wanted = threading.Event()
        self._merger: threading.Thread | None = None
        # _any_dead is False only while no merged posting is masked (set before a removal commits);
        # _dead_ids are the masked ids (None: too many to keep, the mask is applied in SQL), added after it commits;
        # _recent_terms are the term ids of messages above the merge boundary (added before their write commits).
        dead = [r[0] for r in rows(db, f"SELECT message_id FROM _dead_messages LIMIT {_DEAD_IDS_MAX + 1}")]
        self._any_dead = bool(dead)
        self._dead_ids: set[int] | None = set(dead) if len(dead) <= _DEAD_IDS_MAX else None
        # The recent postings in memory (None: too many, searches read them from the rows; see recent.py).
        self.recent: RecentPostings | None = None
        if self.last_id - self.merged_upto <= self.tuning.recent_in_memory_max:
            self.recent = RecentPostings(self.tuning.recent_in_memory_max)
            found = f"SELECT id, session_id, dl, terms FROM messages WHERE {recent_ids_sql(self.merged_upto)}"
            for message_id, session_id, dl, text in rows(db, found):
                self.recent.add(message_id, session_id, dl or 0, text)
            self._recent_terms: set[int] = set(self.recent.by_term)
        else:
            # In SQL: after a bulk import (which leaves its merge to later writes) these are millions of rows.
            self._recent_terms = {
                row[0]
                for row in rows(
                    db,
                    "SELECT DISTINCT CAST(split_part(p, ':', 1) AS BIGINT) FROM (SELECT"
                    f" unnest(string_split(terms, ' ')) AS p FROM messages WHERE {recent_ids_sql(self.merged_upto)})"
                    " WHERE p <> ''",
                )
            }
        # Message count and term total, for BM25: read once, then kept up to date by the writes.
        self._stats: list[int] | None = None
        self._stats_lock = threading.Lock()
        self._pending = [0, 0]

    # What a write tells the index, under the write lock.

    def next_id(self) -> int:
        self.last_id += 1
        return self.last_id

    def add_terms(self, tids: set[int]) -> None:
        """Before the write holding these terms commits: a search never skips a recent message's terms."""
        self._recent_terms.update(tids)

    def written(
        self, docs: list[tuple[int, int, int, str]], after_commit: Callable[[Callable[[], None]], None]
    ) -> None:
        """Messages (id, session_id, term count, terms text) the open write inserts or rewrites in place."""
        recent = self.recent
        if recent is None:
            return
        if not recent.fits(len(docs)):
            self.recent = None  # before the commit: from now on searches read recent postings from the rows
            return
        after_commit(lambda: self._add_recent(docs))

    def _add_recent(self, docs: list[tuple[int, int, int, str]]) -> None:
        recent = self.recent  # under the write lock, as merges replace it
        if recent is not None:
            for doc in docs:
                recent.add(*doc)

    def unlisted(self) -> None:
        """Before a write commits messages not told to written() (a bulk import): recent postings from the rows."""
        self.recent = None

    def begin(self) -> None:
        self._pending = [0, 0]

    def count(self, docs: int, terms: int) -> None:
        """Record messages added (or removed, negative) by the open write; applied when it commits."""
        self._pending[0] += docs
        self._pending[1] += terms

    def committed(self) -> None:
        with self._stats_lock:
            if self._stats is not None:
                self._stats[0] += self._pending[0]
                self._stats[1] += self._pending[1]

    def mask(self, cur: Cursor, ids: list[int], after_commit: list[Callable[[], None]]) -> None:
        """Removed messages: a recent one's postings went with its row; merged ones are masked until optimize()."""
        merged = [i for i in ids if i <= self.merged_upto]
        recent = [i for i in ids if i > self.merged_upto]
        if recent:
            after_commit.append(lambda: self._remove_recent(recent))
        if not merged:
            return
        # Set before the commit: a search that reads False began before this removal returns.
        self._any_dead = True
        after_commit.append(lambda: self._add_dead(merged))
        # Deleting from the big term-sorted table would scan it: mark them dead until optimize().
        cur.execute(f"INSERT INTO _dead_messages SELECT id FROM {rows_sql({'id': 'BIGINT'})}", [rows_param(id=merged)])

    def _remove_recent(self, ids: list[int]) -> None:
        if self.recent is not None:
            self.recent.remove(ids)

    def _add_dead(self, ids: list[int]) -> None:
        if self._dead_ids is not None:
            self._dead_ids.update(ids)
            if len(self._dead_ids) > _DEAD_IDS_MAX:
                self._dead_ids = None

    # Merges.

    def wants_merge(self, at_least: int | None = None) -> bool:
        return self.last_id - self.merged_upto >= (at_least or self.tuning.merge_messages)

    def merge_soon(self, cur: Cursor) -> None:
        """After a commit that left enough recent postings: merge them, on the merge thread or right here."""
        if not self.tuning.merge_in_background:
            self.merge(cur)
            self._after_merge()
            return
        with self.conn.write_lock:
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
            with self.conn.write_lock:
                if self.conn.closed:
                    return
                try:
                    if self.wants_merge():
                        self.conn.spare_memory(lambda: self.merge(self.conn.cursor()))
                    self._after_merge()
                except Exception as exc:  # noqa: BLE001 - a merge is retried by the next write that asks
                    log.warning("merging recent postings failed (searches still see them): %s", exc)

    def stop(self) -> None:
        """Let the merge thread finish (the connection is marked closed first)."""
        self._merge_wanted.set()
        if self._merger is not None and self._merger is not threading.current_thread():
            self._merger.join()

    def merge(self, cur: Cursor) -> None:
        """Move the postings of messages written since the last merge into the term-sorted table, as one
        sorted run. Under the write lock."""
        upto = self.last_id
        if upto - self.merged_upto > self.tuning.merge_messages:
            self.conn.raise_memory()  # a bulk write's worth to sort
        self.seq += 1
        cur.begin()
        try:
            bounds = [self.merged_upto, upto]
            # Grouping the postings is most of a merge's time: only the messages that may need it are grouped.
            listed = max(self.merged_upto, min(self.listed_after, upto))
            inserted = cur.execute(
                f"INSERT INTO _postings SELECT * FROM ({unnested_sql('id > ? AND id <= ?')}"
                f" UNION ALL {listed_sql('id > ? AND id <= ?')}) ORDER BY term, message_id",
                [self.merged_upto, listed, listed, upto],
            ).fetchall()[0][0]
            # Merged postings are read from _postings alone: the text is no longer needed.
            cur.execute("UPDATE messages SET terms = NULL WHERE id > ? AND id <= ?", bounds)
            scattered = self.scattered + (inserted if inserted < self.tuning.sorted_run_rows else 0)
            cur.execute("UPDATE _index_state SET merged_upto = ?, scattered_rows = ?", [upto, scattered])
            cur.commit()
            self.scattered = scattered
            self._moved(upto)
        except BaseException:
            cur.rollback()
            raise
        finally:
            self.seq += 1

    def _moved(self, merged_upto: int, *, purged: bool = False, sorted_rows: int | None = None) -> None:
        """After a merge or an optimize commits. A search reads the boundary before its snapshot, and takes
        from _postings only ids up to the boundary it read, so whichever side of a merge it lands on it sees
        each message once; it reads _recent_terms before the boundary, so it never skips messages above it."""
        self.merged_upto = merged_upto
        self._recent_terms = set()
        self.recent = RecentPostings(self.tuning.recent_in_memory_max)  # under the write lock: all are merged
        if purged:
            self._any_dead = False
            self._dead_ids = set()
        if sorted_rows is not None:
            self.sorted_rows, self.scattered = sorted_rows, 0

    def _after_merge(self) -> None:
        """After a merge, under the write lock: sort scattered postings in once they weigh (see Tuning)."""
        if self.scattered > max(self.tuning.scattered_min_rows, self.tuning.scattered_share * self.sorted_rows):
            log.info("optimizing the index: %d postings merged in small runs", self.scattered)
            self.optimize()
        self.conn.lower_memory()

    def optimize(self) -> None:
        """Rewrite the index sorted by term without the postings of removed messages, then checkpoint."""
        conn = self.conn
        if conn.read_only:
            raise StoreReadOnly(f"the store {conn.path} is open read-only: writes are refused")
        with conn.write_lock:
            self.seq += 1
            conn.raise_memory()
            try:
                self._rewrite(conn.cursor())
            finally:
                self.seq += 1
            conn.lower_memory()
        conn.checkpoint()

    def _rewrite(self, cur: Cursor) -> None:
        upto = self.last_id
        cur.begin()
        try:
            cur.execute(
                f"""CREATE TABLE _postings_sorted AS
                   SELECT * FROM (
                       SELECT * FROM _postings WHERE message_id NOT IN (SELECT message_id FROM _dead_messages)
                       UNION ALL
                       {unnested_sql(recent_ids_sql(self.merged_upto))})
                   ORDER BY term, message_id"""
            )
            cur.execute(f"UPDATE messages SET terms = NULL WHERE {recent_ids_sql(self.merged_upto)}")
            cur.execute("DROP TABLE _postings")
            cur.execute("ALTER TABLE _postings_sorted RENAME TO _postings")
            cur.execute("DELETE FROM _dead_messages")
            (sorted_rows,) = cur.execute(
                "UPDATE _index_state SET merged_upto = ?, scattered_rows = 0,"
                " sorted_rows = (SELECT count(*) FROM _postings) RETURNING sorted_rows",
                [upto],
            ).fetchall()[0]
            cur.commit()
        except BaseException as exc:
            try:
                cur.rollback()
            except duckdb.Error:
                pass  # the failed statement or commit already ended the transaction
            if isinstance(exc, duckdb.FatalException):
                self.conn.reopen()
            raise
        self._moved(upto, purged=True, sorted_rows=sorted_rows)

    # Searches.

    def run_search(self, score: Callable[[Cursor, Corpus], _T]) -> tuple[Cursor, _T]:
        """Run a scoring that no merge overlapped. Its statements read their own snapshots and take postings
        by the merge boundary read first (see search._branches); a merge committing meanwhile (it also clears
        the merged messages' terms text) could hide messages from it, so such a run is done again."""
        for _ in range(5):
            seq = self.seq
            if seq % 2 == 0:
                cur, corpus = self._start()
                result = score(cur, corpus)
                if self.seq == seq:
                    return cur, result
        with self.conn.write_lock:  # merges keep turning up: hold them off (they take this lock) for one run
            cur, corpus = self._start()
            return cur, score(cur, corpus)

    def _start(self) -> tuple[Cursor, Corpus]:
        """A cursor and what scoring needs. The merge boundary is read before any statement of the search
        (see search._branches); each statement then reads its own snapshot, and hits removed since are dropped."""
        # In this order: see _moved.
        recent_terms, recent, dead_ids, any_dead = self._recent_terms, self.recent, self._dead_ids, self._any_dead
        upto = self.merged_upto
        cur = self.conn.cursor()
        with self._stats_lock:
            if self._stats is None:
                row = first(cur, "SELECT count(*), coalesce(sum(dl), 0) FROM messages")
                assert row is not None
                self._stats = [int(row[0]), int(row[1])]
            docs, terms = self._stats
        return cur, Corpus(
            merged_upto=upto,
            recent_terms=recent_terms,
            recent=recent,
            any_dead=any_dead,
            dead_ids=dead_ids,
            docs=docs,
            avgdl=terms / docs if docs else 0.0,
            python_scoring_max=self.tuning.python_scoring_max,
        )
