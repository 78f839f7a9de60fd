"""The inverted index's read side: BM25 over postings, for messages and for sessions.

A query term's postings live in two places (see m004): merged ones in _postings (sorted by term, so zone
maps skip every row group without it), and those of messages written since the last merge in the messages'
own term lists, which this process also holds in memory (see recent.py). A search first counts each term's
postings (its document frequency), then scores: in Python when the terms are rare (a few rows fetched beat a
planned aggregate), in one SQL aggregate otherwise.
"""

from __future__ import annotations

import heapq
import operator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from .. import bm25
from ..filters_sql import filter_conditions
from ..models import MessageFilters, TimestampedMessage
from ..terms import term_id
from .postings import holds_sql, tf_sql
from .recent import RecentPostings
from .sql import POS, Cursor


@dataclass(frozen=True)
class Corpus:
    """What scoring needs to know of the whole index, read before the search's snapshot."""

    merged_upto: int  # messages with ids up to this have their postings in _postings
    recent_terms: set[int]  # term ids held by messages above merged_upto (a superset)
    recent: RecentPostings | None  # their postings, when all of them are in memory
    any_dead: bool  # whether any merged posting may be masked (see _dead_messages)
    dead_ids: set[int] | None  # the masked message ids, None when too many to keep in memory
    docs: int
    avgdl: float
    # Up to this many postings in all, rows are fetched and scored in Python (see Tuning).
    python_scoring_max: int


def _literal(value: float) -> str:
    """A DOUBLE literal of one of our own numbers (never text from a caller)."""
    return f"{float(value)!r}::DOUBLE"


def _branches(tids: list[int], corpus: Corpus, first: list[str], *, mask: bool, with_recent: bool = True) -> str:
    """(first, message_id, session_id, tf, dl) rows of each term's live postings, first[k] leading term k's rows;
    with_recent=False: only the merged ones (the caller takes the others from memory).

    Term ids and the boundary are our own ints, written into the SQL: no parameter to convert per branch.
    """
    upto = int(corpus.merged_upto)
    # One scan per term of the term-sorted table, each pruned to the row groups holding the term.
    branches = [
        f"SELECT {first[k]}, message_id, session_id, tf, dl FROM _postings WHERE term = {int(tid)}"
        f" AND message_id <= {upto}"
        for k, tid in enumerate(tids)
    ]
    # Ids above the boundary read before the snapshot come from the messages' own terms instead, so a merge
    # committing in between is seen exactly once: one scan of those few rows for all the terms they hold.
    recent = [k for k, tid in enumerate(tids) if with_recent and tid in corpus.recent_terms]
    if recent:
        firsts = ", ".join(first[k] for k in recent)
        tfs = ", ".join(tf_sql(tids[k]) for k in recent)
        holds = " OR ".join(holds_sql(tids[k]) for k in recent)
        branches.append(
            "SELECT * FROM (SELECT unnest([" + firsts + "]), id, session_id, unnest([" + tfs + "]) AS tf, dl"
            f" FROM messages WHERE {recent_ids_sql(upto)} AND ({holds})) WHERE tf IS NOT NULL"
        )
    union = " UNION ALL ".join(branches)
    if mask and corpus.any_dead:
        # Removed messages' merged postings, masked once over the union (recent ids are never masked).
        return f"SELECT * FROM ({union}) WHERE message_id NOT IN (SELECT message_id FROM _dead_messages)"
    return union


def recent_ids_sql(upto: int) -> str:
    """The ids above the merge boundary, as a closed range: DuckDB 1.5 reads the terms of `id > upto` slowly
    (127 ms for 1,467 rows of a 100k-message store) and of the same range written with BETWEEN in 2.5 ms."""
    return f"id BETWEEN {int(upto) + 1} AND {(1 << 63) - 1}"


