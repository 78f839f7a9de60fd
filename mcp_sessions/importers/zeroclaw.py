"""ZeroClaw's session store: <data_dir>/sessions/sessions.db, rows of `sessions` by id, `session_metadata`."""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..imported import ImportedMessage, ImportedSession, parse_utc
from .feeds import Feed, Format, Reading, continued
from .sqlite import columns, open_read_only, read_database, tables

_METADATA = ("name", "agent_alias", "channel_id", "room_id", "sender_id", "state", "turn_id")


def default(home: Path) -> Path:
    return home / ".zeroclaw" / "data" / "sessions" / "sessions.db"


def detect(path: Path) -> bool:
    return {"sessions", "session_metadata"} <= tables(path)


def read(reading: Reading) -> Iterator[Iterable[Feed]]:
    return read_database(reading, _feeds)


def _time(reading: Reading, where: str, value: object) -> str | None:
    try:
        return parse_utc(value)  # type: ignore[arg-type]
    except ValueError as exc:
        reading.bad(where, f"created_at is not an RFC 3339 time ({exc})")
        return None


def _sessions(reading: Reading, conn: sqlite3.Connection) -> dict[str, ImportedSession]:
    have = columns(conn, "session_metadata")
    wanted = [c for c in _METADATA if c in have]
    started = "turn_started_at" if "turn_started_at" in have else "NULL"
    picked = ", ".join(["session_key", "created_at", started, *wanted])
    found: dict[str, ImportedSession] = {}
    for row in conn.execute(f"SELECT {picked} FROM session_metadata"):
        where = f"session_metadata {row[0]!r}"
        key = reading.key(where, row[0])
        if key is None:
            continue
        session = ImportedSession(key)
        session.created_at = _time(reading, where, row[1]) if row[1] else None
        session.turn_started_at = _time(reading, where, row[2]) if row[2] else None
        for column, value in zip(wanted, row[3:], strict=True):
            setattr(session, column, reading.text(where, column, value))
        found[key] = session
    return found


def _rows(reading: Reading, rows: Iterable[tuple[int, str, str, str]]) -> Iterator[ImportedMessage]:
    for row_id, role, content, created_at in rows:
        where = f"sessions id {row_id}"
        at = _time(reading, where, created_at)
        if at is not None and (message := reading.message(where, role, content, at)) is not None:
            yield message


def _feeds(reading: Reading, conn: sqlite3.Connection) -> Iterator[Feed]:
    sessions = _sessions(reading, conn)
    select = "SELECT session_key, id, role, content, created_at FROM sessions"
    rows = conn.execute(f"{select} ORDER BY session_key, id")
    for raw_key, group in itertools.groupby(rows, key=lambda row: row[0]):
        key = reading.key(f"sessions session_key {raw_key!r}", raw_key)
        if key is None:
            continue
        session = sessions.pop(key, None) or ImportedSession(key)

        def again(raw_key: str = raw_key) -> Iterator[ImportedMessage]:
            with open_read_only(reading.path) as other:
                yield from _rows(reading, other.execute(f"{select} WHERE session_key = ? ORDER BY id", [raw_key]))

        yield continued(reading, session, _rows(reading, (row[1:] for row in group)), again)
    for session in sessions.values():  # sessions without messages keep their name and context
        yield Feed(session, ())


FORMAT = Format("zeroclaw", default, detect, read)
