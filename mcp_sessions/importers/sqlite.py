"""A runtime's SQLite file opened for reading without changing a byte of it, even while its runtime writes.

A read-only connection to a WAL database still writes: it creates the -wal and -shm files when they are
missing, and records its read marks in the -shm. So: a WAL file without a -wal holds everything in the main
file and is opened immutable; one with a -wal (its runtime holds it, or crashed) is read from a copy of the
main file and its log made in a temporary folder, which sees every committed row; a file in rollback-journal
mode is opened with mode=ro."""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from .feeds import Feed, Reading

MAGIC = b"SQLite format 3\x00"
_COPY_TRIES = 5


def is_sqlite(path: Path) -> bool:
    try:
        with path.open("rb") as file:
            return file.read(16) == MAGIC
    except OSError:
        return False


def tables(path: Path) -> set[str]:
    """The names of the file's tables (empty when it is not a SQLite file it can read)."""
    if not is_sqlite(path):
        return set()
    try:
        with open_read_only(path) as conn:
            return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")}
    except sqlite3.Error:
        return set()


def columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


def _in_wal_mode(path: Path) -> bool:
    with path.open("rb") as file:
        header = file.read(20)
    return len(header) == 20 and header[18] == 2 and header[19] == 2


def _uri(path: Path, options: str) -> str:
    return f"file:{quote(str(path.resolve()))}?{options}"


@contextmanager
def open_read_only(path: Path) -> Iterator[sqlite3.Connection]:
    """A connection that reads every committed row of the file and never writes to it or beside it."""
    wal = Path(f"{path}-wal")
    if not _in_wal_mode(path):
        conn = sqlite3.connect(_uri(path, "mode=ro"), uri=True)
    elif not wal.exists():
        conn = sqlite3.connect(_uri(path, "immutable=1"), uri=True)
    else:
        with tempfile.TemporaryDirectory(prefix="mcp-sessions-import-") as folder:
            copy = _copy_with_log(path, wal, Path(folder))
            conn = sqlite3.connect(copy)
            try:
                yield conn
            finally:
                conn.close()
        return
    try:
        yield conn
    finally:
        conn.close()


def _copy_with_log(path: Path, wal: Path, folder: Path) -> Path:
    """Copy the log, then the file: a checkpoint in between leaves the log's pages in the file as well. If the
    log was reset or rewritten while copying (its header changed), copy again."""
    copy = folder / path.name
    for _ in range(_COPY_TRIES):
        header = _wal_header(wal)
        shutil.copyfile(wal, f"{copy}-wal")
        shutil.copyfile(path, copy)
        if _wal_header(wal) == header:
            break
    return copy


def _wal_header(wal: Path) -> bytes:
    try:
        with wal.open("rb") as file:
            return file.read(32)
    except FileNotFoundError:
        return b""


def read_database(
    reading: Reading, feeds: Callable[[Reading, sqlite3.Connection], Iterable[Feed]]
) -> Iterator[Iterable[Feed]]:
    """A runtime's database as one unit of feeds, read through open_read_only while they are consumed."""
    reading.files.append(reading.path)
    with open_read_only(reading.path) as conn:
        yield feeds(reading, conn)
