"""What an INSERT of messages is made of: its columns, which way its rows travel, and one row before it."""

from __future__ import annotations

from typing import NamedTuple

from .params import rows_sql

MESSAGE_COLUMNS = {
    "id": "BIGINT",
    "session_id": "BIGINT",
    "idx": "BIGINT",
    "role": "VARCHAR",
    "content": "VARCHAR",
    "created_at": "TIMESTAMPTZ",
    "dl": "INTEGER",
    "terms": "VARCHAR",
}
MESSAGE_ROWS = rows_sql(MESSAGE_COLUMNS)
INSERT_MESSAGE = f"INSERT INTO messages (pos, page, {', '.join(MESSAGE_COLUMNS)})"
# Up to this many rows go as one INSERT ... VALUES (cheapest for a few); more as one JSON parameter, or from
# FILE_MIN rows on (a bulk import's chunks), as one JSON file.
VALUES_MAX = 64
FILE_MIN = 1_000


class Indexed(NamedTuple):
    """A message's postings, ready to store: its term count and its terms text (see m004)."""

    dl: int
    text: str


# (session_id, idx, role, content, created_at, indexed) of a message to insert.
Row = tuple[int, int, str, str, str | None, Indexed]
