"""OpenAI Agents SDK's SQLiteSession: `agent_messages` rows by id, each a Responses API item as JSON."""

from __future__ import annotations

import itertools
import json
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..imported import ImportedMessage, ImportedSession, parse_utc
from .feeds import Feed, Format, Reading, continued
from .sqlite import open_read_only, read_database, tables

_SELECT = "SELECT session_id, id, message_data, created_at FROM agent_messages"


def detect(path: Path) -> bool:
    return "agent_messages" in tables(path)


def read(reading: Reading) -> Iterator[Iterable[Feed]]:
    return read_database(reading, _feeds)


def _text(content: object) -> str | None:
    """A content string as is; a list of parts: their text joined by blank lines."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
        return "\n\n".join(parts)
    return None


def item_message(item: dict[str, object]) -> tuple[str, str] | str | None:
    """(role, content) of an item, None for an item that is no message (reasoning, ...), or why it is bad."""
    kind = item.get("type")
    if kind == "function_call":
        return "assistant", f"[function_call {item.get('name')}] {item.get('arguments', '')}"
    if kind == "function_call_output":
        output = item.get("output")
        text = _text(output)
        return "tool", text if text is not None else json.dumps(output, ensure_ascii=False)
    role = item.get("role")
    if role is None:
        return None
    content = _text(item.get("content"))
    if not isinstance(role, str) or content is None:
        return "an item with a role needs text content (a string or a list of parts)"
    return role, content


def _rows(reading: Reading, rows: Iterable[tuple[object, ...]]) -> Iterator[ImportedMessage]:
    for row_id, data, created_at in rows:
        where = f"agent_messages id {row_id}"
        try:
            item = json.loads(data)  # type: ignore[arg-type]
            at = parse_utc(created_at)  # type: ignore[arg-type]
        except (TypeError, ValueError) as exc:
            reading.bad(where, f"not a JSON item with a time ({exc})")
            continue
        if not isinstance(item, dict):
            reading.bad(where, f"message_data is not a JSON object but {type(item).__name__}")
            continue
        found = item_message(item)
        if isinstance(found, str):
            reading.bad(where, found)
        elif found is not None and (message := reading.message(where, found[0], found[1], at)) is not None:
            yield message


def _feeds(reading: Reading, conn: sqlite3.Connection) -> Iterator[Feed]:
    rows = conn.execute(f"{_SELECT} ORDER BY session_id, id")
    for raw_key, group in itertools.groupby(rows, key=lambda row: row[0]):
        key = reading.key(f"agent_messages session_id {raw_key!r}", raw_key)
        if key is None:
            continue

        def again(raw_key: object = raw_key) -> Iterator[ImportedMessage]:
            with open_read_only(reading.path) as other:
                found = other.execute(f"{_SELECT} WHERE session_id = ? ORDER BY id", [raw_key])
                yield from _rows(reading, (row[1:] for row in found))

        yield continued(reading, ImportedSession(key), _rows(reading, (row[1:] for row in group)), again)


# SQLiteSession has no location of its own (the application picks the file): no default.
FORMAT = Format("openai-agents", None, detect, read)
