"""Servers over stdio on one PostgreSQL database: every tool, many servers appending at once, and a database
that goes away mid-call and comes back (the servers carry on without a restart)."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

import anyio
import psycopg
import pytest
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters
from pg_cluster import Cluster
from tool_calls import call, message, refused

pytestmark = pytest.mark.anyio

START = 30


def server(uri: str, *flags: str) -> StdioServerParameters:
    return StdioServerParameters(command=sys.executable, args=["-m", "mcp_sessions", "serve", "--db", uri, *flags])


async def test_a_server_on_a_database_serves_the_tools(pg_uri: str) -> None:
    with anyio.fail_after(60):
        async with Client(server(pg_uri), read_timeout_seconds=START) as client:
            assert (await call(client, "append", {"session_key": "k", "message": message("the running fox")}))[
                "message_count"
            ] == 1
            await call(client, "append", {"session_key": "k", "message": message("second", "assistant")})
            loaded = await call(client, "load", {"session_key": "k", "offset": -1})
            assert loaded == {"session_key": "k", "messages": [message("second", "assistant")], "total": 2}
            hits = (await call(client, "search_messages", {"query": "run"}))["hits"]
            assert [(h["session_key"], h["index"]) for h in hits] == [("k", 0)]
            assert [m["key"] for m in (await call(client, "search", {"query": {"keyword": "fox"}}))["sessions"]] == [
                "k"
            ]
            await call(client, "set_session_state", {"session_key": "k", "state": "running", "turn_id": "t1"})
            assert [m["key"] for m in (await call(client, "list_running_sessions"))["sessions"]] == ["k"]
            assert (await call(client, "update_last", {"session_key": "k", "message": message("third")}))["updated"]
            assert (await call(client, "compact", {"session_key": "k"}))["removed"] == 0
            text = await refused(client, "append", {"session_key": " ", "message": message("x")})
            assert "session_key" in text
            assert (await call(client, "delete_session", {"session_key": "k"}))["deleted"]
            assert (await call(client, "list_sessions"))["sessions"] == []


async def test_scoped_and_read_only_servers_share_one_database(pg_uri: str) -> None:
    with anyio.fail_after(60):
        async with (
            Client(server(pg_uri, "--agent-alias", "alice"), read_timeout_seconds=START) as alice,
            Client(server(pg_uri, "--read-only"), read_timeout_seconds=START) as reader,
        ):
            await call(alice, "append", {"session_key": "a", "message": message("alice's note")})
            tools = {t.name for t in (await reader.list_tools()).tools}
            assert "append" not in tools and "load" in tools
            meta = (await call(reader, "get_session_metadata", {"session_key": "a"}))["metadata"]
            assert meta["agent_alias"] == "alice" and meta["message_count"] == 1


async def test_many_servers_appending_to_one_session_get_distinct_gapless_counts(pg_uri: str) -> None:
    servers, each = 4, 25
    told: list[int] = []
    with anyio.fail_after(120):
        async with (
            Client(server(pg_uri), read_timeout_seconds=START) as s0,
            Client(server(pg_uri), read_timeout_seconds=START) as s1,
            Client(server(pg_uri), read_timeout_seconds=START) as s2,
            Client(server(pg_uri), read_timeout_seconds=START) as s3,
        ):
            clients = [s0, s1, s2, s3]

            async def writer(n: int, client: Client) -> None:
                for i in range(each):
                    args = {"session_key": "shared", "message": message(f"server{n} turn{i}")}
                    told.append((await call(client, "append", args))["message_count"])

            async with anyio.create_task_group() as tasks:
                for n, client in enumerate(clients):
                    tasks.start_soon(writer, n, client)
            assert sorted(told) == list(range(1, servers * each + 1))
            for client in clients:  # every server reads every other's writes at once
                loaded = await call(client, "load_with_timestamps", {"session_key": "shared"})
                assert loaded["total"] == servers * each
                assert [m["index"] for m in loaded["messages"]] == list(range(servers * each))
                hits = (await call(client, "search_messages", {"query": "turn24", "limit": 10}))["hits"]
                assert len(hits) == servers


def _backend_pids(uri: str, holder: psycopg.Connection[Any]) -> list[int]:
    """Server connections of the database other than the holder's, waiting for the holder's lock."""
    found = holder.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        " AND wait_event_type = 'Lock'"
    ).fetchall()
    return [row[0] for row in found]


async def test_a_write_cut_off_mid_call_says_it_may_or_may_not_have_been_applied(pg_uri: str) -> None:
    with anyio.fail_after(60):
        async with Client(server(pg_uri), read_timeout_seconds=START) as client:
            await call(client, "append", {"session_key": "k", "message": message("first")})
            with psycopg.connect(pg_uri, autocommit=True) as holder:
                # Hold the session's row, so the server's next write waits on it; then cut its connection.
                holder.execute("BEGIN")
                holder.execute("SELECT 1 FROM sessions WHERE key = 'k' FOR UPDATE")
                results: list[str] = []

                async def append() -> None:
                    results.append(await refused(client, "append", {"session_key": "k", "message": message("cut")}))

                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(append)
                    while not (waiting := _backend_pids(pg_uri, holder)):
                        await anyio.sleep(0.02)
                    holder.execute("SELECT pg_terminate_backend(%s)", [waiting[0]])
                holder.execute("ROLLBACK")
            assert "may or may not have been applied" in results[0], results
            # The pool replaced the connection: the server carries on.
            assert (await call(client, "append", {"session_key": "k", "message": message("after")}))[
                "message_count"
            ] == 2


async def test_servers_carry_on_when_the_database_comes_back(pg_cluster: Cluster, pg_uri: str) -> None:
    with anyio.fail_after(90):
        async with Client(server(pg_uri), read_timeout_seconds=START) as client:
            await call(client, "append", {"session_key": "k", "message": message("before")})
            pg_cluster.stop("immediate")
            try:
                text = await refused(client, "load", {"session_key": "k"})
                assert "the database cannot be reached" in text, text
            finally:
                pg_cluster.start()
            for _ in range(50):  # the pool reconnects in the background, with backoff
                result = await client.call_tool("append", {"session_key": "k", "message": message("after")})
                if not result.is_error:
                    break
                await anyio.sleep(0.2)
            loaded = await call(client, "load", {"session_key": "k"})
            assert [m["content"] for m in loaded["messages"]] == ["before", "after"]


def _pid_of(uri: str, flag: str) -> int:
    """The server process started with this URI and flag."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if uri.encode() in args and flag.encode() in args:
            return int(cmdline.parent.name)
    raise AssertionError(f"no server process for {uri} {flag}")


