"""Realistic histories of each runtime, written as the runtime writes them, with what importing must give.

Each builder writes its source under a folder and returns (source path, expected sessions). An expected
session is (key, metadata fields, [(role, content, ISO time)]), messages in order."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any

from mcp_sessions.export_zeroclaw import SCHEMA as ZEROCLAW_SCHEMA

Expected = list[tuple[str, dict[str, Any], list[tuple[str, str, str]]]]


def zeroclaw(folder: Path) -> tuple[Path, Expected]:
    """A ZeroClaw store: times with 0 to 9 fractional digits, two sessions' rows interleaved, metadata with the
    later columns, a session without a metadata row, a row whose time is unreadable."""
    path = folder / "sessions.db"
    conn = sqlite3.connect(path)
    conn.executescript(ZEROCLAW_SCHEMA)
    rows = [
        ("tg:42", "user", "plan the release", "2026-03-01T10:00:00Z"),
        ("tg:42", "assistant", "first the changelog", "2026-03-01T10:00:01.5+00:00"),
        ("cli", "user", "hello", "2026-03-01T11:00:00.123+00:00"),
        ("tg:42", "user", "and then?", "2026-03-01T10:00:02.123456Z"),
        ("tg:42", "assistant", "tag it", "2026-03-01T10:00:03.1234567Z"),
        ("tg:42", "user", "bad time", "yesterday"),
        ("tg:42", "assistant", "done", "2026-03-01T10:00:04.123456789+00:00"),
        ("cli", "assistant", "hi", "2026-03-01T11:00:01.12345678Z"),
    ]
    conn.executemany("INSERT INTO sessions (session_key, role, content, created_at) VALUES (?, ?, ?, ?)", rows)
    conn.execute(
        "INSERT INTO session_metadata (session_key, created_at, last_activity, message_count, name, state,"
        " agent_alias, channel_id, room_id, sender_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        ["tg:42", "2026-03-01T09:59:59.000001Z", "2026-03-01T10:00:04Z", 6, "Release plan", "idle", "ops-bot",
         "telegram", "chat-42", "user-7"],
    )  # fmt: skip
    conn.commit()
    conn.close()
    expected: Expected = [
        (
            "tg:42",
            {
                "name": "Release plan",
                "agent_alias": "ops-bot",
                "channel_id": "telegram",
                "room_id": "chat-42",
                "sender_id": "user-7",
                "created_at": "2026-03-01T09:59:59.000001+00:00",
            },
            [
                ("user", "plan the release", "2026-03-01T10:00:00+00:00"),
                ("assistant", "first the changelog", "2026-03-01T10:00:01.500000+00:00"),
                ("user", "and then?", "2026-03-01T10:00:02.123456+00:00"),
                ("assistant", "tag it", "2026-03-01T10:00:03.123456+00:00"),
                ("assistant", "done", "2026-03-01T10:00:04.123456+00:00"),
            ],
        ),  # fmt: skip
        (
            "cli",
            {"name": None, "agent_alias": None},
            [
                ("user", "hello", "2026-03-01T11:00:00.123000+00:00"),
                ("assistant", "hi", "2026-03-01T11:00:01.123456+00:00"),
            ],
        ),
    ]
    return path, expected


def _line(**fields: Any) -> str:
    return json.dumps(fields)


def claude_code(folder: Path) -> tuple[Path, Expected]:
    """~/.claude/projects with two projects: split assistant messages, tool use and results, thinking, images,
    isMeta, other line types, the three kinds of title, a bad line, and a resumed session repeating lines."""
    projects = folder / "projects"
    project = projects / "-home-ann-shop"
    project.mkdir(parents=True)
    sid, other, resumed = "3f1c0a52-0001", "3f1c0a52-0002", "3f1c0a52-0003"
    cwd = "/home/ann/shop"

    def event(kind: str, uuid: str, at: str, message: dict[str, Any], session: str = sid, **more: Any) -> str:
        return _line(type=kind, uuid=uuid, sessionId=session, timestamp=at, cwd=cwd, message=message, **more)

    first = [
        _line(type="summary", summary="Cart bug", leafUuid="u1"),
        event("user", "u1", "2026-02-01T09:00:00.123Z", {"role": "user", "content": "The cart total is wrong"}),
        event("assistant", "a1", "2026-02-01T09:00:02.456Z", {"id": "msg_1", "role": "assistant",
              "content": [{"type": "thinking", "thinking": "Probably rounding", "signature": "x"}]}),
        event("assistant", "a2", "2026-02-01T09:00:03.000Z", {"id": "msg_1", "role": "assistant",
              "content": [{"type": "text", "text": "Let me look at the cart."}]}),
        event("assistant", "a3", "2026-02-01T09:00:03.500Z", {"id": "msg_1", "role": "assistant",
              "content": [{"type": "tool_use", "id": "t1", "name": "Read", "input": {"file_path": "cart.py"}}]}),
        event("user", "u2", "2026-02-01T09:00:04.000Z", {"role": "user", "content": [
              {"type": "tool_result", "tool_use_id": "t1",
               "content": [{"type": "text", "text": "def total(): ..."}]}]}),
        event("user", "u3", "2026-02-01T09:00:04.100Z", {"role": "user", "content": "<command-name>/clear"},
              isMeta=True),
        _line(type="system", uuid="s1", sessionId=sid, timestamp="2026-02-01T09:00:05Z", content="compacted"),
        _line(type="file-history-snapshot", messageId="m", snapshot={}),
        event("user", "u4", "2026-02-01T09:01:00.000001Z", {"role": "user", "content": [
              {"type": "text", "text": "Here is a screenshot"},
              {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}}]}),
        event("assistant", "a4", "2026-02-01T09:01:05.999999Z", {"id": "msg_2", "role": "assistant", "content": [
              {"type": "text", "text": "Rounding happens twice."}, {"type": "text", "text": "Fixed in cart.py."}]}),
        _line(type="ai-title", aiTitle="Fixing the cart total", sessionId=sid),
        "{not json",
        _line(type="custom-title", customTitle="Cart rounding", sessionId=sid),
    ]  # fmt: skip
    (project / f"{sid}.jsonl").write_text("\n".join(first) + "\n", encoding="utf-8")
    second = [
        _line(type="summary", summary="Checkout copy", leafUuid="v1"),
        event("user", "v1", "2026-02-02T08:00:00Z", {"role": "user", "content": "Reword the checkout"}, other),
    ]
    other_project = projects / "-home-ann-site"
    other_project.mkdir()
    (other_project / f"{other}.jsonl").write_text("\n".join(second) + "\n", encoding="utf-8")
    # Resuming copies earlier lines (same uuid) into the new file before the new turns.
    third = [
        first[1],
        event("user", "w1", "2026-02-03T08:00:00Z", {"role": "user", "content": "Continue please"}, resumed),
    ]
    path = project / f"{resumed}.jsonl"
    path.write_text("\n".join(third) + "\n", encoding="utf-8")
    os.utime(path, (2_000_000_000, 2_000_000_000))  # written after the others
    expected: Expected = [
        (
            sid,
            {"name": "Cart rounding", "room_id": cwd},
            [
                ("user", "The cart total is wrong", "2026-02-01T09:00:00.123000+00:00"),
                (
                    "assistant",
                    'Let me look at the cart.\n\n[tool_use Read] {"file_path": "cart.py"}',
                    "2026-02-01T09:00:02.456000+00:00",
                ),
                ("tool", "def total(): ...", "2026-02-01T09:00:04+00:00"),
                ("user", "Here is a screenshot", "2026-02-01T09:01:00.000001+00:00"),
                ("assistant", "Rounding happens twice.\n\nFixed in cart.py.", "2026-02-01T09:01:05.999999+00:00"),
            ],
        ),  # fmt: skip
        (
            other,
            {"name": "Checkout copy", "room_id": cwd},
            [("user", "Reword the checkout", "2026-02-02T08:00:00+00:00")],
        ),
        (resumed, {"name": None}, [("user", "Continue please", "2026-02-03T08:00:00+00:00")]),
    ]
    return projects, expected


def hermes(folder: Path) -> tuple[Path, Expected]:
    """Hermes' state.db: epoch-second times, inactive (rewound) rows, an assistant turn with no content, a row
    whose time is not a number."""
    path = folder / "state.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        PRAGMA journal_mode = WAL;
        CREATE TABLE sessions (id TEXT PRIMARY KEY, source TEXT NOT NULL, user_id TEXT, model TEXT,
            system_prompt TEXT, parent_session_id TEXT, started_at REAL NOT NULL, ended_at REAL,
            end_reason TEXT, message_count INTEGER DEFAULT 0, title TEXT, chat_id TEXT);
        CREATE TABLE messages (id INTEGER PRIMARY KEY AUTOINCREMENT, session_id TEXT NOT NULL REFERENCES sessions(id),
            role TEXT NOT NULL, content TEXT, tool_call_id TEXT, tool_calls TEXT, tool_name TEXT,
            timestamp REAL NOT NULL, token_count INTEGER, finish_reason TEXT, active INTEGER NOT NULL DEFAULT 1);
        CREATE INDEX idx_messages_session ON messages(session_id, timestamp);
        """
    )
    conn.execute(
        "INSERT INTO sessions (id, source, user_id, started_at, title, chat_id) VALUES (?, ?, ?, ?, ?, ?)",
        ["20260105_101500_ab12", "discord", "u-99", 1767608100.25, "Garden watering", "chan-5"],
    )
    conn.execute("INSERT INTO sessions (id, source, started_at) VALUES ('cli_1', 'cli', 1767700000)")
    rows = [
        ("20260105_101500_ab12", "user", "When should I water?", 1767608101.123456, 1),
        ("20260105_101500_ab12", "assistant", "Every day", 1767608102.5, 0),  # rewound
        ("20260105_101500_ab12", "assistant", None, 1767608103.0, 1),  # only calls a tool
        ("20260105_101500_ab12", "tool", '{"rain": false}', 1767608104.000001, 1),
        ("cli_1", "user", "hi", "soon", 1),
        ("20260105_101500_ab12", "assistant", "Mornings, twice a week", 1767608105.75, 1),
        ("cli_1", "user", "hello", 1767700001, 1),
    ]
    conn.executemany("INSERT INTO messages (session_id, role, content, timestamp, active) VALUES (?, ?, ?, ?, ?)", rows)
    conn.commit()
    conn.close()
    expected: Expected = [
        (
            "20260105_101500_ab12",
            {
                "name": "Garden watering",
                "channel_id": "discord",
                "room_id": "chan-5",
                "sender_id": "u-99",
                "created_at": "2026-01-05T10:15:00.250000+00:00",
            },
            [
                ("user", "When should I water?", "2026-01-05T10:15:01.123456+00:00"),
                ("assistant", "", "2026-01-05T10:15:03+00:00"),
                ("tool", '{"rain": false}', "2026-01-05T10:15:04.000001+00:00"),
                ("assistant", "Mornings, twice a week", "2026-01-05T10:15:05.750000+00:00"),
            ],
        ),  # fmt: skip
        (
            "cli_1",
            {"name": None, "channel_id": "cli", "created_at": "2026-01-06T11:46:40+00:00"},
            [("user", "hello", "2026-01-06T11:46:41+00:00")],
        ),
    ]
    return path, expected


