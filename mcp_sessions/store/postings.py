"""The inverted index's write side: messages to postings rows, inserted in the caller's transaction."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import duckdb

from ..terms import Analyzer, term_id

_INSERT = (
    "INSERT INTO {table} SELECT unnest(?::BIGINT[]), unnest(?::BIGINT[]), unnest(?::BIGINT[]),"
    " unnest(?::INTEGER[]), unnest(?::INTEGER[])"
)


def index_messages(
    conn: duckdb.DuckDBPyConnection,
    rows: Sequence[tuple[int, int, str]],
    *,
    table: str = "_postings_recent",
    analyzer: Analyzer | None = None,
) -> dict[int, int]:
    """Write postings of (message_id, session_id, content) rows; return each message's term count."""
    analyzer = analyzer or Analyzer.shared()
    terms: list[int] = []
    message_ids: list[int] = []
    session_ids: list[int] = []
    tfs: list[int] = []
    dls: list[int] = []
    lengths: dict[int, int] = {}
    for message_id, session_id, content in rows:
        counts = Counter(analyzer.document_terms(content))
        length = sum(counts.values())
        lengths[message_id] = length
        for term, tf in counts.items():
            terms.append(term_id(term))
            message_ids.append(message_id)
            session_ids.append(session_id)
            tfs.append(tf)
            dls.append(length)
    if terms:
        conn.execute(_INSERT.format(table=table), [terms, message_ids, session_ids, tfs, dls])
    return lengths
