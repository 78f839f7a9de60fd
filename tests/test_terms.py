"""Analyzer: the terms a message is indexed by and the terms a query looks for."""

from __future__ import annotations

import pytest

from mcp_sessions.snippets import SNIPPET_CHARS, make_snippet
from mcp_sessions.terms import Analyzer, term_id


@pytest.fixture(scope="module")
def analyzer() -> Analyzer:
    return Analyzer.shared()


def matches(analyzer: Analyzer, text: str, query: str) -> bool:
    return bool(set(analyzer.query_terms(query)) & set(analyzer.document_terms(text)))


@pytest.mark.parametrize(
    ("text", "query"),
    [
        ("HELLO World", "hello"),
        ("ΑΘΗΝΑ", "αθήνα"),
        ("ПРИВЕТ", "привет"),
        ("un café noir", "cafe"),
        ("un cafe noir", "café"),
        ("Zürich", "zurich"),
        ("ёлка", "елка"),
        ("I was running late", "run"),
        ("we run daily", "running"),
        ("нет базы", "база"),
        ("οι γλώσσες", "γλώσσα"),
        ("قرأت الكتاب", "كتاب"),
        ("the", "the"),
        ("a", "a"),
        ("is", "is"),
        ("HTTP 504", "504"),
        ("duckdb 1.5.5", "1.5.5"),
        ("call update_last", "update_last"),
        ("call update_last", "update"),
        ("SessionBackend", "sessionbackend"),
        ("SessionBackend", "session"),
        ("SessionBackend", "backend"),
        ("TokenBucket", "token bucket"),
        ("我们使用全文搜索引擎", "搜索"),
        ("我们使用全文搜索引擎", "搜"),
        ("東京都に住んでいます", "住んで"),
        ("한국어텍스트", "텍스트"),
        ("ภาษาไทยง่าย", "ไทย"),
        ("Ｆｕｌｌｗｉｄｔｈ", "fullwidth"),
    ],
)
def test_query_terms_meet_document_terms(analyzer: Analyzer, text: str, query: str) -> None:
    assert matches(analyzer, text, query)


@pytest.mark.parametrize(("text", "query"), [("hello", "world"), ("cat", "dog"), ("東京", "大阪"), ("504", "505")])
def test_unrelated_words_do_not_meet(analyzer: Analyzer, text: str, query: str) -> None:
    assert not matches(analyzer, text, query)


def test_case_is_folded(analyzer: Analyzer) -> None:
    assert analyzer.document_terms("Hello") == analyzer.document_terms("hello") == analyzer.document_terms("HELLO")


@pytest.mark.parametrize(
    ("upper", "lower"), [("RÉSUMÉ", "résumé"), ("ÉTÉ", "été"), ("ÇA", "ça"), ("ΆΛΦΑ", "άλφα"), ("ЁЛКА", "ёлка")]
)
def test_upper_case_accented_words_analyze_like_lower_case(analyzer: Analyzer, upper: str, lower: str) -> None:
    assert analyzer.document_terms(upper) == analyzer.document_terms(lower)
    assert analyzer.query_terms(upper) == analyzer.query_terms(lower)


@pytest.mark.parametrize(("text", "part"), [("ÉtéBrûlant", "brulant"), ("getÉtat", "etat"), ("parseДанные", "данные")])
def test_camel_case_boundaries_are_unicode_aware(analyzer: Analyzer, text: str, part: str) -> None:
    assert set(analyzer.query_terms(part)) <= set(analyzer.document_terms(text))


@pytest.mark.parametrize(
    ("accented", "plain"), [("café", "cafe"), ("naïve", "naive"), ("Ünïcödé", "unicode"), ("άλφα", "αλφα")]
)
def test_accents_are_folded(analyzer: Analyzer, accented: str, plain: str) -> None:
    assert analyzer.document_terms(accented) == analyzer.document_terms(plain)
    assert analyzer.query_terms(accented) == analyzer.query_terms(plain)


