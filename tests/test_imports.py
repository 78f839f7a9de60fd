"""`mcp-sessions import` from each runtime's own history, checked through the real server over stdio: sessions,
order, roles, contents, times to the microsecond, names and context; re-import adds nothing, a grown source adds
only what is new, bad rows are reported, sources stay byte for byte as they were; `export --to zeroclaw`."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters
from runtime_fixtures import BAD, BUILDERS, Expected
from tool_calls import call

from mcp_sessions.cli import main
from mcp_sessions.importers import detect
from mcp_sessions.store.duckdb import DuckDBSessionBackend

START = 30  # seconds: a cold interpreter and the MCP SDK import


def command(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mcp_sessions", *args], capture_output=True, text=True, timeout=300, check=False
    )


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under folder (a database's -wal and -shm included) by its SHA-256."""
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def grow(name: str, source: Path, expected: Expected) -> None:
    """Add to the source what its runtime would write next, and to expected what importing it must add."""
    if name == "zeroclaw":
        return  # grown while held open by a writer: see the fixture
    if name == "claude-code":
        line = (
            '{"type": "user", "uuid": "u9", "sessionId": "3f1c0a52-0001", "timestamp": "2026-02-04T10:00:00.5Z",'
            ' "cwd": "/home/ann/shop", "message": {"role": "user", "content": "Thanks!"}}\n'
        )
        with (source / "-home-ann-shop" / "3f1c0a52-0001.jsonl").open("a") as file:
            file.write(line)
        expected[0][2].append(("user", "Thanks!", "2026-02-04T10:00:00.500000+00:00"))
        return
    if name == "jsonl":
        path = source / "notes.jsonl"
        with path.open("a") as file:
            file.write('{"role": "user", "content": "and eggs"}\n')
        os.utime(path, (1_700_000_100, 1_700_000_100))
        expected[0][2].append(("user", "and eggs", "2023-11-14T22:15:00+00:00"))
        return
    conn = sqlite3.connect(source)
    if name == "hermes":
        conn.execute(
            "INSERT INTO messages (session_id, role, content, timestamp) VALUES ('cli_1', 'user', 'bye', 1767700100)"
        )
        expected[1][2].append(("user", "bye", "2026-01-06T11:48:20+00:00"))
    elif name == "llm":
        conn.execute(
            "INSERT INTO responses (id, prompt, response, conversation_id, datetime_utc)"
            " VALUES ('01hr6', 'One more', 'Chai', '01hconv', '2025-03-01T00:00:00.000001+00:00')"
        )
        at = "2025-03-01T00:00:00.000001+00:00"
        expected[0][2].extend([("user", "One more", at), ("assistant", "Chai", at)])
    elif name == "openai-agents":
        conn.execute(
            "INSERT INTO agent_messages (session_id, message_data, created_at)"
            """ VALUES ('conversation_123', '{"role": "user", "content": "Thanks"}', '2025-06-01 12:00:09')"""
        )
        expected[0][2].append(("user", "Thanks", "2025-06-01T12:00:09+00:00"))
    conn.commit()
    conn.close()


