"""The Claude Desktop bundle: `mcpb pack` yields a bundle whose server starts and answers tools/list."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import anyio
import pytest
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [
    pytest.mark.anyio,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("npx") is None, reason="needs Node's npx"),
]


def _dependencies() -> list[str]:
    """The package's runtime requirements, as pyproject.toml pins them."""
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]


async def test_packed_bundle_starts_and_lists_every_tool(tmp_path: Path) -> None:
    build = tmp_path / "bundle"
    build.mkdir()
    shutil.copy(ROOT / "manifest.json", build / "manifest.json")
    shutil.copytree(ROOT / "mcp_sessions", build / "mcp_sessions", ignore=shutil.ignore_patterns("__pycache__"))
    # What the README says to do: the dependencies go in lib/, next to the package.
    pip = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--target", str(build / "lib")]
    subprocess.run([*pip, *_dependencies()], check=True, timeout=600)
    packed = tmp_path / "mcp-sessions.mcpb"
    npx = ["npx", "-y", "@anthropic-ai/mcpb"]
    subprocess.run([*npx, "pack", str(build), str(packed)], check=True, timeout=600, capture_output=True)
    unpacked = tmp_path / "installed"
    with zipfile.ZipFile(packed) as bundle:
        bundle.extractall(unpacked)
    manifest = json.loads((unpacked / "manifest.json").read_text())

    # Start it as a client of the bundle would: the manifest's command, args and env, with the
    # placeholders filled in (user settings as Claude Desktop passes them).
    config = manifest["server"]["mcp_config"]
    values = {
        "${__dirname}": str(unpacked),
        "${user_config.db_path}": str(tmp_path / "bundle.duckdb"),
        "${user_config.read_only}": "false",
        "${user_config.agent_alias}": "",
    }

    def fill(text: str) -> str:
        for placeholder, value in values.items():
            text = text.replace(placeholder, value)
        return text

    env = {**os.environ, **{name: fill(value) for name, value in config["env"].items()}}
    command = sys.executable if config["command"] in ("python", "python3") else config["command"]
    params = StdioServerParameters(command=command, args=[fill(a) for a in config["args"]], env=env, cwd=str(tmp_path))
    with anyio.fail_after(60):
        async with Client(params, read_timeout_seconds=60) as client:
            tools = {tool.name for tool in (await client.list_tools()).tools}
            appended = await client.call_tool(
                "append", {"session_key": "bundle", "message": {"role": "user", "content": "packed and running"}}
            )
            found = await client.call_tool("search_messages", {"query": "packed"})
    assert tools == {tool["name"] for tool in manifest["tools"]}
    assert len(tools) == 23
    assert not appended.is_error
    assert found.structured_content is not None
    assert [hit["session_key"] for hit in found.structured_content["hits"]] == ["bundle"]
