"""Calling tools through an MCP client in tests: a message argument, a call that must succeed, one that must fail."""

from __future__ import annotations

from typing import Any

from mcp.client import Client


def message(content: str, role: str = "user") -> dict[str, str]:
    return {"role": role, "content": content}


async def call(client: Client, tool: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
    """The structured result of a call that must succeed."""
    result = await client.call_tool(tool, arguments or {})
    assert not result.is_error, (tool, arguments, result.content)
    assert result.structured_content is not None
    return result.structured_content


async def refused(client: Client, tool: str, arguments: dict[str, Any]) -> str:
    """The text of the tool error a call must give."""
    result = await client.call_tool(tool, arguments)
    assert result.is_error, result.structured_content
    text = result.content[0]
    assert text.type == "text"
    return text.text
