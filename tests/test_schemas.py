"""schemas/ matches what tools/list serves, and every tool's hints match CONTRACT.md."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from mcp.client import Client
from mcp_types import Tool

from mcp_sessions.cli import write_schemas
from mcp_sessions.memory import MemorySessionBackend
from mcp_sessions.server import build_server

pytestmark = pytest.mark.anyio

SCHEMAS = Path(__file__).parent.parent / "schemas"

# The hints column of CONTRACT.md's tool table, copied by hand: RO read-only, D destructive, "" the other writes.
CONTRACT_HINTS = {
    "load": "RO",
    "load_with_timestamps": "RO",
    "append": "",
    "remove_last": "D",
    "update_last": "D",
    "list_sessions": "RO",
    "list_sessions_with_metadata": "RO",
    "compact": "D",
    "cleanup_stale": "D",
    "search": "RO",
    "clear_messages": "D",
    "delete_session": "D",
    "set_session_name": "",
    "get_session_name": "RO",
    "set_session_agent_alias": "",
    "get_session_agent_alias": "RO",
    "set_session_context": "",
    "get_session_metadata": "RO",
    "set_session_state": "",
    "get_session_state": "RO",
    "list_running_sessions": "RO",
    "list_stuck_sessions": "RO",
    "search_messages": "RO",
}


@pytest.fixture
async def tools() -> list[Tool]:
    async with Client(build_server(MemorySessionBackend())) as client:
        return (await client.list_tools()).tools


def read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def objects(schema: Any) -> list[dict[str, Any]]:
    """Every object schema inside schema: the root, $defs, properties, items, anyOf arms."""
    found: list[dict[str, Any]] = []
    if isinstance(schema, dict):
        if schema.get("type") == "object":
            found.append(schema)
        for value in schema.values():
            found += objects(value)
    elif isinstance(schema, list):
        for value in schema:
            found += objects(value)
    return found


async def test_schema_files_match_what_tools_list_serves(tools: list[Tool]) -> None:
    served = {
        f"{t.name}.{kind}.json": schema
        for t in tools
        for kind, schema in [("input", t.input_schema), ("output", t.output_schema)]
    }
    on_disk = {p.name for p in SCHEMAS.glob("*.json")}
    assert on_disk == set(served), "schemas/ drifted: run `mcp-sessions schemas`"
    for name, schema in served.items():
        assert read(SCHEMAS / name) == schema, f"schemas/{name} drifted: run `mcp-sessions schemas`"


async def test_every_tool_has_the_hints_of_the_contract(tools: list[Tool]) -> None:
    assert {t.name for t in tools} == set(CONTRACT_HINTS)
    for tool in tools:
        hints = tool.annotations
        assert hints is not None, tool.name
        kind = CONTRACT_HINTS[tool.name]
        assert hints.read_only_hint is (kind == "RO"), tool.name
        if kind != "RO":
            assert hints.destructive_hint is (kind == "D"), tool.name
        assert hints.idempotent_hint is not None and hints.open_world_hint is False, tool.name
        assert tool.title and hints.title, tool.name


async def test_every_input_schema_forbids_unknown_arguments_at_every_level(tools: list[Tool]) -> None:
    for tool in tools:
        for schema in objects(tool.input_schema):
            assert schema.get("additionalProperties") is False, (tool.name, schema.get("title"))


async def test_every_output_schema_is_an_object_with_the_contract_fields(tools: list[Tool]) -> None:
    for tool in tools:
        assert tool.output_schema is not None and tool.output_schema["type"] == "object", tool.name
        assert tool.output_schema["properties"], tool.name


def test_the_schemas_command_writes_the_files_and_drops_stale_ones(tmp_path: Path) -> None:
    (tmp_path / "gone.input.json").write_text("{}")
    write_schemas(tmp_path)
    assert {p.name for p in tmp_path.glob("*.json")} == {p.name for p in SCHEMAS.glob("*.json")}
    for path in SCHEMAS.glob("*.json"):
        assert read(tmp_path / path.name) == read(path)