def llm(folder: Path) -> tuple[Path, Expected]:
    """llm's logs.db: naive and +00:00 datetime_utc, a row logged out of time order, a response without a
    conversation, a row whose time is unreadable."""
    path = folder / "logs.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE conversations (id TEXT PRIMARY KEY, name TEXT, model TEXT);
        CREATE TABLE responses (id TEXT PRIMARY KEY, model TEXT, prompt TEXT, system TEXT, prompt_json TEXT,
            options_json TEXT, response TEXT, response_json TEXT, conversation_id TEXT REFERENCES conversations(id),
            duration_ms INTEGER, datetime_utc TEXT, input_tokens INTEGER, output_tokens INTEGER);
        """
    )
    conn.execute("INSERT INTO conversations VALUES ('01hconv', 'Haiku about tea', 'gpt-4o-mini')")
    rows = [
        ("01hr1", "Write a haiku about tea", "Steam curls in the cup", "01hconv", "2024-05-01T10:00:00.123456"),
        ("01hr3", "Now about coffee", "Dark and bitter dawn", "01hconv", "2025-01-10T08:30:00.5+00:00"),
        ("01hr2", "Shorter", "Tea. Warm.", "01hconv", "2024-05-01T10:01:00"),
        ("01hr4", "What is 2+2?", "4", None, "2025-02-01T00:00:00+00:00"),
        ("01hr5", "broken", "row", "01hconv", "not a time"),
    ]
    conn.executemany(
        "INSERT INTO responses (id, prompt, response, conversation_id, datetime_utc) VALUES (?, ?, ?, ?, ?)", rows
    )
    conn.commit()
    conn.close()
    expected: Expected = [
        (
            "01hconv",
            {"name": "Haiku about tea"},
            [
                ("user", "Write a haiku about tea", "2024-05-01T10:00:00.123456+00:00"),
                ("assistant", "Steam curls in the cup", "2024-05-01T10:00:00.123456+00:00"),
                ("user", "Shorter", "2024-05-01T10:01:00+00:00"),
                ("assistant", "Tea. Warm.", "2024-05-01T10:01:00+00:00"),
                ("user", "Now about coffee", "2025-01-10T08:30:00.500000+00:00"),
                ("assistant", "Dark and bitter dawn", "2025-01-10T08:30:00.500000+00:00"),
            ],
        ),
        (
            "01hr4",
            {"name": None},
            [("user", "What is 2+2?", "2025-02-01T00:00:00+00:00"), ("assistant", "4", "2025-02-01T00:00:00+00:00")],
        ),
    ]
    return path, expected


def openai_agents(folder: Path) -> tuple[Path, Expected]:
    """An Agents SDK SQLiteSession file: messages with string and list content, function calls and their
    output, reasoning items, a row that is not JSON."""
    path = folder / "agents.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE agent_sessions (session_id TEXT PRIMARY KEY, created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
            updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP);
        CREATE TABLE agent_messages (id INTEGER PRIMARY KEY AUTOINCREMENT, session_id TEXT NOT NULL,
            message_data TEXT NOT NULL, created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
            FOREIGN KEY (session_id) REFERENCES agent_sessions (session_id) ON DELETE CASCADE);
        CREATE INDEX idx_agent_messages_session_id ON agent_messages (session_id, created_at);
        """
    )
    conn.execute("INSERT INTO agent_sessions (session_id) VALUES ('conversation_123')")
    items = [
        {"role": "user", "content": "What's the weather in Paris?"},
        {"type": "reasoning", "id": "rs_1", "summary": []},
        {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "get_weather",
         "arguments": '{"city":"Paris"}', "status": "completed"},
        {"type": "function_call_output", "call_id": "call_1", "output": "Sunny, 21 C"},
        {"id": "msg_1", "type": "message", "role": "assistant", "status": "completed",
         "content": [{"type": "output_text", "text": "It is sunny.", "annotations": []},
                     {"type": "output_text", "text": "Enjoy Paris!", "annotations": []}]},
    ]  # fmt: skip
    for n, item in enumerate(items):
        conn.execute(
            "INSERT INTO agent_messages (session_id, message_data, created_at) VALUES (?, ?, ?)",
            ["conversation_123", json.dumps(item), f"2025-06-01 12:00:0{n}"],
        )
    conn.execute("INSERT INTO agent_messages (session_id, message_data) VALUES ('conversation_123', '{broken')")
    conn.commit()
    conn.close()
    expected: Expected = [
        (
            "conversation_123",
            {"name": None},
            [
                ("user", "What's the weather in Paris?", "2025-06-01T12:00:00+00:00"),
                ("assistant", '[function_call get_weather] {"city":"Paris"}', "2025-06-01T12:00:02+00:00"),
                ("tool", "Sunny, 21 C", "2025-06-01T12:00:03+00:00"),
                ("assistant", "It is sunny.\n\nEnjoy Paris!", "2025-06-01T12:00:04+00:00"),
            ],
        )
    ]
    return path, expected


