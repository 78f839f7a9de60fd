"""Hostile arguments at every tool: a result or a tool error naming the argument, and a consistent store."""

from __future__ import annotations

import json
import re
import select
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import IO, Any

import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from mcp.client import Client
from mcp_types import CallToolResult, Tool

from mcp_sessions.memory import MemorySessionBackend
from mcp_sessions.server import build_server
from mcp_sessions.store.duckdb import DuckDBSessionBackend

SURROGATES = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
CONTROLS = st.characters(max_codepoint=0x9F)
TEXT = st.one_of(
    st.text(),
    st.text(st.characters(exclude_categories=[])),  # every code point, lone surrogates included
    st.text(st.one_of(CONTROLS, SURROGATES, st.sampled_from(" \t\n\u00a0\u2028\ufeff\U0001f600")), max_size=8),
    st.sampled_from(["", " ", "\x00", "k" * 512, "k" * 513, "é" * 512, "r" * 64, "r" * 65, "*", '"', "' OR 1=1 --"]),
)
INTEGERS = st.one_of(
    st.integers(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.sampled_from(
        [0, -1, 1, 200, 201, 1000, 1001, 2**31 - 1, 2**31, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64]
    ),
)
# Times within the calendar even after moving to UTC (see test_a_time_beyond_the_calendar_...).
TIMES = st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31)).flatmap(
    lambda d: st.sampled_from(
        [
            d.isoformat(),
            d.date().isoformat(),
            d.replace(tzinfo=timezone(timedelta(hours=-14))).isoformat(),
            d.replace(tzinfo=UTC).isoformat(),
        ]
    )
)
SCALARS = st.one_of(st.none(), st.booleans(), st.floats(allow_nan=False, allow_infinity=False), TEXT, INTEGERS)
JSON = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3), max_leaves=6
)
# Sub-fields of the object arguments, by argument.
FIELDS = {
    "message": ["role", "content"],
    "query": ["keyword", "limit"],
    "context": ["channel_id", "room_id", "sender_id"],
}


def value_for(name: str) -> st.SearchStrategy[Any]:
    """What a hostile client might send as argument name: right-typed but odd, or anything at all."""
    if name in FIELDS:
        fields = st.fixed_dictionaries({}, optional={f: value_for(f) for f in FIELDS[name]})
        extra = st.dictionaries(TEXT, JSON, max_size=1)
        return st.one_of(fields, st.builds(lambda a, b: {**a, **b}, fields, extra), JSON)
    if name in ("since", "until"):
        return st.one_of(TIMES, JSON)
    if name in ("offset", "limit", "ttl_hours", "threshold_secs"):
        return st.one_of(INTEGERS, JSON)
    return st.one_of(TEXT, JSON)


@pytest.fixture(scope="module")
def portal() -> Iterator[BlockingPortal]:
    with start_blocking_portal("asyncio") as running:
        yield running


class Served:
    """An in-process server and its client, called from sync code through the portal."""

    def __init__(self, portal: BlockingPortal, backend: Any) -> None:
        self.portal = portal
        self.backend = backend
        self._context = portal.wrap_async_context_manager(Client(build_server(backend)))
        self.client = self._context.__enter__()
        self.tools: dict[str, Tool] = {t.name: t for t in portal.call(self.client.list_tools).tools}

    def call(self, tool: str, arguments: dict[str, Any]) -> CallToolResult:
        return self.portal.call(self.client.call_tool, tool, arguments)

    def close(self) -> None:
        self._context.__exit__(None, None, None)
        self.backend.close() if hasattr(self.backend, "close") else None


