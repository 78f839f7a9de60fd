"""manifest.json, the Claude Desktop bundle's MCPB manifest, generated from the server's own tools and prompt."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import anyio

from . import __version__

DESCRIPTION = "Session memory for agents: conversations in an embedded DuckDB file, with live full-text search."
LONG_DESCRIPTION = (
    "Stores conversations as sessions of messages and lets the model recall them: search_messages finds "
    "past messages by words (stems, accents, code identifiers, any script), load reads the turns around a "
    "hit. Sessions are also resources (session://{session_key}, as Markdown), and the recall prompt asks "
    "the model to summarise what was decided about a topic, citing session keys. Everything stays in one "
    "local file."
)
USER_CONFIG: dict[str, dict[str, Any]] = {
    "db_path": {
        "type": "string",
        "title": "Database file",
        "description": "Where sessions are stored. Empty: ~/.local/share/mcp-sessions/sessions.duckdb "
        "($XDG_DATA_HOME/mcp-sessions/sessions.duckdb).",
        "required": False,
        "default": "",
    },
    "read_only": {
        "type": "boolean",
        "title": "Read-only",
        "description": "Offer only the tools that read: the model can recall but not write or delete.",
        "required": False,
        "default": False,
    },
    "agent_alias": {
        "type": "string",
        "title": "Agent alias",
        "description": "See only the sessions of this agent, and attribute new sessions to it. Empty: all sessions.",
        "required": False,
        "default": "",
    },
}


def manifest() -> dict[str, Any]:
    """The MCPB manifest (version 0.3): package facts, how to start the server, its tools and prompt."""
    from .memory import MemorySessionBackend
    from .resources import RECALL_TEXT
    from .server import build_server

    server = build_server(MemorySessionBackend())
    tools = anyio.run(server.list_tools)
    prompts = anyio.run(server.list_prompts)

    return {
        "manifest_version": "0.3",
        "name": "mcp-sessions",
        "display_name": "Session memory",
        "version": __version__,
        "description": DESCRIPTION,
        "long_description": LONG_DESCRIPTION,
        "author": {"name": "mcp-sessions maintainers"},
        "license": "MIT",
        "keywords": ["memory", "sessions", "conversations", "search", "duckdb", "recall"],
        "server": {
            "type": "python",
            "entry_point": "mcp_sessions/bundle.py",
            "mcp_config": {
                "command": "python3",
                "args": ["-m", "mcp_sessions.bundle"],
                "env": {
                    # lib/ holds the dependencies `mcp-sessions manifest` users install into the bundle folder.
                    "PYTHONPATH": "${__dirname}:${__dirname}/lib",
                    "MCP_SESSIONS_DB": "${user_config.db_path}",
                    "MCP_SESSIONS_READ_ONLY": "${user_config.read_only}",
                    "MCP_SESSIONS_AGENT_ALIAS": "${user_config.agent_alias}",
                },
                "platform_overrides": {
                    "win32": {
                        "command": "python",
                        "env": {
                            "PYTHONPATH": "${__dirname};${__dirname}/lib",
                            "MCP_SESSIONS_DB": "${user_config.db_path}",
                            "MCP_SESSIONS_READ_ONLY": "${user_config.read_only}",
                            "MCP_SESSIONS_AGENT_ALIAS": "${user_config.agent_alias}",
                        },
                    }
                },
            },
        },
        "tools": [{"name": tool.name, "description": _first_sentence(tool.description or "")} for tool in tools],
        "tools_generated": False,
        "prompts": [
            {
                "name": prompt.name,
                "description": prompt.description or "",
                "arguments": [argument.name for argument in prompt.arguments or []],
                "text": RECALL_TEXT.replace("{topic}", "${arguments.topic}"),
            }
            for prompt in prompts
        ],
        "prompts_generated": False,
        "compatibility": {"platforms": ["darwin", "linux", "win32"], "runtimes": {"python": ">=3.11"}},
        "user_config": USER_CONFIG,
    }


def _first_sentence(text: str) -> str:
    flat = " ".join(text.split())
    end = flat.find(". ")
    return flat if end < 0 else flat[: end + 1]


def render() -> str:
    """manifest.json's text, as written."""
    return json.dumps(manifest(), indent=2, ensure_ascii=False) + "\n"


def write_manifest(path: Path, *, check: bool = False) -> int:
    """Write the manifest to path (check: only compare); return the exit status."""
    text = render()
    if check:
        current = path.read_text(encoding="utf-8") if path.exists() else ""
        if current != text:
            print(f"{path} is out of date: run `mcp-sessions manifest {path}`", file=sys.stderr)
            return 1
        return 0
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path}", file=sys.stderr)
    return 0