def _frequencies_sql(tids: list[int], corpus: Corpus, *, with_recent: bool = True) -> str:
    """(k, n) rows, n summing to how many messages hold term k (with_recent=False: of the merged postings). Like
    Lucene's document frequency, it counts removed messages until optimize() purges their postings."""
    upto = int(corpus.merged_upto)
    branches = [
        f"SELECT {k} AS k, count(*) AS n FROM _postings WHERE term = {int(tid)} AND message_id <= {upto}"
        for k, tid in enumerate(tids)
    ]
    recent = [k for k, tid in enumerate(tids) if with_recent and tid in corpus.recent_terms]
    if recent:
        counts = ", ".join(f"count(*) FILTER (WHERE {holds_sql(tids[k])})" for k in recent)
        branches.append(
            f"SELECT unnest([{', '.join(map(str, recent))}]), unnest(n)"
            f" FROM (SELECT [{counts}] AS n FROM messages WHERE {recent_ids_sql(upto)})"
        )
    return " UNION ALL ".join(branches)


def _where(filters: MessageFilters) -> tuple[str, list[object]]:
    """A WHERE clause over (message_id, session_id) rows for the filters, or ''."""
    where, params = filter_conditions(
        filters,
        "?",
        lambda keys: (f"IN ({', '.join('?' for _ in keys)})", list(keys)),
        lambda value: value.isoformat() if isinstance(value, datetime) else value,
    )
    return ("WHERE " + " AND ".join(where) if where else ""), params


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Up to this many recent messages holding a query's terms go to SQL as a list to be filtered; past it, filtered
# searches read the recent rows (see _branches).
_LISTED_MAX = 500
Scored = tuple[int, int, float]  # message_id, session_id, score


@dataclass(frozen=True)
class _Plan:
    """A query's terms, their idf, and the filters, ready to score."""

    tids: list[int]
    idfs: list[float]
    corpus: Corpus
    where: str
    params: list[object]
    # The matching postings (k, message_id, session_id, tf, dl) when there are few, else None.
    fetched: list[tuple[int, int, int, int, int]] | None
    # Whether a term counts as much of the query as its share of the query's idf (see bm25.coverage), or as one.
    weighted: bool = False


def _plan(
    cur: Cursor, terms: list[str], corpus: Corpus, filters: MessageFilters, *, weighted: bool = False
) -> _Plan | None:
    """Count the terms' postings and, in the same statement, fetch them while they are few."""
    tids = [term_id(t) for t in terms]
    where, params = _where(filters)
    # The recent postings come from memory when it holds them all; filters are applied to them in the same
    # statement, on their (message_id, session_id) pairs, unless they are too many to list.
    held = None
    pairs: set[tuple[int, int]] = set()
    if corpus.recent is not None:
        held = [corpus.recent.postings(k, tid, corpus.merged_upto) for k, tid in enumerate(tids)]
        if where:
            pairs = {(p[1], p[2]) for postings in held for p in postings}
            if len(pairs) > _LISTED_MAX:
                held = None
    in_sql = held is None
    # Masked postings are dropped in Python when their ids are at hand (see _score_in_python).
    firsts = [str(k) for k in range(len(tids))]
    union = _branches(tids, corpus, firsts, mask=corpus.dead_ids is None, with_recent=in_sql)
    # One round trip: the frequencies (message_id NULL), then at most python_scoring_max + 1 postings, then
    # (k -1) the listed recent messages that pass the filters.
    sql = (
        f"SELECT k, NULL, NULL, NULL, NULL, n FROM ({_frequencies_sql(tids, corpus, with_recent=in_sql)})"
        f" UNION ALL (SELECT *, NULL FROM ({union}) AS p(k, message_id, session_id, tf, dl) {where}"
        f" LIMIT {corpus.python_scoring_max + 1})"
    )
    listing = held is not None and where and pairs
    if listing:
        # Our own ints as two texts split in SQL: a VALUES list of 500 pairs takes DuckDB 4-5 ms, this 1.
        mids, sids = (",".join(map(str, column)) for column in zip(*pairs, strict=True))
        listed = (
            f"unnest(string_split('{mids}', ','))::BIGINT AS message_id,"
            f" unnest(string_split('{sids}', ','))::BIGINT AS session_id"
        )
        sql += f" UNION ALL SELECT -1, message_id, NULL, NULL, NULL, NULL FROM (SELECT {listed}) {where}"
    rows = cur.execute(sql, params + params if listing else params).fetchall()
    dfs = [0] * len(tids)
    found: list[tuple[int, int, int, int, int]] = []
    passed: set[int] = set()
    for row in rows:
        if row[0] == -1:
            passed.add(row[1])
        elif row[1] is None:
            dfs[row[0]] += row[5]
        else:
            found.append(row[:5])
    for k, postings in enumerate(held or ()):
        dfs[k] += len(postings)  # a document frequency counts every holder, as the SQL one does
        found += postings if not where else [p for p in postings if p[1] in passed]
    if not any(dfs):
        return None
    fetched = found if sum(dfs) <= corpus.python_scoring_max else None
    idfs = [bm25.idf(df, corpus.docs) for df in dfs]
    return _Plan(tids, idfs, corpus, where, params, fetched, weighted)


