"""One behaviour suite over both backends: what the trait's defaults and the DuckDB store both honour."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mcp_sessions.backend import SessionBackend
from mcp_sessions.memory import MemorySessionBackend
from mcp_sessions.models import ChatMessage, InvalidArgument, MessageFilters, SessionQuery
from mcp_sessions.postgres.backend import PostgresSessionBackend
from mcp_sessions.store.duckdb import DuckDBSessionBackend, Tuning


@pytest.fixture(params=["memory", "duckdb", "duckdb-rows-from-file", "postgres"])
def backend(request: pytest.FixtureRequest) -> Iterator[SessionBackend]:
    """The dict model, the DuckDB store, the DuckDB store reading session rows from the file (as it does
    past Tuning.session_view_max sessions) rather than from its in-memory view, and the PostgreSQL store."""
    if request.param == "memory":
        yield MemorySessionBackend()
    elif request.param == "postgres":
        store = PostgresSessionBackend(request.getfixturevalue("pg_uri"))
        yield store
        store.close()
    else:
        tuning = Tuning(session_view_max=0) if request.param == "duckdb-rows-from-file" else Tuning()
        store = DuckDBSessionBackend(":memory:", tuning=tuning)
        yield store
        store.close()


def msg(content: str, role: str = "user") -> ChatMessage:
    return ChatMessage(role=role, content=content)


def fill(backend: SessionBackend, key: str, contents: list[str], role: str = "user") -> None:
    for content in contents:
        backend.append(key, msg(content, role))


# load / append


def test_load_of_missing_session_returns_no_messages(backend: SessionBackend) -> None:
    assert backend.load("nope") == []
    assert backend.load_with_timestamps("nope") == []
    page = backend.load_page("nope", offset=-5, limit=3)
    assert page.messages == [] and page.total == 0


def test_reads_of_a_missing_session_do_not_create_it(backend: SessionBackend) -> None:
    backend.load("nope")
    backend.load_with_timestamps("nope")
    backend.load_page("nope", offset=3)
    backend.get_session_metadata("nope")
    backend.search_messages("hello", filters=MessageFilters(session_key="nope"))
    assert backend.list_sessions() == []
    assert backend.get_session_metadata("nope") is None


def test_append_then_load_returns_the_messages_in_order(backend: SessionBackend) -> None:
    messages = [msg("hi"), msg("hello, how can I help?", "assistant"), msg("tool output", "tool")]
    for message in messages:
        backend.append("k", message)
    assert backend.load("k") == messages


@pytest.mark.parametrize(
    "content",
    [
        "",
        " ",
        "  padded  ",
        "line\nbreak\r\n",
        "tab\there",
        "😀 emoji",
        "Grüße, Straße",
        "東京都",
        "a\x00b",
        "x" * 10_000,
    ],
)
def test_append_keeps_content_exactly(backend: SessionBackend, content: str) -> None:
    backend.append("k", msg(content))
    assert backend.load("k") == [msg(content)]


def test_sessions_are_kept_apart_and_keys_are_not_trimmed(backend: SessionBackend) -> None:
    backend.append("k", msg("one"))
    backend.append(" k ", msg("two"))
    backend.append("K", msg("three"))
    assert backend.load("k") == [msg("one")]
    assert backend.load(" k ") == [msg("two")]
    assert backend.load("K") == [msg("three")]
    assert sorted(backend.list_sessions()) == sorted(["k", " k ", "K"])


def test_load_with_timestamps_numbers_messages_from_zero(backend: SessionBackend) -> None:
    fill(backend, "k", ["a", "b", "c"])
    rows = backend.load_with_timestamps("k")
    assert [(r.index, r.role, r.content) for r in rows] == [(0, "user", "a"), (1, "user", "b"), (2, "user", "c")]


# load_page: Python slicing


_TEN = [str(i) for i in range(10)]


@pytest.mark.parametrize(
    ("offset", "limit"),
    [
        (None, None),
        (0, None),
        (3, None),
        (None, 4),
        (2, 3),
        (8, 5),
        (9, 1),
        (10, None),
        (10, 1),
        (11, 3),
        (1_000_000, 1),
        (-1, None),
        (-3, None),
        (-3, 2),
        (-3, 5),
        (-10, None),
        (-11, None),
        (-11, 2),
        (-1_000_000, 3),
        (0, 1),
        (0, 10),
        (0, 1_000_000),
    ],
)
def test_load_page_slices_like_python(backend: SessionBackend, offset: int | None, limit: int | None) -> None:
    fill(backend, "k", _TEN)
    page = backend.load_page("k", offset=offset, limit=limit)
    rest = _TEN[offset:]
    expected = rest if limit is None else rest[:limit]
    assert [m.content for m in page.messages] == expected
    assert [m.index for m in page.messages] == [int(c) for c in expected]
    assert page.total == 10


def test_load_page_of_the_last_twenty_with_negative_offset(backend: SessionBackend) -> None:
    contents = [f"m{i}" for i in range(50)]
    fill(backend, "k", contents)
    page = backend.load_page("k", offset=-20)
    assert [m.content for m in page.messages] == contents[-20:]
    assert page.messages[0].index == 30
    assert page.total == 50


# remove_last / update_last


def test_remove_last_removes_the_last_message(backend: SessionBackend) -> None:
    fill(backend, "k", ["a", "b"])
    assert backend.remove_last("k") is True
    assert backend.load("k") == [msg("a")]
    assert backend.remove_last("k") is True
    assert backend.load("k") == []


def test_remove_last_on_missing_session_returns_false(backend: SessionBackend) -> None:
    assert backend.remove_last("nope") is False
    assert backend.list_sessions() == []


def test_remove_last_on_empty_session_returns_false(backend: SessionBackend) -> None:
    fill(backend, "k", ["a"])
    backend.remove_last("k")
    assert backend.remove_last("k") is False
    assert backend.load("k") == []


def test_update_last_replaces_role_and_content_of_the_last_message(backend: SessionBackend) -> None:
    fill(backend, "k", ["question", "partial answ"])
    assert backend.update_last("k", msg("partial answer, complete", "assistant")) is True
    assert backend.load("k") == [msg("question"), msg("partial answer, complete", "assistant")]
    assert backend.load_page("k").total == 2


def test_update_last_on_missing_session_returns_false(backend: SessionBackend) -> None:
    assert backend.update_last("nope", msg("x")) is False
    assert backend.load("nope") == []
    assert backend.list_sessions() == []


def test_update_last_on_empty_session_returns_false(backend: SessionBackend) -> None:
    fill(backend, "k", ["a"])
    backend.clear_messages("k")
    assert backend.update_last("k", msg("x")) is False
    assert backend.load("k") == []


def test_update_last_many_times_keeps_one_message(backend: SessionBackend) -> None:
    fill(backend, "k", ["q", ""])
    text = ""
    for word in ["streaming", " responses", " arrive", " in", " pieces"]:
        text += word
        assert backend.update_last("k", msg(text, "assistant"))
    assert backend.load("k") == [msg("q"), msg("streaming responses arrive in pieces", "assistant")]


# list_sessions: most recent activity first


def test_list_sessions_orders_by_recent_activity(backend: SessionBackend) -> None:
    for key in ["a", "b", "c", "d", "e"]:
        backend.append(key, msg(f"{key}1"))
        backend.append(key, msg(f"{key}1"))
    assert backend.list_sessions() == ["e", "d", "c", "b", "a"]
    backend.append("a", msg("more"))
    assert backend.list_sessions() == ["a", "e", "d", "c", "b"]
    backend.remove_last("b")
    assert backend.list_sessions() == ["b", "a", "e", "d", "c"]
    backend.update_last("c", msg("new"))
    assert backend.list_sessions() == ["c", "b", "a", "e", "d"]
    backend.clear_messages("d")
    assert backend.list_sessions() == ["d", "c", "b", "a", "e"]
    assert backend.compact("e") == 1
    assert backend.list_sessions() == ["e", "d", "c", "b", "a"]


def test_list_sessions_order_is_kept_by_reads_and_writes_that_change_nothing(backend: SessionBackend) -> None:
    backend.append("empty", msg("x"))
    backend.remove_last("empty")
    backend.append("distinct", msg("a"))
    backend.append("distinct", msg("b"))
    backend.append("newest", msg("c"))
    before = backend.list_sessions()
    assert before == ["newest", "distinct", "empty"]
    assert backend.remove_last("empty") is False
    assert backend.clear_messages("empty") == 0
    assert backend.compact("distinct") == 0
    assert backend.update_last("empty", msg("y")) is False
    backend.load("empty")
    backend.load_page("distinct", offset=-1)
    backend.get_session_metadata("empty")
    backend.search(SessionQuery(keyword="a"))
    backend.search_messages("b")
    assert backend.list_sessions() == before


# list_sessions_with_metadata / get_session_metadata


def test_get_session_metadata_of_missing_session_is_none(backend: SessionBackend) -> None:
    assert backend.get_session_metadata("nope") is None


def test_get_session_metadata_counts_messages(backend: SessionBackend) -> None:
    fill(backend, "k", ["a", "b", "c"])
    meta = backend.get_session_metadata("k")
    assert meta is not None
    assert meta.key == "k"
    assert meta.message_count == 3
    backend.remove_last("k")
    meta = backend.get_session_metadata("k")
    assert meta is not None and meta.message_count == 2


def test_list_sessions_with_metadata_orders_by_recent_activity_and_pages(backend: SessionBackend) -> None:
    for i, key in enumerate(["a", "b", "c", "d"]):
        fill(backend, key, ["m"] * (i + 1))
    backend.append("b", msg("again"))
    rows = backend.list_sessions_with_metadata()
    assert [(m.key, m.message_count) for m in rows] == [("b", 3), ("d", 4), ("c", 3), ("a", 1)]
    assert [m.key for m in backend.list_sessions_with_metadata(limit=2)] == ["b", "d"]
    assert [m.key for m in backend.list_sessions_with_metadata(limit=2, offset=1)] == ["d", "c"]
    assert [m.key for m in backend.list_sessions_with_metadata(offset=3)] == ["a"]
    assert backend.list_sessions_with_metadata(offset=4) == []
    assert backend.list_sessions_with_metadata(limit=10, offset=100) == []


# clear_messages / delete_session


def test_clear_messages_returns_how_many_and_keeps_the_session(backend: SessionBackend) -> None:
    fill(backend, "k", ["a", "b", "c"])
    assert backend.clear_messages("k") == 3
    assert backend.load("k") == []
    assert "k" in backend.list_sessions()
    meta = backend.get_session_metadata("k")
    assert meta is not None and meta.message_count == 0
    assert backend.clear_messages("k") == 0


def test_clear_messages_on_missing_session_returns_zero_and_creates_nothing(backend: SessionBackend) -> None:
    assert backend.clear_messages("nope") == 0
    assert backend.list_sessions() == []


def test_clear_messages_leaves_other_sessions(backend: SessionBackend) -> None:
    fill(backend, "k", ["a", "b"])
    fill(backend, "other", ["c"])
    backend.clear_messages("k")
    assert backend.load("other") == [msg("c")]


def test_session_is_usable_after_clear_messages(backend: SessionBackend) -> None:
    fill(backend, "k", ["a", "b"])
    backend.clear_messages("k")
    backend.append("k", msg("fresh"))
    assert [(m.index, m.content) for m in backend.load_with_timestamps("k")] == [(0, "fresh")]


def test_delete_session_returns_true_if_it_existed_and_removes_its_messages(backend: SessionBackend) -> None:
    fill(backend, "k", ["a", "b"])
    fill(backend, "other", ["c"])
    assert backend.delete_session("k") is True
    assert backend.load("k") == []
    assert backend.load_page("k").total == 0
    assert backend.search_messages("a", filters=MessageFilters(session_key="k")) == []
    assert backend.load("other") == [msg("c")]


def test_delete_session_of_missing_session_returns_false(backend: SessionBackend) -> None:
    assert backend.delete_session("nope") is False
    assert backend.list_sessions() == []


def test_delete_session_of_an_emptied_session_returns_true(backend: SessionBackend) -> None:
    fill(backend, "k", ["a"])
    backend.clear_messages("k")
    assert backend.delete_session("k") is True


# compact: adjacent exact duplicates only


@pytest.mark.parametrize(
    ("messages", "kept"),
    [
        ([], []),
        ([("user", "a")], [("user", "a")]),
        ([("user", "a"), ("user", "a")], [("user", "a")]),
        ([("user", "a")] * 5, [("user", "a")]),
        ([("user", "a"), ("user", "b"), ("user", "a")], [("user", "a"), ("user", "b"), ("user", "a")]),
        ([("user", "a"), ("assistant", "a")], [("user", "a"), ("assistant", "a")]),
        ([("user", "a"), ("user", "a "), ("user", "A")], [("user", "a"), ("user", "a "), ("user", "A")]),
        ([("user", "café"), ("user", "cafe")], [("user", "café"), ("user", "cafe")]),
        ([("user", ""), ("user", "")], [("user", "")]),
        (
            [("user", "a"), ("user", "a"), ("assistant", "b"), ("assistant", "b"), ("user", "a"), ("user", "a")],
            [("user", "a"), ("assistant", "b"), ("user", "a")],
        ),
    ],
)
def test_compact_removes_adjacent_exact_duplicates_only(
    backend: SessionBackend, messages: list[tuple[str, str]], kept: list[tuple[str, str]]
) -> None:
    for role, content in messages:
        backend.append("k", msg(content, role))
    assert backend.compact("k") == len(messages) - len(kept)
    assert [(m.role, m.content) for m in backend.load("k")] == kept
    assert [m.index for m in backend.load_with_timestamps("k")] == list(range(len(kept)))
    assert backend.load_page("k").total == len(kept)
    if messages:
        meta = backend.get_session_metadata("k")
        assert meta is not None and meta.message_count == len(kept)


def test_compact_on_missing_session_returns_zero_and_creates_nothing(backend: SessionBackend) -> None:
    assert backend.compact("nope") == 0
    assert backend.list_sessions() == []


def test_compact_leaves_other_sessions(backend: SessionBackend) -> None:
    fill(backend, "k", ["a", "a"])
    fill(backend, "other", ["a", "a"])
    backend.compact("k")
    assert backend.load("other") == [msg("a"), msg("a")]


# search / search_messages that any backend answers


@pytest.mark.parametrize("keyword", [None, "", "   ", "\t\n"])
def test_search_without_keyword_lists_sessions_by_recent_activity(backend: SessionBackend, keyword: str | None) -> None:
    for key in ["a", "b", "c"]:
        backend.append(key, msg("hello"))
    backend.append("a", msg("again"))
    found = backend.search(SessionQuery(keyword=keyword))
    assert [m.key for m in found] == ["a", "c", "b"]
    assert [m.key for m in backend.search(SessionQuery(keyword=keyword, limit=2))] == ["a", "c"]


def test_search_finds_only_sessions_holding_the_word(backend: SessionBackend) -> None:
    backend.append("a", msg("the deploy failed with a timeout"))
    backend.append("b", msg("lunch plans"))
    backend.append("c", msg("another timeout today"))
    assert sorted(m.key for m in backend.search(SessionQuery(keyword="timeout"))) == ["a", "c"]
    assert backend.search(SessionQuery(keyword="zebra")) == []


def test_search_limit_caps_the_sessions(backend: SessionBackend) -> None:
    for i in range(5):
        backend.append(f"k{i}", msg("timeout"))
    assert len(backend.search(SessionQuery(keyword="timeout", limit=3))) == 3


def test_search_messages_hits_name_the_session_index_and_role(backend: SessionBackend) -> None:
    fill(backend, "k", ["nothing here", "the needle is here"])
    backend.append("k", msg("needle again", "assistant"))
    hits = backend.search_messages("needle")
    assert sorted((h.session_key, h.index, h.role) for h in hits) == [("k", 1, "user"), ("k", 2, "assistant")]
    assert all(h.score > 0 for h in hits)


def test_search_messages_filters_by_session_and_role(backend: SessionBackend) -> None:
    backend.append("a", msg("needle", "user"))
    backend.append("a", msg("needle", "assistant"))
    backend.append("b", msg("needle", "user"))
    assert sorted(
        (h.session_key, h.index) for h in backend.search_messages("needle", filters=MessageFilters(session_key="a"))
    ) == [
        ("a", 0),
        ("a", 1),
    ]
    assert sorted(
        (h.session_key, h.index) for h in backend.search_messages("needle", filters=MessageFilters(role="user"))
    ) == [
        ("a", 0),
        ("b", 0),
    ]


# content size


def test_append_over_max_content_bytes_raises_and_changes_nothing(backend: SessionBackend) -> None:
    backend.max_content_bytes = 8
    backend.append("k", msg("éééé"))  # 8 bytes of UTF-8: at the limit
    with pytest.raises(InvalidArgument, match="content"):
        backend.append("k", msg("ééééx"))  # 9 bytes
    with pytest.raises(InvalidArgument, match="content"):
        backend.append("new", msg("x" * 9))
    assert backend.load("k") == [msg("éééé")]
    assert backend.list_sessions() == ["k"]


def test_update_last_over_max_content_bytes_raises_and_changes_nothing(backend: SessionBackend) -> None:
    backend.max_content_bytes = 8
    backend.append("k", msg("ok"))
    with pytest.raises(InvalidArgument, match="content"):
        backend.update_last("k", msg("x" * 9))
    assert backend.load("k") == [msg("ok")]


# The trait's no-op defaults, as the memory backend (four required operations only) shows them.


def test_memory_backend_defaults_keep_no_names_aliases_context_or_state() -> None:
    from mcp_sessions.models import SessionContext

    backend = MemorySessionBackend()
    backend.append("k", msg("a"))
    backend.set_session_name("k", "name")
    backend.set_session_agent_alias("k", "agent")
    backend.set_session_context("k", SessionContext(channel_id="c"))
    backend.set_session_state("k", "running", "t1")
    assert backend.get_session_name("k") is None
    assert backend.get_session_agent_alias("k") is None
    assert backend.get_session_state("k") is None
    assert backend.list_running_sessions() == []
    assert backend.list_stuck_sessions(0) == []
    assert [m.created_at for m in backend.load_with_timestamps("k")] == [None]
    meta = backend.get_session_metadata("k")
    assert meta is not None and (meta.name, meta.agent_alias, meta.channel_id) == (None, None, None)
    # The no-op setters create nothing on a backend that keeps no metadata.
    backend.set_session_name("other", "x")
    assert backend.list_sessions() == ["k"]