def jsonl(folder: Path) -> tuple[Path, Expected]:
    """Our own format: no times in the file, so every message gets the file's modification time."""
    runtime = folder / "exported"
    runtime.mkdir()
    path = runtime / "notes.jsonl"
    path.write_text(
        _line(role="user", content="remember the milk") + "\n" + _line(role="assistant", content="noted") + "\n"
    )
    os.utime(path, (1_700_000_000.25, 1_700_000_000.25))
    at = "2023-11-14T22:13:20.250000+00:00"
    return runtime, [("notes", {"name": None}, [("user", "remember the milk", at), ("assistant", "noted", at)])]


BUILDERS = {
    "zeroclaw": zeroclaw,
    "claude-code": claude_code,
    "hermes": hermes,
    "llm": llm,
    "openai-agents": openai_agents,
    "jsonl": jsonl,
}
# The bad rows each fixture holds, as SOURCE-relative "WHERE: reason" starts.
BAD = {
    "zeroclaw": ["sessions id 6: created_at is not an RFC 3339 time"],
    "claude-code": ["3f1c0a52-0001.jsonl:13: not JSON"],
    "hermes": ["messages id 5: time must be epoch seconds"],
    "llm": ["responses id 01hr5: datetime_utc is not a time"],
    "openai-agents": ["agent_messages id 6: not a JSON item"],
    "jsonl": [],
}
