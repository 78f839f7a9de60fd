"""Snippets: the part of a long message around its first matching word, as a search hit shows it."""

from __future__ import annotations

from .terms import Analyzer

SNIPPET_CHARS = 300


def make_snippet(content: str, terms: set[str], analyzer: Analyzer, chars: int = SNIPPET_CHARS) -> str:
    """At most chars of content around its first matching word, cut at spaces where it can."""
    if len(content) <= chars:
        return content
    span = analyzer.first_match(content, terms) or (0, 0)
    start = max(0, min(span[0] - chars // 3, len(content) - chars))
    end = start + chars
    if start > 0:
        space = content.find(" ", start, span[0])
        if space != -1 and space + 1 < span[0]:
            start = space + 1
    if end < len(content):
        space = content.rfind(" ", max(span[1], start), end)
        if space > span[1]:
            end = space
    return content[start:end]
