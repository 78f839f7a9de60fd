"""Connection: the DuckDB database of one store, a cursor per thread, the write lock, memory, checkpoints, reopening."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import duckdb

from .. import pandas_absent  # noqa: F401  (before any query: see that module)
from ..errors import StoreLocked, StoreReadOnly
from .migrations import pending
from .settings import Tuning
from .sql import Cursor

log = logging.getLogger(__name__)

_T = TypeVar("_T")

_LOCK_HOLDER = re.compile(r"PID (\d+)")
_REFUSED = re.compile(r"Read-only file system|Permission denied")


def is_lock_error(exc: duckdb.Error) -> bool:
    """DuckDB has no type of its own for a file another process holds: an IOException says so."""
    return isinstance(exc, duckdb.IOException) and "Could not set lock on file" in str(exc)


def needs_upgrade(path: str) -> bool:
    """Whether the store at path has migrations to apply (read without taking the file for writing)."""
    try:
        conn = duckdb.connect(path, read_only=True)
    except duckdb.Error as exc:
        if is_lock_error(exc):
            raise StoreLocked(f"{path} is held by another process: {exc}") from exc
        raise
    try:
        return bool(pending(conn, create=False))
    finally:
        conn.close()


class Connection:
    """The database and its cursors; safe to use from many threads, each getting a cursor of its own."""

    def __init__(self, path: str, *, read_only: bool, tuning: Tuning) -> None:
        self.path = path
        self.read_only = read_only
        self.tuning = tuning
        self.memory = path == ":memory:"
        # Every write, merge and checkpoint holds this: DuckDB has one writer, and so do we.
        self.write_lock = threading.RLock()
        self.closed = False
        self.memory_raised = False
        self._local = threading.local()
        self._cursors: list[Cursor] = []
        self._cursors_lock = threading.Lock()
        # Bumped when the database is reopened (see reopen): cursors of an older generation are dead.
        self._generation = 0
        self._dead = False
        self.db = self._connect()

    def _connect(self) -> Cursor:
        if not self.memory and self.read_only and not Path(self.path).exists():
            raise StoreReadOnly(f"no store at {self.path} to open read-only")
        if not self.memory and not self.read_only:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            db = duckdb.connect(self.path, read_only=self.read_only and not self.memory)
        except duckdb.IOException as exc:
            text = str(exc)
            if is_lock_error(exc):
                holder = _LOCK_HOLDER.search(text)
                who = f"process {holder.group(1)}" if holder else "another process"
                raise StoreLocked(f"{self.path} is held by {who}: {text}") from exc
            if not self.memory and not self.read_only and _REFUSED.search(text) and Path(self.path).exists():
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
        if not self.memory and not self.read_only:
            db.execute("SET checkpoint_threshold = '1TB'")
        if not self.memory:
            db.execute(f"SET memory_limit = '{self.tuning.memory_limit}'")
        # DuckDB draws a bar on stderr for a long statement (opening after a big import, a merge): ours say more.
        db.execute("SET enable_progress_bar = false")
        return db

    def cursor(self) -> Cursor:
        # One DuckDB connection is not thread-safe; each worker thread gets its own cursor.
        cur: Cursor | None = getattr(self._local, "cursor", None)
        if cur is None or getattr(self._local, "generation", None) != self._generation:
            if self.closed:
                raise RuntimeError("the store is closed")
            if self._dead:
                self.reopen()
            with self._cursors_lock:
                cur = self.db.cursor()
                self._cursors.append(cur)
                self._local.generation = self._generation
            self._local.cursor = cur
        return cur

    @contextmanager
    def read(self) -> Iterator[Cursor]:
        """A snapshot for reads made of several statements."""
        cur = self.cursor()
        cur.begin()
        try:
            yield cur
        finally:
            cur.rollback()

    def wal_bytes(self) -> int:
        wal = Path(self.path + ".wal")
        return 0 if self.memory or not wal.exists() else wal.stat().st_size

    def raise_memory(self) -> None:
        """Before a bulk write, a merge or optimize(): the big limit (see Tuning). Under the write lock."""
        if not self.memory and not self.memory_raised:
            self.db.execute(f"SET memory_limit = '{self.tuning.bulk_memory_limit}'")
            self.memory_raised = True

    def lower_memory(self) -> None:
        """After the merge that follows bulk writes: checkpoint, so what they left in memory is in the file,
        and go back to the small limit. Under the write lock."""
        if not self.memory_raised:
            return
        self.checkpoint()
        try:
            self.db.execute(f"SET memory_limit = '{self.tuning.memory_limit}'")
            self.memory_raised = False
        except duckdb.Error as exc:  # still more in use than that: the next merge tries again
            log.info("memory limit kept at %s for now: %s", self.tuning.bulk_memory_limit, exc)

    def spare_memory(self, fn: Callable[[], _T]) -> _T:
        """Run fn; should DuckDB run out of memory under the serving limit, run it again, once, with the bulk
        limit, holding off writes meanwhile: a call waits rather than fail for memory."""
        try:
            return fn()
        except duckdb.OutOfMemoryException as exc:
            # Only a statement that ran out: a commit that fails for memory (a TransactionException) may have
            # reached the log, and must not run twice.
            if self.memory:
                raise
            log.info(
                "out of memory under %s, retrying with %s: %s",
                self.tuning.memory_limit,
                self.tuning.bulk_memory_limit,
                exc,
            )
        with self.write_lock:
            raised = not self.memory_raised
            self.raise_memory()
            try:
                return fn()
            finally:
                if raised:
                    try:
                        self.db.execute(f"SET memory_limit = '{self.tuning.memory_limit}'")
                        self.memory_raised = False
                    except duckdb.Error:  # still in use: the next merge lowers it after its checkpoint
                        pass

    def checkpoint(self) -> None:
        """Fold the write-ahead log into the file; on failure the log keeps every write, and a later try folds it."""
        if self.memory or self.read_only:
            return
        # On the first connection, under the write lock: from a cursor that has just committed a
        # write, DuckDB 1.5 refuses CHECKPOINT ("other write transactions active").
        with self.write_lock:
            try:
                self.db.execute("CHECKPOINT")
            except duckdb.Error as exc:
                log.warning("checkpoint deferred: %s", exc)
                if isinstance(exc, duckdb.FatalException):
                    self.reopen()

    def reopen(self) -> None:
        """Replace a database DuckDB has invalidated after a fatal error; the log replays every commit."""
        # DuckDB 1.5 invalidates the whole database when a CHECKPOINT fails (a full disk), refusing even
        # reads until it is reopened; the write-ahead log still holds every commit.
        with self._cursors_lock:
            if not self._dead:
                self._dead = True
                self._generation += 1
                for cur in [*self._cursors, self.db]:
                    try:
                        cur.close()
                    except duckdb.Error:
                        pass
                self._cursors.clear()
            # Should this fail too, the next call tries again (see cursor).
            self.db = self._connect()
            self._dead = False
        log.warning("reopened %s after a fatal error", self.path)

    def close(self) -> None:
        """Close every cursor, checkpoint and close. Under the write lock, after the store's threads stopped."""
        with self.write_lock:
            # Cursors first: DuckDB refuses a checkpoint while another connection keeps a transaction.
            with self._cursors_lock:
                for cur in self._cursors:
                    cur.close()
                self._cursors.clear()
            if not self.read_only and not self.memory:
                try:
                    self.db.execute("CHECKPOINT")
                except duckdb.Error as exc:
                    log.warning("checkpoint at close failed (the log keeps every write): %s", exc)
            self.db.close()
