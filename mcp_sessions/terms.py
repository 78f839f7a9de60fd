"""Text to search terms: case and accent folding, Snowball stems, identifier parts, CJK bigrams."""

from __future__ import annotations

import functools
import hashlib
import logging
import re
import threading
import unicodedata
from collections.abc import Callable, Iterator, Sequence

from .stems import Stemmer

log = logging.getLogger(__name__)

# A word, or words joined by dots (versions like 1.5.5, names like file.py); \w holds "_", so
# update_last is one token. Everything else, control characters included, separates tokens.
_TOKEN = re.compile(r"\w+(?:\.\w+)*")
_PART_SPLIT = re.compile(r"[._]+")

# Scripts written without spaces between words: indexed as single characters and bigrams,
# so any substring of the text finds it.
_UNSPACED_RANGES = (
    (0x0E00, 0x0EFF),  # Thai, Lao
    (0x1000, 0x109F),  # Myanmar
    (0x1100, 0x11FF),  # Hangul Jamo
    (0x1780, 0x17FF),  # Khmer
    (0x2E80, 0x2FDF),  # CJK radicals
    (0x3040, 0x30FF),  # Hiragana, Katakana
    (0x3100, 0x31FF),  # Bopomofo, Hangul compatibility Jamo, Katakana extensions
    (0x3400, 0x4DBF),  # CJK extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xA960, 0xA97F),  # Hangul Jamo extended A
    (0xAC00, 0xD7FF),  # Hangul syllables, Jamo extended B
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0xFF66, 0xFFDC),  # half-width Katakana and Hangul
    (0x20000, 0x3FFFF),  # CJK extensions B onwards
)

# The Snowball stemmer for each script the fts extension has one for.
_STEMMER_BY_SCRIPT = {"LATIN": "english", "CYRILLIC": "russian", "GREEK": "greek", "ARABIC": "arabic"}
# Scripts whose combining marks are accents or vowel points (cafe finds café); elsewhere they are letters.
_FOLD_MARKS = {"LATIN", "GREEK", "ARABIC", "HEBREW"}

# A query's words beyond this many are ignored: each costs an index scan, and a pasted page of
# text (or a hostile one) must not take seconds.
MAX_QUERY_TERMS = 64


_UNSPACED = re.compile("[" + "".join(f"{chr(low)}-{chr(high)}" for low, high in _UNSPACED_RANGES) + "]+")
_TOKEN_CACHE_MAX = 500_000


def _script(word: str) -> str | None:
    for ch in word:
        if ch.isalpha():
            name = unicodedata.name(ch, "")
            return name.split(" ", 1)[0] if name else None
    return None


