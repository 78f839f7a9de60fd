"""The MCP server in-process: every tool's result shape, argument rules, error texts, read-only mode, scoping."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from mcp.client import Client
from tool_calls import call, message, refused

from mcp_sessions.memory import MemorySessionBackend
from mcp_sessions.models import ChatMessage, SessionContext, SessionQuery
from mcp_sessions.postgres.backend import PostgresSessionBackend
from mcp_sessions.scope import ScopedBackend
from mcp_sessions.server import build_server
from mcp_sessions.store.duckdb import DuckDBSessionBackend
from mcp_sessions.tool_names import READ_ONLY_TOOLS

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["duckdb", "postgres"])
def backend(request: pytest.FixtureRequest) -> Iterator[DuckDBSessionBackend]:
    """Every test here on the embedded store and on the PostgreSQL store."""
    if request.param == "postgres":
        with PostgresSessionBackend(request.getfixturevalue("pg_uri")) as pg:
            yield pg  # type: ignore[misc]  # the same methods
    else:
        with DuckDBSessionBackend(":memory:") as store:
            yield store


TOOLS = {
    "load",
    "load_with_timestamps",
    "append",
    "remove_last",
    "update_last",
    "list_sessions",
    "list_sessions_with_metadata",
    "compact",
    "cleanup_stale",
    "search",
    "clear_messages",
    "delete_session",
    "set_session_name",
    "get_session_name",
    "set_session_agent_alias",
    "get_session_agent_alias",
    "set_session_context",
    "get_session_metadata",
    "set_session_state",
    "get_session_state",
    "list_running_sessions",
    "list_stuck_sessions",
    "search_messages",
}


@pytest.fixture
async def client(backend: DuckDBSessionBackend) -> AsyncIterator[Client]:
    async with Client(build_server(backend)) as connected:
        yield connected


async def test_every_tool_of_the_contract_is_listed_with_an_object_output_schema(client: Client) -> None:
    tools = (await client.list_tools()).tools
    assert {t.name for t in tools} == TOOLS
    for tool in tools:
        assert tool.output_schema is not None and tool.output_schema["type"] == "object", tool.name
        assert tool.input_schema["additionalProperties"] is False, tool.name
        assert tool.title and tool.description, tool.name


async def test_load_and_search_messages_descriptions_tell_the_model_how_to_recall(client: Client) -> None:
    tools = {t.name: t for t in (await client.list_tools()).tools}
    assert "search_messages" in (tools["load"].description or "")
    assert "offset" in (tools["load"].description or "") and "limit" in (tools["load"].description or "")
    assert "load" in (tools["search_messages"].description or "")


async def test_append_returns_the_message_count_and_load_returns_the_messages(client: Client) -> None:
    assert await call(client, "append", {"session_key": "k", "message": message("one")}) == {
        "session_key": "k",
        "message_count": 1,
    }
    assert (await call(client, "append", {"session_key": "k", "message": message("two", "assistant")}))[
        "message_count"
    ] == 2
    assert await call(client, "load", {"session_key": "k"}) == {
        "session_key": "k",
        "messages": [message("one"), message("two", "assistant")],
        "total": 2,
    }


async def test_load_slices_like_python_and_total_counts_the_whole_session(client: Client) -> None:
    for i in range(5):
        await call(client, "append", {"session_key": "k", "message": message(f"m{i}")})
    last_two = await call(client, "load", {"session_key": "k", "offset": -2})
    assert [m["content"] for m in last_two["messages"]] == ["m3", "m4"] and last_two["total"] == 5
    middle = await call(client, "load", {"session_key": "k", "offset": 1, "limit": 2})
    assert [m["content"] for m in middle["messages"]] == ["m1", "m2"]
    assert (await call(client, "load", {"session_key": "k", "offset": 50}))["messages"] == []
    assert [m["content"] for m in (await call(client, "load", {"session_key": "k", "offset": -50}))["messages"]] == [
        f"m{i}" for i in range(5)
    ]


async def test_load_of_a_missing_session_is_empty_and_creates_nothing(client: Client) -> None:
    assert await call(client, "load", {"session_key": "nope"}) == {"session_key": "nope", "messages": [], "total": 0}
    assert await call(client, "list_sessions") == {"sessions": []}


async def test_load_with_timestamps_carries_index_and_utc_created_at(client: Client) -> None:
    await call(client, "append", {"session_key": "k", "message": message("a")})
    await call(client, "append", {"session_key": "k", "message": message("b")})
    result = await call(client, "load_with_timestamps", {"session_key": "k", "offset": -1})
    assert result["total"] == 2
    [last] = result["messages"]
    assert last["index"] == 1 and last["content"] == "b"
    assert last["created_at"].endswith(("Z", "+00:00"))


async def test_update_last_and_remove_last_on_missing_session_return_false(client: Client) -> None:
    assert await call(client, "update_last", {"session_key": "nope", "message": message("x")}) == {"updated": False}
    assert await call(client, "remove_last", {"session_key": "nope"}) == {"removed": False}
    assert await call(client, "list_sessions") == {"sessions": []}


async def test_update_last_replaces_role_and_content_and_search_sees_only_the_new(client: Client) -> None:
    await call(client, "append", {"session_key": "k", "message": message("placeholder zebra")})
    assert await call(client, "update_last", {"session_key": "k", "message": message("giraffe", "assistant")}) == {
        "updated": True
    }
    assert (await call(client, "load", {"session_key": "k"}))["messages"] == [message("giraffe", "assistant")]
    assert (await call(client, "search_messages", {"query": "zebra"}))["hits"] == []
    [hit] = (await call(client, "search_messages", {"query": "giraffe"}))["hits"]
    assert hit["session_key"] == "k" and hit["index"] == 0 and hit["role"] == "assistant"


async def test_remove_last_compact_clear_and_delete_report_what_went(client: Client) -> None:
    for content in ["a", "a", "b", "b", "b", "a"]:
        await call(client, "append", {"session_key": "k", "message": message(content)})
    assert await call(client, "compact", {"session_key": "k"}) == {"removed": 3}
    assert await call(client, "remove_last", {"session_key": "k"}) == {"removed": True}
    assert await call(client, "clear_messages", {"session_key": "k"}) == {"removed": 2}
    assert (await call(client, "get_session_metadata", {"session_key": "k"}))["metadata"]["message_count"] == 0
    assert await call(client, "delete_session", {"session_key": "k"}) == {"deleted": True}
    assert await call(client, "delete_session", {"session_key": "k"}) == {"deleted": False}
    assert await call(client, "get_session_metadata", {"session_key": "k"}) == {"metadata": None}


async def test_setters_create_the_session_and_echo_what_is_stored(client: Client) -> None:
    assert await call(client, "set_session_name", {"session_key": "k", "name": "Trip"}) == {
        "session_key": "k",
        "name": "Trip",
    }
    assert await call(client, "get_session_name", {"session_key": "k"}) == {"name": "Trip"}
    cleared = await call(client, "set_session_name", {"session_key": "k", "name": ""})
    assert cleared == {"session_key": "k", "name": None}
    assert await call(client, "set_session_agent_alias", {"session_key": "k", "agent_alias": "bot"}) == {
        "session_key": "k",
        "agent_alias": "bot",
    }
    assert await call(client, "get_session_agent_alias", {"session_key": "k"}) == {"agent_alias": "bot"}
    context = {"channel_id": "c1", "room_id": "r1"}
    assert await call(client, "set_session_context", {"session_key": "k", "context": context}) == {
        "session_key": "k",
        "channel_id": "c1",
        "room_id": "r1",
        "sender_id": None,
    }
    # A missing field keeps its value, an empty string clears it.
    assert await call(client, "set_session_context", {"session_key": "k", "context": {"room_id": ""}}) == {
        "session_key": "k",
        "channel_id": "c1",
        "room_id": None,
        "sender_id": None,
    }
    metadata = (await call(client, "get_session_metadata", {"session_key": "k"}))["metadata"]
    assert metadata["key"] == "k" and metadata["agent_alias"] == "bot" and metadata["message_count"] == 0


async def test_getters_of_a_missing_session_return_null(client: Client) -> None:
    assert await call(client, "get_session_name", {"session_key": "nope"}) == {"name": None}
    assert await call(client, "get_session_agent_alias", {"session_key": "nope"}) == {"agent_alias": None}
    assert await call(client, "get_session_metadata", {"session_key": "nope"}) == {"metadata": None}
    assert await call(client, "get_session_state", {"session_key": "nope"}) == {"state": None}


async def test_state_running_sets_turn_started_at_and_lists_running_and_stuck(client: Client) -> None:
    await call(client, "append", {"session_key": "k", "message": message("hi")})
    assert await call(client, "get_session_state", {"session_key": "k"}) == {
        "state": {"state": "idle", "turn_id": None, "turn_started_at": None}
    }
    result = await call(client, "set_session_state", {"session_key": "k", "state": "running", "turn_id": "t1"})
    assert result["session_key"] == "k"
    assert result["state"]["state"] == "running" and result["state"]["turn_id"] == "t1"
    assert result["state"]["turn_started_at"] is not None
    assert [m["key"] for m in (await call(client, "list_running_sessions"))["sessions"]] == ["k"]
    # Running for longer than 0 seconds: turn_started_at has microseconds, and a call has passed since.
    stuck = await call(client, "list_stuck_sessions", {"threshold_secs": 0})
    assert [m["key"] for m in stuck["sessions"]] == ["k"]
    assert (await call(client, "list_stuck_sessions", {"threshold_secs": 3600}))["sessions"] == []
    idle = await call(client, "set_session_state", {"session_key": "k", "state": "idle"})
    assert idle["state"] == {"state": "idle", "turn_id": None, "turn_started_at": None}
    assert (await call(client, "list_running_sessions"))["sessions"] == []


async def test_cleanup_stale_spares_recent_and_running_sessions(client: Client) -> None:
    await call(client, "append", {"session_key": "idle", "message": message("hi")})
    await call(client, "append", {"session_key": "busy", "message": message("working")})
    await call(client, "set_session_state", {"session_key": "busy", "state": "running", "turn_id": "t"})
    # Both were active within the hour: recent, so spared.
    assert await call(client, "cleanup_stale", {"ttl_hours": 1}) == {"removed": 0}
    assert set((await call(client, "list_sessions"))["sessions"]) == {"idle", "busy"}
    # With ttl 0 both are stale (last active before now): the idle one goes, the running one stays whole.
    assert await call(client, "cleanup_stale", {"ttl_hours": 0}) == {"removed": 1}
    assert await call(client, "list_sessions") == {"sessions": ["busy"]}
    assert await call(client, "get_session_metadata", {"session_key": "idle"}) == {"metadata": None}
    assert (await call(client, "load", {"session_key": "busy"}))["messages"] == [message("working")]
    assert (await call(client, "get_session_state", {"session_key": "busy"}))["state"]["state"] == "running"
    # Once it stops running, it is stale like any other.
    await call(client, "set_session_state", {"session_key": "busy", "state": "idle"})
    assert await call(client, "cleanup_stale", {"ttl_hours": 0}) == {"removed": 1}
    assert await call(client, "list_sessions") == {"sessions": []}


async def test_list_sessions_most_recent_first_with_metadata_paging(client: Client) -> None:
    for key in ["a", "b", "c"]:
        await call(client, "append", {"session_key": key, "message": message(key)})
    assert await call(client, "list_sessions") == {"sessions": ["c", "b", "a"]}
    page = await call(client, "list_sessions_with_metadata", {"limit": 2, "offset": 1})
    assert [m["key"] for m in page["sessions"]] == ["b", "a"]
    assert (await call(client, "list_sessions_with_metadata", {"offset": 10}))["sessions"] == []


async def test_search_ranks_sessions_and_an_empty_keyword_lists_recent_ones(client: Client) -> None:
    await call(client, "append", {"session_key": "both", "message": message("apple banana")})
    await call(client, "append", {"session_key": "one", "message": message("apple pie")})
    await call(client, "append", {"session_key": "none", "message": message("cherry")})
    ranked = await call(client, "search", {"query": {"keyword": "apple banana"}})
    assert [m["key"] for m in ranked["sessions"]] == ["both", "one"]
    recent = await call(client, "search", {"query": {"keyword": "  ", "limit": 2}})
    assert [m["key"] for m in recent["sessions"]] == ["none", "one"]
    assert [m["key"] for m in (await call(client, "search", {"query": {}}))["sessions"]] == ["none", "one", "both"]


async def test_search_messages_returns_hits_to_load_around(client: Client) -> None:
    await call(client, "append", {"session_key": "k", "message": message("we talked about the café")})
    await call(client, "append", {"session_key": "k", "message": message("running the update_last tool", "assistant")})
    [hit] = (await call(client, "search_messages", {"query": "run"}))["hits"]
    assert hit["session_key"] == "k" and hit["index"] == 1 and hit["role"] == "assistant"
    assert "update_last" in hit["snippet"] and hit["score"] > 0 and hit["created_at"]
    assert (await call(client, "search_messages", {"query": "cafe", "role": "user"}))["hits"][0]["index"] == 0
    assert (await call(client, "search_messages", {"query": "cafe", "role": "assistant"}))["hits"] == []
    assert (await call(client, "search_messages", {"query": "cafe", "since": "2000-01-01"}))["hits"]
    assert (await call(client, "search_messages", {"query": "cafe", "until": "2000-01-01"}))["hits"] == []
    assert (await call(client, "search_messages", {"query": "*"}))["hits"] == []
    assert (await call(client, "search_messages", {"query": '" OR 1=1; DROP TABLE messages; --'}))["hits"] == []


async def test_a_string_argument_is_never_parsed_as_json(client: Client) -> None:
    # The SDK would turn "null" into None for a field typed str | None, dropping the filter.
    await call(client, "append", {"session_key": "k", "message": message("needle")})
    assert (await call(client, "search_messages", {"query": "needle", "session_key": "null"}))["hits"] == []
    await call(client, "append", {"session_key": "[1]", "message": message("needle")})
    [hit] = (await call(client, "search_messages", {"query": "needle", "session_key": "[1]"}))["hits"]
    assert hit["session_key"] == "[1]"


@pytest.mark.parametrize(
    ("tool", "arguments", "words"),
    [
        ("load", {"session_key": ""}, ["session_key", "empty"]),
        ("load", {"session_key": "k", "extra": 1}, ["extra", "extra inputs are not permitted"]),
        ("append", {"session_key": "k", "message": {"role": "user", "content": "x", "x": 1}}, ["message.x", "extra"]),
        ("search", {"query": {"keyword": "x", "sort": "asc"}}, ["query.sort", "extra"]),
        ("set_session_context", {"session_key": "k", "context": {"team": "t"}}, ["context.team", "extra"]),
        ("append", {"session_key": "k"}, ["message", "required"]),
        ("load", {"session_key": 5}, ["session_key", "string"]),
        ("search_messages", {"query": "x", "since": "last tuesday"}, ["since", "iso 8601"]),
    ],
)
async def test_bad_arguments_are_tool_errors_naming_the_argument_and_the_rule(
    client: Client, tool: str, arguments: dict[str, Any], words: list[str]
) -> None:
    text = (await refused(client, tool, arguments)).lower()
    for word in words:
        assert word in text
    assert await call(client, "list_sessions") == {"sessions": []}


async def test_content_over_the_store_limit_is_a_tool_error_that_keeps_its_text() -> None:
    store = DuckDBSessionBackend(":memory:", max_content_bytes=10)
    try:
        async with Client(build_server(store)) as client:
            text = await refused(client, "append", {"session_key": "k", "message": message("é" * 6)})
            assert "message.content" in text and "10 bytes" in text
            await call(client, "append", {"session_key": "k", "message": message("short")})
            text = await refused(client, "update_last", {"session_key": "k", "message": message("x" * 11)})
            assert "message.content" in text
            assert (await call(client, "load", {"session_key": "k"}))["messages"] == [message("short")]
    finally:
        store.close()


async def test_a_store_that_refuses_writes_gives_a_tool_error_saying_so(db_path: str) -> None:
    DuckDBSessionBackend(db_path).close()
    store = DuckDBSessionBackend(db_path, read_only=True)
    try:
        async with Client(build_server(store)) as client:
            text = await refused(client, "append", {"session_key": "k", "message": message("x")})
            assert "the store could not write" in text and "read-only" in text
            assert await call(client, "list_sessions") == {"sessions": []}
    finally:
        store.close()


async def test_read_only_server_registers_only_the_read_tools(backend: DuckDBSessionBackend) -> None:
    backend.append("k", ChatMessage(role="user", content="remember the lighthouse"))
    async with Client(build_server(backend, read_only=True)) as client:
        assert {t.name for t in (await client.list_tools()).tools} == set(READ_ONLY_TOOLS)
        assert "append" in await refused(client, "append", {"session_key": "k", "message": message("x")})
        assert (await call(client, "search_messages", {"query": "lighthouse"}))["hits"]
    assert len(backend.load("k")) == 1


async def test_the_in_memory_backend_serves_every_tool() -> None:
    async with Client(build_server(MemorySessionBackend())) as client:
        await call(client, "append", {"session_key": "k", "message": message("hello")})
        assert (await call(client, "load", {"session_key": "k"}))["total"] == 1
        state = await call(client, "set_session_state", {"session_key": "k", "state": "running"})
        assert state["state"]["state"] == "running"


# Agent-alias scoping, a security boundary.


@pytest.fixture
def shared(backend: DuckDBSessionBackend) -> DuckDBSessionBackend:
    """A store holding a session of agent a, one of agent b and one attributed to nobody."""
    for key, alias in [("a-1", "a"), ("b-1", "b"), ("nobody", None)]:
        backend.append(key, ChatMessage(role="user", content=f"secret lighthouse {key}"))
        if alias:
            backend.set_session_agent_alias(key, alias)
    backend.set_session_state("b-1", "running")
    return backend


@pytest.fixture
async def scoped(shared: DuckDBSessionBackend) -> AsyncIterator[Client]:
    async with Client(build_server(ScopedBackend(shared, "a"))) as connected:
        yield connected


async def test_scoped_reads_see_only_the_agents_sessions(scoped: Client) -> None:
    assert await call(scoped, "list_sessions") == {"sessions": ["a-1"]}
    assert [m["key"] for m in (await call(scoped, "list_sessions_with_metadata"))["sessions"]] == ["a-1"]
    assert await call(scoped, "load", {"session_key": "b-1"}) == {"session_key": "b-1", "messages": [], "total": 0}
    assert (await call(scoped, "load_with_timestamps", {"session_key": "nobody"}))["messages"] == []
    assert await call(scoped, "get_session_metadata", {"session_key": "b-1"}) == {"metadata": None}
    assert await call(scoped, "get_session_state", {"session_key": "b-1"}) == {"state": None}
    assert await call(scoped, "get_session_agent_alias", {"session_key": "b-1"}) == {"agent_alias": None}
    assert await call(scoped, "get_session_name", {"session_key": "b-1"}) == {"name": None}
    assert (await call(scoped, "list_running_sessions"))["sessions"] == []
    assert (await call(scoped, "list_stuck_sessions", {"threshold_secs": 0}))["sessions"] == []


async def test_scoped_searches_can_narrow_but_never_widen(scoped: Client) -> None:
    hits = (await call(scoped, "search_messages", {"query": "lighthouse"}))["hits"]
    assert [h["session_key"] for h in hits] == ["a-1"]
    assert (await call(scoped, "search_messages", {"query": "lighthouse", "agent_alias": "b"}))["hits"] == []
    assert (await call(scoped, "search_messages", {"query": "lighthouse", "session_key": "b-1"}))["hits"] == []
    assert [m["key"] for m in (await call(scoped, "search", {"query": {"keyword": "lighthouse"}}))["sessions"]] == [
        "a-1"
    ]
    assert [m["key"] for m in (await call(scoped, "search", {"query": {}}))["sessions"]] == ["a-1"]


@pytest.mark.parametrize(
    ("tool", "arguments"),
    [
        ("append", {"message": {"role": "user", "content": "x"}}),
        ("update_last", {"message": {"role": "user", "content": "x"}}),
        ("remove_last", {}),
        ("compact", {}),
        ("clear_messages", {}),
        ("delete_session", {}),
        ("set_session_name", {"name": "mine"}),
        ("set_session_agent_alias", {"agent_alias": "a"}),
        ("set_session_context", {"context": {"channel_id": "c"}}),
        ("set_session_state", {"state": "idle"}),
    ],
)
@pytest.mark.parametrize("key", ["b-1", "nobody"])
async def test_scoped_writes_to_a_session_not_of_the_agent_are_refused_and_change_nothing(
    scoped: Client, shared: DuckDBSessionBackend, tool: str, arguments: dict[str, Any], key: str
) -> None:
    before = (shared.get_session_metadata(key), shared.load(key), shared.get_session_state(key))
    text = await refused(scoped, tool, {"session_key": key, **arguments})
    assert "session_key" in text and key in text
    assert (shared.get_session_metadata(key), shared.load(key), shared.get_session_state(key)) == before


async def test_scoped_sessions_created_are_attributed_to_the_agent(
    scoped: Client, shared: DuckDBSessionBackend
) -> None:
    await call(scoped, "append", {"session_key": "new", "message": message("hi")})
    await call(scoped, "set_session_name", {"session_key": "named", "name": "n"})
    await call(scoped, "set_session_state", {"session_key": "stated", "state": "running"})
    for key in ["new", "named", "stated"]:
        assert shared.get_session_agent_alias(key) == "a"
    assert (await call(scoped, "append", {"session_key": "new", "message": message("again")}))["message_count"] == 2
    assert set((await call(scoped, "list_sessions"))["sessions"]) == {"a-1", "new", "named", "stated"}


async def test_scoped_set_session_agent_alias_accepts_only_the_agent(
    scoped: Client, shared: DuckDBSessionBackend
) -> None:
    for alias in ["b", ""]:
        text = await refused(scoped, "set_session_agent_alias", {"session_key": "a-1", "agent_alias": alias})
        assert "agent_alias" in text
    assert shared.get_session_agent_alias("a-1") == "a"
    assert await call(scoped, "set_session_agent_alias", {"session_key": "a-1", "agent_alias": "a"}) == {
        "session_key": "a-1",
        "agent_alias": "a",
    }


async def test_scoped_cleanup_and_deletes_touch_only_the_agents_sessions(
    scoped: Client, shared: DuckDBSessionBackend
) -> None:
    assert await call(scoped, "cleanup_stale", {"ttl_hours": 0}) == {"removed": 1}
    assert set(shared.list_sessions()) == {"nobody", "b-1"}
    assert await call(scoped, "delete_session", {"session_key": "gone"}) == {"deleted": False}


def test_scoped_creation_is_atomic_under_concurrent_writers(backend: DuckDBSessionBackend) -> None:
    scoped = ScopedBackend(backend, "a")

    def write(i: int) -> None:
        scoped.append("race", ChatMessage(role="user", content=f"m{i}"))

    threads = [threading.Thread(target=write, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert backend.get_session_agent_alias("race") == "a"
    assert len(backend.load("race")) == 16


def test_scoped_write_that_fails_leaves_no_session_behind(
    backend: DuckDBSessionBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    scoped = ScopedBackend(backend, "a")
    scoped.append("kept", ChatMessage(role="user", content="before"))
    before = (backend.list_sessions_with_metadata(), backend.load_with_timestamps("kept"))
    claimed: list[str | None] = []

    def fail(session_key: str, message: ChatMessage) -> int:
        # The scope has already claimed the new key for its agent: the failure lands where the rollback is.
        claimed.append(backend.get_session_agent_alias(session_key))
        raise RuntimeError("the disk is gone")

    monkeypatch.setattr(backend, "append", fail)
    with pytest.raises(RuntimeError, match="the disk is gone"):
        scoped.append("k", ChatMessage(role="user", content="lost"))
    assert claimed == ["a"]
    assert backend.get_session_metadata("k") is None
    assert (backend.list_sessions_with_metadata(), backend.load_with_timestamps("kept")) == before
    # A failing write to a session that already existed leaves it in place.
    with pytest.raises(RuntimeError, match="the disk is gone"):
        scoped.append("kept", ChatMessage(role="user", content="lost"))
    assert (backend.list_sessions_with_metadata(), backend.load_with_timestamps("kept")) == before


def test_scoped_search_narrowing_in_the_backend(shared: DuckDBSessionBackend) -> None:
    scoped = ScopedBackend(shared, "a")
    assert [m.key for m in scoped.search(SessionQuery(keyword="lighthouse"), agent_alias="a")] == ["a-1"]
    assert scoped.search(SessionQuery(keyword="lighthouse"), agent_alias="b") == []
    assert scoped.list_sessions_with_metadata(agent_alias="b") == []
    scoped.set_session_context("a-1", SessionContext(channel_id="c"))
    assert shared.get_session_metadata("a-1").channel_id == "c"  # type: ignore[union-attr]


async def test_calls_that_block_share_a_few_worker_threads_and_all_complete() -> None:
    """16 searches at once run on at most READ_THREADS threads (each thread costs a cursor and its memory)."""
    import anyio

    from mcp_sessions.server import READ_THREADS

    running, most, lock = 0, 0, threading.Lock()
    threads: set[int] = set()
    release = threading.Event()

    class Counting(MemorySessionBackend):
        def answers_from_memory(self, tool: str, arguments: dict[str, object]) -> bool:
            return False  # as a store's search: on a worker thread

        def search_messages_page(self, search: Any) -> Any:
            nonlocal running, most
            with lock:
                running += 1
                most = max(most, running)
                threads.add(threading.get_ident())
            release.wait(0.2)  # hold the thread so that calls pile up
            with lock:
                running -= 1
            return super().search_messages_page(search)

    store = Counting()
    store.append("k", ChatMessage(role="user", content="find me"))
    async with Client(build_server(store)) as connected:
        hits: list[int] = []

        async def one() -> None:
            result = await call(connected, "search_messages", {"query": "find"})
            hits.append(len(result["hits"]))

        async with anyio.create_task_group() as group:
            for _ in range(16):
                group.start_soon(one)
    assert hits == [1] * 16
    assert most == READ_THREADS, (most, len(threads))
    assert len(threads) <= READ_THREADS


async def test_reads_are_answered_while_every_write_waits_for_the_writer() -> None:
    """Writes stuck behind the writer (a long merge, say) must not take the threads that reads need."""
    import anyio

    release = threading.Event()
    waiting = threading.Semaphore(0)

    class SlowWriter(MemorySessionBackend):
        def answers_from_memory(self, tool: str, arguments: dict[str, object]) -> bool:
            return False  # as a store: every call on a worker thread

        def append(self, session_key: str, message: ChatMessage) -> int:
            waiting.release()
            release.wait(10)
            return super().append(session_key, message)

    store = SlowWriter()
    async with Client(build_server(store)) as connected:
        async with anyio.create_task_group() as group:
            for n in range(8):
                group.start_soon(call, connected, "append", {"session_key": f"s{n}", "message": message("x")})
            for _ in range(8):  # every append is on a thread, waiting
                await anyio.to_thread.run_sync(waiting.acquire)
            with anyio.fail_after(5):
                assert (await call(connected, "search_messages", {"query": "x"}))["hits"] == []
                assert (await call(connected, "list_sessions", {}))["sessions"] == []
            release.set()
        assert sorted((await call(connected, "list_sessions", {}))["sessions"]) == [f"s{n}" for n in range(8)]
