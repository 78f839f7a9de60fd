"""search and search_messages on the DuckDB store: live visibility, ranking, matching, hostile text, filters."""

from __future__ import annotations

import logging
import threading
import time
import unicodedata
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from mcp_sessions.models import ChatMessage, MessageFilters, SessionQuery, is_blank
from mcp_sessions.postgres.backend import PostgresSessionBackend
from mcp_sessions.store.duckdb import DuckDBSessionBackend, Tuning


def msg(content: str, role: str = "user") -> ChatMessage:
    return ChatMessage(role=role, content=content)


def hits(backend: DuckDBSessionBackend, query: str, **filters: Any) -> list[tuple[str, int]]:
    return [(h.session_key, h.index) for h in backend.search_messages(query, 200, MessageFilters(**filters))]


def found(backend: DuckDBSessionBackend, query: str, **filters: Any) -> set[tuple[str, int]]:
    return set(hits(backend, query, **filters))


def sessions(backend: DuckDBSessionBackend, keyword: str | None, limit: int = 50) -> list[str]:
    return [m.key for m in backend.search(SessionQuery(keyword=keyword, limit=limit))]


@pytest.fixture(params=["python-recent", "python-rows", "sql-recent", "python-merged", "sql-merged", "postgres"])
def backend(request: pytest.FixtureRequest) -> Iterator[DuckDBSessionBackend]:
    """Every test here runs on both scoring paths (rare terms in Python, many in SQL), with postings of
    messages not yet merged held in memory (recent) or read from the messages' own lists (rows), and read
    from the term-sorted table (a merge after each write), and on the PostgreSQL store."""
    if request.param == "postgres":
        with PostgresSessionBackend(request.getfixturevalue("pg_uri")) as pg:
            yield pg  # type: ignore[misc]  # the same methods
        return
    scoring, postings = request.param.split("-")
    tuning = Tuning(python_scoring_max=-1 if scoring == "sql" else Tuning.python_scoring_max)
    if postings == "merged":
        tuning = replace(tuning, merge_messages=1, merge_in_background=False)
    if postings == "rows":
        tuning = replace(tuning, recent_in_memory_max=0)
    store = DuckDBSessionBackend(":memory:", tuning=tuning)
    yield store
    store.close()


# Live visibility: no rebuild step, no delay.


def test_message_is_found_as_soon_as_append_returns(backend: DuckDBSessionBackend) -> None:
    backend.append("k", msg("the zeppelin landed"))
    assert hits(backend, "zeppelin") == [("k", 0)]
    assert sessions(backend, "zeppelin") == ["k"]
    backend.append("k", msg("another zeppelin"))
    assert found(backend, "zeppelin") == {("k", 0), ("k", 1)}


def test_update_last_is_searched_by_its_new_content_not_the_old(backend: DuckDBSessionBackend) -> None:
    backend.append("k", msg("question"))
    backend.append("k", msg("draft walrus", "assistant"))
    assert backend.update_last("k", msg("final narwhal", "assistant"))
    assert hits(backend, "walrus") == []
    assert hits(backend, "draft") == []
    assert sessions(backend, "walrus") == []
    assert hits(backend, "narwhal") == [("k", 1)]
    assert sessions(backend, "narwhal") == ["k"]
    assert backend.search_messages("narwhal")[0].role == "assistant"


def test_streaming_update_last_leaves_only_the_final_content_findable(backend: DuckDBSessionBackend) -> None:
    backend.append("k", msg("", "assistant"))
    text = ""
    for word in ["alpha", "beta", "gamma", "delta"]:
        text = f"{text} {word}".strip()
        backend.update_last("k", msg(text, "assistant"))
    backend.update_last("k", msg("only omega remains", "assistant"))
    for word in ["alpha", "beta", "gamma", "delta"]:
        assert hits(backend, word) == []
    assert hits(backend, "omega") == [("k", 0)]


def test_removed_cleared_and_deleted_messages_are_no_longer_found(backend: DuckDBSessionBackend) -> None:
    backend.append("r", msg("keep removed1"))
    backend.append("r", msg("gone removed2"))
    backend.append("c", msg("cleared1"))
    backend.append("c", msg("cleared2"))
    backend.append("d", msg("deleted1"))
    backend.append("live", msg("removed1 cleared1 deleted1"))
    assert backend.remove_last("r")
    assert backend.clear_messages("c") == 2
    assert backend.delete_session("d")
    assert hits(backend, "removed2") == []
    assert hits(backend, "gone") == []
    assert found(backend, "removed1") == {("live", 0), ("r", 0)}
    assert found(backend, "cleared1") == {("live", 0)}
    assert hits(backend, "cleared2") == []
    assert found(backend, "deleted1") == {("live", 0)}
    assert sessions(backend, "cleared2 deleted1") == ["live"]


