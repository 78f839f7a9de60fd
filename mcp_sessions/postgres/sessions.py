"""The reads of sessions and their messages: one statement each, so what a call returns is one snapshot."""

from __future__ import annotations

from typing import Any

from ..models import MessagePage, SessionMetadata, SessionState, TimestampedMessage
from .pool import Cursor
from .writes import COLUMNS, MAX_HOURS, exact

Row = tuple[Any, ...]  # a session row, COLUMNS in order
_FIELDS = [c.strip() for c in COLUMNS.split(",")]
_AT = {name: i for i, name in enumerate(_FIELDS)}
# Offsets and limits past these are the same as these (a session holds under 2**31 messages).
_BIGGEST = 1 << 40


def metadata(row: Row) -> SessionMetadata:
    return SessionMetadata(
        key=row[_AT["key"]],
        name=row[_AT["name"]],
        created_at=row[_AT["created_at"]],
        last_activity=row[_AT["last_activity"]],
        message_count=row[_AT["message_count"]],
        agent_alias=row[_AT["agent_alias"]],
        channel_id=row[_AT["channel_id"]],
        room_id=row[_AT["room_id"]],
        sender_id=row[_AT["sender_id"]],
    )


def run_state(row: Row) -> SessionState:
    return SessionState(
        state=row[_AT["state"]] or "idle", turn_id=row[_AT["turn_id"]], turn_started_at=row[_AT["turn_started_at"]]
    )


def field(row: Row, name: str) -> Any:
    return row[_AT[name]]


def session(cur: Cursor, session_key: str) -> Row | None:
    return cur.execute(f"SELECT {COLUMNS} FROM sessions WHERE key = %s", [session_key]).fetchone()


def list_keys(cur: Cursor) -> list[str]:
    return [r[0] for r in cur.execute("SELECT key FROM sessions ORDER BY last_activity DESC, id DESC").fetchall()]


def list_rows(cur: Cursor, limit: int | None, offset: int, agent_alias: str | None) -> list[Row]:
    where, params = ("WHERE agent_alias = %s", [agent_alias]) if agent_alias is not None else ("", [])
    limit_sql = "" if limit is None else f"LIMIT {min(int(limit), _BIGGEST)}"
    return cur.execute(
        f"SELECT {COLUMNS} FROM sessions {where} ORDER BY last_activity DESC, id DESC"
        f" {limit_sql} OFFSET {min(int(offset), _BIGGEST)}",
        params,
    ).fetchall()


def running(cur: Cursor, threshold_secs: int | None = None) -> list[Row]:
    """Sessions in state running (for longer than threshold_secs, if given), longest first."""
    where, params = "", []
    if threshold_secs is not None:
        where = " AND turn_started_at < clock_timestamp() - make_interval(secs => %s)"
        params = [float(min(threshold_secs, MAX_HOURS * 3600))]
    return cur.execute(
        f"SELECT {COLUMNS} FROM sessions WHERE state = 'running'{where} ORDER BY turn_started_at, id", params
    ).fetchall()


def _clamp(value: int | None) -> int | None:
    return None if value is None else max(-_BIGGEST, min(int(value), _BIGGEST))


def load_page(cur: Cursor, session_key: str, offset: int | None, limit: int | None) -> MessagePage:
    """A Python-style slice of the session's messages and its total, read in one statement."""
    found = cur.execute(
        """WITH s AS (SELECT id, message_count AS total FROM sessions WHERE key = %(key)s),
        b AS (SELECT id, total, least(CASE WHEN %(offset)s::bigint IS NULL THEN 0
                                            WHEN %(offset)s::bigint < 0 THEN greatest(total + %(offset)s::bigint, 0)
                                            ELSE %(offset)s::bigint END, total) AS start FROM s)
        SELECT b.total, m.idx, m.role, m.content, m.raw, m.created_at FROM b LEFT JOIN messages AS m
        ON m.session_id = b.id AND m.idx >= b.start
            AND (%(limit)s::bigint IS NULL OR m.idx < b.start + %(limit)s::bigint)
        ORDER BY m.idx""",
        {"key": session_key, "offset": _clamp(offset), "limit": _clamp(limit)},
    ).fetchall()
    if not found:
        return MessagePage(messages=[], total=0)
    messages = [
        TimestampedMessage(role=role, content=content, created_at=r[5], index=r[1])
        for r in found
        if r[1] is not None
        for role, content in [exact(r[2], r[3], r[4])]
    ]
    return MessagePage(messages=messages, total=int(found[0][0]))
