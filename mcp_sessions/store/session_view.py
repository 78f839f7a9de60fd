"""SessionView: every session's row as committed, in last-activity order, so reads of sessions need no statement.

The process holding the file is the only one that writes it (relays go through it), and every write that
changes a session row tells the view after it commits, under the write lock, before the write returns: the
view is exact, and a caller reads its own writes. Reads take the view's lock only for the moment they copy.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from ..models import SessionMetadata, SessionState

# The session columns the view holds, in SessionRow's order, as SQL.
COLUMNS = (
    "id, key, name, timezone('UTC', created_at), timezone('UTC', last_activity), message_count, agent_alias,"
    " channel_id, room_id, sender_id, state, turn_id, timezone('UTC', turn_started_at)"
)
_EARLIEST = datetime.min.replace(tzinfo=UTC)
# Tools the session view answers alone.
ANSWERED_BY_VIEW = frozenset(
    {
        "get_session_metadata",
        "get_session_name",
        "get_session_agent_alias",
        "get_session_state",
        "list_running_sessions",
        "list_stuck_sessions",
    }
)


def utc(value: datetime | str | None) -> datetime | None:
    """A stored time as an aware UTC datetime: DuckDB gives naive UTC wall-clock times, writes ISO 8601 text."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class SessionRow:
    id: int
    key: str
    name: str | None
    created_at: datetime | None
    last_activity: datetime | None
    message_count: int
    agent_alias: str | None
    channel_id: str | None
    room_id: str | None
    sender_id: str | None
    state: str | None
    turn_id: str | None
    turn_started_at: datetime | None

    @classmethod
    def from_sql(cls, row: tuple[Any, ...]) -> SessionRow:
        """A row read with COLUMNS."""
        values = list(row)
        for i in (3, 4, 12):
            values[i] = utc(values[i])
        return cls(*values)

    def metadata(self) -> SessionMetadata:
        return SessionMetadata(
            key=self.key,
            name=self.name,
            created_at=self.created_at,
            last_activity=self.last_activity,
            message_count=self.message_count,
            agent_alias=self.agent_alias,
            channel_id=self.channel_id,
            room_id=self.room_id,
            sender_id=self.sender_id,
        )

    def run_state(self) -> SessionState:
        return SessionState(state=self.state or "idle", turn_id=self.turn_id, turn_started_at=self.turn_started_at)

    def order(self) -> tuple[datetime, int]:
        """Where the session stands in lists: most recent activity first, then the later id."""
        return (self.last_activity or _EARLIEST, self.id)


class SessionView:
    """Session rows by key, kept in (last_activity, id) order, oldest first."""

    def __init__(self, rows: Iterable[tuple[Any, ...]]) -> None:
        self._lock = threading.Lock()
        self._rows: dict[str, SessionRow] = {}
        self._ids: dict[int, str] = {}
        self._order: OrderedDict[str, None] = OrderedDict()
        self._running: set[str] = set()
        self._sorted = True
        for row in rows:
            self._put(SessionRow.from_sql(row))

    def __len__(self) -> int:
        return len(self._rows)

    # Reads.

    def get(self, key: str) -> SessionRow | None:
        return self._rows.get(key)

    def key_of(self, session_id: int) -> str | None:
        return self._ids.get(session_id)

    def newest(self, limit: int | None, offset: int = 0, agent_alias: str | None = None) -> list[SessionRow]:
        """Rows by most recent activity (ties: the later id first), as list_sessions_with_metadata pages them."""
        with self._lock:
            self._sort()
            rows = self._rows
            found: list[SessionRow] = []
            skipped = 0
            for key in reversed(self._order):
                row = rows[key]
                if agent_alias is not None and row.agent_alias != agent_alias:
                    continue
                if skipped < offset:
                    skipped += 1
                    continue
                if limit is not None and len(found) >= limit:
                    break
                found.append(row)
            return found

    def running(self) -> list[SessionRow]:
        """Rows in state running, longest running first (ties: the earlier id)."""
        with self._lock:
            rows = [self._rows[key] for key in self._running]
        # As SQL orders them: NULLs last.
        return sorted(rows, key=lambda r: (r.turn_started_at is None, r.turn_started_at or _EARLIEST, r.id))

    # Writes: after their commit, under the store's write lock.

    def put(self, row: SessionRow) -> None:
        with self._lock:
            self._put(row)

    def update(self, key: str, **changes: Any) -> None:
        with self._lock:
            row = self._rows.get(key)
            if row is not None:
                self._put(replace(row, **changes))

    def drop(self, keys: Iterable[str]) -> None:
        with self._lock:
            for key in keys:
                row = self._rows.pop(key, None)
                if row is not None:
                    del self._ids[row.id]
                    del self._order[key]
                    self._running.discard(key)

    def _put(self, row: SessionRow) -> None:
        old = self._rows.get(row.key)
        self._rows[row.key] = row
        self._ids[row.id] = row.key
        if row.state == "running":
            self._running.add(row.key)
        else:
            self._running.discard(row.key)
        if old is not None and old.order() == row.order():
            return
        self._order.pop(row.key, None)
        # Writes stamp the time now, so a touched session nearly always goes last: keep the order as it
        # goes, and sort again only when a time lands out of order (a clock step back, an import's own times).
        if self._order and self._sorted:
            last = self._rows[next(reversed(self._order))]
            if row.order() < last.order():
                self._sorted = False
        self._order[row.key] = None

    def _sort(self) -> None:
        if not self._sorted:
            rows = self._rows
            self._order = OrderedDict((key, None) for key in sorted(rows, key=lambda k: rows[k].order()))
            self._sorted = True