def test_compact_repairs_the_search_index(backend: DuckDBSessionBackend) -> None:
    for content in ["needle one", "needle one", "needle one", "other", "needle one"]:
        backend.append("k", msg(content))
    assert backend.compact("k") == 2
    assert found(backend, "needle") == {("k", 0), ("k", 2)}
    assert hits(backend, "other") == [("k", 1)]
    for key, index in found(backend, "needle"):
        assert backend.load_page(key, offset=index, limit=1).messages[0].content == "needle one"


def _visibility_scenario(backend: DuckDBSessionBackend) -> None:
    backend.append("a", msg("apple banana"))
    backend.append("a", msg("cherry"))
    backend.update_last("a", msg("durian"))
    backend.append("b", msg("elderberry"))
    backend.remove_last("b")
    backend.append("c", msg("fig"))
    backend.clear_messages("c")
    backend.append("d", msg("grape"))
    backend.delete_session("d")
    backend.append("e", msg("honeydew"))
    backend.append("e", msg("honeydew"))
    backend.compact("e")


def _assert_visibility(backend: DuckDBSessionBackend) -> None:
    assert found(backend, "apple banana") == {("a", 0)}
    assert found(backend, "durian") == {("a", 1)}
    assert found(backend, "honeydew") == {("e", 0)}
    for gone in ["cherry", "elderberry", "fig", "grape"]:
        assert hits(backend, gone) == [], gone
        assert sessions(backend, gone) == [], gone


def test_visibility_holds_after_optimize(backend: DuckDBSessionBackend) -> None:
    _visibility_scenario(backend)
    _assert_visibility(backend)
    backend.optimize()
    _assert_visibility(backend)
    backend.update_last("a", msg("jackfruit"))
    backend.append("c", msg("kiwi"))
    assert hits(backend, "durian") == []
    assert hits(backend, "jackfruit") == [("a", 1)]
    assert hits(backend, "kiwi") == [("c", 0)]
    backend.optimize()
    assert hits(backend, "durian") == []
    assert hits(backend, "jackfruit") == [("a", 1)]