def _weights(plan: _Plan) -> tuple[list[float], float, float]:
    """(w per term, a, c) of the plan's BM25 (see bm25.constants)."""
    return bm25.constants(plan.idfs, plan.corpus.avgdl)


def _score_in_python(plan: _Plan) -> list[Scored]:
    """Every matching message scored from its fetched postings, with the formula of _ranked_sql."""
    assert plan.fetched is not None
    weights, a, c = _weights(plan)
    units = bm25.coverage(plan.idfs) if plan.weighted else [1.0] * len(plan.idfs)
    dead = plan.corpus.dead_ids if plan.corpus.any_dead else None
    found: dict[int, list[float]] = {}
    for k, message_id, session_id, tf, dl in plan.fetched:
        if dead and message_id <= plan.corpus.merged_upto and message_id in dead:
            continue
        entry = found.setdefault(message_id, [session_id, 0, 0.0])
        entry[1] += units[k]
        entry[2] += weights[k] * tf / (tf + a + c * dl)
    return [(mid, int(e[0]), bm25.score(e[1], e[2])) for mid, e in found.items()]


def _postings_sql(plan: _Plan) -> tuple[str, str]:
    """FROM-clause text for the matching postings (w, message_id, session_id, tf, dl), and their relevance."""
    weights, a, c = _weights(plan)
    union = _branches(plan.tids, plan.corpus, [_literal(w) for w in weights], mask=True)
    return f"({union}) AS p(w, message_id, session_id, tf, dl) {plan.where}", (
        f"w * tf / (tf + {_literal(a)} + {_literal(c)} * dl)"
    )


def _scored_sql(plan: _Plan) -> str:
    """SQL yielding (message_id, session_id, score) of every matching message, in no order."""
    postings, relevance = _postings_sql(plan)
    if len(plan.tids) == 1:  # one posting per message: nothing to group
        return (
            f"SELECT message_id, session_id, 1 + r / (1 + r) AS score FROM (SELECT *, {relevance} AS r FROM {postings})"
        )
    # Each term's w is proportional to its idf: its share of the query's coverage is w * (n / sum of w).
    weights, _, _ = _weights(plan)
    words = f"sum(w) * {_literal(len(weights) / sum(weights))}" if plan.weighted else "count(*)"
    return f"""
        SELECT message_id, session_id, words + r / (1 + r) AS score FROM (
            SELECT message_id, session_id, {words} AS words, sum({relevance}) AS r FROM {postings}
            GROUP BY message_id, session_id)"""


def _ranked_sql(plan: _Plan, limit: int | None) -> str:
    """SQL yielding (message_id, session_id, score) of the best matching messages, best first."""
    limit_sql = "" if limit is None else f"LIMIT {int(limit)}"
    if len(plan.tids) == 1:
        # Ranked by relevance itself (the score grows with it): the score is computed for the winners only.
        postings, relevance = _postings_sql(plan)
        return f"""
            SELECT message_id, session_id, 1 + r / (1 + r) AS score FROM (
                SELECT message_id, session_id, {relevance} AS r FROM {postings}
                ORDER BY r DESC, message_id DESC {limit_sql})
            ORDER BY score DESC, message_id DESC"""
    return f"{_scored_sql(plan)} ORDER BY score DESC, message_id DESC {limit_sql}"


