"""Text to search terms: case and accent folding, Snowball stems, identifier parts, CJK bigrams, snippets."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
import threading
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import duckdb

from . import pandas_absent  # noqa: F401  (before any query: see that module)

log = logging.getLogger(__name__)

# A word, or words joined by dots (versions like 1.5.5, names like file.py); \w holds "_", so
# update_last is one token. Everything else, control characters included, separates tokens.
_TOKEN = re.compile(r"\w+(?:\.\w+)*")
_PART_SPLIT = re.compile(r"[._]+")
# camelCase and HTTPServer boundaries: a lower/digit before an upper, or an upper before upper+lower.
_CAMEL = re.compile(r"(?<=[^\W_A-Z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")

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

SNIPPET_CHARS = 300
# A query's words beyond this many are ignored: each costs an index scan, and a pasted page of
# text (or a hostile one) must not take seconds.
MAX_QUERY_TERMS = 64
_STEM_CACHE_MAX = 200_000


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


def fts_extension_path() -> Path:
    """The fts extension file shipped by the duckdb-extension-fts wheel for this DuckDB version."""
    version = duckdb.__version__
    try:
        import duckdb_extension_fts
    except ImportError:
        raise RuntimeError(
            f"DuckDB's fts extension is missing: install the package duckdb-extension-fts=={version}"
            f" (pip install 'duckdb-extension-fts=={version}')"
        ) from None
    path = Path(duckdb_extension_fts.__file__).parent / "extensions" / f"v{version}" / "fts.duckdb_extension"
    if not path.exists():
        raise RuntimeError(
            f"duckdb-extension-fts does not match duckdb {version}: install duckdb-extension-fts=={version}"
        )
    return path


# Words whose stems changed between Snowball releases, and ordinary ones: PyStemmer stands in for the fts
# extension's stem() only when it gives these the very stems stem() gives (see Stemmer).
_PROBES = {
    "english": "added adding evening internal international interval lateral emergency emergencies dying lying"
    " generously running relational hopefulness sensibility cats ponies agreed news skies proceed succeed",
    "russian": "базы данных данными программирование программисты красивая бежать учительница",
    "greek": "καλημερα αγαπητε προγραμματισμος προγραμματιστες βασεις δεδομενων",
    "arabic": "المكتبات مكتبة الكتاب الكتب يكتبون كاتب مدرسة المدارس",
}


class Stemmer:
    """Snowball stems, cached, as the fts extension's stem() gives them.

    The extension is the reference; PyStemmer (the Snowball project's C library for Python) computes the same
    stems without a DuckDB query per batch, and is used when its release gives exactly the extension's stems
    on the probe words. Otherwise every stem comes from the extension, computed in batches on a private connection.
    """

    def __init__(self) -> None:
        self._conn = duckdb.connect(":memory:")
        try:
            self._conn.execute(f"LOAD '{fts_extension_path()}'")
        except duckdb.Error as exc:
            raise RuntimeError(
                f"DuckDB's fts extension could not be loaded ({exc}):"
                f" install duckdb-extension-fts=={duckdb.__version__}"
            ) from exc
        self._cache: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()
        self._native = self._native_stemmers()

    def _native_stemmers(self) -> dict[str, Any]:
        """PyStemmer's stemmer per language, if it agrees with the extension on every probe word."""
        try:
            import Stemmer as pystemmer  # PyStemmer
        except ImportError:
            return {}
        native: dict[str, Any] = {}
        for language, text in _PROBES.items():
            words = text.split()
            try:
                stemmer = pystemmer.Stemmer(language)
            except (KeyError, ValueError):
                return {}
            if stemmer.stemWords(words) != self._extension_stems(words, language):
                log.warning("PyStemmer's %s stems differ from DuckDB's: stemming through DuckDB", language)
                return {}
            native[language] = stemmer
        return native

    def _extension_stems(self, words: list[str], language: str) -> list[str]:
        # One JSON text, not a Python list: see store/params.py.
        row = self._conn.execute(
            "SELECT list_transform(from_json(?, '[\"VARCHAR\"]'), w -> stem(w, ?))",
            [json.dumps(words, ensure_ascii=False), language],
        ).fetchone()
        assert row is not None
        return list(row[0])

    def stem_all(self, words: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """Stems of (word, language) pairs."""
        wanted = set(words)
        missing: dict[str, list[str]] = {}
        for word, language in wanted:
            if (word, language) not in self._cache:
                missing.setdefault(language, []).append(word)
        if missing:
            with self._lock:  # a PyStemmer stemmer is not safe to share between threads
                if len(self._cache) > _STEM_CACHE_MAX:
                    self._cache.clear()
                for language, batch in missing.items():
                    native = self._native.get(language)
                    stems = native.stemWords(batch) if native is not None else self._extension_stems(batch, language)
                    self._cache.update(((w, language), s) for w, s in zip(batch, stems, strict=True))
        cache = self._cache
        return {pair: cache.get(pair) or pair[0] for pair in wanted}


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
        missing = {token for tokens in token_lists for token in tokens if token not in cache}
        fresh: dict[str, tuple[str, ...]] = {}
        if missing:
            raw = {t: self._raw_token_terms(t, query=query) for t in missing}
            stems = self._stemmer.stem_all((term, lang) for terms in raw.values() for term, lang in terms if lang)
            fresh = {
                token: tuple(term if lang is None else stems[(term, lang)] for term, lang in terms)
                for token, terms in raw.items()
            }
            if len(cache) + len(fresh) > _TOKEN_CACHE_MAX:
                cache.clear()
            cache.update(fresh)
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

    @staticmethod
    def _unspaced_terms(run: str, *, query: bool) -> Iterator[tuple[str, str | None]]:
        run = run.casefold()
        if not query or len(run) == 1:
            for ch in run:
                yield ch, None
        for i in range(len(run) - 1):
            yield run[i : i + 2], None

    def _word_terms(self, word: str) -> Iterator[tuple[str, str | None]]:
        parts = [p for piece in _PART_SPLIT.split(word) for p in _CAMEL.split(piece) if p]
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

    def document_tokens_many(self, texts: Sequence[str]) -> tuple[list[list[str]], Callable[[str], tuple[str, ...]]]:
        """The tokens of each text and the function giving a token its terms: document_terms of many texts,
        for callers that count tokens before terms (a repeated token repeats its terms)."""
        return self._tokens_many(texts, query=False)

    def query_terms(self, text: str) -> list[str]:
        """The distinct terms of a query, in order; empty when it holds no searchable word."""
        return list(dict.fromkeys(self._terms(text, query=True)))[:MAX_QUERY_TERMS]

    def first_match(self, text: str, terms: set[str]) -> tuple[int, int] | None:
        """Span of the first token of text that yields one of terms."""
        for match in _TOKEN.finditer(text):
            found = terms.intersection(self._terms(match.group(), query=False))
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


def make_snippet(content: str, terms: set[str], analyzer: Analyzer) -> str:
    """At most SNIPPET_CHARS of content around its first matching word, cut at spaces where it can."""
    if len(content) <= SNIPPET_CHARS:
        return content
    span = analyzer.first_match(content, terms) or (0, 0)
    start = max(0, min(span[0] - SNIPPET_CHARS // 3, len(content) - SNIPPET_CHARS))
    end = start + SNIPPET_CHARS
    if start > 0:
        space = content.find(" ", start, span[0])
        if space != -1 and space + 1 < span[0]:
            start = space + 1
    if end < len(content):
        space = content.rfind(" ", max(span[1], start), end)
        if space > span[1]:
            end = space
    return content[start:end]