@pytest.mark.parametrize(
    "words",
    [
        ["run", "running", "runs"],
        ["connect", "connected", "connection", "connections"],
        ["база", "базы", "базе"],
        ["γλώσσα", "γλώσσες", "γλώσσας"],
        ["كتاب", "الكتاب"],
        ["معلم", "المعلم", "المعلمون"],
    ],
)
def test_inflections_share_a_stem(analyzer: Analyzer, words: list[str]) -> None:
    stems = {tuple(analyzer.document_terms(w)) for w in words}
    assert len(stems) == 1, stems


def test_no_stopwords_are_dropped(analyzer: Analyzer) -> None:
    words = "the a is of to and or not in on it be".split()
    assert analyzer.document_terms(" ".join(words)) == words
    assert analyzer.query_terms("the a is") == ["the", "a", "is"]


def test_digits_and_versions_are_terms(analyzer: Analyzer) -> None:
    assert "504" in analyzer.document_terms("error 504")
    terms = analyzer.document_terms("duckdb 1.5.5")
    assert "1.5.5" in terms
    assert "1.5.5" in analyzer.query_terms("1.5.5")


@pytest.mark.parametrize(
    ("identifier", "parts"),
    [
        ("update_last", ["update_last", "updat", "last"]),
        ("SessionBackend", ["sessionbackend", "session", "backend"]),
        ("TokenBucket", ["tokenbucket", "token", "bucket"]),
        ("HTTPServer", ["httpserver", "http", "server"]),
        ("config.yaml", ["config.yaml", "config", "yaml"]),
    ],
)
def test_identifiers_give_the_whole_and_the_parts(analyzer: Analyzer, identifier: str, parts: list[str]) -> None:
    terms = analyzer.document_terms(identifier)
    for part in parts:
        assert part in terms, (part, terms)


def test_identifier_parts_are_found_by_the_spaced_words(analyzer: Analyzer) -> None:
    assert set(analyzer.query_terms("token bucket")) <= set(analyzer.document_terms("TokenBucket"))
    assert set(analyzer.query_terms("update last")) <= set(analyzer.document_terms("update_last"))


def test_unspaced_scripts_index_characters_and_bigrams(analyzer: Analyzer) -> None:
    assert analyzer.document_terms("東京都") == ["東", "京", "都", "東京", "京都"]
    assert analyzer.query_terms("東京都") == ["東京", "京都"]
    assert analyzer.query_terms("京") == ["京"]


@pytest.mark.parametrize(
    "text", ["我们使用全文搜索引擎", "東京都に住んでいます", "한국어텍스트검색", "カタカナとひらがな"]
)
def test_every_substring_of_unspaced_text_is_covered(analyzer: Analyzer, text: str) -> None:
    document = set(analyzer.document_terms(text))
    for size in range(1, len(text) + 1):
        for start in range(len(text) - size + 1):
            query = analyzer.query_terms(text[start : start + size])
            assert query and set(query) <= document, text[start : start + size]


def test_mixed_scripts_split_into_their_runs(analyzer: Analyzer) -> None:
    terms = analyzer.document_terms("用DuckDB做搜索")
    assert "duckdb" in terms
    assert "搜索" in terms


@pytest.mark.parametrize("text", ["", " ", "*", "😀", "🎉 🚀", "!!!", "---", "\x00\x01", "\t\n"])
def test_text_with_no_word_has_no_terms(analyzer: Analyzer, text: str) -> None:
    assert analyzer.document_terms(text) == []
    assert analyzer.query_terms(text) == []


@pytest.mark.parametrize("separator", ["\x00", "\x07", "\x1b", "\x7f", "\x85", "\t", "\n", "\r"])
def test_control_characters_separate_words(analyzer: Analyzer, separator: str) -> None:
    assert analyzer.document_terms(f"alpha{separator}beta") == ["alpha", "beta"]
    assert analyzer.query_terms(f"alpha{separator}beta") == ["alpha", "beta"]