def test_visibility_holds_across_merges_of_recent_postings(tmp_path: Path) -> None:
    tuning = Tuning(merge_messages=1, merge_in_background=False)
    path = tmp_path / "merge.duckdb"
    live: dict[str, tuple[str, int]] = {}
    dead: list[str] = []
    with DuckDBSessionBackend(path, tuning=tuning) as backend:
        for i in range(70):  # past the 64 writes after which upkeep merges
            key = f"s{i % 7}"
            backend.append(key, msg(f"word{i} shared"))
            live[f"word{i}"] = (key, i // 7)
        # Change messages whose postings are now merged, and some still recent.
        backend.update_last("s0", msg("word1000 shared"))
        dead.append(f"word{63}")
        live.pop("word63")
        live["word1000"] = ("s0", 9)
        backend.remove_last("s1")
        dead.append("word64")
        live.pop("word64")
        backend.delete_session("s2")
        for i in range(2, 70, 7):
            dead.append(f"word{i}")
            live.pop(f"word{i}")
        backend.clear_messages("s3")
        for i in range(3, 70, 7):
            dead.append(f"word{i}")
            live.pop(f"word{i}")
        for i in range(100, 170):  # and another merge
            backend.append("late", msg(f"word{i} shared"))
            live[f"word{i}"] = ("late", i - 100)

        def check() -> None:
            for word, where in live.items():
                assert hits(backend, word) == [where], word
            for word in dead:
                assert hits(backend, word) == [], word
            assert len(hits(backend, "shared")) == len(live)

        check()
        backend.optimize()
        check()
    conn = duckdb.connect(str(path), read_only=True)
    try:
        merged = conn.execute("SELECT count(*) FROM _postings").fetchone()
    finally:
        conn.close()
    assert merged is not None and merged[0] > 0, "the scenario should have merged recent postings"


# Ranking


def _fill_idf(backend: DuckDBSessionBackend) -> None:
    for i in range(6):
        backend.append("filler", msg(f"unrelated filler text number {i}"))


def test_message_holding_more_query_words_scores_higher(backend: DuckDBSessionBackend) -> None:
    _fill_idf(backend)
    backend.append("one", msg("alpha and other words"))
    backend.append("both", msg("alpha and beta words"))
    backend.append("other", msg("beta and other words"))
    result = backend.search_messages("alpha beta")
    assert [(h.session_key, h.index) for h in result][0] == ("both", 0)
    assert result[0].score > result[1].score
    assert sessions(backend, "alpha beta")[0] == "both"


def test_message_holding_more_query_words_scores_higher_even_when_it_is_longer(
    backend: DuckDBSessionBackend,
) -> None:
    # CONTRACT search: "a message holding more of the words scores higher".
    _fill_idf(backend)
    long_answer = "alpha beta " + " ".join(f"explanation{i}" for i in range(60))
    backend.append("long", msg(long_answer, "assistant"))
    backend.append("short", msg("alpha"))
    assert hits(backend, "alpha beta")[0] == ("long", 0)
    assert sessions(backend, "alpha beta")[0] == "long"


def test_ranking_is_not_skewed_by_overwritten_messages(backend: DuckDBSessionBackend) -> None:
    # Streaming: update_last many times. The overwritten texts are gone and must not weigh on ranking.
    _fill_idf(backend)
    backend.append("both", msg("alpha beta"))
    backend.append("one", msg("alpha gamma"))
    backend.append("stream", msg("beta"))
    for _ in range(30):
        backend.update_last("stream", msg("beta"))
    result = backend.search_messages("alpha beta")
    assert result[0].session_key == "both"
    assert all(h.score > 0 for h in result)
    assert sessions(backend, "alpha beta")[0] == "both"


def test_search_ranks_sessions_by_their_best_message(backend: DuckDBSessionBackend) -> None:
    _fill_idf(backend)
    backend.append("best", msg("alpha beta"))
    for content in ["alpha", "beta", "alpha", "beta", "alpha"]:
        backend.append("many", msg(content))
    assert sessions(backend, "alpha beta")[:2] == ["best", "many"]


def test_search_ties_go_to_the_more_recent_session(backend: DuckDBSessionBackend) -> None:
    _fill_idf(backend)
    backend.append("first", msg("alpha"))
    backend.append("second", msg("alpha"))
    assert sessions(backend, "alpha") == ["second", "first"]
    backend.append("first", msg("nothing relevant"))
    assert sessions(backend, "alpha") == ["first", "second"]
    backend.set_session_name("second", "a setter is not activity")
    assert sessions(backend, "alpha") == ["first", "second"]


@pytest.mark.parametrize("keyword", [None, "", " ", "\t \n"])
def test_search_without_keyword_lists_sessions_by_recent_activity(
    backend: DuckDBSessionBackend, keyword: str | None
) -> None:
    for key in ["a", "b", "c", "d"]:
        backend.append(key, msg("text"))
    backend.append("b", msg("more"))
    backend.set_session_name("e", "created by a setter")
    assert sessions(backend, keyword) == ["e", "b", "d", "c", "a"]
    assert sessions(backend, keyword, limit=2) == ["e", "b"]


def test_search_limit_applies_to_keyword_search(backend: DuckDBSessionBackend) -> None:
    for i in range(60):
        backend.append(f"k{i}", msg("common"))
    assert len(sessions(backend, "common")) == 50
    assert len(sessions(backend, "common", limit=7)) == 7
    assert len(sessions(backend, "common", limit=1000)) == 60


def test_search_messages_limit_defaults_to_twenty(backend: DuckDBSessionBackend) -> None:
    for i in range(25):
        backend.append("k", msg(f"common {i}"))
    assert len(backend.search_messages("common")) == 20
    assert len(backend.search_messages("common", limit=5)) == 5
    assert len(backend.search_messages("common", limit=200)) == 25


def test_search_messages_scores_are_best_first(backend: DuckDBSessionBackend) -> None:
    _fill_idf(backend)
    backend.append("k", msg("alpha"))
    backend.append("k", msg("alpha beta gamma"))
    backend.append("k", msg("alpha beta"))
    scores = [h.score for h in backend.search_messages("alpha beta gamma")]
    assert scores == sorted(scores, reverse=True)
    assert hits(backend, "alpha beta gamma")[0] == ("k", 1)


# Matching: every token category of CONTRACT "Matching".


MATCHES = [
    # case
    ("HELLO World", "hello"),
    ("hello world", "WORLD"),
    ("Hello", "hElLo"),
    # accents folded, both ways
    ("un café noir", "cafe"),
    ("un cafe noir", "café"),
    ("CAFÉ", "café"),
    ("naïve résumé", "naive resume"),
    ("Zürich", "zurich"),
    # English stems
    ("I was running late", "run"),
    ("we run daily", "running"),
    ("the tests passed", "passing"),
    ("connections dropped", "connection"),
    # Russian, Greek, Arabic stems
    ("нет базы данных", "база"),
    ("в базе данных", "базы"),
    ("ΜΙΛΆΜΕ ΓΛΏΣΣΕΣ", "γλώσσα"),
    ("οι γλώσσες", "γλώσσα"),
    ("قرأت الكتاب", "كتاب"),
    ("المعلمون هنا", "المعلم"),
    # no stopwords
    ("the", "the"),
    ("this is a test", "is"),
    ("to be or not to be", "a to"),
    ("of the", "of"),
    # digits and versions
    ("HTTP 504 gateway timeout", "504"),
    ("upgrade to duckdb 1.5.5 now", "1.5.5"),
    ("port 8080", "8080"),
    ("error code 0x1F", "0x1f"),
    # identifiers, whole and by parts
    ("call update_last now", "update_last"),
    ("call update_last now", "update"),
    ("call update_last now", "last"),
    ("class SessionBackend:", "SessionBackend"),
    ("class SessionBackend:", "session"),
    ("class SessionBackend:", "backend"),
    ("a TokenBucket limiter", "token bucket"),
    ("a TokenBucket limiter", "tokenbucket"),
    ("the HTTPServer class", "server"),
    ("open config.yaml first", "config.yaml"),
    ("open config.yaml first", "yaml"),
    ("use session_backend", "SessionBackend"),
    # CJK, Korean, Thai and other unspaced scripts
    ("我们使用全文搜索引擎", "搜索"),
    ("我们使用全文搜索引擎", "全文搜索"),
    ("我们使用全文搜索引擎", "引"),
    ("東京都に住んでいます", "東京"),
    ("東京都に住んでいます", "住んで"),
    ("日本語のテキスト", "テキスト"),
    ("한국어 텍스트 검색", "검색"),
    ("한국어텍스트검색", "텍스트"),
    ("한국어 텍스트", "국어"),
    ("ภาษาไทยง่ายมาก", "ไทย"),
    ("ภาษาไทยง่ายมาก", "ง่าย"),
    ("用DuckDB做全文搜索", "duckdb"),
    ("用DuckDB做全文搜索", "搜索"),
    # other scripts
    ("שלום עולם", "שלום"),
    ("नमस्ते दुनिया", "नमस्ते"),
    # full-width and compatibility forms
    ("Ｆｕｌｌｗｉｄｔｈ text", "fullwidth"),
    ("ﬁle system", "file"),
]


@pytest.mark.parametrize(("text", "query"), MATCHES)
def test_query_finds_the_message(backend: DuckDBSessionBackend, text: str, query: str) -> None:
    backend.append("distractor", msg("zzz qqq"))
    backend.append("target", msg(text))
    assert hits(backend, query) == [("target", 0)]
    assert sessions(backend, query) == ["target"]


UNSPACED_TEXTS = [
    "我们使用全文搜索引擎",
    "東京都に住んでいます",
    "한국어텍스트검색",
    "ภาษาไทยง่ายมาก",
    "カタカナとひらがな",
]


@pytest.mark.parametrize("text", UNSPACED_TEXTS)
def test_any_substring_of_unspaced_text_finds_it(backend: DuckDBSessionBackend, text: str) -> None:
    backend.append("distractor", msg("zzz"))
    backend.append("target", msg(f"prefix {text} suffix"))
    for size in range(1, 5):
        for start in range(len(text) - size + 1):
            query = text[start : start + size]
            if all(unicodedata.category(ch) == "Mn" for ch in query):
                continue  # a lone combining mark is not a query
            assert found(backend, query) == {("target", 0)}, query


@pytest.mark.parametrize("query", ["*", "😀", "🎉🎉 🚀", "", "   ", "!!!", "---", "...", "\x00", "\t\n\r", "¿?"])
def test_query_with_no_searchable_word_finds_nothing(backend: DuckDBSessionBackend, query: str) -> None:
    backend.append("k", msg("* 😀 🎉 🚀 !!! --- ... ¿?"))
    backend.append("k", msg("plain words"))
    assert backend.search_messages(query) == []
    if not is_blank(query):  # spaces and control characters alone list recent sessions (see test_recall.py)
        assert backend.search(SessionQuery(keyword=query)) == []


# Hostile query text: searched as words, never executed.


HOSTILE = [
    '"',
    '""',
    '"alpha',
    'alpha"',
    '"alpha beta"',
    "'",
    "''",
    "alpha' OR '1'='1",
    "'; DROP TABLE messages; --",
    "1=1",
    "1' OR 1=1 --",
    "alpha AND beta",
    "alpha OR",
    "OR",
    "AND",
    "NOT",
    "NOT alpha",
    "alpha NEAR beta",
    "NEAR(alpha beta, 2)",
    "alpha*",
    "*alpha",
    "^alpha",
    "alpha^2",
    "title:alpha",
    ":alpha",
    "-alpha",
    "+alpha",
    "alpha -beta",
    "(alpha",
    "alpha)",
    "{alpha}",
    "[alpha]",
    "\\",
    "alpha\\",
    "\\alpha",
    "C:\\Users\\alpha",
    "alpha\\'",
    "%",
    "alpha%",
    "_",
    "?",
    "$1",
    "@alpha",
    ";",
    "--",
    "/* alpha */",
    "\x00",
    "alpha\x00beta",
    "\x01\x02\x1b[31m\x1f\x7f",
    "\x85alpha\x9f",
    "\u202ealpha\u200b",
    "\ufeffalpha",
    "alpha\ud800",
    "SELECT * FROM sessions",
    "match_bm25(id, 'alpha')",
    "?::VARCHAR",
    "alpha " * 2000,
    " ".join(f"w{i}" for i in range(2000))[:10_000],
    "a" * 10_000,
    "東京" * 5000,
    "😀" * 10_000,
]


@pytest.mark.parametrize("query", HOSTILE, ids=[f"q{i}" for i in range(len(HOSTILE))])
def test_hostile_query_never_raises_and_leaves_the_store_intact(backend: DuckDBSessionBackend, query: str) -> None:
    backend.append("a", msg("alpha"))
    backend.append("b", msg("beta"))
    backend.append("c", msg("please drop table messages where 1=1"))
    before = ([backend.load_with_timestamps(k) for k in "abc"], backend.list_sessions_with_metadata())
    backend.search_messages(query)
    backend.search_messages(query, filters=MessageFilters(session_key="a", role="user"))
    backend.search(SessionQuery(keyword=query))
    after = ([backend.load_with_timestamps(k) for k in "abc"], backend.list_sessions_with_metadata())
    assert after == before
    assert hits(backend, "alpha") == [("a", 0)]
    backend.append("a", msg("still writable"))
    assert hits(backend, "writable") == [("a", 1)]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("'; DROP TABLE messages; --", {("c", 0)}),
        ("1=1", {("c", 0)}),
        ("alpha AND beta", {("a", 0), ("b", 0)}),
        ("NOT alpha", {("a", 0)}),
        ("alpha -beta", {("a", 0), ("b", 0)}),
        ("alpha NEAR beta", {("a", 0), ("b", 0)}),
        ("alpha*", {("a", 0)}),
        ("^alpha", {("a", 0)}),
        ("title:alpha", {("a", 0)}),
        ('"alpha', {("a", 0)}),
        ("(beta", {("b", 0)}),
        ("C:\\Users\\alpha", {("a", 0)}),
        ("alpha\x00beta", {("a", 0), ("b", 0)}),
        ("alpha\x07beta", {("a", 0), ("b", 0)}),
        ("alpha\tbeta\nzzz", {("a", 0), ("b", 0)}),
    ],
)
def test_hostile_query_text_is_searched_as_words(
    backend: DuckDBSessionBackend, query: str, expected: set[tuple[str, int]]
) -> None:
    backend.append("a", msg("alpha"))
    backend.append("b", msg("beta"))
    backend.append("c", msg("please drop table messages where 1=1"))
    backend.append("d", msg("nothing to see"))
    assert found(backend, query) == expected


