"""The inverted index's write side: messages to postings rows, inserted in the caller's transaction."""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Iterable, Sequence

import duckdb

from ..terms import Analyzer, term_id
from .params import rows_param, rows_sql

_ROWS = rows_sql({"term": "BIGINT", "message_id": "BIGINT", "session_id": "BIGINT", "tf": "INTEGER", "dl": "INTEGER"})


def insert_postings(
    cur: duckdb.DuckDBPyConnection,
    docs: Iterable[tuple[int, int, Counter[str], int]],
    table: str = "_postings_recent",
) -> None:
    """Write the postings of (message_id, session_id, term counts, term total) documents."""
    columns: tuple[list[int], list[int], list[int], list[int], list[int]] = ([], [], [], [], [])
    terms, message_ids, session_ids, tfs, dls = columns
    for message_id, session_id, counts, dl in docs:
        for term, tf in counts.items():
            terms.append(term_id(term))
            message_ids.append(message_id)
            session_ids.append(session_id)
            tfs.append(tf)
            dls.append(dl)
    if terms:
        param = rows_param(term=terms, message_id=message_ids, session_id=session_ids, tf=tfs, dl=dls)
        cur.execute(f"INSERT INTO {table} SELECT * FROM {_ROWS}", [param])


def index_messages(
    cur: duckdb.DuckDBPyConnection,
    rows: Sequence[tuple[int, int, str]],
    *,
    table: str = "_postings_recent",
    analyzer: Analyzer | None = None,
) -> dict[int, int]:
    """Write postings of (message_id, session_id, content) rows; return each message's term total."""
    analyzer = analyzer or Analyzer.shared()
    lengths: dict[int, int] = {}
    docs: list[tuple[int, int, Counter[str], int]] = []
    for message_id, session_id, content in rows:
        counts = Counter(analyzer.document_terms(content))
        lengths[message_id] = sum(counts.values())
        docs.append((message_id, session_id, counts, lengths[message_id]))
    insert_postings(cur, docs, table)
    return lengths


# Postings of messages written since the last merge live in messages.terms (see m004) as text:
# " <term id>:<count> <term id>:<count> ", the spaces making " <id>:" match whole ids only.


def terms_text(terms: list[str]) -> tuple[str, list[int]]:
    """A message's terms (repeats kept) as messages.terms holds them, and their distinct ids."""
    counts = Counter(terms)
    keyed = [_keyed(term) for term in counts]
    return " " + "".join([f"{key}{tf} " for (_, key), tf in zip(keyed, counts.values(), strict=True)]), [
        k[0] for k in keyed
    ]


@functools.lru_cache(maxsize=1 << 20)
def _keyed(term: str) -> tuple[int, str]:
    """The term's id, and its "<id>:" prefix in a terms text."""
    tid = term_id(term)
    return tid, f"{tid}:"


def parse_terms_text(text: str | None) -> list[tuple[int, int]]:
    """The (term id, count) pairs of a terms text; none for NULL."""
    return [(int(tid), int(tf)) for tid, _, tf in (p.partition(":") for p in (text or "").split())]


def holds_sql(tid: int) -> str:
    """SQL true when a message's terms text holds the term id (our own int, written into the SQL)."""
    return f"contains(terms, ' {int(tid)}:')"


def tf_sql(tid: int) -> str:
    """SQL for the term's count in a message's terms text, NULL where it does not hold the term."""
    return f"TRY_CAST(split_part(split_part(terms, ' {int(tid)}:', 2), ' ', 1) AS INTEGER)"


def unnested_sql(where: str) -> str:
    """SQL for the (term, message_id, session_id, tf, dl) postings held in the terms text of messages matching where."""
    return (
        "SELECT CAST(split_part(p, ':', 1) AS BIGINT) AS term, id AS message_id, session_id,"
        " CAST(split_part(p, ':', 2) AS INTEGER) AS tf, dl"
        f" FROM (SELECT id, session_id, dl, unnest(string_split(trim(terms), ' ')) AS p FROM messages WHERE {where})"
        " WHERE p <> ''"
    )