def _ranked(cur: Cursor, plan: _Plan, limit: int | None) -> list[Scored]:
    if plan.fetched is not None:
        scored = _score_in_python(plan)
        best = operator.itemgetter(2, 0)
        return sorted(scored, key=best, reverse=True) if limit is None else heapq.nlargest(limit, scored, key=best)
    rows = cur.execute(_ranked_sql(plan, limit), plan.params).fetchall()
    return [(m, s, float(score)) for m, s, score in rows]


def score_messages(
    cur: Cursor, terms: list[str], corpus: Corpus, filters: MessageFilters, limit: int | None
) -> list[Scored]:
    """The best messages for the terms, best first (ties: newest first), at most limit. A message's words count
    by their idf: a question's rare words (postgres, upgrade) outweigh its common ones (what, did, we)."""
    plan = _plan(cur, terms, corpus, filters, weighted=True)
    return [] if plan is None else _ranked(cur, plan, limit)


def score_sessions(
    cur: Cursor, terms: list[str], corpus: Corpus, agent_alias: str | None, limit: int
) -> dict[int, float]:
    """Sessions holding the terms -> their best message's score: at least the best `limit` of them, ties
    included (the caller orders them by score, then by last activity)."""
    plan = _plan(cur, terms, corpus, MessageFilters(agent_alias=agent_alias))
    if plan is None:
        return {}
    if plan.fetched is not None:
        best: dict[int, float] = {}
        for _, session_id, score in _score_in_python(plan):
            best[session_id] = max(score, best.get(session_id, score))
        return best
    sql = f"""
        SELECT b.session_id, b.best
        FROM (SELECT session_id, max(score) AS best FROM ({_scored_sql(plan)}) GROUP BY session_id) b
        JOIN sessions s ON s.id = b.session_id
        ORDER BY b.best DESC, s.last_activity DESC, s.id DESC LIMIT {int(limit)}"""
    return dict(cur.execute(sql, plan.params).fetchall())


Hit = tuple[int, str, str, datetime | None, int]  # idx, role, content, created_at, session_id


def fetch_messages(cur: Cursor, ids: list[int]) -> dict[int, Hit]:
    """The rows of these messages by id (an IN list of our ints: DuckDB pushes it into the scan as a filter)."""
    if not ids:
        return {}
    rows = cur.execute(
        "SELECT id, idx, role, content, timezone('UTC', created_at), session_id FROM messages"
        f" WHERE id IN ({', '.join(str(int(i)) for i in ids)})"
    )
    return {row[0]: row[1:] for row in rows.fetchall()}


def fetch_neighbours(cur: Cursor, hits: list[Hit], context: int) -> dict[int, list[TimestampedMessage]]:
    """Session id * POS + idx of each hit -> the messages within context positions of it, oldest first."""
    wanted: set[int] = set()
    for idx, _, _, _, session_id in hits:
        base = session_id * POS
        wanted.update(base + i for i in range(max(0, idx - context), idx + context + 1) if i != idx)
    if not wanted:
        return {}
    # A literal IN list of our own ints: DuckDB answers it from the pos index, where a join would scan.
    # Times as epoch microseconds, as load_page reads them: cheaper than a time zone conversion in SQL.
    found = cur.execute(
        "SELECT pos, idx, role, content, epoch_us(created_at) FROM messages"
        f" WHERE pos IN ({', '.join(map(str, sorted(wanted)))})"
    ).fetchall()
    by_pos = {
        row[0]: TimestampedMessage(
            role=row[2],
            content=row[3],
            created_at=None if row[4] is None else EPOCH + timedelta(microseconds=row[4]),
            index=row[1],
        )
        for row in found
    }
    out: dict[int, list[TimestampedMessage]] = {}
    for idx, _, _, _, session_id in hits:
        at = session_id * POS + idx
        out[at] = [by_pos[p] for p in range(at - context, at + context + 1) if p != at and p in by_pos]
    return out
