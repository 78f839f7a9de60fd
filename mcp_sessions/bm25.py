"""BM25, as both engines rank messages: how many of the query's words a message holds, then relevance.

relevance = sum over the terms it holds of w * tf / (tf + a + c * dl), with w = idf * (K1 + 1),
a = K1 * (1 - B) and c = K1 * B / avgdl: the classic formula with its per-term constants hoisted.
"""

from __future__ import annotations

import math

K1 = 1.2
B = 0.75


def idf(df: int, docs: int) -> float:
    """Lucene's idf: never negative, even for a term in every message."""
    return math.log(1 + (max(docs, df) - df + 0.5) / (df + 0.5))


def constants(idfs: list[float], avgdl: float) -> tuple[list[float], float, float]:
    """(w per term, a, c) of relevance = sum of w * tf / (tf + a + c * dl)."""
    avgdl = max(avgdl, 1.0)
    return [i * (K1 + 1) for i in idfs], K1 * (1 - B), K1 * B / avgdl


def coverage(idfs: list[float]) -> list[float]:
    """What each term counts for in score's words when words are weighted: its share of the query's idf, scaled
    so that holding every term counts as many words as the query has (and one term alone counts one)."""
    total = sum(idfs)
    if total <= 0:
        return [1.0] * len(idfs)
    return [len(idfs) * i / total for i in idfs]


def score(words: float, relevance: float) -> float:
    """How many of the query's words a message holds (so more words always rank higher; searched messages count
    each word by its idf, see coverage), plus its BM25 relevance squashed into [0, 1) to order messages holding
    as many."""
    relevance = max(relevance, 0.0)
    return words + relevance / (1 + relevance)
