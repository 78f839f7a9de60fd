"""The human commands on a real store: list, show, search, stats, import (bad lines, re-import, resume) and export."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from mcp_sessions.cli import main
from mcp_sessions.export_files import export_file_name
from mcp_sessions.importers.run import IMPORT_BATCH
from mcp_sessions.models import ChatMessage, MessageFilters, SessionContext
from mcp_sessions.store.bulk import BulkImport
from mcp_sessions.store.duckdb import DuckDBSessionBackend


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """mcp-sessions ARGS in-process: (exit status, stdout, stderr)."""
    with pytest.raises(SystemExit) as exited:
        main(list(args))
    out, err = capsys.readouterr()
    code = exited.value.code
    return (code if isinstance(code, int) else 1), out, err


def write_jsonl(path: Path, *lines: dict[str, str] | str) -> Path:
    text = "".join((line if isinstance(line, str) else json.dumps(line, ensure_ascii=False)) + "\n" for line in lines)
    path.write_text(text, encoding="utf-8")
    return path


def msg(content: str, role: str = "user") -> dict[str, str]:
    return {"role": role, "content": content}


@pytest.fixture
def store_db(db_path: str) -> str:
    """A store with two sessions: a named one about caching, and one of another agent."""
    with DuckDBSessionBackend(db_path) as store:
        store.append_many(
            [
                ("design", ChatMessage(role="user", content="Should we cache the DuckDB connection?")),
                ("design", ChatMessage(role="assistant", content="Yes: one connection and a cursor per thread.")),
                ("design", ChatMessage(role="user", content="Decided: cursor per thread.")),
                ("chat", ChatMessage(role="user", content="hello there")),
            ]
        )
        store.set_session_name("design", "Connection design")
        store.set_session_agent_alias("chat", "bot")
    return db_path


def test_list_shows_sessions_most_recent_first_as_a_table(capsys: pytest.CaptureFixture[str], store_db: str) -> None:
    code, out, _ = run(capsys, "list", "--db", store_db)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["key", "name", "messages", "last", "activity", "(UTC)", "agent"]
    assert set(lines[1]) <= {"-", " "}
    assert "Connection design" in out and "bot" in out
    assert [line.split()[0] for line in lines[2:]] == ["chat", "design"]


def test_list_json_and_agent_filter(capsys: pytest.CaptureFixture[str], store_db: str) -> None:
    code, out, _ = run(capsys, "list", "--db", store_db, "--json", "--agent-alias", "bot")
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(r["key"], r["message_count"], r["agent_alias"]) for r in rows] == [("chat", 1, "bot")]


def test_show_prints_the_transcript_with_roles_and_times(capsys: pytest.CaptureFixture[str], store_db: str) -> None:
    code, out, _ = run(capsys, "show", "design", "--db", store_db)
    assert code == 0
    assert out.startswith("# Connection design (`design`)\n")
    assert "3 messages" in out
    assert "## 1. user · 20" in out and "## 2. assistant · 20" in out
    assert "Yes: one connection and a cursor per thread." in out


def test_show_tail_prints_only_the_last_messages(capsys: pytest.CaptureFixture[str], store_db: str) -> None:
    code, out, _ = run(capsys, "show", "design", "--tail", "1", "--db", store_db)
    assert code == 0
    assert "2 earlier messages not shown" in out
    assert "Decided: cursor per thread." in out and "Should we cache" not in out
    code, out, _ = run(capsys, "show", "design", "--tail", "2", "--json", "--db", store_db)
    assert [json.loads(line)["index"] for line in out.splitlines()] == [1, 2]


def test_show_of_a_missing_session_fails(capsys: pytest.CaptureFixture[str], store_db: str) -> None:
    code, out, err = run(capsys, "show", "nope", "--db", store_db)
    assert code == 1 and out == "" and "no session 'nope'" in err


def test_search_lists_hits_best_first(capsys: pytest.CaptureFixture[str], store_db: str) -> None:
    code, out, _ = run(capsys, "search", "cursor thread", "--db", store_db)
    assert code == 0
    rows = out.splitlines()[2:]
    assert len(rows) == 2 and all(row.startswith("design") for row in rows)
    code, out, _ = run(capsys, "search", "cursor", "--json", "--role", "assistant", "--db", store_db)
    hits = [json.loads(line) for line in out.splitlines()]
    assert [(h["session_key"], h["index"], h["role"]) for h in hits] == [("design", 1, "assistant")]


def test_search_with_a_bad_time_names_the_flag(capsys: pytest.CaptureFixture[str], store_db: str) -> None:
    code, _, err = run(capsys, "search", "cursor", "--since", "yesterday", "--db", store_db)
    assert code == 2 and "--since must be an ISO 8601 time" in err


def test_stats_counts_sessions_messages_and_agents(capsys: pytest.CaptureFixture[str], store_db: str) -> None:
    code, out, _ = run(capsys, "stats", "--json", "--db", store_db)
    assert code == 0
    stats = json.loads(out)
    assert (stats["sessions"], stats["messages"], stats["agents"]) == (2, 4, 1)
    assert stats["file_bytes"] > 0
    code, out, _ = run(capsys, "stats", "--db", store_db)
    assert "messages" in out and "4" in out


def test_reading_commands_on_a_missing_store_say_so(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = str(tmp_path / "none.duckdb")
    code, _, err = run(capsys, "list", "--db", missing)
    assert code == 1 and f"no store at {missing}" in err
    assert not Path(missing).exists()


def test_reading_commands_use_the_environment_database(
    capsys: pytest.CaptureFixture[str], store_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MCP_SESSIONS_DB", store_db)
    code, out, _ = run(capsys, "list")
    assert code == 0 and "design" in out


def test_import_reports_bad_lines_by_file_and_line_and_imports_the_rest(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, db_path: str
) -> None:
    source = write_jsonl(
        tmp_path / "alpha.jsonl",
        msg("first"),
        "not json",
        '{"role": "user"}',
        "",
        '["role", "content"]',
        {"role": "", "content": "empty role"},
        {"role": "assistant", "content": "second", "extra": "kept out"},
    )
    code, _, err = run(capsys, "import", "--db", db_path, str(source))
    assert code == 1
    assert f"{source}:2: not JSON" in err
    assert f'{source}:3: needs "role" and "content" strings' in err
    assert f"{source}:5: not a JSON object" in err
    assert f"{source}:6: role must not be empty" in err
    assert ":4:" not in err  # a blank line is not a message, and not an error
    assert "skipped 4 bad lines" in err
    with DuckDBSessionBackend(db_path) as store:
        assert store.load("alpha") == [
            ChatMessage(role="user", content="first"),
            ChatMessage(role="assistant", content="second"),
        ]


def test_import_of_good_files_exits_zero_and_keys_sessions_by_file_stem(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, db_path: str
) -> None:
    folder = tmp_path / "sessions"
    folder.mkdir()
    write_jsonl(folder / "a.jsonl", msg("one"), msg("two", "assistant"))
    write_jsonl(folder / "b.c.jsonl", msg("three"))
    write_jsonl(folder / "café ☕.jsonl", msg("four"))
    (folder / "notes.txt").write_text("not imported")
    code, _, err = run(capsys, "import", "--db", db_path, str(folder))
    assert code == 0, err
    assert "imported 4 messages from 3 files" in err
    with DuckDBSessionBackend(db_path) as store:
        assert sorted(store.list_sessions()) == ["a", "b.c", "café ☕"]
        assert [m.content for m in store.load("a")] == ["one", "two"]


def test_importing_the_same_file_again_adds_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, db_path: str
) -> None:
    source = write_jsonl(tmp_path / "k.jsonl", msg("one"), "bad", msg("two"))
    assert run(capsys, "import", "--db", db_path, str(source))[0] == 1
    code, _, err = run(capsys, "import", "--db", db_path, str(source), str(tmp_path))
    assert code == 0, err
    assert "imported 0 messages" in err and "already imported" in err
    with DuckDBSessionBackend(db_path) as store:
        assert [m.content for m in store.load("k")] == ["one", "two"]


def test_reimporting_a_grown_file_adds_only_its_new_lines(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, db_path: str
) -> None:
    source = write_jsonl(tmp_path / "k.jsonl", msg("one"), msg("two"))
    run(capsys, "import", "--db", db_path, str(source))
    with source.open("a", encoding="utf-8") as file:
        file.write(json.dumps(msg("three")) + "\nbad line\n")
    code, _, err = run(capsys, "import", "--db", db_path, str(source))
    assert code == 1 and f"{source}:4: not JSON" in err  # line numbers count the whole file
    assert "imported 1 message from 1 file" in err
    with DuckDBSessionBackend(db_path) as store:
        assert [m.content for m in store.load("k")] == ["one", "two", "three"]


def test_a_rewritten_file_is_imported_whole_with_a_warning(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, db_path: str
) -> None:
    source = write_jsonl(tmp_path / "k.jsonl", msg("one"))
    run(capsys, "import", "--db", db_path, str(source))
    write_jsonl(source, msg("other"))
    code, _, err = run(capsys, "import", "--db", db_path, str(source))
    assert code == 0 and "not a continuation" in err
    with DuckDBSessionBackend(db_path) as store:
        assert [m.content for m in store.load("k")] == ["one", "other"]


def test_a_deleted_session_can_be_imported_again(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, db_path: str
) -> None:
    source = write_jsonl(tmp_path / "k.jsonl", msg("one"))
    run(capsys, "import", "--db", db_path, str(source))
    with DuckDBSessionBackend(db_path) as store:
        store.delete_session("k")
    run(capsys, "import", "--db", db_path, str(source))
    with DuckDBSessionBackend(db_path) as store:
        assert [m.content for m in store.load("k")] == ["one"]


def test_an_interrupted_import_keeps_the_files_it_committed_and_resumes_after_them(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, db_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A transaction ends after the file that fills a batch: the first file is one, the second another.
    folder = tmp_path / "runtime"
    folder.mkdir()
    write_jsonl(folder / "a.jsonl", *(msg(f"message {i}") for i in range(IMPORT_BATCH)))
    write_jsonl(folder / "b.jsonl", *(msg(f"later {i}") for i in range(10)))
    calls = 0
    original = BulkImport.finish

    def fail_second_transaction(self: BulkImport) -> int:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise KeyboardInterrupt  # the user gave up half-way
        return original(self)

    monkeypatch.setattr(BulkImport, "finish", fail_second_transaction)
    with pytest.raises(KeyboardInterrupt):
        main(["import", "--db", db_path, str(folder)])
    monkeypatch.setattr(BulkImport, "finish", original)
    with DuckDBSessionBackend(db_path) as store:
        assert store.load_page("a").total == IMPORT_BATCH
        assert store.get_session_metadata("b") is None
    code, _, err = run(capsys, "import", "--db", db_path, str(folder))
    assert code == 0 and "imported 10 messages" in err and "1 file already imported" in err
    with DuckDBSessionBackend(db_path) as store:
        assert [m.content for m in store.load("b")] == [f"later {i}" for i in range(10)]
        assert store.load_page("a").total == IMPORT_BATCH


def test_import_of_a_missing_source_or_a_bad_key_fails(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, db_path: str
) -> None:
    bad_key = write_jsonl(tmp_path / "\x01.jsonl", msg("x"))
    code, _, err = run(capsys, "import", "--db", db_path, str(tmp_path / "nope.jsonl"), str(bad_key))
    assert code == 1
    assert "nope.jsonl: no such file or folder" in err
    assert "not a valid session key" in err


def test_export_writes_each_session_in_the_import_format(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, store_db: str
) -> None:
    out_dir = tmp_path / "out"
    code, _, err = run(capsys, "export", "--db", store_db, str(out_dir))
    assert code == 0, err
    assert sorted(p.name for p in out_dir.iterdir()) == ["chat.jsonl", "design.jsonl"]
    lines = (out_dir / "design.jsonl").read_text(encoding="utf-8").splitlines()
    assert json.loads(lines[1]) == msg("Yes: one connection and a cursor per thread.", "assistant")
    # And back: a fresh store gets the same sessions and messages.
    other = str(tmp_path / "other.duckdb")
    assert run(capsys, "import", "--db", other, str(out_dir))[0] == 0
    with DuckDBSessionBackend(store_db) as a, DuckDBSessionBackend(other) as b:
        for key in ("design", "chat"):
            assert a.load(key) == b.load(key)


def test_export_all_writes_every_message_to_jsonl_and_parquet(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, store_db: str
) -> None:
    jsonl, parquet = tmp_path / "all.jsonl", tmp_path / "all.parquet"
    assert run(capsys, "export", "--db", store_db, "--all", str(jsonl))[0] == 0
    rows = [json.loads(line) for line in jsonl.read_text(encoding="utf-8").splitlines()]
    assert [(r["session_key"], r["index"], r["role"]) for r in rows][:2] == [
        ("design", 0, "user"),
        ("design", 1, "assistant"),
    ]
    assert rows[0]["session_name"] == "Connection design" and rows[0]["created_at"].endswith("Z")
    assert run(capsys, "export", "--db", store_db, "--all", str(parquet))[0] == 0
    count = duckdb.sql(f"SELECT count(*) FROM read_parquet('{parquet}')").fetchone()
    assert count == (4,)
    code, _, err = run(capsys, "export", "--db", store_db, "--all", str(tmp_path / "all.csv"))
    assert code == 2 and ".jsonl or .parquet" in err


@pytest.mark.parametrize(
    ("key", "name"),
    [("plain", "plain.jsonl"), ("a.b", "a.b.jsonl"), (".", "..jsonl"), ("..", "...jsonl"), ("50%", "50%.jsonl")],
)
def test_export_file_names_are_the_key_so_import_gives_it_back(key: str, name: str) -> None:
    assert export_file_name(key) == name
    assert Path(name).stem == key


def test_export_file_names_escape_a_slash() -> None:
    assert export_file_name("a/b") == "a%2Fb.jsonl"
    assert export_file_name("50%/x") == "50%25%2Fx.jsonl"


def test_export_of_a_long_key_fits_a_file_name() -> None:
    name = export_file_name("é" * 512)
    assert len(name.encode("utf-8")) <= 255 and name.endswith(".jsonl")


def test_progress_shows_on_request(capsys: pytest.CaptureFixture[str], tmp_path: Path, db_path: str) -> None:
    source = write_jsonl(tmp_path / "k.jsonl", msg("one"))
    code, _, err = run(capsys, "import", "--db", db_path, "--progress", str(source))
    assert code == 0 and "importing 100% [" in err
    code, _, err = run(capsys, "import", "--db", db_path, str(source))
    assert "importing" not in err.replace("imported", "")  # stderr is not a terminal: no bar unless asked


def test_a_store_held_by_a_server_is_refused_with_a_way_out(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, store_db: str
) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, time; c = duckdb.connect({store_db!r}); print('ok', flush=True); time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ok"
        code, _, err = run(capsys, "list", "--db", store_db)
        assert code == 1 and "cannot open the store" in err
    finally:
        holder.kill()
        holder.communicate()


def test_reading_commands_read_through_a_running_server_that_holds_the_store(
    capsys: pytest.CaptureFixture[str], store_db: str
) -> None:
    server = subprocess.Popen(
        [sys.executable, "-m", "mcp_sessions", "--db", store_db], stdin=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 30
        while True:  # until the server holds the file
            try:
                duckdb.connect(store_db, read_only=True).close()
            except duckdb.Error:
                break
            assert time.monotonic() < deadline and server.poll() is None
            time.sleep(0.05)
        code, out, _ = run(capsys, "list", "--db", store_db)
        assert code == 0 and [line.split()[0] for line in out.splitlines()[2:]] == ["chat", "design"]
        code, out, _ = run(capsys, "show", "design", "--tail", "1", "--db", store_db)
        assert code == 0 and "Decided: cursor per thread." in out
        code, out, _ = run(capsys, "search", "cursor", "--json", "--db", store_db)
        assert code == 0 and {json.loads(line)["session_key"] for line in out.splitlines()} == {"design"}
    finally:
        assert server.stdin is not None
        server.stdin.close()
        assert server.wait(timeout=30) == 0


@pytest.mark.slow
def test_import_of_100k_messages_shows_progress_and_is_searchable(tmp_path: Path, db_path: str) -> None:
    folder = tmp_path / "runtime"
    folder.mkdir()
    words = ["pipeline", "cache", "timeout", "retry", "schema", "index", "thread", "cursor", "deploy", "budget"]
    for session in range(100):
        lines = [
            json.dumps(
                msg(
                    f"Turn {turn} of session {session}: about the {words[turn % 10]} we talked over whether the "
                    f"{words[session % 10]} should change, and decided to keep TokenBucket v1.5.{turn % 7} as it is.",
                    "user" if turn % 2 == 0 else "assistant",
                )
            )
            for turn in range(1000)
        ]
        (folder / f"session-{session:03}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    command = [sys.executable, "-m", "mcp_sessions", "import", "--db", db_path, "--progress", str(folder)]
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    seconds = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert "importing 100% [" in done.stderr
    assert "imported 100,000 messages from 100 files" in done.stderr
    print(f"100k-message import: {seconds:.1f} s ({100_000 / seconds:,.0f} messages/s)")
    again = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "imported 0 messages" in again.stderr
    with DuckDBSessionBackend(db_path) as store:
        assert len(store.list_sessions()) == 100
        assert sum(m.message_count for m in store.list_sessions_with_metadata()) == 100_000
        hits = store.search_messages("budget", limit=5, filters=MessageFilters(session_key="session-009"))
        assert hits and all(h.session_key == "session-009" for h in hits)


def test_search_prints_each_hits_neighbours_under_it(capsys: pytest.CaptureFixture[str], store_db: str) -> None:
    code, out, _ = run(capsys, "search", "decided", "--context", "1", "--db", store_db)
    assert code == 0
    rows = out.splitlines()[2:]
    assert rows[0].split()[:2] == ["design", "2"]
    assert rows[1].split()[0] == "1" and "· Yes: one connection" in rows[1]
    assert len(rows) == 2
    code, out, _ = run(capsys, "search", "decided", "-C", "2", "--json", "--db", store_db)
    (hit,) = [json.loads(line) for line in out.splitlines()]
    assert [m["index"] for m in hit["context_before"]] == [0, 1] and hit["context_after"] == []


def test_search_exclude_and_channel_narrow_the_hits(capsys: pytest.CaptureFixture[str], store_db: str) -> None:
    with DuckDBSessionBackend(store_db) as store:
        store.append("ops", ChatMessage(role="user", content="the cursor leaks"))
        store.set_session_context("ops", SessionContext(channel_id="ops"))
    code, out, _ = run(capsys, "search", "cursor", "--json", "--exclude", "design", "--db", store_db)
    assert {json.loads(line)["session_key"] for line in out.splitlines()} == {"ops"}
    code, out, _ = run(capsys, "search", "cursor", "--json", "--channel", "ops", "--db", store_db)
    assert {json.loads(line)["session_key"] for line in out.splitlines()} == {"ops"}
    code, out, _ = run(
        capsys, "search", "cursor", "--json", "--exclude", "ops", "--exclude", "design", "--db", store_db
    )
    assert out == ""


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--context", "21"], "between 0 and 20"),
        (["--exclude", " "], "--exclude must not be empty"),
        (["--channel", "a\x01"], "--channel must not contain control"),
    ],
)
def test_search_with_bad_recall_flags_names_the_flag(
    capsys: pytest.CaptureFixture[str], store_db: str, flags: list[str], words: str
) -> None:
    code, _, err = run(capsys, "search", "cursor", *flags, "--db", store_db)
    assert code == 2 and words in err
