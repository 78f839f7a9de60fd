"""An agent recalling its own past: day 1 it decides something, day 2 (a new process) it finds and cites it.

Run: .venv/bin/python examples/self_recall.py [--db FILE]   (walk-through: examples/self_recall.md)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import anyio
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters

AGENT = "build-bot"


def server(db: str) -> StdioServerParameters:
    # --agent-alias: this agent sees and writes only its own sessions.
    args = ["-m", "mcp_sessions", "serve", "--db", db, "--agent-alias", AGENT]
    return StdioServerParameters(command=sys.executable, args=args)


async def call(client: Client, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    result = await client.call_tool(tool, arguments)
    if result.is_error:
        raise RuntimeError(f"{tool} failed: {result.content}")
    return result.structured_content or {}


async def day_one(db: str) -> None:
    """The agent works through a decision and stores every turn as it goes."""
    turns = [
        ("user", "The nightly build takes 48 minutes. Can we cache the dependency layer?"),
        ("assistant", "Yes: key the cache on the lockfile hash, so a dependency change rebuilds it."),
        ("user", "Decision: cache deps keyed on poetry.lock hash; invalidate weekly as a safety net."),
    ]
    async with Client(server(db)) as client:
        await call(client, "set_session_name", {"session_key": "ci-2026-11-20", "name": "Speeding up CI"})
        for role, content in turns:
            await call(
                client, "append", {"session_key": "ci-2026-11-20", "message": {"role": role, "content": content}}
            )
    print("day 1: stored 3 turns in session ci-2026-11-20")


async def day_two(db: str) -> None:
    """A new process, a new conversation: the agent recalls what it decided about build caching."""
    async with Client(server(db)) as client:
        prompt = await client.get_prompt("recall", {"topic": "build caching"})
        print("day 2: the recall prompt asks:", str(getattr(prompt.messages[0].content, "text", "")).splitlines()[0])
        hits = (await call(client, "search_messages", {"query": "cache build dependency", "limit": 5}))["hits"]
        best = max(hits, key=lambda hit: "Decision" in hit["snippet"])
        page = await call(
            client, "load", {"session_key": best["session_key"], "offset": max(best["index"] - 1, 0), "limit": 3}
        )
        decision = next(m["content"] for m in page["messages"] if m["content"].startswith("Decision"))
        print(f"day 2: recalled from [{best['session_key']}#{best['index']}]: {decision}")
        transcript = await client.read_resource(f"session://{best['session_key']}")
        print("day 2: transcript resource starts:", str(getattr(transcript.contents[0], "text", "")).splitlines()[0])


async def main(db: str) -> None:
    await day_one(db)
    await day_two(db)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="database file (default: a new one in a temp folder)")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        anyio.run(main, options.db or str(Path(folder) / "sessions.duckdb"))
