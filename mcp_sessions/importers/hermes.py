"""Hermes Agent's state: ~/.hermes/state.db, `sessions` and their `messages` (by id, active ones, epoch times)."""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..imported import ImportedMessage, ImportedSession, epoch_utc
from .feeds import Feed, Format, Reading, continued
from .sqlite import columns, open_read_only, read_database, tables

# session_metadata field -> Hermes sessions column.
_CONTEXT = {"name": "title", "channel_id": "source", "room_id": "chat_id", "sender_id": "user_id"}


def default(home: Path) -> Path:
    return home / ".hermes" / "state.db"


def detect(path: Path) -> bool:
    found = tables(path)
    return {"sessions", "messages"} <= found and "session_metadata" not in found


def read(reading: Reading) -> Iterator[Iterable[Feed]]:
    return read_database(reading, _feeds)


def _time(reading: Reading, where: str, value: object) -> str | None:
    try:
        return epoch_utc(value)  # type: ignore[arg-type]
    except ValueError as exc:
        reading.bad(where, str(exc))
        return None


def _sessions(reading: Reading, conn: sqlite3.Connection) -> dict[str, ImportedSession]:
    have = columns(conn, "sessions")
    wanted = {field: column for field, column in _CONTEXT.items() if column in have}
    started = "started_at" if "started_at" in have else "NULL"
    found: dict[str, ImportedSession] = {}
    for row in conn.execute(f"SELECT id, {started}, {', '.join(['NULL', *wanted.values()])} FROM sessions"):
        where = f"sessions id {row[0]!r}"
        key = reading.key(where, str(row[0]) if isinstance(row[0], int) else row[0])
        if key is None:
            continue
        session = ImportedSession(key, created_at=_time(reading, where, row[1]) if row[1] is not None else None)
        for field, value in zip(wanted, row[3:], strict=True):
            setattr(session, field, reading.text(where, field, value))
        found[key] = session
    return found


def _rows(reading: Reading, rows: Iterable[tuple[object, ...]]) -> Iterator[ImportedMessage]:
    for row_id, role, content, timestamp in rows:
        where = f"messages id {row_id}"
        at = _time(reading, where, timestamp)
        # An assistant turn that only calls tools is stored with no content.
        if at is not None and (message := reading.message(where, role, "" if content is None else content, at)):
            yield message


def _feeds(reading: Reading, conn: sqlite3.Connection) -> Iterator[Feed]:
    sessions = _sessions(reading, conn)
    active = "WHERE active IS NULL OR active != 0" if "active" in columns(conn, "messages") else ""
    select = "SELECT session_id, id, role, content, timestamp FROM messages"
    rows = conn.execute(f"{select} {active} ORDER BY session_id, id")
    for raw_key, group in itertools.groupby(rows, key=lambda row: row[0]):
        key = reading.key(f"messages session_id {raw_key!r}", str(raw_key) if isinstance(raw_key, int) else raw_key)
        if key is None:
            continue
        session = sessions.pop(key, None) or ImportedSession(key)
        also = f"AND ({active.removeprefix('WHERE ')})" if active else ""

        def again(raw_key: object = raw_key, also: str = also) -> Iterator[ImportedMessage]:
            with open_read_only(reading.path) as other:
                found = other.execute(f"{select} WHERE session_id = ? {also} ORDER BY id", [raw_key])
                yield from _rows(reading, (row[1:] for row in found))

        yield continued(reading, session, _rows(reading, (row[1:] for row in group)), again)
    for session in sessions.values():
        yield Feed(session, ())


FORMAT = Format("hermes", default, detect, read)
