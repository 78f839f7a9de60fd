"""Schema migrations: a fresh store, an upgrade from an older file, and a failed migration changing nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from mcp_sessions.errors import StoreReadOnly
from mcp_sessions.models import ChatMessage, SessionQuery
from mcp_sessions.store import migrations
from mcp_sessions.store.duckdb import DuckDBSessionBackend
from mcp_sessions.store.postings import index_messages


def _columns(conn: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    return [row[0] for row in conn.execute(f"DESCRIBE {table}").fetchall()]


def test_fresh_store_records_every_migration_and_has_the_current_columns(tmp_path: Path) -> None:
    path = tmp_path / "fresh.duckdb"
    DuckDBSessionBackend(path).close()
    conn = duckdb.connect(str(path))
    assert migrations.applied(conn) == [m.__name__ for m in migrations.MIGRATIONS]
    assert _columns(conn, "messages") == [
        "id", "session_id", "idx", "pos", "page", "role", "content", "created_at", "dl", "terms"
    ]  # fmt: skip
    assert "message_count" in _columns(conn, "sessions")
    assert _columns(conn, "_postings") == ["term", "message_id", "session_id", "tf", "dl"]
    conn.close()


def test_reopening_applies_nothing(tmp_path: Path) -> None:
    path = tmp_path / "again.duckdb"
    DuckDBSessionBackend(path).close()
    conn = duckdb.connect(str(path))
    assert migrations.migrate(conn) == []
    conn.close()


def test_file_from_before_search_is_indexed_on_upgrade(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    conn = duckdb.connect(str(path))
    migrations.migrate(conn, stop_before="m002_search_postings")
    assert "_postings" not in {row[0] for row in conn.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    # Rows as m001-era code wrote them (ids from the sequences): one session, two messages, one without a time.
    stamp = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    conn.execute(
        "INSERT INTO sessions (id, key, created_at, last_activity, message_count)"
        " VALUES (nextval('session_ids'), 'legacy', ?, ?, 2)",
        [stamp, stamp],
    )
    conn.execute(
        "INSERT INTO messages (id, session_id, idx, pos, page, role, content, created_at) VALUES"
        " (nextval('message_ids'), 1, 0, 4294967296, 67108864, 'user', 'Deploying the café service on Tuesday', ?),"
        " (nextval('message_ids'), 1, 1, 4294967297, 67108864, 'assistant', 'Rollback plan for version 1.5.5', NULL)",
        [stamp],
    )
    conn.close()

    with DuckDBSessionBackend(path) as store:
        page = store.load_page("legacy")
        assert [m.content for m in page.messages] == [
            "Deploying the café service on Tuesday",
            "Rollback plan for version 1.5.5",
        ]
        assert page.messages[0].created_at == stamp
        assert page.messages[1].created_at is None
        assert [(h.session_key, h.index) for h in store.search_messages("deploy cafe")] == [("legacy", 0)]
        assert [(h.session_key, h.index) for h in store.search_messages("1.5.5")] == [("legacy", 1)]
        assert [m.key for m in store.search(SessionQuery(keyword="rollback"))] == ["legacy"]
        # New writes after the upgrade continue the old session where it ended.
        store.append("legacy", ChatMessage(role="user", content="and the new message"))
        assert store.load_page("legacy", offset=-1).messages[0].index == 2
    conn = duckdb.connect(str(path))
    assert conn.execute("SELECT count(*) FROM messages WHERE dl IS NULL").fetchone() == (0,)
    conn.close()


def test_postings_written_before_terms_moved_into_messages_are_kept_on_upgrade(tmp_path: Path) -> None:
    path = tmp_path / "m003.duckdb"
    conn = duckdb.connect(str(path))
    migrations.migrate(conn, stop_before="m004_terms_in_messages")
    # As m002/m003-era code left a store: message 1 merged, message 2 recent, message 3 removed after its
    # postings were merged (masked in _dead_messages), and the sequence past all three.
    stamp = datetime(2025, 1, 2, tzinfo=UTC)
    conn.execute(
        "INSERT INTO sessions (id, key, created_at, last_activity, message_count)"
        " VALUES (nextval('session_ids'), 'old', ?, ?, 2)",
        [stamp, stamp],
    )
    rows = [(1, "user", "merged kiwi"), (2, "assistant", "recent mango"), (3, "user", "removed papaya")]
    for message_id, role, content in rows:
        conn.execute("SELECT nextval('message_ids')")
        if message_id < 3:
            conn.execute(
                "INSERT INTO messages VALUES (?, 1, ?, ?, ?, ?, ?, ?, 2)",
                [message_id, message_id - 1, (1 << 32) + message_id - 1, (1 << 32) // 64, role, content, stamp],
            )
    index_messages(conn, [(1, 1, "merged kiwi"), (3, 1, "removed papaya")], table="_postings")
    index_messages(conn, [(2, 1, "recent mango")], table="_postings_recent")
    conn.execute("INSERT INTO _dead_messages VALUES (3)")
    conn.close()

    with DuckDBSessionBackend(path) as store:
        assert [(h.session_key, h.index) for h in store.search_messages("kiwi")] == [("old", 0)]
        assert [(h.session_key, h.index) for h in store.search_messages("mango")] == [("old", 1)]
        assert store.search_messages("papaya") == []
        # A new message gets an id of its own: not 3, whose merged postings are masked.
        store.append("old", ChatMessage(role="user", content="fresh papaya"))
        assert [(h.session_key, h.index) for h in store.search_messages("papaya")] == [("old", 2)]
        store.optimize()
        assert [(h.session_key, h.index) for h in store.search_messages("papaya mango kiwi")] == [
            ("old", 2),
            ("old", 1),
            ("old", 0),
        ]
    conn = duckdb.connect(str(path))
    assert "_postings_recent" not in {r[0] for r in conn.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    conn.close()


def test_failed_migration_changes_nothing_and_is_not_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "failing.duckdb"
    DuckDBSessionBackend(path).close()

    def m999_broken(conn: duckdb.DuckDBPyConnection) -> None:
        conn.execute("CREATE TABLE half_done (x INTEGER)")
        raise RuntimeError("boom")

    monkeypatch.setattr(migrations, "MIGRATIONS", [*migrations.MIGRATIONS, m999_broken])
    with pytest.raises(RuntimeError, match="boom"):
        DuckDBSessionBackend(path)
    conn = duckdb.connect(str(path))
    assert "m999_broken" not in migrations.applied(conn)
    assert "half_done" not in {row[0] for row in conn.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    conn.close()


def test_read_only_open_of_an_outdated_file_says_to_upgrade_it_first(tmp_path: Path) -> None:
    path = tmp_path / "outdated.duckdb"
    conn = duckdb.connect(str(path))
    migrations.migrate(conn, stop_before="m002_search_postings")
    conn.close()
    with pytest.raises(StoreReadOnly, match="schema upgrade"):
        DuckDBSessionBackend(path, read_only=True)