def test_control_characters_in_content_count_as_spaces(backend: DuckDBSessionBackend) -> None:
    backend.append("k", msg("gamma\x00delta\x07epsilon\x1fzeta"))
    for word in ["gamma", "delta", "epsilon", "zeta"]:
        assert hits(backend, word) == [("k", 0)], word


# Filters


def test_search_messages_filters_by_session_key(backend: DuckDBSessionBackend) -> None:
    backend.append("a", msg("needle"))
    backend.append("b", msg("needle"))
    assert hits(backend, "needle", session_key="a") == [("a", 0)]
    assert hits(backend, "needle", session_key="missing") == []


def test_search_messages_filters_by_agent_alias(backend: DuckDBSessionBackend) -> None:
    backend.append("a", msg("needle"))
    backend.append("b", msg("needle"))
    backend.append("c", msg("needle"))
    backend.set_session_agent_alias("a", "planner")
    backend.set_session_agent_alias("b", "coder")
    assert hits(backend, "needle", agent_alias="planner") == [("a", 0)]
    assert hits(backend, "needle", agent_alias="nobody") == []
    assert [m.key for m in backend.search(SessionQuery(keyword="needle"), agent_alias="coder")] == ["b"]


def test_search_messages_filters_by_role(backend: DuckDBSessionBackend) -> None:
    backend.append("a", msg("needle", "user"))
    backend.append("a", msg("needle", "assistant"))
    backend.append("a", msg("needle", "tool"))
    assert hits(backend, "needle", role="assistant") == [("a", 1)]
    assert hits(backend, "needle", role="Assistant") == []
    assert found(backend, "needle", role="user") == {("a", 0)}


