"""The PostgreSQL store against a real cluster: the same order as the embedded store, migrations run once,
and many writers at once (threads with their own pools here; server processes in test_postgres_servers)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
from pathlib import Path

import psycopg
import pytest
from pg_cluster import Cluster

from mcp_sessions.models import ChatMessage, MessageFilters, SessionQuery
from mcp_sessions.paths import db_path
from mcp_sessions.postgres.backend import PostgresSessionBackend
from mcp_sessions.postgres.schema import MIGRATIONS
from mcp_sessions.store.duckdb import DuckDBSessionBackend


def msg(content: str, role: str = "user") -> ChatMessage:
    return ChatMessage(role=role, content=content)


COMMON_WORD, RARE_WORD, THREE_WORDS = "pipeline", "zymurgy", "database timeout retry"


def corpus(size: int, seed: int = 13) -> list[tuple[str, ChatMessage]]:
    """Deterministic chat: Zipf-like words (so there are common, rare and tied ones), lengths that differ."""
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(300)] + ["database", "timeout", "retry", "update_last", "1.5.5", "café"]
    weights = [1 / (rank + 1) for rank in range(len(words))]
    rows = []
    for n in range(size):
        text = rng.choices(words, weights, k=rng.randint(1, 30))
        if rng.random() < 0.25:
            text.insert(rng.randrange(len(text) + 1), COMMON_WORD)
        if n % 400 == 7:
            text.append(RARE_WORD)
        rows.append((f"s{rng.randrange(size // 20)}", msg(" ".join(text), rng.choice(["user", "assistant"]))))
    return rows


def test_a_uri_is_taken_as_a_database_and_makes_no_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    uri = "postgresql://me@db.example:5432/sessions?host=/run/postgresql"
    assert db_path(uri) == uri
    monkeypatch.setenv("MCP_SESSIONS_DB", "postgres://me@/sessions")
    assert db_path(None) == "postgres://me@/sessions"
    assert list(tmp_path.iterdir()) == []


def test_both_stores_rank_the_same_data_in_the_same_order(pg_uri: str) -> None:
    rows = corpus(1_500)
    with DuckDBSessionBackend(":memory:") as duck, PostgresSessionBackend(pg_uri) as pg:
        for store in (duck, pg):
            for key, message in rows:
                store.append(key, message)
            # Changes too: the corpus statistics must follow them in both.
            store.update_last(rows[0][0], msg(f"{COMMON_WORD} {COMMON_WORD} rewritten"))
            store.remove_last(rows[-1][0])
        for query in (
            COMMON_WORD,
            RARE_WORD,
            THREE_WORDS,
            f"{COMMON_WORD} {RARE_WORD}",
            "update_last",
            "1.5.5",
            "cafe w0",
        ):
            for limit in (5, 20, 200):
                want = [(h.session_key, h.index, h.score) for h in duck.search_messages(query, limit)]
                got = [(h.session_key, h.index, h.score) for h in pg.search_messages(query, limit)]
                assert [w[:2] for w in want] == [g[:2] for g in got], (query, limit)
                assert [g[2] for g in got] == pytest.approx([w[2] for w in want], rel=1e-12)
            role = MessageFilters(role="assistant")
            want_role = [(h.session_key, h.index) for h in duck.search_messages(query, 50, role)]
            assert [(h.session_key, h.index) for h in pg.search_messages(query, 50, role)] == want_role
            sessions = [m.key for m in duck.search(SessionQuery(keyword=query, limit=30))]
            assert sessions and [m.key for m in pg.search(SessionQuery(keyword=query, limit=30))] == sessions


def test_servers_opening_a_new_database_at_once_migrate_it_once(pg_cluster: Cluster) -> None:
    uri = pg_cluster.new_database(migrated=False)
    errors: list[BaseException] = []
    stores: list[PostgresSessionBackend] = []
    start = threading.Barrier(6)

    def open_store() -> None:
        start.wait()
        try:
            stores.append(PostgresSessionBackend(uri, pool_max=1))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == []
        with psycopg.connect(uri) as conn:
            names = [r[0] for r in conn.execute("SELECT name FROM _migrations ORDER BY name").fetchall()]
        assert names == sorted(m.__name__ for m in MIGRATIONS)
        stores[0].append("k", msg("hello"))
        assert all(store.load("k") == [msg("hello")] for store in stores)
    finally:
        for store in stores:
            store.close()
        pg_cluster.drop(uri)


def test_appends_from_many_stores_at_once_get_distinct_gapless_counts(pg_uri: str) -> None:
    writers, each = 6, 40
    stores = [PostgresSessionBackend(pg_uri, pool_max=2) for _ in range(writers)]
    told: list[list[int]] = [[] for _ in range(writers)]
    start = threading.Barrier(writers)

    def write(n: int) -> None:
        start.wait()
        for i in range(each):
            told[n].append(stores[n].append("shared", msg(f"writer{n} message{i}")))
            # Another session at the same time, through a different statement path (a bulk append).
            stores[n].append_many([(f"own-{n}", msg(f"bulk {i}")), ("shared-bulk", msg(f"w{n} {i}"))])

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        counts = sorted(c for mine in told for c in mine)
        assert counts == list(range(1, writers * each + 1))  # each told its own count, none twice, no gap
        for mine in told:
            assert mine == sorted(mine)  # a writer's appends land in its own order
        page = stores[0].load_page("shared")
        assert [m.index for m in page.messages] == list(range(writers * each)) and page.total == writers * each
        for n in range(writers):
            contents = [m.content for m in page.messages if m.content.startswith(f"writer{n} ")]
            assert contents == [f"writer{n} message{i}" for i in range(each)]
        assert len(stores[1].load("shared-bulk")) == writers * each
        meta = stores[2].get_session_metadata("shared")
        assert meta is not None and meta.message_count == writers * each
        assert len(stores[3].search_messages("message39", 200)) == writers
    finally:
        for store in stores:
            store.close()


def test_update_last_and_remove_last_racing_appends_stay_consistent(pg_uri: str) -> None:
    stores = [PostgresSessionBackend(pg_uri, pool_max=2) for _ in range(4)]
    start = threading.Barrier(4)
    appended = [0]
    removed = [0]
    lock = threading.Lock()

    def appender(store: PostgresSessionBackend) -> None:
        start.wait()
        for i in range(60):
            store.append("race", msg(f"append {i}"))
            with lock:
                appended[0] += 1

    def changer(store: PostgresSessionBackend, remove: bool) -> None:
        start.wait()
        for i in range(60):
            if remove:
                if store.remove_last("race"):
                    with lock:
                        removed[0] += 1
            else:
                store.update_last("race", msg(f"updated {i}", "assistant"))

    threads = [
        threading.Thread(target=appender, args=(stores[0],)),
        threading.Thread(target=appender, args=(stores[1],)),
        threading.Thread(target=changer, args=(stores[2], True)),
        threading.Thread(target=changer, args=(stores[3], False)),
    ]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        page = stores[0].load_page("race")
        assert page.total == appended[0] - removed[0] == len(page.messages)
        assert [m.index for m in page.messages] == list(range(page.total))
        meta = stores[1].get_session_metadata("race")
        assert meta is not None and meta.message_count == page.total
        with psycopg.connect(pg_uri) as conn:
            docs, terms = conn.execute("SELECT sum(docs), sum(terms) FROM _corpus").fetchone() or (0, 0)
            real = conn.execute("SELECT count(*), coalesce(sum(dl), 0) FROM messages").fetchone()
            postings = conn.execute(
                "SELECT (SELECT count(*) FROM postings),"
                " (SELECT coalesce(sum(cardinality(terms)), 0) FROM messages),"
                " (SELECT count(*) FROM postings AS p JOIN messages AS m ON m.id = p.message_id AND m.dl = p.dl)"
            ).fetchone()
        assert (docs, terms) == real  # the corpus statistics followed every change
        assert postings is not None and postings[0] == postings[1] == postings[2]  # and so did the postings
    finally:
        for store in stores:
            store.close()


def test_a_nul_in_role_or_content_is_kept_exactly(pg_uri: str) -> None:
    with PostgresSessionBackend(pg_uri) as store:
        store.append("k", msg("before\x00after", "to\x00ol"))
        store.append("k", msg("before\x00after", "to\x00ol"))
        assert store.load("k") == [msg("before\x00after", "to\x00ol")] * 2
        assert [h.snippet for h in store.search_messages("after")] == ["before\x00after"] * 2
        assert store.compact("k") == 1
        assert store.update_last("k", msg("plain"))
        assert store.load("k") == [msg("plain")]


def test_read_only_store_refuses_writes_and_reads(pg_uri: str) -> None:
    with PostgresSessionBackend(pg_uri) as store:
        store.append("k", msg("hello"))
    with PostgresSessionBackend(pg_uri, read_only=True) as store:
        assert store.load("k") == [msg("hello")]
        from mcp_sessions.errors import StoreReadOnly

        with pytest.raises(StoreReadOnly):
            store.append("k", msg("again"))
        assert store.load("k") == [msg("hello")]


def test_an_unreachable_database_fails_fast_saying_so(tmp_path: Path) -> None:
    from mcp_sessions.errors import StoreUnavailable

    with pytest.raises(StoreUnavailable, match="cannot use the database"):
        PostgresSessionBackend(f"postgresql://nobody@/nothing?host={tmp_path}")


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mcp_sessions", *args], capture_output=True, text=True, timeout=120, env=env
    )


def test_the_human_commands_work_on_a_database(pg_uri: str, tmp_path: Path) -> None:
    source = tmp_path / "in"
    source.mkdir()
    lines = [{"role": "user", "content": "the running fox"}, {"role": "assistant", "content": "a lazy dog"}]
    (source / "chat-1.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    imported = _cli("import", "--db", pg_uri, str(source))
    assert imported.returncode == 0, imported.stderr
    again = _cli("import", "--db", pg_uri, str(source))
    assert again.returncode == 0 and "imported 0 messages" in again.stderr, again.stderr
    # The URI also comes through the environment, and no folder is made for it.
    env = {**os.environ, "MCP_SESSIONS_DB": pg_uri}
    listed = _cli("list", "--json", env=env)
    assert [json.loads(line)["key"] for line in listed.stdout.splitlines()] == ["chat-1"], listed.stderr
    found = _cli("search", "--db", pg_uri, "--json", "run")
    assert [(h["session_key"], h["index"]) for h in map(json.loads, found.stdout.splitlines())] == [("chat-1", 0)]
    shown = _cli("show", "--db", pg_uri, "--json", "chat-1")
    assert [json.loads(line)["content"] for line in shown.stdout.splitlines()] == [m["content"] for m in lines]
    stats = json.loads(_cli("stats", "--db", pg_uri, "--json").stdout)
    assert stats["sessions"] == 1 and stats["messages"] == 2 and stats["file_bytes"] > 0
    everything = tmp_path / "all.jsonl"
    assert _cli("export", "--db", pg_uri, "--all", str(everything)).returncode == 0
    assert [json.loads(line)["content"] for line in everything.read_text().splitlines()] == [
        m["content"] for m in lines
    ]
    # Parquet holds the same rows, with the types the embedded store's export gives them.
    parquet = tmp_path / "all.parquet"
    exported = _cli("export", "--db", pg_uri, "--all", str(parquet))
    assert exported.returncode == 0, exported.stderr
    import duckdb

    table = duckdb.sql(f"SELECT * FROM read_parquet('{parquet}')")
    assert dict(zip(table.columns, map(str, table.types), strict=True)) == {
        "session_key": "VARCHAR",
        "index": "BIGINT",
        "role": "VARCHAR",
        "content": "VARCHAR",
        "created_at": "VARCHAR",
        "session_name": "VARCHAR",
        "agent_alias": "VARCHAR",
    }
    assert [dict(zip(table.columns, row, strict=True)) for row in table.fetchall()] == [
        json.loads(line) for line in everything.read_text().splitlines()
    ]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("all.")) == ["all.jsonl", "all.parquet"]
    out = tmp_path / "out"
    assert _cli("export", "--db", pg_uri, str(out)).returncode == 0
    assert [json.loads(line) for line in (out / "chat-1.jsonl").read_text().splitlines()] == lines
    assert not any(p.name.startswith("postgres") for p in Path.cwd().iterdir())


def test_migrations_are_recorded_and_the_rest_applied_on_open(pg_cluster: Cluster) -> None:
    from mcp_sessions.errors import StoreReadOnly
    from mcp_sessions.postgres.pool import connect
    from mcp_sessions.postgres.schema import migrate

    uri = pg_cluster.new_database(migrated=False)
    try:
        with connect(uri) as conn:
            assert migrate(conn, stop_before="m002_imports") == ["m001_sessions_and_messages"]
            conn.execute("INSERT INTO sessions (key, created_at, last_activity) VALUES ('old', now(), now())")
            assert conn.execute("SELECT to_regclass('_imports')").fetchone() == (None,)
        with pytest.raises(StoreReadOnly, match="needs a schema upgrade"):
            PostgresSessionBackend(uri, read_only=True)
        with PostgresSessionBackend(uri) as store:
            assert store.list_sessions() == ["old"]
            assert store.import_marks() == {}
        with connect(uri) as conn:
            names = [r[0] for r in conn.execute("SELECT name FROM _migrations ORDER BY applied_at").fetchall()]
            assert names == [m.__name__ for m in MIGRATIONS]
            assert migrate(conn) == []
    finally:
        pg_cluster.drop(uri)
