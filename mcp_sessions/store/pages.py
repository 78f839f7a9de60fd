"""load_page: a slice of a session's messages and its count, in one statement when the writer's slot holds."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from ..backend import slice_bounds
from ..models import MessagePage, TimestampedMessage
from .connection import Connection
from .sql import PAGE_SIZE, POS, first

# A slice spanning more pages than this is read in one scan rather than page by page.
_MAX_PAGE_LOOKUPS = 8
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Slot(NamedTuple):
    """What the writer remembers of a session: its id, message count, and its last message's id and term
    count (None until needed)."""

    session_id: int
    count: int
    last_id: int | None = None
    last_dl: int | None = None


def _slice_query(start: int, stop: int, also: Iterable[int] = ()) -> str:
    """SQL reading (role, content, created_at as epoch µs, idx, pos) rows holding every message with
    start <= pos < stop (and those on the pages of the positions also), in no order: _slice_rows keeps
    the slice's and orders them."""
    # Times as epoch microseconds: cheaper than a time zone conversion in SQL, exact in Python.
    columns = "SELECT role, content, epoch_us(created_at), idx, pos FROM messages"
    pages = sorted({*range(start // PAGE_SIZE, (stop - 1) // PAGE_SIZE + 1), *(p // PAGE_SIZE for p in also)})
    if len(pages) > _MAX_PAGE_LOOKUPS:
        return f"{columns} WHERE pos >= {int(min(start, *also))} AND pos < {int(max(stop, *(p + 1 for p in also)))}"
    # Whole pages, one equality each, answered by the page index (a range filter or ORDER BY on top
    # costs more in DuckDB than sorting 64 rows in Python).
    return " UNION ALL ".join(f"{columns} WHERE page = {int(page)}" for page in pages)


def _slice_rows(rows: Iterable[tuple[Any, ...]], start: int, stop: int) -> list[TimestampedMessage]:
    kept = sorted((r for r in rows if start <= r[4] < stop), key=lambda r: r[4])
    return [
        TimestampedMessage(
            role=r[0],
            content=r[1],
            created_at=None if r[2] is None else _EPOCH + timedelta(microseconds=r[2]),
            index=r[3],
        )
        for r in kept
    ]


def load_page(
    conn: Connection, slots: Mapping[str, Slot], session_key: str, offset: int | None, limit: int | None
) -> MessagePage:
    """A Python-style slice of the session's messages and its total count."""
    cur = conn.cursor()
    # Guess the session's id and count from what the writer knows, then read the slice in one statement
    # (one snapshot) that also shows whether the guess holds.
    slot = slots.get(session_key)
    if slot is not None and slot.count > 0:
        # A session's messages fill positions base .. base + count - 1 without a gap: with the message
        # at base + count - 1 there and none at base + count, the count is the one guessed.
        start, stop = slice_bounds(slot.count, offset, limit)
        base = slot.session_id * POS
        lo, hi, last = base + start, base + stop, base + slot.count
        rows = cur.execute(_slice_query(lo, hi, also=(last - 1, last))).fetchall()
        held = {row[4] for row in rows}
        if last - 1 in held and last not in held:
            return MessagePage(messages=_slice_rows(rows, lo, hi), total=slot.count)
    for _ in range(3):
        if slot is None:
            found = first(cur, "SELECT id, message_count FROM sessions WHERE key = ?", [session_key])
            if found is None:
                return MessagePage(messages=[], total=0)
            slot = Slot(*found)
        session_id, total = slot.session_id, slot.count
        start, stop = slice_bounds(total, offset, limit)
        lo, hi = session_id * POS + start, session_id * POS + stop
        # The count comes back as a row of its own, told apart by pos -1. Ids are never reused: a session
        # deleted since (or made again under the same key) has no row with this id.
        rows = cur.execute(
            f"SELECT NULL, NULL, NULL, message_count, -1 AS pos FROM sessions WHERE id = {int(session_id)}"
            + (f" UNION ALL {_slice_query(lo, hi)}" if start < stop else "")
        ).fetchall()
        if any(r[4] == -1 and r[3] == total for r in rows):
            return MessagePage(messages=_slice_rows(rows, lo, hi), total=total)
        slot = None  # changed since: read it afresh
    with conn.read() as cur:  # busy writes to this session: read count and slice in one transaction
        found = first(cur, "SELECT id, message_count FROM sessions WHERE key = ?", [session_key])
        if found is None:
            return MessagePage(messages=[], total=0)
        start, stop = slice_bounds(found[1], offset, limit)
        lo, hi = found[0] * POS + start, found[0] * POS + stop
        rows = cur.execute(_slice_query(lo, hi)).fetchall() if start < stop else []
    return MessagePage(messages=_slice_rows(rows, lo, hi), total=found[1])