def test_search_messages_since_and_until_are_inclusive(backend: DuckDBSessionBackend) -> None:
    for i in range(3):
        backend.append("k", msg(f"needle {i}"))
        time.sleep(0.002)
    stamps = [m.created_at for m in backend.load_with_timestamps("k")]
    assert all(s is not None for s in stamps)
    t0, t1, t2 = stamps
    assert t0 is not None and t1 is not None and t2 is not None
    micro = timedelta(microseconds=1)
    assert found(backend, "needle", since=t1) == {("k", 1), ("k", 2)}
    assert found(backend, "needle", until=t1) == {("k", 0), ("k", 1)}
    assert found(backend, "needle", since=t1, until=t1) == {("k", 1)}
    assert found(backend, "needle", since=t1 + micro) == {("k", 2)}
    assert found(backend, "needle", until=t1 - micro) == {("k", 0)}
    assert found(backend, "needle", since=t2 + micro) == set()
    assert found(backend, "needle", until=t0 - micro) == set()
    assert found(backend, "needle", since=t0, until=t2) == {("k", 0), ("k", 1), ("k", 2)}


def test_search_messages_filters_combine(backend: DuckDBSessionBackend) -> None:
    backend.append("a", msg("needle", "user"))
    backend.append("a", msg("needle", "assistant"))
    backend.append("b", msg("needle", "assistant"))
    backend.set_session_agent_alias("a", "x")
    backend.set_session_agent_alias("b", "x")
    assert hits(backend, "needle", session_key="a", role="assistant", agent_alias="x") == [("a", 1)]
    assert hits(backend, "needle", session_key="a", agent_alias="y") == []


