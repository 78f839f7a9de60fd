"""The inverted index's read side: BM25 over postings in SQL, for messages and for sessions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import duckdb

from ..terms import term_id
from .params import rows_param, rows_sql

K1 = 1.2
B = 0.75


@dataclass(frozen=True)
class Filters:
    """search_messages' narrowing arguments; None means no filter."""

    session_key: str | None = None
    agent_alias: str | None = None
    role: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def _scored_cte(terms: list[str], docs: int, avgdl: float, filters: Filters) -> tuple[str, list[object]]:
    """WITH clauses ending in scored(message_id, session_id, score): one score per live matching message."""
    branches: list[str] = []
    params: list[object] = [float(max(docs, 1)), float(max(avgdl, 1.0))]
    for term in terms:
        tid = term_id(term)
        # One equality scan per term and table, so each uses the term's zone maps (an IN list would not).
        for table in ("_postings", "_postings_recent"):
            branches.append(f"SELECT term, message_id, session_id, tf, dl FROM {table} WHERE term = ?")
            params.append(tid)
    where: list[str] = []
    if filters.session_key is not None:
        where.append("session_id = (SELECT id FROM sessions WHERE key = ?)")
        params.append(filters.session_key)
    if filters.agent_alias is not None:
        where.append("session_id IN (SELECT id FROM sessions WHERE agent_alias = ?)")
        params.append(filters.agent_alias)
    # Message filters read only the narrow columns they test, never the content.
    message_where: list[str] = []
    for column, op, value in (
        ("role", "=", filters.role),
        ("created_at", ">=", filters.since),
        ("created_at", "<=", filters.until),
    ):
        if value is not None:
            message_where.append(f"{column} {op} ?")
            params.append(value.isoformat() if isinstance(value, datetime) else value)
    if message_where:
        where.append(f"message_id IN (SELECT id FROM messages WHERE {' AND '.join(message_where)})")
    # One word: a message has one posting per word, so there is nothing to group.
    single = len(terms) == 1
    # A message's score: how many of the query's words it holds (so more words always rank higher),
    # plus its BM25 score squashed into [0, 1) to order messages holding as many.
    sql = f"""
        WITH stats AS (SELECT ?::DOUBLE AS docs, ?::DOUBLE AS avgdl),
        p AS ({" UNION ALL ".join(branches)}),
        live AS (SELECT * FROM p WHERE message_id NOT IN (SELECT message_id FROM _dead_messages)),
        df AS (SELECT term, count(*)::DOUBLE AS df FROM live GROUP BY term),
        bm25 AS (
            SELECT message_id, {"session_id" if single else "any_value(session_id)"} AS session_id,
                   {"1" if single else "count(*)"} AS words,
                   {"" if single else "sum"}(ln(1 + (stats.docs - df.df + 0.5) / (df.df + 0.5))
                       * tf * {K1 + 1} / (tf + {K1} * ({1 - B} + {B} * dl / stats.avgdl))) AS relevance
            FROM live JOIN df USING (term) CROSS JOIN stats
            {"WHERE " + " AND ".join(where) if where else ""}
            {"" if single else "GROUP BY message_id"}
        ),
        scored AS (
            SELECT message_id, session_id, words + greatest(relevance, 0) / (1 + greatest(relevance, 0)) AS score
            FROM bm25
        )
    """
    return sql, params


Row = tuple[float, int, str, str, datetime | None, str]
_IDS = rows_sql({"id": "BIGINT"})


def search_message_rows(
    cur: duckdb.DuckDBPyConnection, terms: list[str], docs: int, avgdl: float, filters: Filters, limit: int | None
) -> list[Row]:
    """(score, idx, role, content, created_at, session_key) of the best messages, best first."""
    cte, params = _scored_cte(terms, docs, avgdl, filters)
    limit_sql = "" if limit is None else f"LIMIT {int(limit)}"
    # Rank on the postings alone, then fetch only the winners' rows.
    ranked = cur.execute(
        f"{cte} SELECT message_id, score FROM scored ORDER BY score DESC, message_id DESC {limit_sql}", params
    ).fetchall()
    if not ranked:
        return []
    # One primary-key lookup per winner: a join would scan every row group that holds one.
    lookups = " UNION ALL ".join(
        "SELECT id, idx, role, content, timezone('UTC', created_at), session_id FROM messages WHERE id = ?"
        for _ in ranked
    )
    rows = cur.execute(lookups, [r[0] for r in ranked]).fetchall()
    session_ids = {row[5] for row in rows}
    keys = dict(
        cur.execute(
            f"SELECT id, key FROM sessions WHERE id IN (SELECT id FROM {_IDS})", [rows_param(id=session_ids)]
        ).fetchall()
    )
    by_id = {row[0]: (*row[1:5], keys[row[5]]) for row in rows}
    return [(score, *by_id[mid]) for mid, score in ranked if mid in by_id]  # type: ignore[misc]


def search_session_ids(
    cur: duckdb.DuckDBPyConnection, terms: list[str], docs: int, avgdl: float, agent_alias: str | None, limit: int
) -> list[int]:
    """Ids of sessions ranked by their best message; ties go to the more recent session."""
    cte, params = _scored_cte(terms, docs, avgdl, Filters(agent_alias=agent_alias))
    sql = f"""{cte}
        SELECT b.session_id FROM (SELECT session_id, max(score) AS best FROM scored GROUP BY session_id) b
        JOIN sessions sess ON sess.id = b.session_id
        ORDER BY b.best DESC, sess.last_activity DESC, sess.id DESC LIMIT {int(limit)}"""
    return [row[0] for row in cur.execute(sql, params).fetchall()]
