"""Recall pages, engine-neutral: cursors, matched words, and fitting hits with their neighbours into a budget."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from .models import (
    ContextMessage,
    InvalidArgument,
    MessageFilters,
    MessageHit,
    MessageSearch,
    MessageSearchPage,
    TimestampedMessage,
)
from .snippets import SNIPPET_CHARS, make_snippet
from .terms import Analyzer

_CURSOR_VERSION = 1
_MALFORMED = "cursor is malformed: pass a previous result's next_cursor unchanged, or leave cursor out"


def _fingerprint(query: str, filters: MessageFilters) -> str:
    """What a cursor is bound to: the query and the filters (limit, context and budget may change between pages)."""
    canonical = json.dumps([query, filters.model_dump(mode="json")], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()[:24]


def write_cursor(query: str, filters: MessageFilters, offset: int) -> str:
    """An opaque cursor for the hits after the first offset of this query and filters."""
    body = json.dumps({"v": _CURSOR_VERSION, "o": offset, "f": _fingerprint(query, filters)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")


def read_cursor(cursor: str, query: str, filters: MessageFilters) -> int:
    """How many hits earlier pages returned; InvalidArgument naming cursor when it is not one of ours for these
    arguments."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        body = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")).decode())
        version, offset, bound = body["v"], body["o"], body["f"]
    except (ValueError, UnicodeError, binascii.Error, KeyError, TypeError):
        raise InvalidArgument(_MALFORMED) from None
    if version != _CURSOR_VERSION or type(offset) is not int or offset < 1 or not isinstance(bound, str):
        raise InvalidArgument(
            "cursor is malformed: pass a previous result's next_cursor unchanged, or leave cursor out"
        )
    if bound != _fingerprint(query, filters):
        raise InvalidArgument(
            "cursor was made for other arguments: page with the same query and filters as the call that returned it"
        )
    return offset


@dataclass(frozen=True)
class Candidate:
    """A ranked message, with the messages of its session around it (oldest first, the hit itself left out)."""

    session_key: str
    index: int
    role: str
    content: str
    created_at: datetime | None
    score: float
    neighbours: Sequence[TimestampedMessage] = ()


def matched_words(analyzer: Analyzer, words: list[tuple[str, tuple[str, ...]]], content: str) -> list[str]:
    """The query's words (as written, in query order) whose terms this content holds."""
    held = set(analyzer.document_terms(content))
    return [word for word, terms in words if not held.isdisjoint(terms)]


class _Budget:
    """Characters of message text still allowed in the result; None means no budget."""

    def __init__(self, max_chars: int | None) -> None:
        self.left = max_chars
        self.cut = False  # whether anything was left out or shortened

    def fits(self, chars: int) -> bool:
        return self.left is None or chars <= self.left

    def spend(self, chars: int) -> None:
        if self.left is not None:
            self.left -= chars


def _context(
    neighbours: Sequence[TimestampedMessage], index: int, context: int, budget: _Budget
) -> tuple[list[ContextMessage], list[ContextMessage]]:
    """The neighbours before and after index, the nearest spent from the budget first, alternating sides; the
    first that does not fit whole is cut to what is left, and those further out are left out."""
    before = [m for m in neighbours if index - context <= m.index < index]
    after = [m for m in neighbours if index < m.index <= index + context]
    nearest = [m for pair in zip(reversed(before), after, strict=False) for m in pair]
    nearest += list(reversed(before[len(after) :])) + after[len(before) :]
    kept: dict[int, ContextMessage] = {}
    for message in nearest:
        if budget.fits(len(message.content)):
            budget.spend(len(message.content))
            kept[message.index] = ContextMessage(**message.model_dump())
            continue
        budget.cut = True
        left = budget.left or 0
        if left > 0:
            fields = message.model_dump() | {"content": message.content[:left], "truncated": True}
            kept[message.index] = ContextMessage(**fields)
            budget.spend(left)
        break
    return (
        [kept[m.index] for m in before if m.index in kept],
        [kept[m.index] for m in after if m.index in kept],
    )


def assemble(
    search: MessageSearch, candidates: Sequence[Candidate], more: bool, analyzer: Analyzer
) -> MessageSearchPage:
    """The page of hits for candidates (the ranked hits after search.offset, at most search.limit; more says
    whether others follow them): best first while they fit the budget, each with its neighbours."""
    terms = set(analyzer.query_terms(search.query))
    words = analyzer.query_words(search.query)
    budget = _Budget(search.max_chars)
    hits: list[MessageHit] = []
    for candidate in candidates:
        # A snippet never outgrows the budget, so the best hit always fits.
        chars = SNIPPET_CHARS if search.max_chars is None else min(SNIPPET_CHARS, search.max_chars)
        snippet = make_snippet(candidate.content, terms, analyzer, chars)
        if hits and not budget.fits(len(snippet)):
            budget.cut = True
            break
        budget.spend(len(snippet))
        before, after = _context(candidate.neighbours, candidate.index, search.context, budget)
        hits.append(
            MessageHit(
                session_key=candidate.session_key,
                index=candidate.index,
                role=candidate.role,
                snippet=snippet,
                created_at=candidate.created_at,
                score=candidate.score,
                matched_terms=matched_words(analyzer, words, candidate.content),
                context_before=before,
                context_after=after,
            )
        )
        if budget.cut:
            break  # the budget ran out inside this hit's neighbours
    further = more or len(hits) < len(candidates)
    return MessageSearchPage(
        hits=hits, next_offset=search.offset + len(hits) if further else None, truncated=budget.cut
    )