@pytest.fixture(scope="module", params=["duckdb", "postgres"])
def imported(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> dict[str, Any]:
    """Every runtime's history imported (format detected), imported again, grown, imported once more, into an
    embedded file and into a PostgreSQL database."""
    root = tmp_path_factory.mktemp("runtimes")
    db = str(root / "sessions.duckdb")
    if request.param == "postgres":
        db = request.getfixturevalue("pg_cluster").new_database()
    runs: dict[str, list[subprocess.CompletedProcess[str]]] = {}
    sources: dict[str, Path] = {}
    expected: dict[str, Expected] = {}
    unchanged: dict[str, bool] = {}
    writer: sqlite3.Connection | None = None
    for name, build in BUILDERS.items():
        folder = root / name
        folder.mkdir()
        sources[name], expected[name] = build(folder)
        before = snapshot(folder)
        runs[name] = [
            command("import", "--db", db, str(sources[name])),
            command("import", "--db", db, str(sources[name])),
        ]
        unchanged[name] = snapshot(folder) == before
        if name == "zeroclaw":
            # ZeroClaw is running: it holds the file and has committed rows only in its WAL.
            writer = sqlite3.connect(sources[name])
            writer.execute("PRAGMA wal_autocheckpoint = 0")
            writer.execute(
                "INSERT INTO sessions (session_key, role, content, created_at)"
                " VALUES ('tg:42', 'user', 'ship it', '2026-03-02T08:00:00.000000001Z')"
            )
            writer.commit()
            expected[name][0][2].append(("user", "ship it", "2026-03-02T08:00:00+00:00"))
        grow(name, sources[name], expected[name])
        grown = snapshot(folder)
        runs[name] += [
            command("import", "--db", db, str(sources[name])),
            command("import", "--db", db, str(sources[name])),
        ]
        unchanged[name] = unchanged[name] and snapshot(folder) == grown
    assert writer is not None
    writer.close()
    return {"db": db, "runs": runs, "sources": sources, "expected": expected, "unchanged": unchanged}


@pytest.fixture(scope="module")
async def client(imported: dict[str, Any]) -> AsyncIterator[Client]:
    params = StdioServerParameters(command=sys.executable, args=["-m", "mcp_sessions", "--db", imported["db"]])
    async with Client(params, read_timeout_seconds=START) as connected:
        yield connected


@pytest.mark.parametrize("name", BUILDERS)
def test_each_source_is_detected_by_what_it_holds(imported: dict[str, Any], name: str) -> None:
    found = detect(imported["sources"][name])
    assert found is not None and found.name == name


@pytest.mark.parametrize("name", BUILDERS)
def test_bad_rows_are_reported_by_source_and_place_and_fail_the_import(imported: dict[str, Any], name: str) -> None:
    first = imported["runs"][name][0]
    for bad in BAD[name]:
        assert f":{bad}" in first.stderr or bad in first.stderr, first.stderr
    source = str(imported["sources"][name])
    for line in first.stderr.splitlines()[:-1]:
        assert line.startswith(source), line  # SOURCE:WHERE: reason
    assert first.returncode == (1 if BAD[name] else 0), first.stderr


@pytest.mark.parametrize("name", BUILDERS)
def test_importing_again_adds_nothing_and_a_grown_source_adds_only_its_new_messages(
    imported: dict[str, Any], name: str
) -> None:
    first, again, grown, last = imported["runs"][name]
    total = sum(len(messages) for _, _, messages in imported["expected"][name])
    new = {"llm": 2, "zeroclaw": 1}.get(name, 1)
    assert "imported 0 messages" in again.stderr, again.stderr
    assert f"imported {new:,} message{'s' if new > 1 else ''}" in grown.stderr, grown.stderr
    assert f"imported {total - new:,} message" in first.stderr, first.stderr
    assert "imported 0 messages" in last.stderr, last.stderr


@pytest.mark.parametrize("name", BUILDERS)
def test_sources_are_byte_for_byte_as_they_were(imported: dict[str, Any], name: str) -> None:
    assert imported["unchanged"][name]


def _time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


@pytest.mark.anyio
@pytest.mark.parametrize("name", BUILDERS)
async def test_sessions_keep_order_roles_contents_times_names_and_context(
    client: Client, imported: dict[str, Any], name: str
) -> None:
    for key, fields, messages in imported["expected"][name]:
        loaded = await call(client, "load_with_timestamps", {"session_key": key})
        got = [(m["role"], m["content"], _time(m["created_at"])) for m in loaded["messages"]]
        assert got == [(role, content, _time(at)) for role, content, at in messages], key
        assert [m["index"] for m in loaded["messages"]] == list(range(len(messages)))
        metadata = (await call(client, "get_session_metadata", {"session_key": key}))["metadata"]
        assert metadata["message_count"] == len(messages)
        for field, value in fields.items():
            if field == "created_at":
                assert _time(metadata[field]) == _time(value), (key, field)
            else:
                assert metadata[field] == value, (key, field)
        if "created_at" not in fields:
            assert _time(metadata["created_at"]) == min(_time(at) for _, _, at in messages)
        # The newest message's time, not the import's.
        assert _time(metadata["last_activity"]) == max(_time(at) for _, _, at in messages), key


@pytest.mark.anyio
async def test_imported_state_and_recall_by_date(client: Client, imported: dict[str, Any]) -> None:
    state = (await call(client, "get_session_state", {"session_key": "tg:42"}))["state"]
    assert state["state"] == "idle"
    hits = (
        await call(
            client,
            "search_messages",
            {"query": "changelog", "since": "2026-03-01T00:00:00Z", "until": "2026-03-01T23:59:59Z"},
        )
    )["hits"]
    assert [(h["session_key"], h["index"]) for h in hits] == [("tg:42", 1)]
    assert _time(hits[0]["created_at"]) == _time("2026-03-01T10:00:01.5+00:00")


def test_export_to_zeroclaw_writes_its_schema_and_round_trips(imported: dict[str, Any], tmp_path: Path) -> None:
    target = tmp_path / "data" / "sessions" / "sessions.db"
    done = command("export", "--db", imported["db"], "--to", "zeroclaw", str(target))
    assert done.returncode == 0, done.stderr
    conn = sqlite3.connect(target)
    names = {row[0]: row[1] for row in conn.execute("SELECT name, type FROM sqlite_master")}
    assert {"sessions": "table", "session_metadata": "table", "jsonl_import_receipts": "table"}.items() <= names.items()
    assert (
        names["sessions_fts"] == "table"
        and "fts5" in conn.execute("SELECT sql FROM sqlite_master WHERE name = 'sessions_fts'").fetchone()[0].lower()
    )
    assert {"sessions_ai", "sessions_ad", "sessions_au"} <= {n for n, t in names.items() if t == "trigger"}
    columns = [row[1] for row in conn.execute("PRAGMA table_info(session_metadata)")]
    assert columns == ["session_key", "created_at", "last_activity", "message_count", "name", "state", "turn_id",
                       "turn_started_at", "agent_alias", "channel_id", "room_id", "sender_id"]  # fmt: skip
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT rowid FROM sessions_fts WHERE sessions_fts MATCH 'changelog'").fetchall()
    times = [row[0] for row in conn.execute("SELECT created_at FROM sessions")]
    assert all(t.endswith("+00:00") and datetime.fromisoformat(t).utcoffset() is not None for t in times)
    # ZeroClaw's own writes keep the index: its triggers are live.
    conn.execute("INSERT INTO sessions (session_key, role, content, created_at) VALUES ('x', 'user', 'zebra', 'now')")
    assert conn.execute("SELECT count(*) FROM sessions_fts WHERE sessions_fts MATCH 'zebra'").fetchone()[0] == 1
    conn.rollback()
    conn.close()
    back = str(tmp_path / "back.duckdb")
    done = command("import", "--db", back, "--from", "zeroclaw", str(target))
    assert done.returncode == 0, done.stderr
    assert dump(back) == dump(imported["db"])


def dump(db: str) -> dict[str, Any]:
    """Every session's metadata, state and timed messages, as the commands print them."""
    listed = command("list", "--db", db, "--json", "--limit", "1000")
    assert listed.returncode == 0, listed.stderr
    found: dict[str, Any] = {}
    for line in listed.stdout.splitlines():
        meta = json.loads(line)
        shown = command("show", meta["key"], "--db", db, "--json")
        found[meta["key"]] = (meta, [json.loads(m) for m in shown.stdout.splitlines()])
    return found


@pytest.mark.parametrize(
    ("name", "where"),
    [
        ("zeroclaw", ".zeroclaw/data/sessions/sessions.db"),
        ("hermes", ".hermes/state.db"),
        ("claude-code", ".claude/projects"),
        ("llm", ".config/io.datasette.llm/logs.db"),
    ],
)
def test_with_from_and_no_source_the_runtimes_default_location_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], name: str, where: str
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("LLM_USER_PATH", raising=False)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    db = str(tmp_path / "s.duckdb")
    with pytest.raises(SystemExit) as missing:
        main(["import", "--db", db, "--from", name])
    assert missing.value.code == 1
    assert str(home / where) in capsys.readouterr().err
    location = home / where
    location.parent.mkdir(parents=True)
    built, expected = BUILDERS[name](location.parent)
    if built != location:
        built.rename(location)
    with pytest.raises(SystemExit):
        main(["import", "--db", db, "--from", name])
    with DuckDBSessionBackend(db) as store:
        assert store.load_page(expected[0][0]).total == len(expected[0][2])


