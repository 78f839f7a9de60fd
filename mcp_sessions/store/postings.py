"""The inverted index's write side.

A write stores its message's postings as text in the message row (index_texts; see m004), and a merge moves
them into the term-sorted table (unnested_sql). insert_postings and index_messages write postings rows
directly, for migrations that index messages written before there was an index (m002)."""

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
    table: str,
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
    table: str,
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
# " <term id>:<count> <term id>:<count> ", the spaces making " <id>:" match whole ids only. A term may be
# listed more than once (two tokens stemming alike): its counts add up.


def index_texts(analyzer: Analyzer, texts: Sequence[str]) -> tuple[list[tuple[int, str]], set[int]]:
    """Each text's (term count, terms text as messages.terms holds it), and the ids of all their terms.

    A chat-sized text lists each occurrence as "<id>:1" (a lookup per token and one join, the cheapest in
    Python); a long one counts its tokens first, so a text repeating words stays short."""
    token_lists, terms_of = analyzer.document_tokens_many(texts)
    rows: list[tuple[int, str]] = []
    for tokens in token_lists:
        if len(tokens) <= _LISTED_MAX:
            parts = [key for token in tokens for key in (_ONCE.get(token) or _keyed(token, terms_of)[0])]
            rows.append((len(parts), " " + " ".join(parts) + " "))
            continue
        parts = []
        dl = 0
        for token, n in Counter(tokens).items():
            prefixes = _keyed(token, terms_of)[1]
            dl += n * len(prefixes)
            parts += [f"{prefix}{n}" for prefix in prefixes]
        rows.append((dl, " " + " ".join(parts) + " "))
    tids = {tid for token in set().union(*token_lists) for tid in _keyed(token, terms_of)[2]}
    return rows, tids


# Texts of up to this many tokens list every occurrence; longer ones are counted.
_LISTED_MAX = 200
# Per token: its terms as "<id>:1" (one occurrence), as "<id>:" prefixes, and as ids. Analyzers differ
# only in their stem cache, not in their rules, so one table serves them all.
_ONCE: dict[str, tuple[str, ...]] = {}
_KEYED: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[int, ...]]] = {}
_KEYED_MAX = 500_000


def _keyed(
    token: str, terms_of: Callable[[str], tuple[str, ...]]
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[int, ...]]:
    keyed = _KEYED.get(token)
    if keyed is None:
        ids = tuple(term_id(term) for term in terms_of(token))
        keyed = (tuple(f"{tid}:1" for tid in ids), tuple(f"{tid}:" for tid in ids), ids)
        if len(_KEYED) >= _KEYED_MAX:
            _KEYED.clear()
            _ONCE.clear()
        _KEYED[token] = keyed
        _ONCE[token] = keyed[0]
    return keyed


def parse_terms_text(text: str | None) -> set[int]:
    """The term ids of a terms text; none for NULL."""
    return {int(part.partition(":")[0]) for part in (text or "").split()}


def holds_sql(tid: int) -> str:
    """SQL true when a message's terms text holds the term id (our own int, written into the SQL)."""
    return f"contains(terms, ' {int(tid)}:')"


def tf_sql(tid: int) -> str:
    """SQL for the term's count in a message's terms text, NULL where it does not hold the term."""
    counts = f"regexp_extract_all(terms, ' {int(tid)}:([0-9]+)', 1)"
    return f"list_sum(list_transform({counts}, n -> n::INTEGER))::INTEGER"


def unnested_sql(where: str) -> str:
    """SQL for the (term, message_id, session_id, tf, dl) postings held in the terms text of messages matching where."""
    return (
        "SELECT CAST(split_part(p, ':', 1) AS BIGINT) AS term, id AS message_id, any_value(session_id) AS session_id,"
        " sum(CAST(split_part(p, ':', 2) AS INTEGER))::INTEGER AS tf, any_value(dl) AS dl"
        f" FROM (SELECT id, session_id, dl, unnest(string_split(terms, ' ')) AS p FROM messages WHERE {where})"
        " WHERE p <> '' GROUP BY term, id"
    )