class Wire:
    """The real program over stdio, spoken to in raw JSON-RPC: JSON escapes carry what no client library sends
    (a lone surrogate such as \\ud800)."""

    def __init__(self, db: Path, errlog: IO[bytes]) -> None:
        command = [sys.executable, "-m", "mcp_sessions", "--db", str(db)]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errlog)
        self.next_id = 0
        params = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "h", "version": "0"}}
        assert "result" in self.request("initialize", params)
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        tools = self.request("tools/list", {})["result"]["tools"]
        self.schemas: dict[str, dict[str, Any]] = {t["name"]: t["inputSchema"] for t in tools}

    def send(self, payload: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(payload, ensure_ascii=True).encode() + b"\n")
        self.process.stdin.flush()

    def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self.next_id += 1
        self.send({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params})
        assert self.process.stdout is not None
        while True:
            # No answer in 30 s is a failure, not a hang.
            ready, _, _ = select.select([self.process.stdout], [], [], 30)
            assert ready, f"no answer to {method} {params!r}"[:2000]
            line = self.process.stdout.readline()
            assert line, "the server closed stdout"
            reply = json.loads(line)
            assert reply.get("id") is not None, (reply, params)
            if reply["id"] == self.next_id:
                return reply

    def call(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any] | None:
        """The call's result; None for a line the SDK's JSON parser refuses (a lone surrogate escape), unanswered."""
        if _lone_surrogate(json.loads(json.dumps(arguments))):
            self.next_id += 1
            self.send(
                {
                    "jsonrpc": "2.0",
                    "id": self.next_id,
                    "method": "tools/call",
                    "params": {"name": tool, "arguments": arguments},
                }
            )
            return None
        reply = self.request("tools/call", {"name": tool, "arguments": arguments})
        assert "result" in reply, reply  # a tool error, never a JSON-RPC error
        return reply["result"]

    def close(self) -> int:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.close()
        status = self.process.wait(15)
        self.process.stdout.close()
        return status


def _lone_surrogate(value: Any) -> bool:
    # JSON decodes an escaped pair (\\ud83d\\ude00) to one character; what is left unpaired is lone.
    if isinstance(value, str):
        return any("\ud800" <= ch <= "\udfff" for ch in value)
    if isinstance(value, list):
        return any(_lone_surrogate(v) for v in value)
    if isinstance(value, dict):
        return any(_lone_surrogate(k) or _lone_surrogate(v) for k, v in value.items())
    return False


@pytest.fixture(scope="module")
def wire(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Wire]:
    folder = tmp_path_factory.mktemp("hostile")
    with (folder / "stderr.txt").open("wb") as errlog:
        server = Wire(folder / "hostile.duckdb", errlog)
        yield server
        assert server.close() == 0


@pytest.fixture(scope="module")
def duck(portal: BlockingPortal) -> Iterator[Served]:
    served = Served(portal, DuckDBSessionBackend(":memory:"))
    yield served
    served.close()


def error_text(result: CallToolResult) -> str:
    text = result.content[0]
    assert text.type == "text"
    return text.text


def named(name: str, body: str) -> bool:
    """The name stands as a word of its own (or a dotted path's part): "key" is not named by "session_key"."""
    return re.search(rf"(?<![\w]){re.escape(name.lower())}(?![\w])", body) is not None


def assert_names_an_argument(tool: str, arguments: dict[str, Any], schema: dict[str, Any], text: str) -> None:
    # The SDK's prefix names the tool, whose name holds argument-like words (get_session_state): skip it.
    body = text.removeprefix(f"Error executing tool {tool}").lower()
    properties = set(schema.get("properties", {}))
    missing = set(schema.get("required", [])) - set(arguments)
    # What this call can have got wrong: an argument it sent, one it left out that is required, or a field
    # inside an object argument it sent. A schema property it neither sent nor needed is never to blame.
    blamable = set(arguments) | missing
    for name, value in arguments.items():
        if name in properties and isinstance(value, dict):
            blamable |= set(FIELDS.get(name, ())) | set(value)
    # An extra argument named "" can only be called extra.
    unnamed = "" in arguments and "extra inputs are not permitted" in body
    assert unnamed or any(named(name, body) for name in blamable if name), (tool, arguments, text)


def assert_consistent(wire: Wire) -> None:
    """Counts, totals and messages agree for every session."""
    for metadata in wire.call("list_sessions_with_metadata", {"limit": 1000})["structuredContent"]["sessions"]:
        loaded = wire.call("load", {"session_key": metadata["key"]})["structuredContent"]
        assert loaded["total"] == len(loaded["messages"]) == metadata["message_count"]


