"""A subset of the tools over streamable HTTP on loopback, with the official client."""

from __future__ import annotations

import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from mcp.client import Client
from tool_calls import call

pytestmark = pytest.mark.anyio

START = 30  # seconds: room for a cold interpreter start and the MCP SDK import


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
async def url(tmp_path: Path) -> AsyncIterator[str]:
    port = free_port()
    command = [sys.executable, "-m", "mcp_sessions", "--db", str(tmp_path / "http.duckdb")]
    process = await anyio.open_process([*command, "--transport", "streamable-http", "--port", str(port)])
    async with process:
        with anyio.fail_after(START):
            while True:
                try:
                    await (await anyio.connect_tcp("127.0.0.1", port)).aclose()
                    break
                except OSError:
                    assert process.returncode is None, "the HTTP server exited at start"
                    await anyio.sleep(0.1)
        yield f"http://127.0.0.1:{port}/mcp"
        process.send_signal(signal.SIGTERM)
        with anyio.fail_after(10):
            assert await process.wait() == 0
        # Logs go to stderr, also over HTTP: uvicorn's own config would print access lines on stdout.
        assert process.stdout is not None
        written = b""
        try:
            while True:
                written += await process.stdout.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            pass
        assert written == b""


async def test_tools_answer_over_streamable_http(url: str) -> None:
    async with Client(url) as client:
        assert len((await client.list_tools()).tools) == 23
        appended = await call(client, "append", {"session_key": "k", "message": {"role": "user", "content": "hi"}})
        assert appended == {"session_key": "k", "message_count": 1}
        assert await call(client, "load", {"session_key": "k"}) == {
            "session_key": "k",
            "messages": [{"role": "user", "content": "hi"}],
            "total": 1,
        }
        [hit] = (await call(client, "search_messages", {"query": "hi"}))["hits"]
        assert hit["session_key"] == "k" and hit["index"] == 0


async def test_bad_input_over_http_is_a_tool_error_and_the_server_keeps_serving(url: str) -> None:
    async with Client(url) as client:
        result = await client.call_tool("load", {"session_key": "", "extra": 1})
        assert result.is_error
        text = result.content[0]
        assert text.type == "text" and "session_key" in text.text and "extra" in text.text
        assert await call(client, "list_sessions") == {"sessions": []}


async def test_two_clients_share_one_http_server(url: str) -> None:
    async with Client(url) as first, Client(url) as second:
        await call(first, "append", {"session_key": "shared", "message": {"role": "user", "content": "from one"}})
        assert (await call(second, "load", {"session_key": "shared"}))["total"] == 1
