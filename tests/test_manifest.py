"""manifest.json: generated from the server (a drift fails here), valid for MCPB, and its entry point serves."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters

from mcp_sessions.bundle import serve_flags
from mcp_sessions.manifest import render
from mcp_sessions.memory import MemorySessionBackend
from mcp_sessions.server import build_server

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "manifest.json"


def manifest() -> dict[str, Any]:
    return json.loads(MANIFEST.read_text(encoding="utf-8"))


def test_manifest_json_is_what_the_server_generates() -> None:
    assert MANIFEST.read_text(encoding="utf-8") == render(), "run `mcp-sessions manifest` and commit manifest.json"


def test_manifest_lists_every_tool_of_the_server_in_order() -> None:
    tools = anyio.run(build_server(MemorySessionBackend()).list_tools)
    assert [t["name"] for t in manifest()["tools"]] == [t.name for t in tools]
    assert len(tools) == 23
    assert all(t["description"] for t in manifest()["tools"])


def test_manifest_offers_the_recall_prompt_and_the_three_settings() -> None:
    data = manifest()
    assert [p["name"] for p in data["prompts"]] == ["recall"]
    assert "${arguments.topic}" in data["prompts"][0]["text"]
    assert set(data["user_config"]) == {"db_path", "read_only", "agent_alias"}
    env = data["server"]["mcp_config"]["env"]
    assert env["MCP_SESSIONS_DB"] == "${user_config.db_path}"
    assert data["version"] == __import__("mcp_sessions").__version__


def test_manifest_check_fails_when_the_file_drifts(tmp_path: Path) -> None:
    stale = tmp_path / "manifest.json"
    stale.write_text(render().replace('"load"', '"load_old"'), encoding="utf-8")
    command = [sys.executable, "-m", "mcp_sessions", "manifest", "--check", str(stale)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "out of date" in done.stderr


@pytest.mark.parametrize(
    ("environ", "flags"),
    [
        ({}, []),
        ({"MCP_SESSIONS_READ_ONLY": "false", "MCP_SESSIONS_AGENT_ALIAS": ""}, []),
        (
            {"MCP_SESSIONS_READ_ONLY": "true", "MCP_SESSIONS_AGENT_ALIAS": "claude"},
            ["--read-only", "--agent-alias", "claude"],
        ),
    ],
)
def test_user_config_becomes_serve_flags(environ: dict[str, str], flags: list[str]) -> None:
    assert serve_flags(environ) == flags


@pytest.mark.anyio
async def test_the_bundle_entry_point_serves_with_the_user_config(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "MCP_SESSIONS_DB": str(tmp_path / "s.duckdb"),
        "MCP_SESSIONS_READ_ONLY": "true",
        "MCP_SESSIONS_AGENT_ALIAS": "",
    }
    params = StdioServerParameters(command=sys.executable, args=["-m", "mcp_sessions.bundle"], env=env)
    with anyio.fail_after(30):
        async with Client(params) as client:
            names = {tool.name for tool in (await client.list_tools()).tools}
    assert "search_messages" in names and "append" not in names


@pytest.mark.skipif(shutil.which("npx") is None, reason="needs Node's npx")
def test_mcpb_validates_the_manifest() -> None:
    done = subprocess.run(
        ["npx", "-y", "@anthropic-ai/mcpb", "validate", str(MANIFEST)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "passes" in done.stdout
