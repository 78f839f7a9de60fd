"""Append a conversation to mcp-sessions over stdio, then recall it: search_messages finds it, load reads around it.

Run: .venv/bin/python examples/recall_client.py [--db FILE]   (default: a fresh file in a temp folder)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import anyio
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters

CONVERSATION = [
    {"role": "user", "content": "Our API returns 504 under load. Retry or raise the timeout?"},
    {"role": "assistant", "content": "Retry with exponential backoff, at most 3 times; keep the 30 s timeout."},
    {"role": "user", "content": "Agreed: backoff with jitter, 3 retries, timeout stays at 30 s."},
]


async def main(db: str) -> None:
    server = StdioServerParameters(command=sys.executable, args=["-m", "mcp_sessions", "serve", "--db", db])
    async with Client(server) as client:
        for message in CONVERSATION:
            await client.call_tool("append", {"session_key": "api-timeouts", "message": message})
        await client.call_tool("set_session_name", {"session_key": "api-timeouts", "name": "API 504s"})

        found = await client.call_tool("search_messages", {"query": "retry timeout 504", "limit": 3})
        hits = (found.structured_content or {})["hits"]
        best = hits[0]
        print(f"best hit: {best['session_key']}#{best['index']} ({best['role']}): {best['snippet']}")

        around = await client.call_tool(
            "load", {"session_key": best["session_key"], "offset": max(best["index"] - 2, 0), "limit": 5}
        )
        for message in (around.structured_content or {})["messages"]:
            print(f"  {message['role']}: {message['content']}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="database file (default: a new one in a temp folder)")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        anyio.run(main, options.db or str(Path(folder) / "sessions.duckdb"))
