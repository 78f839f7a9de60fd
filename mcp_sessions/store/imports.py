"""What imports read (ImportMark, so a stopped import resumes), and export of every message to one file."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb

from .connection import Connection
from .params import rows_param, rows_sql
from .sql import Cursor, quoted


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


def import_marks(cur: Cursor) -> dict[str, list[ImportMark]]:
    """What earlier imports read, by session key: one mark per source prefix, shortest first.

    Marks from before a session was last created (it was deleted since) no longer count."""
    found = cur.execute(
        "SELECT i.session_key, i.bytes, i.lines, i.sha256, i.source FROM _imports AS i JOIN sessions AS s"
        " ON s.key = i.session_key WHERE i.imported_at >= s.created_at"
        " ORDER BY i.session_key, i.bytes, i.lines"
    ).fetchall()
    marks: dict[str, list[ImportMark]] = {}
    for key, size, lines, sha256, source in found:
        marks.setdefault(key, []).append(ImportMark(key, size, lines, sha256, source))
    return marks


def record_imports(cur: Cursor, marks: Sequence[ImportMark], now: str) -> None:
    """Write the marks in the open transaction, each replacing the shorter mark of its file: two statements
    however many (a folder of small files is a mark per file)."""
    replaced = [mark for mark in marks if mark.replaces is not None]
    if replaced:
        keys, digests = [m.session_key for m in replaced], [m.replaces for m in replaced]
        cur.execute(
            f"DELETE FROM _imports USING {_REPLACED} AS r WHERE _imports.session_key = r.k AND _imports.sha256 = r.d",
            [rows_param(k=keys, d=digests)],
        )
    if marks:
        columns = {
            "k": [m.session_key for m in marks],
            "b": [m.bytes for m in marks],
            "l": [m.lines for m in marks],
            "d": [m.sha256 for m in marks],
            "s": [m.source for m in marks],
        }
        cur.execute(
            "INSERT INTO _imports (session_key, bytes, lines, sha256, source, imported_at)"
            f" SELECT *, CAST(? AS TIMESTAMPTZ) FROM {_MARKS}",
            [now, rows_param(**columns)],
        )


_REPLACED = rows_sql({"k": "VARCHAR", "d": "VARCHAR"})
_MARKS = rows_sql({"k": "VARCHAR", "b": "BIGINT", "l": "BIGINT", "d": "VARCHAR", "s": "VARCHAR"})


def export_messages(conn: Connection, path: str | os.PathLike[str], format: str) -> int:
    """Write every message (session_key, index, role, content, created_at, with the session's name and
    agent_alias) to one file, format 'json' (JSON Lines) or 'parquet'; return how many."""
    if format not in ("json", "parquet"):
        raise ValueError(f"format must be 'json' or 'parquet', got {format!r}")
    target = quoted(str(path))
    with conn.read() as cur:
        row = cur.execute(
            "COPY (SELECT s.key AS session_key, m.idx AS index, m.role, m.content,"
            " strftime(timezone('UTC', m.created_at), '%Y-%m-%dT%H:%M:%S.%fZ') AS created_at,"
            " s.name AS session_name, s.agent_alias"
            " FROM messages AS m JOIN sessions AS s ON s.id = m.session_id ORDER BY m.session_id, m.idx)"
            f" TO {target} (FORMAT {format})"
        ).fetchone()
    return 0 if row is None else int(row[0])


# The columns of `export --all`, as the embedded store's COPY writes them (see export_messages above).
ALL_COLUMNS = {
    "session_key": "VARCHAR",
    "index": "BIGINT",
    "role": "VARCHAR",
    "content": "VARCHAR",
    "created_at": "VARCHAR",
    "session_name": "VARCHAR",
    "agent_alias": "VARCHAR",
}


def parquet_from_jsonl(source: Path, target: Path) -> int:
    """Rewrite an `export --all` JSON Lines file as Parquet with the embedded store's column types; return the
    rows. DuckDB (a dependency anyway) streams it, spilling to its own temporary folder, not to memory."""

    columns = "{" + ", ".join(f"{quoted(name)}: {quoted(kind)}" for name, kind in ALL_COLUMNS.items()) + "}"
    selected = ", ".join(f'"{name}"' for name in ALL_COLUMNS)
    with duckdb.connect() as db:
        db.execute(f"SET temp_directory = {quoted(str(target.parent / (target.name + '.tmp')))}")
        row = db.execute(
            f"COPY (SELECT {selected} FROM read_json({quoted(str(source))}, format = 'newline_delimited',"
            f" columns = {columns})) TO {quoted(str(target))} (FORMAT parquet)"
        ).fetchone()
    return 0 if row is None else int(row[0])