@pytest.mark.parametrize(
    "query", ['"alpha"', "alpha*", "^alpha", "-alpha", ":alpha", "(alpha)", "'alpha'", "alpha;", "\\alpha"]
)
def test_query_syntax_characters_are_not_terms(analyzer: Analyzer, query: str) -> None:
    assert analyzer.query_terms(query) == ["alpha"]


def test_operators_are_plain_words(analyzer: Analyzer) -> None:
    assert analyzer.query_terms("alpha AND beta OR NOT gamma NEAR delta") == [
        "alpha",
        "and",
        "beta",
        "or",
        "not",
        "gamma",
        "near",
        "delta",
    ]


def test_document_terms_keep_repeats_and_query_terms_are_distinct(analyzer: Analyzer) -> None:
    assert analyzer.document_terms("run running run") == ["run", "run", "run"]
    assert analyzer.query_terms("run running run") == ["run"]


def test_lone_surrogates_do_not_break_the_analyzer(analyzer: Analyzer) -> None:
    assert "alpha" in analyzer.query_terms("alpha\ud800")
    term_id("\ud800")


def test_term_id_is_stable_and_distinguishes_terms() -> None:
    assert term_id("hello") == term_id("hello")
    assert term_id("hello") != term_id("hellp")
    assert -(2**63) <= term_id("hello") < 2**63


def test_snippet_is_the_whole_of_a_short_message(analyzer: Analyzer) -> None:
    assert make_snippet("short text", {"short"}, analyzer) == "short text"


def test_snippet_centres_on_the_first_match(analyzer: Analyzer) -> None:
    content = "filler " * 500 + "needle " + "filler " * 500
    snippet = make_snippet(content, set(analyzer.query_terms("needle")), analyzer)
    assert len(snippet) <= SNIPPET_CHARS
    assert "needle" in snippet


def test_pystemmer_is_used_only_as_a_faster_copy_of_the_extensions_stems() -> None:
    from pathlib import Path

    from mcp_sessions.stems import PROBES, Stemmer
    from mcp_sessions.store.fts import ExtensionStems
    from mcp_sessions.terms import _TOKEN

    extension = ExtensionStems()
    # The recorded stems PyStemmer is checked against are the extension's own.
    for language, (probes, stems) in PROBES.items():
        assert extension(probes.split(), language) == stems.split(), language
    stemmer = Stemmer()
    assert set(stemmer._native) == {"english", "russian", "greek", "arabic"}, "PyStemmer==2.2.0.3 agrees"
    # Every word of this repository's docs and code, stemmed both ways.
    root = Path(__file__).resolve().parent.parent
    words = sorted(
        {
            w.lower()
            for p in [*root.glob("*.md"), *root.rglob("mcp_sessions/*.py")]
            for w in _TOKEN.findall(p.read_text())
        }
    )
    words = [w for w in words if w.isalpha() and w.isascii()]
    assert len(words) > 1000
    assert stemmer._native["english"].stemWords(words) == extension(words, "english")


def without_pystemmer(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_pystemmer(name: str, *args: object, **kwargs: object) -> object:
        if name == "Stemmer":
            raise ImportError("no PyStemmer here")
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", no_pystemmer)


def test_stems_are_the_same_without_pystemmer_through_the_extension(monkeypatch: pytest.MonkeyPatch) -> None:
    from mcp_sessions.stems import Stemmer
    from mcp_sessions.store.fts import ExtensionStems

    text = "Added the evening's internal intervals; programmers were running базы данных, καλημέρα, المكتبات"
    native = Analyzer(Stemmer()).document_terms(text)
    without_pystemmer(monkeypatch)
    fallback = Stemmer(fallback=ExtensionStems())
    assert fallback._native == {}
    assert Analyzer(fallback).document_terms(text) == native


def test_without_pystemmer_or_a_fallback_stemming_refuses_to_guess(monkeypatch: pytest.MonkeyPatch) -> None:
    from mcp_sessions.stems import Stemmer

    without_pystemmer(monkeypatch)
    with pytest.raises(RuntimeError, match="PyStemmer==2.2.0.3"):
        Stemmer()
