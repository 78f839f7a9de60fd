"""The inverted index's write side.

A write stores its message's postings as text in the message row (index_texts; see m004), and a merge moves
them into the term-sorted table (unnested_sql). insert_postings and index_messages write postings rows
directly, for migrations that index messages written before there was an index (m002)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from itertools import chain
from operator import add
from typing import NamedTuple

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
# listed more than once (two tokens stemming alike): its counts add up. index_texts lists each term once, so
# a merge of what this process wrote needs no grouping (see LiveIndex.merge); stores written before may not.


def index_texts(analyzer: Analyzer, texts: Sequence[str]) -> tuple[list[tuple[int, str]], set[int]]:
    """Each text's (term count, terms text as messages.terms holds it, each term once), and the ids of all
    their terms. Per token the work is C's (a lookup, a count, a join): a vocabulary repeats, so each token is
    analysed once (see _Keyed)."""
    token_lists = [analyzer.document_tokens(text) for text in texts]
    tokens = set().union(*token_lists)
    keyed = _Keyed.current(analyzer, tokens)
    prefixes = keyed.prefixes.__getitem__
    rows: list[tuple[int, str]] = []
    for token_list in token_lists:
        # Counted as they are chained, with no list of them in between (a quarter of this loop's time).
        counts = Counter(chain.from_iterable(map(prefixes, token_list)))
        tfs = counts.values()
        rows.append((sum(tfs), " " + " ".join(map(add, counts, map(str, tfs))) + " "))
    tids = set(chain.from_iterable(map(keyed.ids.__getitem__, tokens)))
    return rows, tids


class Encoded(NamedTuple):
    """index_texts of some texts, with the texts, as the bodies of JSON arrays (see params.rows_param): what
    a bulk import inserts, encoded where the analysis ran, and the ids of their terms."""

    contents: str
    dls: str
    terms: str
    dl_total: int
    tids: set[int]


def encode_texts(analyzer: Analyzer, texts: Sequence[str]) -> Encoded:
    rows, tids = index_texts(analyzer, texts)
    dls = [dl for dl, _ in rows]
    contents = json.dumps(list(texts), ensure_ascii=False)[1:-1]
    # Terms texts hold digits, "-", ":" and spaces only: quoted as they are, not run through the encoder.
    terms = '"' + '", "'.join([text for _, text in rows]) + '"' if rows else ""
    return Encoded(contents, ", ".join(map(str, dls)), terms, sum(dls), tids)


def encode_texts_here(texts: Sequence[str]) -> Encoded:
    """encode_texts with this process's shared analyzer: what the analysis process runs (see analysis.Analysis)."""
    return encode_texts(Analyzer.shared(), texts)


class _Keyed:
    """Per token: its terms as "<id>:" prefixes, and as ids. Analyzers differ only in their stem cache, not in
    their rules, so one table serves them all. A full table is replaced, never cleared: a thread still reading
    the old one keeps what it found there."""

    MAX = 500_000
    _current: _Keyed | None = None

    def __init__(self) -> None:
        self.prefixes: dict[str, tuple[str, ...]] = {}
        self.ids: dict[str, tuple[int, ...]] = {}

    @classmethod
    def current(cls, analyzer: Analyzer, tokens: set[str]) -> _Keyed:
        """The table, holding every one of tokens."""
        keyed = cls._current or cls()
        missing = tokens.difference(keyed.ids)
        if len(keyed.ids) + len(missing) > cls.MAX:
            keyed, missing = cls(), tokens
        for token, terms in analyzer.token_terms(missing).items():
            ids = tuple(term_id(term) for term in terms)
            keyed.prefixes[token] = tuple(f"{tid}:" for tid in ids)
            keyed.ids[token] = ids
        cls._current = keyed
        return keyed


def parse_counts(text: str | None) -> dict[int, int]:
    """term id -> count of a terms text (a term listed twice, as stores written before may hold it, adds up);
    none for NULL."""
    counts: dict[int, int] = {}
    for part in (text or "").split():
        tid, _, n = part.partition(":")
        counts[int(tid)] = counts.get(int(tid), 0) + int(n)
    return counts


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


def listed_sql(where: str) -> str:
    """unnested_sql for messages whose terms text lists each term once (written by index_texts): no grouping."""
    return (
        "SELECT CAST(split_part(p, ':', 1) AS BIGINT) AS term, id AS message_id, session_id,"
        " CAST(split_part(p, ':', 2) AS INTEGER) AS tf, dl"
        f" FROM (SELECT id, session_id, dl, unnest(string_split(terms, ' ')) AS p FROM messages WHERE {where})"
        " WHERE p <> ''"
    )
