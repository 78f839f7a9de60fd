"""Raw JSON-RPC over the real program's stdin and stdout, no client library: whatever arrives, it keeps serving."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream
from tool_calls import message

from mcp_sessions.models import ChatMessage
from mcp_sessions.store.duckdb import DuckDBSessionBackend

pytestmark = pytest.mark.anyio

START = 30  # seconds: room for a cold interpreter start and the MCP SDK import
COMMAND = [sys.executable, "-m", "mcp_sessions"]


class Wire:
    """The program driven line by line."""

    def __init__(self, process: Process) -> None:
        assert process.stdin is not None and process.stdout is not None
        self.process = process
        self.stdout = BufferedByteReceiveStream(process.stdout)
        self.lines: list[str] = []
        self.next_id = 100

    async def send(self, payload: dict[str, Any] | list[Any] | str | bytes) -> None:
        if isinstance(payload, bytes):
            data = payload
        else:
            data = (payload if isinstance(payload, str) else json.dumps(payload)).encode()
        assert self.process.stdin is not None
        await self.process.stdin.send(data + b"\n")

    async def receive(self) -> dict[str, Any]:
        line = (await self.stdout.receive_until(b"\n", 64 * 1024 * 1024)).decode()
        self.lines.append(line)
        return json.loads(line)

    async def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        self.next_id += 1
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": self.next_id, "method": method}
        if params is not None:
            message["params"] = params
        await self.send(message)
        while True:
            reply = await self.receive()
            if reply.get("id") == self.next_id:
                return reply

    async def tool(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """A tools/call's result: {content, structuredContent, isError}."""
        reply = await self.request("tools/call", {"name": name, "arguments": arguments})
        assert "result" in reply, reply
        return reply["result"]

    async def initialize(self) -> None:
        params = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "wire", "version": "0"}}
        reply = await self.request("initialize", params)
        assert "result" in reply, reply
        await self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    async def still_serving(self) -> None:
        """A valid request right after: answered, and right."""
        result = await self.tool("load", {"session_key": "wire"})
        assert result["isError"] is False, result
        assert result["structuredContent"]["total"] == len(result["structuredContent"]["messages"])

    async def close_and_wait(self) -> tuple[int, list[str]]:
        """Close stdin; the exit status and every line written after those already read."""
        assert self.process.stdin is not None
        await self.process.stdin.aclose()
        rest = b""
        try:
            while True:
                rest += await self.stdout.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass
        with anyio.fail_after(15):
            status = await self.process.wait()
        return status, [line for line in rest.decode().split("\n") if line]


def reopen(db: str) -> DuckDBSessionBackend:
    """The store, opened again by this process: proof the server closed it."""
    return DuckDBSessionBackend(db)


async def test_garbage_and_invalid_json_rpc_are_survived_and_stdout_stays_json_rpc(tmp_path: Path) -> None:
    db = str(tmp_path / "garbage.duckdb")
    async with await anyio.open_process([*COMMAND, "--db", db, "--log-level", "debug"]) as process:
        wire = Wire(process)
        with anyio.fail_after(START):
            await wire.send("this is not json")
            await wire.initialize()
            await wire.tool("append", {"session_key": "wire", "message": message("first")})
            garbage: list[Any] = [
                "",
                "   ",
                "{",
                '{"jsonrpc": "2.0", "id": ',
                "][",
                "null",
                "42",
                '"a string"',
                "[]",
                "[1, 2, 3]",
                "{}",
                b"\xff\xfe\x00binary\x80\x81",
                b"\xed\xa0\x80",  # a UTF-8 encoded lone surrogate
                "\x00\x01\x02",
                "x" * 100_000,
                {"jsonrpc": "1.0", "id": 1, "method": "tools/list"},
                {"jsonrpc": "2.0", "id": 2},
                {"jsonrpc": "2.0", "id": {"an": "object"}, "method": "tools/list"},
                {"jsonrpc": "2.0", "id": [1], "method": "tools/list"},
                {"jsonrpc": "2.0", "id": 3, "method": 7},
                {"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": "not an object"},
                {"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": ["a", "list"]},
                {"jsonrpc": "2.0", "id": 6, "method": "tools/call", "params": {"name": 7, "arguments": {}}},
                {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "load", "arguments": "x"}},
                {"jsonrpc": "2.0", "id": 8, "method": "tools/call", "params": {"name": "load", "arguments": None}},
                {"jsonrpc": "2.0", "id": 9, "result": {"unsolicited": True}},
                {"jsonrpc": "2.0", "id": 10, "error": {"code": -1, "message": "unsolicited"}},
                {"jsonrpc": "2.0", "method": "notifications/unknown"},
                {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 999999}},
                [{"jsonrpc": "2.0", "id": 11, "method": "tools/list"}],
                # A lone surrogate escape: the SDK's JSON parser refuses the line (and answers nothing).
                '{"jsonrpc": "2.0", "id": 12, "method": "tools/call",'
                ' "params": {"name": "load", "arguments": {"session_key": "\\ud800"}}}',
            ]
            for junk in garbage:
                await wire.send(junk)
                await wire.still_serving()
        status, rest = await wire.close_and_wait()
    assert status == 0
    for line in wire.lines + rest:
        assert json.loads(line)["jsonrpc"] == "2.0", line
    store = reopen(db)
    assert store.load("wire") == [ChatMessage(role="user", content="first")]
    store.close()