def test_llm_user_path_is_where_llm_keeps_logs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LLM_USER_PATH", str(tmp_path / "llm"))
    with pytest.raises(SystemExit):
        main(["import", "--db", str(tmp_path / "s.duckdb"), "--from", "llm"])
    assert str(tmp_path / "llm" / "logs.db") in capsys.readouterr().err


def test_an_unknown_format_or_a_source_of_none_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "s.duckdb")
    with pytest.raises(SystemExit) as refused:
        main(["import", "--db", db, "--from", "msn"])
    assert refused.value.code == 2 and "--from must be one of" in capsys.readouterr().err
    stray = tmp_path / "notes.txt"
    stray.write_text("hello")
    with pytest.raises(SystemExit) as unknown:
        main(["import", "--db", db, str(stray)])
    assert unknown.value.code == 1 and f"{stray}: not a history of" in capsys.readouterr().err
    with pytest.raises(SystemExit) as nothing:
        main(["import", "--db", db, "--from", "openai-agents"])
    assert nothing.value.code == 2 and "no default location" in capsys.readouterr().err


def test_a_deleted_session_comes_back_whole_and_a_rewritten_source_is_imported_again_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, expected = BUILDERS["hermes"](tmp_path)
    db = str(tmp_path / "s.duckdb")
    key, _, messages = expected[0]
    for _ in range(2):
        with pytest.raises(SystemExit):
            main(["import", "--db", db, str(source)])
    with DuckDBSessionBackend(db) as store:
        assert store.load_page(key).total == len(messages)
        assert store.delete_session(key)
    with pytest.raises(SystemExit):
        main(["import", "--db", db, str(source)])
    with DuckDBSessionBackend(db) as store:
        assert [m.content for m in store.load(key)] == [content for _, content, _ in messages]
    capsys.readouterr()
    conn = sqlite3.connect(source)
    conn.execute("UPDATE messages SET content = 'Every other day' WHERE id = 1")
    conn.commit()
    conn.close()
    with pytest.raises(SystemExit):
        main(["import", "--db", db, str(source)])
    assert f"session {key!r} is not a continuation" in capsys.readouterr().err
    with DuckDBSessionBackend(db) as store:
        contents = [m.content for m in store.load(key)]
    assert len(contents) == 2 * len(messages) and contents[len(messages)] == "Every other day"
