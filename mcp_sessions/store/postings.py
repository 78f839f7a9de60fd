"""The inverted index's write side: messages to postings rows, inserted in the caller's transaction."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence

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


# Postings of messages written since the last merge live in messages.terms (see m004) as text: " <term id> "
# once per occurrence (" 12  -7  12 "), the spaces making " <id> " match whole ids only.


def index_texts(analyzer: Analyzer, texts: Sequence[str]) -> tuple[list[tuple[int, str]], set[int]]:
    """Each text's (term count, terms text as messages.terms holds it), and the ids of all their terms.

    A terms text holds one " <term id> " per occurrence, so counting is left to SQL (see tf_sql, unnested_sql):
    here a message costs a lookup per token and one join."""
    token_lists, terms_of = analyzer.document_tokens_many(texts)
    rows: list[tuple[int, str]] = []
    for tokens in token_lists:
        keys = [key for token in tokens for key in (_KEYS.get(token) or _keyed(token, terms_of)[0])]
        rows.append((len(keys), " " + "  ".join(keys) + " "))
    tids = {tid for token in set().union(*token_lists) for tid in _keyed(token, terms_of)[1]}
    return rows, tids


# Per token: its terms' ids as text and as ints. Analyzers differ only in their stem cache, not in their rules.
_KEYS: dict[str, tuple[str, ...]] = {}
_IDS: dict[str, tuple[int, ...]] = {}
_KEYED_MAX = 500_000


def _keyed(token: str, terms_of: Callable[[str], tuple[str, ...]]) -> tuple[tuple[str, ...], tuple[int, ...]]:
    keys, ids = _KEYS.get(token), _IDS.get(token)
    if keys is None or ids is None:
        ids = tuple(term_id(term) for term in terms_of(token))
        keys = tuple(str(tid) for tid in ids)
        if len(_KEYS) >= _KEYED_MAX:
            _KEYS.clear()
            _IDS.clear()
        _IDS[token] = ids
        _KEYS[token] = keys
    return keys, ids


def parse_terms_text(text: str | None) -> set[int]:
    """The term ids of a terms text; none for NULL."""
    return {int(key) for key in (text or "").split()}


def holds_sql(tid: int) -> str:
    """SQL true when a message's terms text holds the term id (our own int, written into the SQL)."""
    return f"contains(terms, ' {int(tid)} ')"


def tf_sql(tid: int) -> str:
    """SQL for the term's count in a message's terms text, NULL where it does not hold the term."""
    key = f"' {int(tid)} '"
    return f"nullif((length(terms) - length(replace(terms, {key}, ''))) // length({key}), 0)::INTEGER"


def unnested_sql(where: str) -> str:
    """SQL for the (term, message_id, session_id, tf, dl) postings held in the terms text of messages matching where."""
    return (
        "SELECT CAST(p AS BIGINT) AS term, id AS message_id, any_value(session_id) AS session_id,"
        " count(*)::INTEGER AS tf, any_value(dl) AS dl"
        f" FROM (SELECT id, session_id, dl, unnest(string_split(terms, ' ')) AS p FROM messages WHERE {where})"
        " WHERE p <> '' GROUP BY p, id"
    )
