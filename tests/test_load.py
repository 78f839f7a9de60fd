"""Thousands of mixed calls, dozens in flight, from one client to the real program: nothing lost, nothing doubled."""

from __future__ import annotations

import random
import sys
from collections import Counter
from pathlib import Path

import anyio
import pytest
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters
from tool_calls import call, message

pytestmark = pytest.mark.anyio

START = 30  # seconds: room for a cold interpreter start and the MCP SDK import
SHARED_WRITERS = 8
SHARED_APPENDS = 60
OWNERS = 10
OWNER_CALLS = 110
READERS = 8
READER_CALLS = 60


@pytest.mark.slow
async def test_thousands_of_mixed_calls_in_flight_lose_and_double_nothing(tmp_path: Path) -> None:
    db = str(tmp_path / "load.duckdb")
    seed = random.randrange(1 << 32)
    params = StdioServerParameters(command=sys.executable, args=["-m", "mcp_sessions", "--db", db])
    counts: list[int] = []
    calls = Counter[str]()
    # Per session, every message count it can have had, in order: each is added before the call that makes it.
    # settled[key] is the first of them the store can still hold: acknowledged writes are never undone.
    history: dict[str, list[int]] = {"shared": [0], **{f"owned {o}": [0] for o in range(OWNERS)}}
    settled = dict.fromkeys(history, 0)

    def will_hold(key: str, count: int) -> None:
        history[key].append(count)

    async def shared_writer(client: Client, w: int) -> None:
        """Appends to the one session every shared writer writes: each count it is given is its own."""
        for i in range(SHARED_APPENDS):
            will_hold("shared", len(history["shared"]))  # the shared history is 0, 1, 2, ...: count == position
            result = await call(client, "append", {"session_key": "shared", "message": message(f"writer {w} seq {i}")})
            counts.append(result["message_count"])
            settled["shared"] = max(settled["shared"], result["message_count"])
            calls["append"] += 1

    async def owner(client: Client, o: int) -> None:
        """Mixed writes and reads on its own session, each answer checked against a list."""
        rng = random.Random(seed + o)
        key = f"owned {o}"
        model: list[dict[str, str]] = []
        for n in range(OWNER_CALLS):
            choice = rng.random()
            m = message(f"owner {o} call {n}", rng.choice(["user", "assistant"]))
            if choice < 0.45:
                will_hold(key, len(model) + 1)
                result = await call(client, "append", {"session_key": key, "message": m})
                model.append(m)
                assert result == {"session_key": key, "message_count": len(model)}
                tool = "append"
            elif choice < 0.6:
                result = await call(client, "update_last", {"session_key": key, "message": m})
                assert result == {"updated": bool(model)}
                model[-1:] = [m] if model else []
                tool = "update_last"
            elif choice < 0.7:
                will_hold(key, max(len(model) - 1, 0))
                result = await call(client, "remove_last", {"session_key": key})
                assert result == {"removed": bool(model)}
                model[-1:] = []
                tool = "remove_last"
            elif choice < 0.85:
                offset, limit = rng.randint(-5, 5), rng.randint(1, 5)
                result = await call(client, "load", {"session_key": key, "offset": offset, "limit": limit})
                start = max(len(model) + offset, 0) if offset < 0 else offset
                assert result["messages"] == model[start : start + limit] and result["total"] == len(model)
                tool = "load"
            elif choice < 0.93:
                await call(client, "set_session_name", {"session_key": key, "name": f"owner {o} at {n}"})
                assert await call(client, "get_session_name", {"session_key": key}) == {"name": f"owner {o} at {n}"}
                calls["set_session_name"] += 1
                tool = "get_session_name"
            else:
                hits = (await call(client, "search_messages", {"query": f"owner {o}", "session_key": key}))["hits"]
                assert all(model[h["index"]]["content"] == h["snippet"] for h in hits)
                tool = "search_messages"
            calls[tool] += 1
            settled[key] = len(history[key]) - 1
        assert (await call(client, "load", {"session_key": key}))["messages"] == model
        metadata = (await call(client, "get_session_metadata", {"session_key": key}))["metadata"]
        assert metadata is None or metadata["message_count"] == len(model)

    async def reader(client: Client, r: int) -> None:
        """Reads while the writes go on: counts only grow, and every read agrees with itself."""
        rng = random.Random(seed - r)
        seen = 0
        for _ in range(READER_CALLS):
            choice = rng.random()
            if choice < 0.4:
                loaded = await call(client, "load", {"session_key": "shared", "offset": -3})
                assert loaded["total"] >= seen and len(loaded["messages"]) == min(3, loaded["total"])
                seen = loaded["total"]
                tool = "load"
            elif choice < 0.6:
                hits = (await call(client, "search_messages", {"query": "writer seq", "limit": 50}))["hits"]
                assert all(h["session_key"] == "shared" for h in hits)
                tool = "search_messages"
            elif choice < 0.75:
                floors = dict(settled)
                sessions = (await call(client, "list_sessions_with_metadata", {"limit": 100}))["sessions"]
                for s in sessions:
                    # A count the session had between the call and its answer: none lost, none not yet sent.
                    possible = history[s["key"]][floors[s["key"]] :]
                    assert s["message_count"] in possible, (s, possible, f"seed {seed}")
                tool = "list_sessions_with_metadata"
            elif choice < 0.9:
                await call(client, "search", {"query": {"keyword": "owner call", "limit": 20}})
                tool = "search"
            else:
                await call(client, "list_sessions")
                tool = "list_sessions"
            calls[tool] += 1

    with anyio.fail_after(150):
        async with Client(params, read_timeout_seconds=60) as client:
            async with anyio.create_task_group() as tasks:
                for w in range(SHARED_WRITERS):
                    tasks.start_soon(shared_writer, client, w)
                for o in range(OWNERS):
                    tasks.start_soon(owner, client, o)
                for r in range(READERS):
                    tasks.start_soon(reader, client, r)
            total = SHARED_WRITERS * SHARED_APPENDS
            assert len(counts) == total and max(counts) == total, f"seed {seed}"
            loaded = await call(client, "load", {"session_key": "shared"})
            assert loaded["total"] == total and len(loaded["messages"]) == total
            contents = [m["content"] for m in loaded["messages"]]
            assert len(set(contents)) == total
            for w in range(SHARED_WRITERS):
                mine = [c for c in contents if c.startswith(f"writer {w} ")]
                assert mine == [f"writer {w} seq {i}" for i in range(SHARED_APPENDS)]
            metadata = (await call(client, "get_session_metadata", {"session_key": "shared"}))["metadata"]
            assert metadata["message_count"] == total
            hits = (await call(client, "search_messages", {"query": "writer 3 seq 59", "session_key": "shared"}))[
                "hits"
            ]
            assert contents[hits[0]["index"]] == "writer 3 seq 59"
    assert sum(calls.values()) >= 2000, calls


@pytest.mark.slow
async def test_concurrent_appends_to_one_session_are_each_told_their_own_count(tmp_path: Path) -> None:
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "mcp_sessions", "--db", str(tmp_path / "c.duckdb")]
    )
    counts: list[int] = []

    async def writer(client: Client, w: int) -> None:
        for i in range(40):
            result = await call(client, "append", {"session_key": "one", "message": message(f"writer {w} seq {i}")})
            counts.append(result["message_count"])

    with anyio.fail_after(90):
        async with Client(params, read_timeout_seconds=60) as client:
            async with anyio.create_task_group() as tasks:
                for w in range(8):
                    tasks.start_soon(writer, client, w)
    assert sorted(counts) == list(range(1, 321))
