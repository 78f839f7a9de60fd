"""The real program over stdio with the official client: every tool, bad input, modes, lifecycle, a held file."""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters
from tool_calls import message

from mcp_sessions.models import ChatMessage
from mcp_sessions.store.duckdb import DuckDBSessionBackend
from mcp_sessions.tool_names import READ_ONLY_TOOLS

pytestmark = pytest.mark.anyio

START = 30  # seconds: room for a cold interpreter start and the MCP SDK import
COMMAND = [sys.executable, "-m", "mcp_sessions"]


def server(db: str, *flags: str) -> StdioServerParameters:
    return StdioServerParameters(command=sys.executable, args=["-m", "mcp_sessions", "--db", db, *flags])


async def call(client: Client, tool: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
    result = await client.call_tool(tool, arguments or {})
    assert not result.is_error, result.content
    assert result.structured_content is not None
    text = result.content[0]
    assert text.type == "text" and json.loads(text.text) == result.structured_content
    return result.structured_content


@pytest.fixture(scope="module")
def module_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("stdio") / "sessions.duckdb")


@pytest.fixture(scope="module")
async def client(module_db: str) -> AsyncIterator[Client]:
    """One server process shared by the tests that are not about the process itself."""
    async with Client(server(module_db), read_timeout_seconds=START) as connected:
        yield connected