# Hits: snippet and index


def test_snippet_of_a_short_message_is_the_message(backend: DuckDBSessionBackend) -> None:
    backend.append("k", msg("a short needle message"))
    assert backend.search_messages("needle")[0].snippet == "a short needle message"


@pytest.mark.parametrize(
    ("content", "query", "word"),
    [
        (" ".join(["filler"] * 1000) + " needle " + " ".join(["filler"] * 1000), "needle", "needle"),
        ("x" * 5000 + " needle", "needle", "needle"),
        ("needle " + "y" * 5000, "needle", "needle"),
        ("y" * 4000 + " RUNNING " + "z" * 4000, "run", "RUNNING"),
        ("word " * 2000 + "call update_last here " + "word " * 2000, "update", "update_last"),
        ("word " * 2000 + "un café noir " + "word " * 2000, "cafe", "café"),
        ("的" * 3000 + "東京" + "的" * 3000, "東京", "東京"),
        ("文字" * 1000 + " 東京タワー " + "文字" * 1000, "東京", "東京"),
    ],
    ids=["middle", "end", "start", "stem", "identifier", "accent", "cjk-run", "cjk-spaced"],
)
def test_snippet_is_at_most_300_characters_and_holds_the_matched_word(
    backend: DuckDBSessionBackend, content: str, query: str, word: str
) -> None:
    backend.append("k", msg("short"))
    backend.append("k", msg(content))
    (hit,) = backend.search_messages(query)
    assert len(hit.snippet) <= 300
    assert word in hit.snippet
    assert hit.snippet in content


