"""Stemmer: Snowball stems, cached, exactly as the index was built with them, from PyStemmer's C stemmers.

Stems are stored in the index, so every install must give the same ones: DuckDB's fts extension is the
reference they were first taken from. PyStemmer is used for a language only when it gives the reference's
stems for the probe words below (words whose stems changed between Snowball releases, and ordinary ones);
otherwise the stems come from a fallback (the store passes the extension's stem()), or stemming fails loudly.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

log = logging.getLogger(__name__)

# Stems of (word, language) the reference cannot give: the caller's fallback, words in and stems out.
Fallback = Callable[[list[str], str], list[str]]

_STEM_CACHE_MAX = 200_000

# language -> (probe words, the fts extension's stems of them), recorded from DuckDB 1.5.5's fts extension.
PROBES = {
    "english": (
        "added adding evening internal international interval lateral emergency emergencies dying lying"
        " generously running relational hopefulness sensibility cats ponies agreed news skies proceed succeed",
        "ad ad even intern intern interv later emerg emerg die lie generous run relat hope sensibl cat poni agre"
        " news sky proceed succeed",
    ),
    "russian": (
        "базы данных данными программирование программисты красивая бежать учительница",
        "баз дан дан программирован программист красив бежа учительниц",
    ),
    "greek": (
        "καλημερα αγαπητε προγραμματισμος προγραμματιστες βασεις δεδομενων",
        "καλημερ αγαπητ προγραμματ προγραμματ βασ δεδομεν",
    ),
    "arabic": (
        "المكتبات مكتبة الكتاب الكتب يكتبون كاتب مدرسة المدارس",
        "مكتب مكتب كتاب كتب يكتب كاتب مدرس مدارس",
    ),
}


class Stemmer:
    """Stems of (word, language) pairs, for the languages of PROBES."""

    def __init__(self, fallback: Fallback | None = None) -> None:
        self._fallback = fallback
        self._cache: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()
        self._native = self._native_stemmers()

    def _native_stemmers(self) -> dict[str, Any]:
        """PyStemmer's stemmer per language, where it gives the recorded stems of every probe word."""
        try:
            import Stemmer as pystemmer  # PyStemmer
        except ImportError:
            pystemmer = None
        native: dict[str, Any] = {}
        for language, (words, stems) in PROBES.items():
            stemmer = None
            if pystemmer is not None:
                try:
                    stemmer = pystemmer.Stemmer(language)
                except (KeyError, ValueError):
                    stemmer = None
            if stemmer is not None and stemmer.stemWords(words.split()) == stems.split():
                native[language] = stemmer
                continue
            if self._fallback is None:
                raise RuntimeError(f"PyStemmer does not give the index's {language} stems: install PyStemmer==2.2.0.3")
            log.warning("PyStemmer's %s stems differ from the index's: stemming through the fallback", language)
        return native

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
                    if native is not None:
                        stems = native.stemWords(batch)
                    else:
                        assert self._fallback is not None
                        stems = self._fallback(batch, language)
                    self._cache.update(((w, language), s) for w, s in zip(batch, stems, strict=True))
        cache = self._cache
        return {pair: cache.get(pair) or pair[0] for pair in wanted}
