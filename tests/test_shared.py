"""Many servers, one store: every server on a file serves every tool, and survives its holder's death."""

from __future__ import annotations

import os
import re
import signal
import stat
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import duckdb
import pytest
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters

from mcp_sessions.relay import socket_path

pytestmark = pytest.mark.anyio

START = 30


def server(db: str, *flags: str) -> StdioServerParameters:
    return StdioServerParameters(command=sys.executable, args=["-m", "mcp_sessions", "--db", db, *flags])


def message(content: str) -> dict[str, str]:
    return {"role": "user", "content": content}


async def call(client: Client, tool: str, arguments: dict[str, Any]) -> tuple[bool, dict[str, Any] | str]:
    result = await client.call_tool(tool, arguments)
    if result.is_error:
        return False, result.content[0].text if result.content else ""
    assert result.structured_content is not None
    return True, result.structured_content


def holder_pid(db: str) -> int:
    """The process holding the file, as DuckDB's lock error names it."""
    with pytest.raises(duckdb.IOException) as refused:
        duckdb.connect(db)
    found = re.search(r"PID (\d+)", str(refused.value))
    assert found is not None, refused.value
    return int(found.group(1))


async def test_three_servers_share_one_file_and_survive_the_holder_being_killed(tmp_path: Path) -> None:
    db = str(tmp_path / "shared.duckdb")
    acknowledged: Counter[tuple[str, str]] = Counter()
    failures: list[str] = []
    with anyio.fail_after(120):
        async with Client(server(db), read_timeout_seconds=START) as first:
            assert (await call(first, "append", {"session_key": "a", "message": message("a-hello")}))[0]
            acknowledged["a", "a-hello"] += 1
            holder = holder_pid(db)
            async with (
                Client(server(db), read_timeout_seconds=START) as second,
                Client(server(db), read_timeout_seconds=START) as third,
            ):
                survivors = {"b": second, "c": third}
                # Each client sees the others' writes at once.
                for name, client in survivors.items():
                    ok, _ = await call(client, "append", {"session_key": "mixed", "message": message(f"{name}-0")})
                    assert ok
                    acknowledged["mixed", f"{name}-0"] += 1
                ok, loaded = await call(first, "load", {"session_key": "mixed"})
                assert ok and isinstance(loaded, dict) and loaded["total"] == 2

                rounds_done = [0]

                async def writer(name: str, client: Client, rounds: int) -> None:
                    for i in range(1, rounds + 1):
                        rounds_done[0] += 1
                        for key in (name, "mixed"):
                            content = f"{name}-{i}"
                            ok, result = await call(client, "append", {"session_key": key, "message": message(content)})
                            if ok:
                                acknowledged[key, content] += 1
                            else:
                                # Only the write in flight when the holder died may fail, and it says so.
                                failures.append(f"{name}: {result}")
                        ok, _ = await call(client, "search_messages", {"query": name, "limit": 5})
                        if not ok:
                            failures.append(f"{name} search")

                async def killer() -> None:
                    # Mid-stream whatever the speed: after a quarter of the writers' rounds.
                    while rounds_done[0] < 20:
                        await anyio.sleep(0.005)
                    os.kill(holder, signal.SIGKILL)

                async with anyio.create_task_group() as tasks:
                    for name, client in survivors.items():
                        tasks.start_soon(writer, name, client, 40)
                    tasks.start_soon(killer)

                # The survivors kept working: one of them holds the file now, and both see everything.
                assert holder_pid(db) != holder
                assert len(failures) <= 2, failures
                assert all("may or may not have been applied" in f for f in failures), failures
                for client in survivors.values():
                    stored: Counter[tuple[str, str]] = Counter()
                    for key in ("a", "b", "c", "mixed"):
                        ok, loaded = await call(client, "load", {"session_key": key})
                        assert ok and isinstance(loaded, dict)
                        stored.update((key, m["content"]) for m in loaded["messages"])
                    for write, count in acknowledged.items():
                        assert stored[write] == 1, (write, count)
                    assert all(count == 1 for count in stored.values()), stored
                    ok, hits = await call(client, "search_messages", {"query": "a-hello"})
                    assert ok and isinstance(hits, dict) and hits["hits"][0]["session_key"] == "a"


async def test_each_server_keeps_its_own_alias_scope_and_read_only_mode(tmp_path: Path) -> None:
    db = str(tmp_path / "modes.duckdb")
    with anyio.fail_after(90):
        async with Client(server(db, "--agent-alias", "alpha"), read_timeout_seconds=START) as alpha:
            assert (await call(alpha, "append", {"session_key": "alpha-1", "message": message("secret plan")}))[0]
            async with (
                Client(server(db, "--agent-alias", "beta"), read_timeout_seconds=START) as beta,
                Client(server(db, "--read-only"), read_timeout_seconds=START) as reader,
            ):
                # beta relays to alpha's process, yet alpha's session is invisible and untouchable to it.
                ok, loaded = await call(beta, "load", {"session_key": "alpha-1"})
                assert ok and isinstance(loaded, dict) and loaded["messages"] == [] and loaded["total"] == 0
                ok, hits = await call(beta, "search_messages", {"query": "secret"})
                assert ok and isinstance(hits, dict) and hits["hits"] == []
                ok, error = await call(beta, "append", {"session_key": "alpha-1", "message": message("intrusion")})
                assert not ok and "session_key" in str(error)
                # The read-only server lists no write tool and refuses writes, while reading everything.
                tools = {tool.name for tool in (await reader.list_tools()).tools}
                assert "append" not in tools and "load" in tools
                ok, _ = await call(reader, "append", {"session_key": "x", "message": message("nope")})
                assert not ok
                ok, loaded = await call(reader, "load", {"session_key": "alpha-1"})
                assert ok and isinstance(loaded, dict) and loaded["total"] == 1
            ok, loaded = await call(alpha, "load", {"session_key": "alpha-1"})
            assert ok and isinstance(loaded, dict) and [m["content"] for m in loaded["messages"]] == ["secret plan"]


def test_the_socket_is_private_to_the_user(tmp_path: Path) -> None:
    from mcp_sessions.relay import SharedBackend

    db = str(tmp_path / "private.duckdb")
    store = SharedBackend(db)
    try:
        path = socket_path(db)
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0
        assert stat.S_ISSOCK(path.stat().st_mode)
    finally:
        store.close()
    assert not socket_path(db).exists()
