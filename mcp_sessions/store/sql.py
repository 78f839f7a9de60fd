"""What every part of the store shares: the key layout of messages, the session columns, times, one-row reads."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb

from ..models import SessionMetadata

# Indexed keys of a message (see m001): pos = session_id * POS + idx, page = pos // PAGE_SIZE.
POS = 1 << 32
PAGE_SIZE = 64
FIELDS = "key, name, created_at, last_activity, message_count, agent_alias, channel_id, room_id, sender_id"
# Times come back as UTC wall-clock TIMESTAMPs (DuckDB's TIMESTAMPTZ to Python needs pytz); models add UTC.
META = FIELDS.replace("created_at", "timezone('UTC', created_at)").replace(
    "last_activity", "timezone('UTC', last_activity)"
)
# Durations past this (about 11,000 years) reach back before any stored time.
MAX_HOURS = 10**8
# DuckDB's OFFSET and LIMIT are signed 64-bit; past this every list is already exhausted.
MAX_ROWS = 1 << 62
# Starts a write's transaction inside its first call to DuckDB (see Writer.transaction's begin=False).
BEGIN = "BEGIN TRANSACTION; "

Cursor = duckdb.DuckDBPyConnection


def quoted(text: str) -> str:
    """text as an SQL string literal, for what DuckDB takes no parameter for (COPY's and read_json's paths and
    options) or what goes into the statement itself (see inserts.literal)."""
    return "'" + text.replace("'", "''") + "'"


def now() -> str:
    # Times go to DuckDB as ISO 8601 text: a tz-aware datetime parameter costs ~1 ms to convert.
    return datetime.now(UTC).isoformat()


def ago(duration: timedelta) -> str:
    """The time duration before now, clamped to the start of the calendar."""
    try:
        return (datetime.now(UTC) - duration).isoformat()
    except OverflowError:
        return datetime.min.replace(tzinfo=UTC).isoformat()


def meta(row: Sequence[object]) -> SessionMetadata:
    return SessionMetadata.model_validate(dict(zip(FIELDS.split(", "), row, strict=True)))


def rows(cur: Cursor, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
    return cur.execute(sql, params).fetchall()


def first(cur: Cursor, sql: str, params: Sequence[object] = ()) -> tuple[Any, ...] | None:
    """The first row of a one-statement read, reading the result to its end."""
    # fetchone() can leave the result, and so its transaction, open until the cursor's next statement,
    # and CHECKPOINT fails while any other cursor has a transaction open: our checkpoints never ran.
    found = cur.execute(sql, params).fetchall()
    return found[0] if found else None


def session_range(session_id: int) -> list[object]:
    """[first, end) positions of a session's messages."""
    return [session_id * POS, (session_id + 1) * POS]


def or_null(value: str | None) -> str | None:
    return value or None
