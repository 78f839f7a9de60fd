"""What an INSERT of messages is made of: its columns, which way its rows travel, and one row before it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from .params import rows_sql
from .sql import PAGE_SIZE, POS, quoted

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


# Texts up to this long without a NUL (which ends a string in DuckDB's parser) may go into the SQL itself.
LITERAL_MAX = 16_384


def literal(text: str) -> str | None:
    """text as an SQL string literal, or None where it must go as a parameter."""
    if len(text) > LITERAL_MAX or "\x00" in text:
        return None
    return quoted(text)


def values_sql(ids: Sequence[int], batch: Sequence[Row], *, inline: bool) -> tuple[str, list[object], bool]:
    """The VALUES rows of an INSERT_MESSAGE for these ids, their parameters, and whether the texts went into
    the SQL as literals instead (asked by inline, done when every one can). Our own ints are always written in."""
    texts = [(role, content, at, indexed.text) for _, _, role, content, at, indexed in batch]
    literals = [[literal(t) if t is not None else "NULL" for t in row] for row in texts] if inline else []
    inline = inline and all(q is not None for row in literals for q in row)
    tuples: list[str] = []
    params: list[object] = []
    for k, (message_id, (session_id, idx, *_, indexed)) in enumerate(zip(ids, batch, strict=True)):
        pos = int(session_id) * POS + int(idx)
        keys = f"{pos}, {pos // PAGE_SIZE}, {int(message_id)}, {int(session_id)}, {int(idx)}"
        role, content, at, terms = literals[k] if inline else ("?", "?", "?", "?")
        tuples.append(f"({keys}, {role}, {content}, {at}, {int(indexed.dl)}, {terms})")
        if not inline:
            params += texts[k]
    return ", ".join(tuples), params, inline