class RawServer:
    """The program driven line by line, to see exactly what it writes and how it ends."""

    def __init__(self, process: Process) -> None:
        self.process = process
        assert process.stdin is not None and process.stdout is not None
        self.stdout = BufferedByteReceiveStream(process.stdout)
        self.lines: list[str] = []

    async def send(self, payload: dict[str, Any] | str) -> None:
        text = payload if isinstance(payload, str) else json.dumps(payload)
        assert self.process.stdin is not None
        await self.process.stdin.send(text.encode() + b"\n")

    async def receive(self) -> dict[str, Any]:
        line = (await self.stdout.receive_until(b"\n", 16 * 1024 * 1024)).decode()
        self.lines.append(line)
        return json.loads(line)

    async def request(self, id: int, method: str, params: dict[str, Any]) -> dict[str, Any]:
        await self.send({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
        while True:
            reply = await self.receive()
            if reply.get("id") == id:
                return reply

    async def initialize(self) -> None:
        params = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}
        reply = await self.request(0, "initialize", params)
        assert "result" in reply, reply
        await self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    async def rest_of_stdout(self) -> list[str]:
        """Every line written after those already read, until the program closes stdout."""
        rest = b""
        try:
            while True:
                rest += await self.stdout.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass
        return [line for line in rest.decode().split("\n") if line]


async def open_raw(*args: str, env: dict[str, str] | None = None) -> Process:
    return await anyio.open_process([*COMMAND, *args], env=env)


async def wait_exit(process: Process, seconds: float = 10) -> int:
    with anyio.fail_after(seconds):
        return await process.wait()


# Every tool.


async def test_every_contract_tool_is_listed_with_its_hints(client: Client) -> None:
    tools = {t.name: t for t in (await client.list_tools()).tools}
    assert len(tools) == 23
    for name, tool in tools.items():
        assert tool.annotations is not None
        assert tool.annotations.read_only_hint is (name in READ_ONLY_TOOLS)
        assert tool.output_schema is not None and tool.output_schema["type"] == "object"
        assert tool.input_schema["additionalProperties"] is False


async def test_message_tools_over_stdio(client: Client) -> None:
    key = "stdio messages"
    assert await call(client, "append", {"session_key": key, "message": message("alpha")}) == {
        "session_key": key,
        "message_count": 1,
    }
    for content in ["alpha", "beta", "beta"]:
        await call(client, "append", {"session_key": key, "message": message(content)})
    assert await call(client, "compact", {"session_key": key}) == {"removed": 2}
    loaded = await call(client, "load", {"session_key": key, "offset": -1, "limit": 1})
    assert loaded == {"session_key": key, "messages": [message("beta")], "total": 2}
    stamped = await call(client, "load_with_timestamps", {"session_key": key})
    assert [(m["index"], m["content"]) for m in stamped["messages"]] == [(0, "alpha"), (1, "beta")]
    assert all(m["created_at"] for m in stamped["messages"])
    assert await call(client, "update_last", {"session_key": key, "message": message("gamma", "assistant")}) == {
        "updated": True
    }
    assert await call(client, "remove_last", {"session_key": key}) == {"removed": True}
    assert await call(client, "clear_messages", {"session_key": key}) == {"removed": 1}
    assert await call(client, "delete_session", {"session_key": key}) == {"deleted": True}
    assert await call(client, "load", {"session_key": key}) == {"session_key": key, "messages": [], "total": 0}


async def test_metadata_and_state_tools_over_stdio(client: Client) -> None:
    key = "stdio metadata"
    assert await call(client, "set_session_name", {"session_key": key, "name": "Plans"}) == {
        "session_key": key,
        "name": "Plans",
    }
    assert await call(client, "get_session_name", {"session_key": key}) == {"name": "Plans"}
    assert await call(client, "set_session_agent_alias", {"session_key": key, "agent_alias": "scout"}) == {
        "session_key": key,
        "agent_alias": "scout",
    }
    assert await call(client, "get_session_agent_alias", {"session_key": key}) == {"agent_alias": "scout"}
    context = await call(client, "set_session_context", {"session_key": key, "context": {"sender_id": "u1"}})
    assert context == {"session_key": key, "channel_id": None, "room_id": None, "sender_id": "u1"}
    metadata = (await call(client, "get_session_metadata", {"session_key": key}))["metadata"]
    assert metadata["name"] == "Plans" and metadata["agent_alias"] == "scout" and metadata["sender_id"] == "u1"
    assert (await call(client, "get_session_state", {"session_key": key}))["state"]["state"] == "idle"
    running = await call(client, "set_session_state", {"session_key": key, "state": "running", "turn_id": "t9"})
    assert running["state"]["turn_id"] == "t9" and running["state"]["turn_started_at"]
    assert key in [m["key"] for m in (await call(client, "list_running_sessions"))["sessions"]]
    stuck = (await call(client, "list_stuck_sessions", {"threshold_secs": 3600}))["sessions"]
    assert key not in [m["key"] for m in stuck]
    await call(client, "set_session_state", {"session_key": key, "state": "idle"})
    assert key in (await call(client, "list_sessions"))["sessions"]
    listed = await call(client, "list_sessions_with_metadata", {"limit": 1000})
    assert key in [m["key"] for m in listed["sessions"]]
    assert await call(client, "cleanup_stale", {"ttl_hours": 1000}) == {"removed": 0}


async def test_search_tools_find_a_message_as_soon_as_it_is_appended(client: Client) -> None:
    key = "stdio search"
    await call(client, "append", {"session_key": key, "message": message("the TokenBucket limiter returned 504")})
    [hit] = (await call(client, "search_messages", {"query": "token bucket 504", "session_key": key}))["hits"]
    assert hit["session_key"] == key and hit["index"] == 0 and hit["snippet"].startswith("the TokenBucket")
    sessions = (await call(client, "search", {"query": {"keyword": "tokenbucket", "limit": 5}}))["sessions"]
    assert sessions[0]["key"] == key


# Bad input: one table, each row checked for the error text and an unchanged store.

KEY = "bad input"
OK = message("fine")


@pytest.mark.parametrize(
    ("tool", "arguments", "words"),
    [
        ("load", {"session_key": ""}, ["session_key", "empty"]),
        ("load", {"session_key": " \t "}, ["session_key", "whitespace"]),
        ("append", {"session_key": "k" * 513, "message": OK}, ["session_key", "512"]),
        ("append", {"session_key": "a\x00b", "message": OK}, ["session_key", "control"]),
        ("append", {"session_key": "a\x85b", "message": OK}, ["session_key", "control"]),
        ("set_session_name", {"session_key": "a\x7fb", "name": "n"}, ["session_key", "control"]),
        ("append", {"session_key": KEY, "message": {"role": "", "content": "x"}}, ["role", "empty"]),
        ("append", {"session_key": KEY, "message": {"role": "r" * 65, "content": "x"}}, ["role", "64"]),
        ("append", {"session_key": KEY, "message": message("é" * 524_289)}, ["content", "1048576"]),
        ("update_last", {"session_key": KEY, "message": message("x" * 1_048_577)}, ["content", "1048576"]),
        ("set_session_name", {"session_key": KEY, "name": "n" * 513}, ["name", "512"]),
        ("set_session_name", {"session_key": KEY, "name": "a\nb"}, ["name", "control"]),
        ("set_session_agent_alias", {"session_key": KEY, "agent_alias": "a" * 513}, ["agent_alias", "512"]),
        ("set_session_agent_alias", {"session_key": KEY, "agent_alias": "a\tb"}, ["agent_alias", "control"]),
        ("set_session_state", {"session_key": KEY, "state": ""}, ["state", "empty"]),
        ("set_session_state", {"session_key": KEY, "state": "s" * 513}, ["state", "512"]),
        ("set_session_state", {"session_key": KEY, "state": "idle", "turn_id": "t\x1b"}, ["turn_id", "control"]),
        ("set_session_context", {"session_key": KEY, "context": {"channel_id": "c\x00"}}, ["channel_id", "control"]),
        ("set_session_context", {"session_key": KEY, "context": {"room_id": "r" * 513}}, ["room_id", "512"]),
        ("set_session_context", {"session_key": KEY, "context": {"sender_id": "\x9f"}}, ["sender_id", "control"]),
        ("cleanup_stale", {"ttl_hours": -1}, ["ttl_hours", "at least 0"]),
        ("list_stuck_sessions", {"threshold_secs": -5}, ["threshold_secs", "at least 0"]),
        ("load", {"session_key": KEY, "limit": 0}, ["limit", "at least 1"]),
        ("load_with_timestamps", {"session_key": KEY, "limit": -3}, ["limit", "at least 1"]),
        ("list_sessions_with_metadata", {"limit": 0}, ["limit", "at least 1"]),
        ("list_sessions_with_metadata", {"limit": 1001}, ["limit", "at most 1000"]),
        ("list_sessions_with_metadata", {"offset": -1}, ["offset", "at least 0"]),
        ("search", {"query": {"keyword": "x", "limit": 0}}, ["limit", "at least 1"]),
        ("search", {"query": {"keyword": "x", "limit": 1001}}, ["limit", "at most 1000"]),
        ("search_messages", {"query": "x", "limit": 201}, ["limit", "at most 200"]),
        ("search_messages", {"query": "x", "limit": 0}, ["limit", "at least 1"]),
        ("search_messages", {"query": "x", "since": "yesterday"}, ["since", "iso 8601"]),
        ("search_messages", {"query": "x", "until": "2026-13-45"}, ["until", "iso 8601"]),
        ("search_messages", {"query": "x", "role": ""}, ["role", "empty"]),
        ("search_messages", {"query": "x", "agent_alias": "a\x01"}, ["agent_alias", "control"]),
        ("search_messages", {"query": "x", "session_key": ""}, ["session_key", "empty"]),
        ("load", {"session_key": KEY, "bogus": 1}, ["bogus", "extra inputs are not permitted"]),
        ("list_sessions", {"verbose": True}, ["verbose", "extra inputs are not permitted"]),
        ("append", {"session_key": KEY, "message": {**OK, "name": "x"}}, ["message.name", "extra inputs"]),
        ("update_last", {"session_key": KEY, "message": {**OK, "id": 1}}, ["message.id", "extra inputs"]),
        ("search", {"query": {"keyword": "x", "offset": 2}}, ["query.offset", "extra inputs"]),
        ("set_session_context", {"session_key": KEY, "context": {"team": "t"}}, ["context.team", "extra inputs"]),
        ("append", {"session_key": KEY}, ["message", "required"]),
        ("set_session_state", {"session_key": KEY}, ["state", "required"]),
        ("load", {"session_key": 7}, ["session_key", "string"]),
    ],
)
async def test_bad_input_is_a_tool_error_naming_argument_and_rule_and_changes_nothing(
    client: Client, tool: str, arguments: dict[str, Any], words: list[str]
) -> None:
    if not (await call(client, "load", {"session_key": KEY}))["total"]:
        await call(client, "append", {"session_key": KEY, "message": message("kept")})
        await call(client, "set_session_name", {"session_key": KEY, "name": "kept"})
    before = await snapshot(client)
    result = await client.call_tool(tool, arguments)
    assert result.is_error
    text = result.content[0]
    assert text.type == "text"
    for word in words:
        assert word in text.text.lower()
    assert await snapshot(client) == before
    # The server keeps serving.
    assert (await call(client, "load", {"session_key": KEY}))["messages"][0] == message("kept")


async def snapshot(client: Client) -> dict[str, Any]:
    sessions = (await call(client, "list_sessions_with_metadata"))["sessions"]
    states = {m["key"]: await call(client, "get_session_state", {"session_key": m["key"]}) for m in sessions}
    return {"sessions": sessions, "states": states, "messages": await call(client, "load", {"session_key": KEY})}


# Modes.


async def test_read_only_lists_only_read_tools_refuses_writes_and_still_searches(tmp_path: Path) -> None:
    db = str(tmp_path / "ro.duckdb")
    store = DuckDBSessionBackend(db)
    store.append("k", ChatMessage(role="user", content="the lighthouse keeper"))
    store.close()
    with anyio.fail_after(START):
        async with Client(server(db, "--read-only")) as client:
            assert {t.name for t in (await client.list_tools()).tools} == set(READ_ONLY_TOOLS)
            refused = await client.call_tool("append", {"session_key": "k", "message": message("x")})
            assert refused.is_error
            refused = await client.call_tool("delete_session", {"session_key": "k"})
            assert refused.is_error
            [hit] = (await call(client, "search_messages", {"query": "lighthouse"}))["hits"]
            assert hit["session_key"] == "k"
    store = DuckDBSessionBackend(db)
    assert store.load("k") == [ChatMessage(role="user", content="the lighthouse keeper")]
    store.close()


async def test_agent_alias_scoping_is_a_security_boundary(tmp_path: Path) -> None:
    db = str(tmp_path / "scoped.duckdb")
    store = DuckDBSessionBackend(db)
    for key, alias in [("mine", "a"), ("theirs", "b"), ("nobody's", None)]:
        store.append(key, ChatMessage(role="user", content=f"secret harbour {key}"))
        if alias:
            store.set_session_agent_alias(key, alias)
    store.close()
    with anyio.fail_after(START):
        async with Client(server(db, "--agent-alias", "a")) as client:
            assert await call(client, "list_sessions") == {"sessions": ["mine"]}
            hits = (await call(client, "search_messages", {"query": "harbour"}))["hits"]
            assert [h["session_key"] for h in hits] == ["mine"]
            assert (await call(client, "search_messages", {"query": "harbour", "agent_alias": "b"}))["hits"] == []
            assert (await call(client, "load", {"session_key": "theirs"}))["total"] == 0
            assert await call(client, "get_session_metadata", {"session_key": "theirs"}) == {"metadata": None}
            for key in ["theirs", "nobody's"]:
                for tool, arguments in [
                    ("append", {"message": message("x")}),
                    ("delete_session", {}),
                    ("set_session_name", {"name": "taken"}),
                ]:
                    refused = await client.call_tool(tool, {"session_key": key, **arguments})
                    assert refused.is_error
                    text = refused.content[0]
                    assert text.type == "text" and "session_key" in text.text
            refused = await client.call_tool("set_session_agent_alias", {"session_key": "mine", "agent_alias": "b"})
            assert refused.is_error
            await call(client, "append", {"session_key": "fresh", "message": message("new")})
    store = DuckDBSessionBackend(db)
    assert store.get_session_agent_alias("fresh") == "a"
    assert store.get_session_agent_alias("mine") == "a"
    assert store.load("theirs") == [ChatMessage(role="user", content="secret harbour theirs")]
    assert store.get_session_name("theirs") is None and store.get_session_agent_alias("nobody's") is None
    store.close()


async def test_sessions_persist_across_a_restart(tmp_path: Path) -> None:
    db = str(tmp_path / "persist.duckdb")
    with anyio.fail_after(START):
        async with Client(server(db)) as client:
            await call(client, "append", {"session_key": "k", "message": message("remember me")})
            await call(client, "set_session_name", {"session_key": "k", "name": "memo"})
    with anyio.fail_after(START):
        async with Client(server(db)) as client:
            assert (await call(client, "load", {"session_key": "k"}))["messages"] == [message("remember me")]
            assert await call(client, "get_session_name", {"session_key": "k"}) == {"name": "memo"}
            assert (await call(client, "search_messages", {"query": "remember"}))["hits"]


# The process.


async def test_stdout_carries_only_json_rpc_and_malformed_messages_are_survived(tmp_path: Path) -> None:
    process = await open_raw("--db", str(tmp_path / "raw.duckdb"), "--log-level", "debug")
    async with process:
        raw = RawServer(process)
        with anyio.fail_after(START):
            await raw.send("this is not json")
            await raw.send('{"jsonrpc": "2.0", "id": ')
            await raw.initialize()
            await raw.send({"jsonrpc": "2.0", "id": "x", "method": "no/such/method"})
            bad = await raw.request(1, "tools/call", {"name": "load", "arguments": {"session_key": ""}})
            assert bad["result"]["isError"] is True
            await raw.send("][")
            good = await raw.request(
                2, "tools/call", {"name": "append", "arguments": {"session_key": "k", "message": message("hi")}}
            )
            assert good["result"]["structuredContent"] == {"session_key": "k", "message_count": 1}
            assert process.stdin is not None
            await process.stdin.aclose()
            rest = await raw.rest_of_stdout()
            assert await wait_exit(process) == 0
    for line in raw.lines + rest:
        assert json.loads(line)["jsonrpc"] == "2.0", line


async def test_closing_stdin_exits_cleanly_and_releases_the_store(tmp_path: Path) -> None:
    db = str(tmp_path / "eof.duckdb")
    process = await open_raw("--db", db)
    async with process:
        raw = RawServer(process)
        with anyio.fail_after(START):
            await raw.initialize()
            arguments = {"session_key": "k", "message": message("kept")}
            await raw.request(1, "tools/call", {"name": "append", "arguments": arguments})
        assert process.stdin is not None
        await process.stdin.aclose()
        await raw.rest_of_stdout()
        assert await wait_exit(process) == 0
    store = DuckDBSessionBackend(db)
    assert store.load("k") == [ChatMessage(role="user", content="kept")]
    store.close()


async def test_sigterm_exits_cleanly_and_releases_the_store(tmp_path: Path) -> None:
    db = str(tmp_path / "term.duckdb")
    process = await open_raw("--db", db)
    async with process:
        raw = RawServer(process)
        with anyio.fail_after(START):
            await raw.initialize()
            arguments = {"session_key": "k", "message": message("kept")}
            await raw.request(1, "tools/call", {"name": "append", "arguments": arguments})
        process.send_signal(signal.SIGTERM)
        assert await wait_exit(process, 5) == 0
        await raw.rest_of_stdout()
    store = DuckDBSessionBackend(db)
    assert store.load("k") == [ChatMessage(role="user", content="kept")]
    store.close()


async def test_a_second_server_on_a_held_file_shares_the_store_with_the_holder(client: Client, module_db: str) -> None:
    await call(client, "append", {"session_key": "held", "message": message("holder's")})
    with anyio.fail_after(START):
        async with Client(server(module_db), read_timeout_seconds=START) as second:
            loaded = await call(second, "load", {"session_key": "held"})
            assert loaded["messages"] == [message("holder's")]
            await call(second, "append", {"session_key": "held", "message": message("relayed")})
            hits = await call(second, "search_messages", {"query": "relayed"})
            assert [(h["session_key"], h["index"]) for h in hits["hits"]] == [("held", 1)]
    # The holder sees the relayed write and is unharmed.
    loaded = await call(client, "load", {"session_key": "held"})
    assert loaded["messages"] == [message("holder's"), message("relayed")]


async def test_database_path_comes_from_the_environment_then_xdg(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MCP_SESSIONS_DB"}
    env["XDG_DATA_HOME"] = str(tmp_path / "xdg")
    with anyio.fail_after(START):
        done = await anyio.run_process(COMMAND, input=b"", env=env, check=False)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "xdg" / "mcp-sessions" / "sessions.duckdb").exists()
    env["MCP_SESSIONS_DB"] = str(tmp_path / "from env" / "deep" / "s.duckdb")
    with anyio.fail_after(START):
        done = await anyio.run_process([*COMMAND, "serve"], input=b"", env=env, check=False)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "from env" / "deep" / "s.duckdb").exists()