@st.composite
def calls(draw: st.DrawFn, tools: list[str], schemas: dict[str, dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    tool = draw(st.sampled_from(tools))
    properties = schemas[tool].get("properties", {})
    arguments = draw(st.fixed_dictionaries({}, optional={name: value_for(name) for name in properties}))
    if draw(st.integers(0, 9)) == 0:
        arguments.update(draw(st.dictionaries(TEXT, JSON, min_size=1, max_size=2)))
    return tool, arguments


TOOL_NAMES = sorted(
    [
        "load", "load_with_timestamps", "append", "remove_last", "update_last", "list_sessions",
        "list_sessions_with_metadata", "compact", "cleanup_stale", "search", "clear_messages", "delete_session",
        "set_session_name", "get_session_name", "set_session_agent_alias", "get_session_agent_alias",
        "set_session_context", "get_session_metadata", "set_session_state", "get_session_state",
        "list_running_sessions", "list_stuck_sessions", "search_messages",
    ]
)  # fmt: skip


def test_every_tool_is_covered(wire: Wire) -> None:
    assert sorted(wire.schemas) == TOOL_NAMES


@settings(
    max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(data=st.data())
def test_hostile_arguments_give_a_result_or_a_tool_error_naming_the_argument(wire: Wire, data: st.DataObject) -> None:
    tool, arguments = data.draw(calls(TOOL_NAMES, wire.schemas))
    result = wire.call(tool, arguments)
    if result is None:
        assert_consistent(wire)  # the refused line left the server serving
        return
    text = result["content"][0]["text"]
    if result.get("isError"):
        assert_names_an_argument(tool, arguments, wire.schemas[tool], text)
    else:
        assert isinstance(result["structuredContent"], dict)
        assert json.loads(text) == result["structuredContent"]
    assert_consistent(wire)


# A valid value for every required argument, so that one argument at a time can be made hostile.
VALID = {
    "session_key": "valid",
    "message": {"role": "user", "content": "hello"},
    "ttl_hours": 1,
    "threshold_secs": 60,
    "name": "a name",
    "agent_alias": "an-agent",
    "context": {"channel_id": "c"},
    "state": "idle",
}
VALID_QUERY = {"search": {"keyword": "hello", "limit": 5}, "search_messages": "hello"}
# The pairs are read from schemas/ (a test checks those files against the server); the calls use the server's own.
SCHEMAS = Path(__file__).parent.parent / "schemas"
ONE_BAD = [
    (tool, name)
    for tool in TOOL_NAMES
    for name in json.loads((SCHEMAS / f"{tool}.input.json").read_text()).get("properties", {})
]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@pytest.mark.parametrize(("tool", "argument"), ONE_BAD)
@given(data=st.data())
def test_one_hostile_argument_is_the_one_the_error_names(
    wire: Wire, tool: str, argument: str, data: st.DataObject
) -> None:
    """With every other argument valid, an error must blame the argument made hostile, not just any it was sent."""
    schema = wire.schemas[tool]
    arguments = {name: VALID_QUERY[tool] if name == "query" else VALID[name] for name in schema.get("required", [])}
    arguments[argument] = data.draw(value_for(argument), label=argument)
    result = wire.call(tool, arguments)
    if result is None or not result.get("isError"):
        return
    body = result["content"][0]["text"].removeprefix(f"Error executing tool {tool}").lower()
    # Pydantic echoes the value sent, which may hold any word: only its own words count.
    body = re.sub(r"input_value=.*?, input_type=", "", body, flags=re.DOTALL)
    assert named(argument, body), (tool, arguments, body)
    others = [name for name in arguments if name != argument and named(name, body)]
    assert not others or any(named(name, body) for name in FIELDS.get(argument, ())), (tool, arguments, body)


@pytest.mark.parametrize("argument", ["since", "until"])
@pytest.mark.parametrize("time", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
def test_a_time_beyond_the_calendar_is_a_tool_error_naming_it(duck: Served, argument: str, time: str) -> None:
    result = duck.call("search_messages", {"query": "x", argument: time})
    assert result.is_error
    assert argument in error_text(result).removeprefix("Error executing tool search_messages")


# The message operations, against the dict-backed model, with hostile keys and messages.

# In process, the client encodes each request as UTF-8, so no lone surrogate here (the wire test sends them).
PLAIN = st.text(st.characters(exclude_categories=["Cs"]))
LIMIT = 64
KEYS = st.one_of(st.sampled_from(["a", "B", "é ü", "🙂", " lead", "k" * 512, "", " ", "a\x00", "k" * 513]), PLAIN)
MESSAGES = st.one_of(
    st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "", "r" * 65]), "content": PLAIN}),
    st.fixed_dictionaries(
        {"role": PLAIN, "content": st.sampled_from(["x" * LIMIT, "x" * (LIMIT + 1), "é" * (LIMIT // 2) + "x"])}
    ),
    st.fixed_dictionaries({"role": PLAIN}),
    st.one_of(st.none(), INTEGERS, PLAIN),
)
SLICES = st.one_of(st.none(), INTEGERS, st.sampled_from([1.0, 1.5, "2", True]))


class ServerMatchesModel(RuleBasedStateMachine):
    """Every call goes to a DuckDB server and a MemorySessionBackend server; the answers must agree."""

    portal: BlockingPortal

    def __init__(self) -> None:
        super().__init__()
        # A small content limit, so that contents over it stay small enough to print.
        self.store = Served(self.portal, DuckDBSessionBackend(":memory:", max_content_bytes=LIMIT))
        model = MemorySessionBackend()
        model.max_content_bytes = LIMIT
        self.model = Served(self.portal, model)
        self.keys: set[str] = set()

    def teardown(self) -> None:
        self.store.close()
        self.model.close()

    def both(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any] | None:
        got, want = self.store.call(tool, arguments), self.model.call(tool, arguments)
        assert got.is_error == want.is_error, (tool, arguments, got.content, want.content)
        if got.is_error:
            assert error_text(got) == error_text(want)
            return None
        if isinstance(arguments.get("session_key"), str):
            self.keys.add(arguments["session_key"])
        assert got.structured_content is not None
        return (
            got.structured_content
            if got.structured_content == want.structured_content
            else {"mismatch": (tool, arguments, got.structured_content, want.structured_content)}
        )

    def agree(self, tool: str, arguments: dict[str, Any]) -> None:
        answer = self.both(tool, arguments)
        assert answer is None or "mismatch" not in answer, answer

    @rule(key=KEYS, message=MESSAGES)
    def append(self, key: str, message: Any) -> None:
        self.agree("append", {"session_key": key, "message": message})

    @rule(key=KEYS, message=MESSAGES)
    def update_last(self, key: str, message: Any) -> None:
        self.agree("update_last", {"session_key": key, "message": message})

    @rule(key=KEYS)
    def remove_last(self, key: str) -> None:
        self.agree("remove_last", {"session_key": key})

    @rule(key=KEYS)
    def clear_messages(self, key: str) -> None:
        self.agree("clear_messages", {"session_key": key})

    @rule(key=KEYS)
    def compact(self, key: str) -> None:
        self.agree("compact", {"session_key": key})

    @rule(key=KEYS, offset=SLICES, limit=SLICES)
    def load(self, key: str, offset: int | None, limit: int | None) -> None:
        arguments: dict[str, Any] = {"session_key": key}
        if offset is not None:
            arguments["offset"] = offset
        if limit is not None:
            arguments["limit"] = limit
        self.agree("load", arguments)

    @invariant()
    def every_session_agrees(self) -> None:
        for key in self.keys:
            self.agree("load", {"session_key": key})
            loaded = self.store.call("load", {"session_key": key}).structured_content
            metadata = self.store.call("get_session_metadata", {"session_key": key}).structured_content
            assert loaded is not None and metadata is not None
            count = metadata["metadata"]["message_count"] if metadata["metadata"] else 0
            assert loaded["total"] == len(loaded["messages"]) == count


def test_message_operations_match_the_model(portal: BlockingPortal) -> None:
    ServerMatchesModel.portal = portal
    run = ServerMatchesModel.TestCase
    run.settings = settings(max_examples=30, stateful_step_count=20, deadline=None)
    run().runTest()
