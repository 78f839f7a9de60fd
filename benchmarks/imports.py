"""`mcp-sessions import` of each runtime's history, end to end: messages/s of the command's wall time, its
CPU time and peak memory, at a given size.

    .venv/bin/python -m benchmarks.imports --messages 100000 [--formats jsonl,zeroclaw] [--keep DIR]

Sources are written as the runtimes write them, from the synthetic corpus (about 111 messages a session, and
one session of 20,000); each import runs in a process of its own into a new store."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from mcp_sessions.export_zeroclaw import SCHEMA as ZEROCLAW_SCHEMA

from .corpus import Corpus
from .timing import append_results

BASE = datetime(2025, 1, 1, tzinfo=UTC)
ROOT = Path(__file__).resolve().parent.parent
TITLE = "`mcp-sessions import`, end to end, per format"
Sessions = dict[str, list[tuple[str, str]]]


def _at(n: int) -> datetime:
    return BASE + timedelta(seconds=n, microseconds=n % 1_000_000)


def _sessions(size: int) -> Sessions:
    found: Sessions = defaultdict(list)
    for key, message in Corpus(size).rows():
        found[key].append((message.role, message.content))
    return found


def write_jsonl(folder: Path, sessions: Sessions) -> Path:
    for key, messages in sessions.items():
        with (folder / f"{key}.jsonl").open("w", encoding="utf-8") as file:
            for role, content in messages:
                file.write(json.dumps({"role": role, "content": content}, ensure_ascii=False) + "\n")
    return folder


def write_claude_code(folder: Path, sessions: Sessions) -> Path:
    projects = folder / "projects" / "-home-bench-project"
    projects.mkdir(parents=True)
    n = 0
    for key, messages in sessions.items():
        with (projects / f"{key}.jsonl").open("w", encoding="utf-8") as file:
            for role, content in messages:
                n += 1
                kind = "user" if role == "user" else "assistant"
                body: dict[str, object] = {"role": kind, "content": content}
                if kind == "assistant":
                    body = {"id": f"msg_{n}", "role": kind, "content": [{"type": "text", "text": content}]}
                line = {"type": kind, "uuid": str(uuid.UUID(int=n)), "sessionId": key, "cwd": "/home/bench/project",
                        "timestamp": _at(n).isoformat().replace("+00:00", "Z"), "message": body}  # fmt: skip
                file.write(json.dumps(line, ensure_ascii=False) + "\n")
    return folder / "projects"


def _sqlite(path: Path, script: str, insert: str, rows: object) -> Path:
    conn = sqlite3.connect(path)
    conn.executescript(script)
    conn.executemany(insert, rows)  # type: ignore[arg-type]
    conn.commit()
    conn.close()
    return path


def _flat(sessions: Sessions) -> list[tuple[int, str, str, str]]:
    rows = [(key, role, content) for key, messages in sessions.items() for role, content in messages]
    return [(n, key, role, content) for n, (key, role, content) in enumerate(rows)]


def write_zeroclaw(folder: Path, sessions: Sessions) -> Path:
    rows = ((key, role, content, _at(n).isoformat()) for n, key, role, content in _flat(sessions))
    insert = "INSERT INTO sessions (session_key, role, content, created_at) VALUES (?, ?, ?, ?)"
    path = _sqlite(folder / "sessions.db", ZEROCLAW_SCHEMA, insert, rows)
    conn = sqlite3.connect(path)
    conn.executemany(
        "INSERT INTO session_metadata (session_key, created_at, last_activity, message_count, name)"
        " VALUES (?, ?, ?, ?, ?)",
        [(key, BASE.isoformat(), BASE.isoformat(), len(m), f"session {key}") for key, m in sessions.items()],
    )
    conn.commit()
    conn.close()
    return path


def write_hermes(folder: Path, sessions: Sessions) -> Path:
    script = """
        CREATE TABLE sessions (id TEXT PRIMARY KEY, source TEXT NOT NULL, user_id TEXT, started_at REAL NOT NULL,
            title TEXT, chat_id TEXT);
        CREATE TABLE messages (id INTEGER PRIMARY KEY AUTOINCREMENT, session_id TEXT NOT NULL, role TEXT NOT NULL,
            content TEXT, timestamp REAL NOT NULL, active INTEGER NOT NULL DEFAULT 1);
        CREATE INDEX idx_messages_session ON messages(session_id, timestamp);
    """
    rows = ((key, role, content, _at(n).timestamp()) for n, key, role, content in _flat(sessions))
    insert = "INSERT INTO messages (session_id, role, content, timestamp) VALUES (?, ?, ?, ?)"
    path = _sqlite(folder / "state.db", script, insert, rows)
    conn = sqlite3.connect(path)
    conn.executemany(
        "INSERT INTO sessions (id, source, started_at, title) VALUES (?, 'cli', ?, ?)",
        [(key, BASE.timestamp(), f"session {key}") for key in sessions],
    )
    conn.commit()
    conn.close()
    return path


def write_llm(folder: Path, sessions: Sessions) -> Path:
    script = """
        CREATE TABLE conversations (id TEXT PRIMARY KEY, name TEXT, model TEXT);
        CREATE TABLE responses (id TEXT PRIMARY KEY, model TEXT, prompt TEXT, response TEXT,
            conversation_id TEXT, datetime_utc TEXT);
        CREATE INDEX responses_conversation_id ON responses(conversation_id);
    """
    rows = []
    for key, messages in sessions.items():
        for i in range(0, len(messages) - 1, 2):
            n = len(rows)
            rows.append((f"r{n:09}", messages[i][1], messages[i + 1][1], key, _at(n).isoformat()))
    insert = "INSERT INTO responses (id, prompt, response, conversation_id, datetime_utc) VALUES (?, ?, ?, ?, ?)"
    path = _sqlite(folder / "logs.db", script, insert, rows)
    conn = sqlite3.connect(path)
    conn.executemany("INSERT INTO conversations (id, name) VALUES (?, ?)", [(k, f"session {k}") for k in sessions])
    conn.commit()
    conn.close()
    return path


def write_openai_agents(folder: Path, sessions: Sessions) -> Path:
    script = """
        CREATE TABLE agent_sessions (session_id TEXT PRIMARY KEY, created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
            updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP);
        CREATE TABLE agent_messages (id INTEGER PRIMARY KEY AUTOINCREMENT, session_id TEXT NOT NULL,
            message_data TEXT NOT NULL, created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP);
        CREATE INDEX idx_agent_messages_session_id ON agent_messages (session_id, created_at);
    """
    rows = (
        (key, json.dumps({"role": role, "content": content}), _at(n).strftime("%Y-%m-%d %H:%M:%S"))
        for n, key, role, content in _flat(sessions)
    )
    insert = "INSERT INTO agent_messages (session_id, message_data, created_at) VALUES (?, ?, ?)"
    return _sqlite(folder / "agents.db", script, insert, rows)


WRITERS: dict[str, Callable[[Path, Sessions], Path]] = {
    "jsonl": write_jsonl,
    "claude-code": write_claude_code,
    "zeroclaw": write_zeroclaw,
    "hermes": write_hermes,
    "llm": write_llm,
    "openai-agents": write_openai_agents,
}


def run_import(name: str, source: Path, db: Path) -> tuple[float, float, int, str]:
    """(wall seconds, CPU seconds, peak RSS in KiB, summary line) of one import command."""
    command = [sys.executable, "-m", "mcp_sessions", "import", "--no-progress", "--db", str(db), "--from", name]
    started = time.perf_counter()
    process = subprocess.Popen([*command, str(source)], stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    err = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"import --from {name} failed ({process.returncode}):\n{err}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss, err.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000, help="messages in each source (default 100,000)")
    parser.add_argument("--formats", default=",".join(WRITERS), help="comma-separated formats (default: all)")
    parser.add_argument("--keep", help="write sources and stores here and keep them (default: a temporary folder)")
    parser.add_argument("--out", type=Path, help="append the report here (default: results/imports-<date>.md)")
    parser.add_argument("--no-results", action="store_true", help="print the report only")
    args = parser.parse_args()
    names = [n for n in args.formats.split(",") if n]
    unknown = [n for n in names if n not in WRITERS]
    if unknown:
        parser.error(f"--formats must name some of {', '.join(WRITERS)}; got {', '.join(unknown)}")
    sessions = _sessions(args.messages)
    with tempfile.TemporaryDirectory(prefix="bench-imports-") as scratch:
        root = Path(args.keep or scratch)
        rows = []
        for name in names:
            folder = root / name
            folder.mkdir(parents=True, exist_ok=True)
            source = WRITERS[name](folder, sessions)
            wall, cpu, rss, summary = run_import(name, source, folder / "sessions.duckdb")
            imported = int(summary.split()[1].replace(",", ""))
            rows.append((name, imported, wall, cpu, rss, summary))
            print(f"{name}: {summary}", file=sys.stderr)
    lines = [header(args), "", "| format | messages imported | wall s | messages/s | CPU s | peak RSS MiB |"]
    lines.append("|---|---:|---:|---:|---:|---:|")
    for name, imported, wall, cpu, rss, _ in rows:
        lines.append(f"| {name} | {imported:,} | {wall:.1f} | {imported / wall:,.0f} | {cpu:.1f} | {rss / 1024:,.0f} |")
    lines += ["", *(f"- {name}: `{summary}`" for name, *_, summary in rows)]
    report = "\n".join(lines) + "\n"
    print(report)
    if not args.no_results:
        append_results(report, "imports", TITLE, args.out)


def header(args: argparse.Namespace) -> str:
    import duckdb

    def git(*argv: str) -> str:
        return subprocess.run(["git", *argv], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    dirty = " (mcp_sessions has uncommitted changes)" if git("status", "--porcelain", "mcp_sessions") else ""
    command = ".venv/bin/python -m benchmarks.imports " + " ".join(sys.argv[1:])
    return (
        f"## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: {args.messages:,} messages per source\n\n"
        f"`{command.strip()}` at {git('rev-parse', '--short', 'HEAD')}{dirty}; Python {platform.python_version()},"
        f" DuckDB {duckdb.__version__}, {os.cpu_count()} CPUs (shared with other work; load average"
        f" {os.getloadavg()[0]:.1f} at the end). Each import is `python -m mcp_sessions import --no-progress --db"
        " FILE --from FORMAT SOURCE` into a new store; wall: the command's; CPU: user + system of it and its"
        " children (the analysis process); peak RSS: the largest of them."
    )


if __name__ == "__main__":
    main()