async def test_a_server_killed_mid_stream_loses_nothing_acknowledged(pg_uri: str) -> None:
    acknowledged: list[str] = []
    with anyio.fail_after(120):
        async with (
            Client(server(pg_uri, "--log-level", "CRITICAL"), read_timeout_seconds=10) as victim,
            Client(server(pg_uri), read_timeout_seconds=START) as survivor,
        ):
            victim_pid = _pid_of(pg_uri, "CRITICAL")
            rounds = [0]

            async def writer(name: str, client: Client) -> None:
                for i in range(40):
                    rounds[0] += 1
                    content = f"{name}-{i}"
                    try:
                        result = await client.call_tool(
                            "append", {"session_key": "shared", "message": message(content)}
                        )
                    except Exception:
                        return  # the killed server's client: its call in flight is not acknowledged
                    if not result.is_error:
                        acknowledged.append(content)

            async def killer() -> None:
                while rounds[0] < 20:
                    await anyio.sleep(0.005)
                os.kill(victim_pid, signal.SIGKILL)

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(writer, "victim", victim)
                tasks.start_soon(writer, "survivor", survivor)
                tasks.start_soon(killer)
            loaded = await call(survivor, "load", {"session_key": "shared"})
            stored = [m["content"] for m in loaded["messages"]]
            assert all(stored.count(content) == 1 for content in acknowledged)
            assert len(set(stored)) == len(stored) == loaded["total"]  # nothing twice, and the count agrees
            assert f"survivor-{39}" in stored