@functools.lru_cache(maxsize=1 << 20)
def term_id(term: str) -> int:
    """A stable signed 64-bit id for a term (Python's hash() changes per process)."""
    return int.from_bytes(
        hashlib.blake2b(term.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little", signed=True
    )


class Analyzer:
    """Turns text into terms; the same rules serve documents and queries."""

    _shared: Analyzer | None = None
    _shared_lock = threading.Lock()

    def __init__(self, stemmer: Stemmer | None = None) -> None:
        self._stemmer = stemmer or Stemmer()
        self._document_cache: dict[str, tuple[str, ...]] = {}
        self._query_cache: dict[str, tuple[str, ...]] = {}

    @classmethod
    def shared(cls) -> Analyzer:
        """One analyzer per process: its stem cache is worth sharing."""
        with cls._shared_lock:
            if cls._shared is None:
                cls._shared = cls()
            return cls._shared

    def _raw_token_terms(self, token: str, *, query: bool) -> list[tuple[str, str | None]]:
        """(term, stem language or None) of one token, before stemming."""
        token = unicodedata.normalize("NFKC", token)
        out: list[tuple[str, str | None]] = []
        at = 0
        for run in _UNSPACED.finditer(token):
            if run.start() > at:
                out.extend(self._word_terms(token[at : run.start()]))
            out.extend(self._unspaced_terms(run.group(), query=query))
            at = run.end()
        if at < len(token):
            out.extend(self._word_terms(token[at:]))
        return out

    def _terms(self, text: str, *, query: bool) -> list[str]:
        """Every term of text in order, repeats kept."""
        return self._terms_many([text], query=query)[0]

    def _terms_many(self, texts: Sequence[str], *, query: bool) -> list[list[str]]:
        """Every term of each text in order, repeats kept."""
        token_lists, terms_of = self._tokens_many(texts, query=query)
        return [[term for token in tokens for term in terms_of(token)] for tokens in token_lists]

    def _tokens_many(
        self, texts: Sequence[str], *, query: bool
    ) -> tuple[list[list[str]], Callable[[str], tuple[str, ...]]]:
        """The tokens of each text, and a function giving any of them its terms. Tokens seen before cost a
        dict lookup; the new tokens of all the texts are stemmed together (one DuckDB call, not one per text)."""
        cache = self._query_cache if query else self._document_cache
        token_lists = [_TOKEN.findall(text) for text in texts]
        fresh = self._fresh_terms(set().union(*token_lists).difference(cache), query=query)
        get = cache.get

        def terms_of(token: str) -> tuple[str, ...]:
            found = get(token)
            if found is not None:
                return found
            if found is None:
                # Another thread may have cleared the shared cache meanwhile: this call's own results.
                found = fresh.get(token)
            if found is None:
                terms = self._raw_token_terms(token, query=query)
                stems = self._stemmer.stem_all((term, lang) for term, lang in terms if lang)
                found = tuple(term if lang is None else stems[(term, lang)] for term, lang in terms)
            return found

        return token_lists, terms_of

    def _fresh_terms(self, missing: set[str], *, query: bool) -> dict[str, tuple[str, ...]]:
        """The terms of tokens not in the cache, stemmed together (one call, not one per token), now cached."""
        if not missing:
            return {}
        cache = self._query_cache if query else self._document_cache
        raw = {t: self._raw_token_terms(t, query=query) for t in missing}
        stems = self._stemmer.stem_all((term, lang) for terms in raw.values() for term, lang in terms if lang)
        fresh = {
            token: tuple(term if lang is None else stems[(term, lang)] for term, lang in terms)
            for token, terms in raw.items()
        }
        if len(cache) + len(fresh) > _TOKEN_CACHE_MAX:
            cache.clear()
        cache.update(fresh)
        return fresh

    @staticmethod
    def _unspaced_terms(run: str, *, query: bool) -> Iterator[tuple[str, str | None]]:
        run = run.casefold()
        if not query or len(run) == 1:
            for ch in run:
                yield ch, None
        for i in range(len(run) - 1):
            yield run[i : i + 2], None

    def _word_terms(self, word: str) -> Iterator[tuple[str, str | None]]:
        parts = [p for piece in _PART_SPLIT.split(word) for p in _camel_split(piece) if p]
        if len(parts) > 1:
            yield _fold(word.casefold()), None
        for part in parts:
            folded = _fold(part.casefold())
            if folded.isalpha():
                yield folded, _STEMMER_BY_SCRIPT.get(_script(folded) or "")
            else:
                yield folded, None

    def document_terms(self, text: str) -> list[str]:
        """Every term of a message, repeats kept (term frequency counts them)."""
        return self._terms(text, query=False)

    def document_tokens(self, text: str) -> list[str]:
        """The tokens of a message, in order, repeats kept."""
        return _TOKEN.findall(text)

    def token_terms(self, tokens: set[str]) -> dict[str, tuple[str, ...]]:
        """The document terms of each token."""
        cache = self._document_cache
        found = {token: terms for token in tokens if (terms := cache.get(token)) is not None}
        found.update(self._fresh_terms(tokens.difference(found), query=False))
        return found

    def query_terms(self, text: str) -> list[str]:
        """The distinct terms of a query, in order; empty when it holds no searchable word."""
        return list(dict.fromkeys(self._terms(text, query=True)))[:MAX_QUERY_TERMS]

    def query_words(self, text: str) -> list[tuple[str, tuple[str, ...]]]:
        """The query's words as written, each with the terms it searches for, in order, repeats dropped; words
        with no searchable term (or only terms past MAX_QUERY_TERMS) are left out."""
        token_lists, terms_of = self._tokens_many([text], query=True)
        searched = set(self.query_terms(text))
        words: dict[str, tuple[str, ...]] = {}
        for token in token_lists[0]:
            if token not in words:
                terms = tuple(t for t in terms_of(token) if t in searched)
                if terms:
                    words[token] = terms
        return list(words.items())

    def first_match(self, text: str, terms: set[str]) -> tuple[int, int] | None:
        """Span of the first token of text that yields one of terms."""
        _, terms_of = self._tokens_many([text], query=False)  # each token's terms, from the analyzer's cache
        for match in _TOKEN.finditer(text):
            found = terms.intersection(terms_of(match.group()))
            if found:
                # Inside a run of unspaced script (one token, maybe thousands of characters long) point
                # at the matched characters themselves.
                folded = match.group().casefold()
                at = min((i for term in found if (i := folded.find(term)) >= 0), default=-1)
                if _UNSPACED.search(match.group()) and at >= 0 and len(folded) == len(match.group()):
                    length = max(len(term) for term in found if folded.find(term) == at)
                    return match.start() + at, match.start() + at + length
                return match.span()
        return None


def _camel_split(piece: str) -> list[str]:
    """camelCase and HTTPServer parts: a boundary falls where a letter or digit that is not upper case meets an
    upper-case letter, or an upper-case letter meets an upper then a lower one. Cases are Unicode's, so RÉSUMÉ
    and ÉtéBrûlant split as written, not where ASCII ends."""
    cuts = [0]
    for i in range(1, len(piece)):
        prev, ch = piece[i - 1], piece[i]
        if not ch.isupper():
            continue
        if (prev.isalnum() and not prev.isupper()) or (
            prev.isupper() and i + 1 < len(piece) and piece[i + 1].islower()
        ):
            cuts.append(i)
    cuts.append(len(piece))
    return [piece[a:b] for a, b in zip(cuts, cuts[1:], strict=False)]


def _fold(word: str) -> str:
    if word.isascii():
        return word
    script = _script(word)
    if script in _FOLD_MARKS:
        decomposed = unicodedata.normalize("NFD", word)
        word = unicodedata.normalize("NFC", "".join(c for c in decomposed if unicodedata.category(c) != "Mn"))
    elif script == "CYRILLIC":
        word = word.replace("ё", "е")
    return word
