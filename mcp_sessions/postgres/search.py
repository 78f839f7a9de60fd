"""BM25 over the postings table, ranking exactly as the embedded store does (see bm25.py).

A search is two statements. The first reads the corpus statistics and each query term's document frequency
(a count over the term's postings); the second scores the messages holding any of the terms with the
constants those give, written into the SQL as literals (our own numbers, never a caller's text), and returns
the best. Both read only the postings index, never the message rows. Ties go to the newer message (the
larger id), as in the embedded store. A session search for one word reads the sessions' bounds (m003) in
place of the word's postings, and scores from postings only the sessions whose bound may be above their best;
one for a few words first scores the messages holding two or more of them (see _paired_sql)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .. import bm25
from ..filters_sql import filter_conditions
from ..models import MessageFilters, TimestampedMessage
from .pool import Cursor
from .writes import COLUMNS, exact


def _literal(value: float) -> str:
    return f"{float(value)!r}::float8"


def _frequencies(cur: Cursor, tids: list[int]) -> tuple[int, float, list[int]]:
    """(messages in the corpus, their mean term count, each term's document frequency), in one round trip."""
    counts = ", ".join(f"(SELECT count(*) FROM postings WHERE term = {int(t)})" for t in tids)
    row = cur.execute(f"SELECT (SELECT sum(docs) FROM _corpus), (SELECT sum(terms) FROM _corpus), {counts}").fetchone()
    assert row is not None
    docs, total = int(row[0] or 0), int(row[1] or 0)
    return docs, (total / docs if docs else 0.0), [int(n) for n in row[2:]]


def _where(filters: MessageFilters) -> tuple[str, list[object]]:
    """Conditions over postings for the filters (each starting with AND), and their parameters."""
    where, params = filter_conditions(
        filters,
        "%s",
        lambda keys: ("= ANY(%s)", [keys]),
        lambda value: value.replace("\x00", "\ufffd") if isinstance(value, str) else value,
    )
    return "".join(f" AND {w}" for w in where), params


def _weight_sql(tids: list[int], weights: list[float]) -> str:
    """The start of a CASE giving each term's weight (the caller writes END)."""
    return "CASE term " + " ".join(f"WHEN {int(t)} THEN {_literal(w)}" for t, w in zip(tids, weights, strict=True))


def _scored_sql(tids: list[int], dfs: list[int], docs: int, avgdl: float, where: str, *, weighted: bool = False) -> str:
    """SQL yielding (id, session_id, score) of every message holding a term and passing the filters; its
    parameters are the filters'. weighted: a term counts as its share of the query's idf (bm25.coverage)."""
    weights, a, c = bm25.constants([bm25.idf(df, docs) for df in dfs], avgdl)
    norm = f"(tf + {_literal(a)} + {_literal(c)} * dl)"
    if len(tids) == 1:  # one posting per message: nothing to group
        relevance = f"{_literal(weights[0])} * tf / {norm}"
        return f"""
            SELECT id, session_id, 1 + r / (1 + r) AS score FROM (
                SELECT message_id AS id, session_id, {relevance} AS r
                FROM postings WHERE term = {int(tids[0])}{where}) AS q"""
    weight = _weight_sql(tids, weights)
    terms = ", ".join(str(int(t)) for t in tids)
    # Each term's weight is proportional to its idf: its share of the coverage is weight * (n / sum of weights).
    words = f"sum({weight} END) * {_literal(len(weights) / sum(weights))}" if weighted else "count(*)"
    return f"""
        SELECT id, session_id, words + r / (1 + r) AS score FROM (
            SELECT message_id AS id, session_id, {words} AS words, sum({weight} END * tf / {norm}) AS r
            FROM postings WHERE term IN ({terms}){where} GROUP BY message_id, session_id) AS q"""


def _best_of_one_sql(tid: int, dfs: list[int], docs: int, avgdl: float, limit: int) -> str:
    """SQL yielding (id, session_id, score) of the best `limit` messages for one term, unfiltered, best first.

    For one term a message's relevance grows with tf and falls with dl, so the best messages of each tf are
    its first entries in the index (dl ascending, then the newer message): the walk reads `limit` entries of
    each distinct tf (found by skipping from one to the next) rather than every entry of a common word."""
    weights, a, c = bm25.constants([bm25.idf(dfs[0], docs)], avgdl)
    relevance = f"{_literal(weights[0])} * tf / (tf + {_literal(a)} + {_literal(c)} * dl)"
    t = int(tid)
    return f"""
        WITH RECURSIVE g(tf) AS (
            (SELECT tf FROM postings WHERE term = {t} ORDER BY tf LIMIT 1)
            UNION ALL
            SELECT (SELECT p.tf FROM postings AS p WHERE p.term = {t} AND p.tf > g.tf ORDER BY p.tf LIMIT 1)
            FROM g WHERE g.tf IS NOT NULL)
        SELECT id, session_id, 1 + r / (1 + r) AS score FROM g, LATERAL (
            SELECT message_id AS id, session_id, {relevance} AS r FROM postings
            WHERE term = {t} AND tf = g.tf ORDER BY dl, message_id DESC LIMIT {int(limit)}) AS b
        WHERE g.tf IS NOT NULL"""


Stats = tuple[int, float, list[int]]  # what _frequencies reads


def _plan(
    cur: Cursor,
    tids: list[int],
    filters: MessageFilters,
    walk: int | None = None,
    stats: Stats | None = None,
    *,
    weighted: bool = False,
) -> tuple[str, list[object]] | None:
    """The scoring SQL and its parameters; walk: the limit of a one-term unfiltered search (see _best_of_one_sql)."""
    docs, avgdl, dfs = stats or _frequencies(cur, tids)
    if not any(dfs):
        return None
    if walk is not None:
        return _best_of_one_sql(tids[0], dfs, docs, avgdl, walk), []
    where, params = _where(filters)
    return _scored_sql(tids, dfs, docs, avgdl, where, weighted=weighted), params


Hit = tuple[float, int, str, str, datetime | None, str]  # score, idx, role, content, created_at, session key


def search_messages(cur: Cursor, tids: list[int], filters: MessageFilters, limit: int | None) -> list[Hit]:
    """The best messages for the terms, best first (ties: newest first), at most limit. Words count by their
    idf, as in the embedded store (see bm25.coverage)."""
    walk = limit if len(tids) == 1 and filters == MessageFilters() else None
    plan = _plan(cur, tids, filters, walk=walk, weighted=True)
    if plan is None:
        return []
    sql, params = plan
    limit_sql = "" if limit is None else f"LIMIT {int(limit)}"
    found = cur.execute(
        f"""SELECT b.score, m.idx, m.role, m.content, m.raw, m.created_at, s.key
        FROM (SELECT * FROM ({sql}) AS r ORDER BY score DESC, id DESC {limit_sql}) AS b
        JOIN messages AS m ON m.id = b.id JOIN sessions AS s ON s.id = b.session_id
        ORDER BY b.score DESC, b.id DESC""",
        params,
    ).fetchall()
    return [(float(r[0]), r[1], *exact(r[2], r[3], r[4]), r[5], r[6]) for r in found]


def search_sessions(cur: Cursor, tids: list[int], agent_alias: str | None, limit: int) -> list[tuple[Any, ...]]:
    """Rows of the sessions holding the terms (COLUMNS), best message's score first, then most recent."""
    stats = _frequencies(cur, tids)
    if not any(stats[2]):
        return []
    if len(tids) == 1:
        return _best_sessions_of_one(cur, tids[0], agent_alias, limit, stats)
    if len(tids) <= _PAIRED_TERMS_MAX:
        found = cur.execute(_paired_sql(tids, stats, agent_alias is not None, limit), [agent_alias]).fetchall()
        if len(found) == limit:
            return found
    plan = _plan(cur, tids, MessageFilters(agent_alias=agent_alias), stats=stats)
    if plan is None:
        return []
    sql, params = plan
    columns = ", ".join(f"s.{c.strip()}" for c in COLUMNS.split(","))
    return cur.execute(
        f"""SELECT {columns} FROM (SELECT session_id, max(score) AS best FROM ({sql}) AS r GROUP BY session_id) AS b
        JOIN sessions AS s ON s.id = b.session_id
        ORDER BY b.best DESC, s.last_activity DESC, s.id DESC LIMIT {int(limit)}""",
        params,
    ).fetchall()


# Up to this many terms, a session search first scores the messages holding two or more of them (see
# _paired_sql): one join per pair of terms.
_PAIRED_TERMS_MAX = 4


def _paired_sql(tids: list[int], stats: Stats, by_agent: bool, limit: int) -> str:
    """SQL yielding the rows (COLUMNS) of the best `limit` sessions among those with a message holding two or
    more of the terms, ranked by the best such message; its one parameter is the agent alias (NULL: any).

    A message holding k of the terms scores at least k (and below k + 1): when `limit` sessions have one holding
    two or more, those sessions are the answer and their best messages are among these, whatever the messages
    holding one term score. Such messages are found by joining each pair of terms' postings on the message
    (hash joins over the index), which costs less than grouping every posting of the terms by message."""
    docs, avgdl, dfs = stats
    weights, a, c = bm25.constants([bm25.idf(df, docs) for df in dfs], avgdl)
    pairs = " UNION ALL ".join(
        f"""SELECT x.message_id, x.session_id, x.dl, x.term AS t1, x.tf AS tf1, y.term AS t2, y.tf AS tf2
        FROM postings AS x JOIN postings AS y ON y.message_id = x.message_id
        WHERE x.term = {int(tids[i])} AND y.term = {int(tids[j])}"""
        for i in range(len(tids))
        for j in range(i + 1, len(tids))
    )
    columns = ", ".join(f"s.{c.strip()}" for c in COLUMNS.split(","))
    agent = "s.agent_alias = %s" if by_agent else "%s::text IS NULL"
    # As _scored_sql scores them: words, then relevance summed over the message's postings of the terms.
    relevance = f"{_weight_sql(tids, weights)} END * tf / (tf + {_literal(a)} + {_literal(c)} * dl)"
    return f"""
        WITH h AS ({pairs}),
        e AS (SELECT message_id, session_id, dl, t1 AS term, tf1 AS tf FROM h
            UNION SELECT message_id, session_id, dl, t2, tf2 FROM h),
        m AS (SELECT session_id, count(*) AS words, sum({relevance}) AS r FROM e GROUP BY message_id, session_id),
        b AS (SELECT session_id, max(words + r / (1 + r)) AS best FROM m GROUP BY session_id)
        SELECT {columns} FROM b JOIN sessions AS s ON s.id = b.session_id WHERE {agent}
        ORDER BY b.best DESC, s.last_activity DESC, s.id DESC LIMIT {int(limit)}"""


# A one-term session search first reads the bounds of this many sessions per session wanted.
_SESSIONS_FIRST = 2


def _best_sessions_of_one(
    cur: Cursor, tid: int, agent_alias: str | None, limit: int, stats: Stats
) -> list[tuple[Any, ...]]:
    """The session search for one term, from the sessions' bounds (see m003) rather than every posting.

    A session's bound is at least its best message's score, and is that score when a witness meets it.
    Sessions are read in bound order, the first k + 1 of them: those whose bound is not known to be met are
    scored from their postings. Every session further on ranks below the (k + 1)-th's (bound, last activity,
    id), its score being at most its bound: once `limit` scored sessions rank above that, the answer is known;
    otherwise k grows. (For several terms a session's bound would count every term it holds, where its best
    message mostly holds fewer: such bounds settle little, hence _paired_sql.)"""
    scored: dict[int, float | None] = {}  # session id -> best message's score; None: no longer holds the term
    k = _SESSIONS_FIRST * limit
    while True:
        rows = cur.execute(_bounds_sql(tid, stats, agent_alias is not None, k + 1), [agent_alias]).fetchall()
        head, rest = rows[:k], rows[k:]
        for bound, met, *row in head:
            if met:
                scored[row[0]] = bound
        unscored = [row[2] for row in head if row[2] not in scored]
        if unscored:
            found = dict(cur.execute(_session_scores_sql(tid, stats), [unscored]).fetchall())
            scored.update((session_id, found.get(session_id)) for session_id in unscored)
        # COLUMNS starts with id, then key, name, created_at, last_activity.
        ranked = sorted(
            ((score, row[4], row[0], row) for _, _, *row in head if (score := scored[row[0]]) is not None),
            key=lambda r: r[:3],
            reverse=True,
        )
        if not rest or (len(ranked) >= limit and ranked[limit - 1][:3] > (rest[0][0], rest[0][6], rest[0][2])):
            return [r[3] for r in ranked[:limit]]
        k *= 4


def _relevance_sql(tid: int, stats: Stats, tf: str, dl: str) -> str:
    """The term's BM25 relevance of a message with these tf and dl, as every score of one term evaluates it."""
    docs, avgdl, dfs = stats
    weights, a, c = bm25.constants([bm25.idf(dfs[0], docs)], avgdl)
    return f"{_literal(weights[0])} * {tf} / ({tf} + {_literal(a)} + {_literal(c)} * {dl})"


def _bounds_sql(tid: int, stats: Stats, by_agent: bool, limit: int) -> str:
    """SQL yielding (bound, met, COLUMNS) of the sessions holding the term, highest bound first (then most
    recent); met: the bound is the session's best message's score (the same formula over the same numbers,
    so equal to the bit). Its one parameter is the agent alias (NULL: any)."""
    columns = ", ".join(f"s.{c.strip()}" for c in COLUMNS.split(","))
    agent = "s.agent_alias = %s" if by_agent else "%s::text IS NULL"
    return f"""SELECT 1 + r / (1 + r) AS bound, b.witnessed, {columns} FROM (
            SELECT session_id, witnessed, {_relevance_sql(tid, stats, "max_tf", "min_dl")} AS r
            FROM session_terms WHERE term = {int(tid)}) AS b
        JOIN sessions AS s ON s.id = b.session_id WHERE {agent}
        ORDER BY bound DESC, s.last_activity DESC, s.id DESC LIMIT {int(limit)}"""


def _session_scores_sql(tid: int, stats: Stats) -> str:
    """SQL yielding (session id, best message's score) of the sessions in its one parameter (an id array) that
    hold the term."""
    # The score grows with relevance: the best relevance per session, then its score, evaluates the formula
    # once per posting rather than twice.
    return f"""SELECT session_id, 1 + r / (1 + r) FROM (
            SELECT session_id, max({_relevance_sql(tid, stats, "tf", "dl")}) AS r FROM postings
            WHERE term = {int(tid)} AND session_id = ANY(%s::bigint[]) GROUP BY session_id) AS q"""


def neighbours(cur: Cursor, hits: list[Hit], context: int) -> dict[tuple[str, int], list[TimestampedMessage]]:
    """(session key, idx) of each hit -> the messages within context positions of it, oldest first, in one
    statement (the hit itself left out)."""
    if not hits or context <= 0:
        return {}
    keys = [h[5] for h in hits]
    centres = [h[1] for h in hits]
    rows = cur.execute(
        """SELECT w.key, w.centre, m.idx, m.role, m.content, m.raw, m.created_at
        FROM unnest(%s::text[], %s::bigint[]) AS w(key, centre)
        JOIN sessions AS s ON s.key = w.key
        JOIN messages AS m ON m.session_id = s.id AND m.idx BETWEEN w.centre - %s AND w.centre + %s
        WHERE m.idx <> w.centre ORDER BY w.key, w.centre, m.idx""",
        [keys, centres, context, context],
    ).fetchall()
    found: dict[tuple[str, int], list[TimestampedMessage]] = {}
    for key, centre, idx, role, content, raw, created_at in rows:
        role, content = exact(role, content, raw)
        found.setdefault((key, centre), []).append(
            TimestampedMessage(role=role, content=content, created_at=created_at, index=idx)
        )
    return found