def test_hit_index_loads_the_message(backend: DuckDBSessionBackend) -> None:
    for i in range(30):
        backend.append("k", msg(f"turn {i}" + (" needle" if i in (4, 17, 29) else "")))
    for hit in backend.search_messages("needle"):
        page = backend.load_page(hit.session_key, offset=hit.index, limit=1)
        (message,) = page.messages
        assert message.index == hit.index
        assert "needle" in message.content
        assert message.role == hit.role
        assert message.created_at == hit.created_at
    assert sorted(h.index for h in backend.search_messages("needle")) == [4, 17, 29]


def test_searches_find_every_message_while_merges_run_in_the_background(tmp_path: Path) -> None:
    # Small merges, on the merging thread, racing appends and searches from two more threads.
    with DuckDBSessionBackend(tmp_path / "bg.duckdb", tuning=Tuning(merge_messages=5)) as backend:
        errors: list[str] = []
        written: list[int] = []

        def write() -> None:
            for i in range(300):
                backend.append(f"s{i % 4}", msg(f"shared word{i}"))
                written.append(i)

        def search() -> None:
            while len(written) < 300:
                done = len(written)
                found = {h.snippet for h in backend.search_messages("shared", limit=None)}
                if len(found) < done:
                    errors.append(f"{len(found)} found after {done} appends returned")
                for i in written[-3:]:
                    if not hits(backend, f"word{i}"):
                        errors.append(f"word{i} not found after its append returned")

        threads = [threading.Thread(target=write), threading.Thread(target=search)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        index = backend._index
        assert index._merger is not None, "merges ran on their own thread"
        index._merge_wanted.set()
        deadline = time.monotonic() + 10
        while index.last_id - index.merged_upto >= 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert index.merged_upto >= 295
        assert len(backend.search_messages("shared", limit=None)) == 300
        assert len(backend.search(SessionQuery(keyword="shared", limit=10))) == 4


def test_a_word_said_more_often_ranks_higher_in_every_postings_place(backend: DuckDBSessionBackend) -> None:
    # Same length, so only the term's count differs; a long text counts its tokens before writing them.
    backend.append("once", msg("alpha beta gamma delta"))
    backend.append("thrice", msg("alpha alpha alpha beta"))
    backend.append("long", msg("epsilon " * 3000 + "alpha"))
    assert [h.session_key for h in backend.search_messages("alpha")][:2] == ["thrice", "once"]
    assert hits(backend, "epsilon") == [("long", 0)]
    if not isinstance(backend, DuckDBSessionBackend):
        return  # the rest is about the embedded store's postings places
    with backend._conn.write_lock:
        (length,) = backend._conn.cursor().execute("SELECT max(length(coalesce(terms, ''))) FROM messages").fetchone()
    assert length < 200, "a repeated word is written once with its count"


def test_live_appends_get_their_scattered_postings_sorted_in(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # Small merges make runs that span every term; once they weigh, the merge optimizes.
    tuning = Tuning(merge_messages=3, merge_in_background=False, scattered_min_rows=20)
    caplog.set_level(logging.INFO, logger="mcp_sessions.store.live_index")
    with DuckDBSessionBackend(tmp_path / "live.duckdb", tuning=tuning) as backend:
        for i in range(60):
            backend.append(f"s{i % 5}", msg(f"alpha beta word{i}"))
            if i == 30:
                backend.remove_last("s0")
        assert sum("optimizing the index" in r.getMessage() for r in caplog.records) >= 2
        assert backend._index.scattered <= 20
        assert len(backend.search_messages("alpha", limit=None)) == 59
        assert hits(backend, "word30") == []
        assert hits(backend, "word59") == [("s4", 11)]
    with DuckDBSessionBackend(tmp_path / "live.duckdb") as again:  # the counts survive a restart
        assert again._index.sorted_rows > 0
        assert again._index.scattered == backend._index.scattered
