"""Every file in examples/ runs (or parses and starts a server), as the README promises."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str, tmp_path: Path) -> str:
    command = [sys.executable, str(EXAMPLES / name), "--db", str(tmp_path / "s.duckdb")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_every_example_is_tested() -> None:
    covered = {"claude_desktop_config.json", "recall_client.py", "self_recall.py", "self_recall.md"}
    assert {p.name for p in EXAMPLES.iterdir() if not p.name.startswith((".", "__"))} == covered


def test_recall_client_appends_then_recalls_over_stdio(tmp_path: Path) -> None:
    out = run_example("recall_client.py", tmp_path)
    assert out.startswith("best hit: api-timeouts#")
    assert "backoff with jitter, 3 retries" in out


def test_self_recall_prints_what_the_walk_through_shows(tmp_path: Path) -> None:
    out = run_example("self_recall.py", tmp_path)
    walk_through = (EXAMPLES / "self_recall.md").read_text(encoding="utf-8")
    shown = re.search(r"```\n(day 1:.*?)```", walk_through, re.S)
    assert shown is not None
    assert out == shown.group(1)


@pytest.mark.anyio
async def test_claude_desktop_config_starts_a_server(tmp_path: Path) -> None:
    config = json.loads((EXAMPLES / "claude_desktop_config.json").read_text(encoding="utf-8"))
    entry = config["mcpServers"]["sessions"]
    assert entry["command"].endswith("/.venv/bin/mcp-sessions")
    args = [tmp_path.joinpath("s.duckdb").as_posix() if a.startswith("/ABSOLUTE") else a for a in entry["args"]]
    params = StdioServerParameters(command=sys.executable, args=["-m", "mcp_sessions", *args])
    with anyio.fail_after(30):
        async with Client(params) as client:
            assert len((await client.list_tools()).tools) == 23


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("npx") is None, reason="needs Node's npx")
def test_the_readme_inspector_commands_list_append_and_search(tmp_path: Path) -> None:
    readme = (EXAMPLES.parent / "README.md").read_text(encoding="utf-8")
    inspect = re.search(r'INSPECT="(.+?)"', readme)
    assert inspect is not None
    base = [
        *shlex.split(inspect.group(1)),
        sys.executable,
        "-m",
        "mcp_sessions",
        "serve",
        "--db",
        str(tmp_path / "i.duckdb"),
    ]

    def inspector(*args: str) -> dict[str, Any]:
        done = subprocess.run([*base, *args], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    assert len(inspector("--method", "tools/list")["tools"]) == 23
    message = json.dumps({"role": "user", "content": "retry with backoff"})
    appended = inspector(
        "--method",
        "tools/call",
        "--tool-name",
        "append",
        "--tool-arg",
        "session_key=demo",
        "--tool-arg",
        f"message={message}",
    )
    assert appended["structuredContent"] == {"session_key": "demo", "message_count": 1}
    found = inspector("--method", "tools/call", "--tool-name", "search_messages", "--tool-arg", "query=backoff")
    assert [h["session_key"] for h in found["structuredContent"]["hits"]] == ["demo"]
