"""Resources and the recall prompt through the real client: transcripts, recent sessions, scoping, change events."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import ResourceUpdated
from tool_calls import message

from mcp_sessions.postgres.backend import PostgresSessionBackend
from mcp_sessions.resources import RECENT_URI, session_uri
from mcp_sessions.scope import ScopedBackend
from mcp_sessions.server import build_server
from mcp_sessions.store.duckdb import DuckDBSessionBackend

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


async def append(client: Client, key: str, content: str, role: str = "user") -> None:
    result = await client.call_tool("append", {"session_key": key, "message": message(content, role)})
    assert not result.is_error, result.content


async def read(client: Client, uri: str) -> str:
    result = await client.read_resource(uri)
    content: Any = result.contents[0]
    assert content.mime_type == "text/markdown"
    return content.text


@pytest.fixture
async def client(backend: DuckDBSessionBackend) -> AsyncIterator[Client]:
    async with Client(build_server(backend)) as connected:
        yield connected


async def test_the_session_template_and_the_recent_list_are_offered(client: Client) -> None:
    templates = (await client.list_resource_templates()).resource_templates
    assert [t.uri_template for t in templates] == ["session://{session_key}"]
    resources = (await client.list_resources()).resources
    assert [r.uri for r in resources] == [RECENT_URI]


async def test_a_session_reads_as_markdown_with_name_roles_and_times(client: Client) -> None:
    await append(client, "design", "Should we cache the connection?")
    await append(client, "design", "Yes, a cursor per thread.", "assistant")
    await client.call_tool("set_session_name", {"session_key": "design", "name": "Connection design"})
    text = await read(client, session_uri("design"))
    assert text.startswith("# Connection design (`design`)\n")
    assert "2 messages" in text and "created 20" in text
    assert "## 1. user · 20" in text and "## 2. assistant · 20" in text
    assert "Yes, a cursor per thread." in text


async def test_keys_with_reserved_characters_round_trip_through_the_uri(client: Client) -> None:
    key = "team/room 42 ../x?é"
    await append(client, key, "hello")
    assert session_uri(key) == "session://team%2Froom%2042%20..%2Fx%3F%C3%A9"
    assert "hello" in await read(client, session_uri(key))


async def test_a_missing_session_is_a_resource_error(client: Client) -> None:
    with pytest.raises(MCPError, match="no session 'nope'"):
        await client.read_resource(session_uri("nope"))


async def test_recent_sessions_link_each_session_most_recent_first(client: Client) -> None:
    await append(client, "older", "one")
    await append(client, "newer", "two")
    text = await read(client, RECENT_URI)
    assert text.index("(session://newer)") < text.index("(session://older)")
    assert "1 message, last activity" in text


async def test_resources_see_only_the_agents_sessions(backend: DuckDBSessionBackend) -> None:
    backend.append("mine", _msg("my secret plan"))
    backend.set_session_agent_alias("mine", "a")
    backend.append("theirs", _msg("their secret plan"))
    backend.set_session_agent_alias("theirs", "b")
    async with Client(build_server(ScopedBackend(backend, "a"), read_only=True)) as client:
        assert "my secret plan" in await read(client, session_uri("mine"))
        with pytest.raises(MCPError, match="no session 'theirs'"):
            await client.read_resource(session_uri("theirs"))
        recent = await read(client, RECENT_URI)
        assert "mine" in recent and "theirs" not in recent


async def test_the_recall_prompt_asks_to_search_load_and_cite(client: Client) -> None:
    prompts = (await client.list_prompts()).prompts
    assert [(p.name, [a.name for a in p.arguments or []]) for p in prompts] == [("recall", ["topic"])]
    result = await client.get_prompt("recall", {"topic": "connection caching"})
    text: Any = result.messages[0].content
    assert "connection caching" in text.text
    for word in ("search_messages", "load", "session key", "decided"):
        assert word in text.text


async def heard(events: Any, seconds: float = 1.0) -> set[str]:
    """The URIs announced until the stream stays quiet for a while (events are level triggers, deduplicated)."""
    uris: set[str] = set()
    while True:
        with anyio.move_on_after(seconds):
            event = await events.__anext__()
            assert isinstance(event, ResourceUpdated)
            uris.add(event.uri)
            continue
        return uris


async def test_subscribers_hear_when_a_session_changes(client: Client) -> None:
    async with client.listen(resource_subscriptions=[session_uri("k"), RECENT_URI]) as events:
        await append(client, "k", "x")
        assert await heard(events) == {session_uri("k"), RECENT_URI}
        await client.call_tool("load", {"session_key": "k"})
        bad = await client.call_tool("append", {"session_key": "", "message": message("x")})
        assert bad.is_error
        assert await heard(events, 0.5) == set()  # reads and refused writes change nothing
        await append(client, "other", "not subscribed")
        assert await heard(events) == {RECENT_URI}
        await client.call_tool("remove_last", {"session_key": "k"})
        assert await heard(events) == {session_uri("k"), RECENT_URI}


async def test_resources_and_prompt_over_stdio_in_read_only_mode(tmp_path: Any) -> None:
    db = str(tmp_path / "s.duckdb")
    with DuckDBSessionBackend(db) as store:
        store.append("k", _msg("stored before"))
    params = StdioServerParameters(command=sys.executable, args=["-m", "mcp_sessions", "--db", db, "--read-only"])
    with anyio.fail_after(30):
        async with Client(params) as client:
            assert "stored before" in await read(client, session_uri("k"))
            assert (await client.get_prompt("recall", {"topic": "x"})).messages


def _msg(content: str) -> Any:
    from mcp_sessions.models import ChatMessage

    return ChatMessage(role="user", content=content)


class _Updates:
    """notifications/resources/updated as a client on protocol 2025-11-25 receives them."""

    def __init__(self) -> None:
        self.uris: list[str] = []
        self.arrived = anyio.Event()

    async def __call__(self, message: Any) -> None:
        if getattr(message, "method", None) == "notifications/resources/updated":
            self.uris.append(str(message.params.uri))
            self.arrived.set()

    async def wait_for(self, uri: str, seconds: float = 10.0) -> None:
        with anyio.fail_after(seconds):
            while uri not in self.uris:
                self.arrived = anyio.Event()
                await self.arrived.wait()


async def _subscribe(client: Client, uri: str, *, off: bool = False) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecated as of 2026-07-28, which is the point: older clients use it
        if off:
            await client.unsubscribe_resource(uri)
        else:
            await client.subscribe_resource(uri)


async def test_clients_on_2025_11_25_subscribe_to_a_session_and_hear_every_write_relayed_ones_too(
    tmp_path: Any,
) -> None:
    db = str(tmp_path / "s.duckdb")
    params = StdioServerParameters(command=sys.executable, args=["-m", "mcp_sessions", "--db", db])
    updates = _Updates()
    with anyio.fail_after(60):
        async with Client(params, mode="legacy", message_handler=updates) as holder:
            assert holder.protocol_version == "2025-11-25"
            capabilities = holder.session.server_capabilities
            assert capabilities is not None and capabilities.resources is not None
            assert capabilities.resources.subscribe is True
            await _subscribe(holder, session_uri("watched"))
            await append(holder, "watched", "first")
            await updates.wait_for(session_uri("watched"))
            updates.uris.clear()
            await append(holder, "other", "not subscribed")
            await holder.call_tool("load", {"session_key": "watched"})
            await anyio.sleep(0.5)
            assert session_uri("watched") not in updates.uris, updates.uris  # reads and other sessions say nothing
            # A second server on the same file relays its writes to this one, which holds the file.
            async with Client(params, mode="legacy") as relay:
                await append(relay, "watched", "written through the relay")
                await updates.wait_for(session_uri("watched"))
                updates.uris.clear()
                await relay.call_tool("update_last", {"session_key": "watched", "message": message("again")})
                await updates.wait_for(session_uri("watched"))
            await _subscribe(holder, session_uri("watched"), off=True)
            updates.uris.clear()
            await append(holder, "watched", "after unsubscribing")
            await anyio.sleep(0.5)
            assert session_uri("watched") not in updates.uris


async def test_subscribing_to_a_uri_that_is_no_session_is_refused(backend: DuckDBSessionBackend) -> None:
    async with Client(build_server(backend), mode="legacy") as client:
        with pytest.raises(MCPError, match="session://"):
            await _subscribe(client, "file:///etc/passwd")


async def test_a_subscriber_on_a_relaying_server_hears_writes_made_through_the_holder(tmp_path: Any) -> None:
    db = str(tmp_path / "s.duckdb")
    params = StdioServerParameters(command=sys.executable, args=["-m", "mcp_sessions", "--db", db])
    updates = _Updates()
    with anyio.fail_after(60):
        async with Client(params, mode="legacy") as holder:
            await append(holder, "watched", "the holder's first")
            async with Client(params, mode="legacy", message_handler=updates) as relay:
                await _subscribe(relay, session_uri("watched"))
                await append(holder, "watched", "written by the holder")
                await updates.wait_for(session_uri("watched"))
                updates.uris.clear()
                await append(holder, "unwatched", "another session")
                await anyio.sleep(0.5)
                assert session_uri("watched") not in updates.uris
                async with Client(params, mode="legacy") as third:
                    await third.call_tool("remove_last", {"session_key": "watched"})
                    await updates.wait_for(session_uri("watched"))