async def test_unknown_methods_and_tools_are_answered_and_serving_goes_on(tmp_path: Path) -> None:
    async with await anyio.open_process([*COMMAND, "--db", str(tmp_path / "unknown.duckdb")]) as process:
        wire = Wire(process)
        with anyio.fail_after(START):
            await wire.initialize()
            for method in ["no/such/method", "tools/destroy", "", "initialize/again", "x" * 10_000]:
                reply = await wire.request(method, {})
                assert reply["error"]["code"] in (-32601, -32602, -32600), reply
                await wire.still_serving()
            result = await wire.tool("no_such_tool", {})
            assert result["isError"] is True
            await wire.still_serving()
        status, _ = await wire.close_and_wait()
    assert status == 0


async def test_content_over_the_limit_is_a_tool_error_and_under_it_is_stored(tmp_path: Path) -> None:
    db = str(tmp_path / "size.duckdb")
    under = "word " * 180_000  # 900 KB
    over = "x" * (5 * 1024 * 1024)  # 5 MiB
    async with await anyio.open_process([*COMMAND, "--db", db]) as process:
        wire = Wire(process)
        with anyio.fail_after(START):
            await wire.initialize()
            result = await wire.tool("append", {"session_key": "wire", "message": message(over)})
            assert result["isError"] is True
            text = result["content"][0]["text"]
            assert "message.content" in text and "1048576" in text, text[:300]
            result = await wire.tool("append", {"session_key": "wire", "message": message(under)})
            assert result["structuredContent"] == {"session_key": "wire", "message_count": 1}
            # A 5 MB line of garbage, too.
            await wire.send("{" + "x" * (5 * 1024 * 1024))
            loaded = await wire.tool("load", {"session_key": "wire"})
            assert loaded["structuredContent"]["messages"] == [message(under)]
        status, _ = await wire.close_and_wait()
    assert status == 0
    store = reopen(db)
    assert store.load("wire") == [ChatMessage(role="user", content=under)]
    store.close()


@pytest.mark.parametrize("also_close_stdout", [False, True], ids=["stdin closed", "both pipes closed"])
async def test_a_client_that_vanishes_mid_call_leaves_a_clean_exit_and_a_whole_store(
    tmp_path: Path, also_close_stdout: bool
) -> None:
    db = str(tmp_path / "vanish.duckdb")
    async with await anyio.open_process([*COMMAND, "--db", db]) as process:
        wire = Wire(process)
        with anyio.fail_after(START):
            await wire.initialize()
            await wire.tool("append", {"session_key": "wire", "message": message("acknowledged")})
            # Calls in flight, none of them read: a big write, a search, and more writes.
            params = {"name": "append", "arguments": {"session_key": "wire", "message": message("y " * 400_000)}}
            await wire.send({"jsonrpc": "2.0", "id": 900, "method": "tools/call", "params": params})
            for n in range(20):
                arguments = {"session_key": "wire", "message": message(f"in flight {n}")}
                await wire.send(
                    {
                        "jsonrpc": "2.0",
                        "id": 901 + n,
                        "method": "tools/call",
                        "params": {"name": "append", "arguments": arguments},
                    }
                )
            await wire.send(
                {
                    "jsonrpc": "2.0",
                    "id": 950,
                    "method": "tools/call",
                    "params": {"name": "search_messages", "arguments": {"query": "flight"}},
                }
            )
            if also_close_stdout:
                await process.stdout.aclose()  # type: ignore[union-attr]
            assert process.stdin is not None
            await process.stdin.aclose()
        with anyio.fail_after(15):
            status = await process.wait()
    assert status == 0
    store = reopen(db)
    loaded = store.load("wire")
    metadata = store.get_session_metadata("wire")
    store.close()
    # The acknowledged write is there; the rest arrived whole or not at all, in the order sent.
    assert loaded[0] == ChatMessage(role="user", content="acknowledged")
    assert metadata is not None and metadata.message_count == len(loaded)
    sent = ["y " * 400_000, *(f"in flight {n}" for n in range(20))]
    rest = [m.content for m in loaded[1:]]
    assert all(content in sent for content in rest)
    assert len(set(rest)) == len(rest)
