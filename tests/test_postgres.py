"""The PostgreSQL store against a real cluster: the same order as the embedded store, migrations run once,
and many writers at once (threads with their own pools here; server processes in test_postgres_servers)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
from datetime import datetime
from pathlib import Path

import psycopg
import pytest
from pg_cluster import Cluster

from mcp_sessions.models import ChatMessage, MessageFilters, SessionQuery
from mcp_sessions.paths import db_path
from mcp_sessions.postgres import writes
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
        assert bound_violations(pg_uri) == NO_VIOLATIONS
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
        assert bound_violations(pg_uri) == NO_VIOLATIONS  # and the sessions' bounds
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


def bound_violations(uri: str) -> dict[str, int]:
    """What would make a session search wrong (see m003), counted: a posting without its bound, a posting above
    its bound, a witnessed bound no live message meets, a bound of a session that is gone."""
    with psycopg.connect(uri) as conn:
        row = conn.execute(
            """SELECT
            (SELECT count(*) FROM postings AS p LEFT JOIN session_terms AS st USING (term, session_id)
             WHERE st.term IS NULL),
            (SELECT count(*) FROM postings AS p JOIN session_terms AS st USING (term, session_id)
             WHERE p.tf > st.max_tf OR p.dl < st.min_dl),
            (SELECT count(*) FROM session_terms AS st WHERE st.witnessed AND NOT EXISTS (
                SELECT 1 FROM postings AS p WHERE p.term = st.term AND p.session_id = st.session_id
                AND p.tf = st.max_tf AND p.dl = st.min_dl)),
            (SELECT count(*) FROM session_terms WHERE session_id NOT IN (SELECT id FROM sessions))"""
        ).fetchone()
    assert row is not None
    return dict(zip(("unbounded", "above", "unmet", "orphaned"), row, strict=True))


NO_VIOLATIONS = {"unbounded": 0, "above": 0, "unmet": 0, "orphaned": 0}


def loose_bounds(uri: str) -> int:
    """How many bounds of sessions of up to TIGHTEN_MAX messages are not exactly what their messages hold (the
    largest tf, the smallest dl, whether one message has both), or are kept for a term none of them holds."""
    with psycopg.connect(uri) as conn:
        row = conn.execute(
            f"""SELECT count(*) FROM (
                SELECT term, session_id, max(tf) AS max_tf, min(dl) AS min_dl,
                    max((tf::bigint << 32) - dl) = (max(tf)::bigint << 32) - min(dl) AS witnessed
                FROM postings GROUP BY term, session_id) AS truth
            FULL JOIN session_terms AS st ON st.term = truth.term AND st.session_id = truth.session_id
            JOIN sessions AS s ON s.id = coalesce(truth.session_id, st.session_id)
            WHERE s.message_count <= {writes.TIGHTEN_MAX} AND (truth.term IS NULL OR st.term IS NULL
                OR (truth.max_tf, truth.min_dl, truth.witnessed)
                    IS DISTINCT FROM (st.max_tf, st.min_dl, st.witnessed))"""
        ).fetchone()
    assert row is not None
    return int(row[0])


def best_sessions(store: PostgresSessionBackend, word: str, limit: int) -> list[str]:
    """The session search worked out from every matching message: each session's best score, then its last
    activity (the contract's order), from search_messages over all of them."""
    hits = store.search_messages(word, 200)
    assert len(hits) < 200, "the oracle needs every hit"
    best: dict[str, float] = {}
    for hit in hits:
        best[hit.session_key] = max(hit.score, best.get(hit.session_key, hit.score))
    activity: dict[str, datetime] = {}
    for key in best:
        meta = store.get_session_metadata(key)
        assert meta is not None and meta.last_activity is not None
        activity[key] = meta.last_activity
    return sorted(best, key=lambda key: (best[key], activity[key]), reverse=True)[:limit]


def searched(store: PostgresSessionBackend, word: str, limit: int) -> list[str]:
    return [m.key for m in store.search(SessionQuery(keyword=word, limit=limit))]


def test_session_search_scores_a_session_whose_bound_no_message_meets(pg_uri: str) -> None:
    filler = " ".join(f"w{i}" for i in range(40))
    with PostgresSessionBackend(pg_uri) as store:
        # a: its largest tf and its shortest message are different messages, so its bound is above its best.
        store.append("a", msg(f"pipeline pipeline pipeline {filler}"))
        store.append("a", msg(f"pipeline {filler}"))
        store.append("a", msg("pipeline w1"))
        store.append("a", msg(filler))
        # b: one message meets its bound; c: many messages, none of them as short as a's.
        store.append("b", msg("pipeline pipeline w2 w3"))
        for i in range(12):
            store.append("c", msg(f"pipeline w{i} w{i + 1} w{i + 2} w{i + 3} w{i + 4}"))
        with psycopg.connect(pg_uri) as conn:
            witnessed = conn.execute(
                "SELECT s.key, st.witnessed FROM session_terms AS st JOIN sessions AS s ON s.id = st.session_id"
                " WHERE st.term = (SELECT term FROM postings GROUP BY term ORDER BY count(*) DESC LIMIT 1)"
                " ORDER BY s.key"
            ).fetchall()
        assert ("a", False) in witnessed and ("b", True) in witnessed
        for limit in (1, 2, 3):
            assert searched(store, "pipeline", limit) == best_sessions(store, "pipeline", limit)
        assert bound_violations(pg_uri) == NO_VIOLATIONS


def test_session_search_follows_removing_and_replacing_a_sessions_best_message(pg_uri: str) -> None:
    with PostgresSessionBackend(pg_uri) as store:
        for key in ("a", "b", "c"):
            for i in range(5):
                store.append(key, msg(f"pipeline {key} w{i} w{i + 1} w{i + 2} w{i + 3}"))
        store.append("a", msg("pipeline"))  # a's best, by far: the shortest message holding the word
        assert searched(store, "pipeline", 1) == ["a"]
        assert store.remove_last("a")  # its bound is worked out again from the messages left
        assert loose_bounds(pg_uri) == 0
        assert searched(store, "pipeline", 3) == best_sessions(store, "pipeline", 3)
        assert store.update_last("b", msg("pipeline pipeline"))  # b's best replaced by a better one
        assert searched(store, "pipeline", 1) == ["b"]
        assert store.update_last("b", msg("nothing to find"))  # and by none
        assert searched(store, "pipeline", 3) == best_sessions(store, "pipeline", 3)
        store.append("c", msg("pipeline w1"))
        store.append("c", msg("pipeline w1"))
        assert store.compact("c") == 1
        assert searched(store, "pipeline", 3) == best_sessions(store, "pipeline", 3)
        assert bound_violations(pg_uri) == NO_VIOLATIONS
        assert store.clear_messages("c") == 6
        assert store.delete_session("a")
        assert searched(store, "pipeline", 3) == best_sessions(store, "pipeline", 3) == ["b"]
        assert loose_bounds(pg_uri) == 0
        with psycopg.connect(pg_uri) as conn:
            left = conn.execute(
                "SELECT DISTINCT s.key FROM session_terms AS st JOIN sessions AS s ON s.id = st.session_id"
            ).fetchall()
        assert left == [("b",)]  # the cleared and the deleted session's bounds went with their messages
        assert bound_violations(pg_uri) == NO_VIOLATIONS


def test_session_search_stays_exact_through_concurrent_changes(pg_uri: str) -> None:
    stores = [PostgresSessionBackend(pg_uri, pool_max=2) for _ in range(4)]
    start = threading.Barrier(4)

    def change(n: int) -> None:
        rng = random.Random(n)
        start.wait()
        for _ in range(30):
            key = f"s{rng.randrange(5)}"  # every writer on every session
            words = " ".join(rng.choices(["pipeline", "alpha", "beta"], k=rng.randint(1, 8)))
            roll = rng.random()
            if roll < 0.6:
                stores[n].append(key, msg(words))
            elif roll < 0.75:
                stores[n].append_many([(f"s{rng.randrange(5)}", msg(words)) for _ in range(3)])
            elif roll < 0.9:
                stores[n].update_last(key, msg(words))
            else:
                stores[n].remove_last(key)

    threads = [threading.Thread(target=change, args=(n,)) for n in range(4)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert bound_violations(pg_uri) == NO_VIOLATIONS and loose_bounds(pg_uri) == 0
        for limit in (1, 2, 5):
            assert searched(stores[0], "pipeline", limit) == best_sessions(stores[0], "pipeline", limit)
    finally:
        for store in stores:
            store.close()


@pytest.mark.parametrize("tighten_max", [writes.TIGHTEN_MAX, 3])
def test_session_search_stays_exact_through_random_changes(
    pg_uri: str, tighten_max: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writes, "TIGHTEN_MAX", tighten_max)  # 3: most sessions keep the bounds removals loosen
    rng = random.Random(5)
    words = ["pipeline", "alpha", "beta", "gamma"]
    keys = [f"s{i}" for i in range(8)]

    def text() -> str:
        return " ".join(rng.choices(words, [1, 3, 3, 1], k=rng.randint(1, 12)))

    with PostgresSessionBackend(pg_uri) as store:
        for step in range(240):
            key, roll = rng.choice(keys), rng.random()
            if roll < 0.55:
                store.append(key, msg(text()))
            elif roll < 0.65:
                store.append_many([(rng.choice(keys), msg(text())) for _ in range(rng.randint(1, 6))])
            elif roll < 0.78:
                store.update_last(key, msg(text()))
            elif roll < 0.9:
                store.remove_last(key)
            elif roll < 0.95:
                store.append(key, msg("pipeline alpha"))
                store.append(key, msg("pipeline alpha"))
                store.compact(key)
            elif roll < 0.98:
                store.clear_messages(key)
            else:
                store.delete_session(key)
            if step % 30 == 29:
                for word in ("pipeline", "gamma"):
                    for limit in (1, 3, 8):
                        assert searched(store, word, limit) == best_sessions(store, word, limit), (step, word)
                assert bound_violations(pg_uri) == NO_VIOLATIONS, step
                assert loose_bounds(pg_uri) == 0, step


def test_m003_bounds_the_sessions_of_a_database_written_before_it(pg_cluster: Cluster) -> None:
    from mcp_sessions.postgres.pool import connect
    from mcp_sessions.postgres.schema import migrate
    from mcp_sessions.postgres.writes import index_text
    from mcp_sessions.terms import Analyzer

    uri = pg_cluster.new_database(migrated=False)
    rows = corpus(300)
    try:
        with connect(uri) as conn:
            migrate(conn, stop_before="m003_session_terms")
            # Written as the store wrote them before m003: messages, their postings, the corpus statistics.
            for key, message in rows:
                ix = index_text(Analyzer.shared(), message.content)
                conn.execute(
                    """WITH s AS (INSERT INTO sessions AS s (key, created_at, last_activity, message_count)
                        VALUES (%s, clock_timestamp(), clock_timestamp(), 1) ON CONFLICT (key) DO UPDATE
                        SET message_count = s.message_count + 1, last_activity = EXCLUDED.last_activity
                        RETURNING id, message_count, last_activity),
                    m AS (INSERT INTO messages (session_id, idx, role, content, created_at, dl, terms, tfs)
                        SELECT id, message_count - 1, %s, %s, last_activity, %s, %s::bigint[], %s::integer[] FROM s
                        RETURNING id, session_id, dl, terms, tfs),
                    p AS (INSERT INTO postings SELECT x.term, x.tf, m.dl, m.id, m.session_id
                        FROM m, unnest(m.terms, m.tfs) AS x(term, tf))
                    UPDATE _corpus SET docs = docs + 1, terms = terms + %s WHERE shard = 0""",
                    [key, message.role, message.content, ix.dl, ix.terms, ix.tfs, ix.dl],
                )
        with PostgresSessionBackend(uri) as store:
            assert bound_violations(uri) == NO_VIOLATIONS
            with psycopg.connect(uri) as conn:
                met = conn.execute("SELECT bool_and(witnessed), bool_or(witnessed) FROM session_terms").fetchone()
            assert met == (False, True)  # some sessions' bounds are met by a message, some not
            for word in (COMMON_WORD, "w3", "w40"):
                assert searched(store, word, 5) == best_sessions(store, word, 5)
    finally:
        pg_cluster.drop(uri)


def test_a_search_for_several_words_ranks_as_the_embedded_store_whether_or_not_pairs_settle_it(pg_uri: str) -> None:
    rows = corpus(1_200, seed=29)
    with DuckDBSessionBackend(":memory:") as duck, PostgresSessionBackend(pg_uri) as pg:
        for store in (duck, pg):
            for n, (key, message) in enumerate(rows):
                store.append(key, message)
                if n % 7 == 0:
                    store.set_session_agent_alias(key, "bot")
        # Few sessions hold two of these words in one message (the search falls back to every posting) or many.
        for query in (f"{RARE_WORD} w0", f"{COMMON_WORD} w1", "database timeout retry w2", "w250 w260 w270"):
            for limit in (1, 5, 40, 200):
                for agent in (None, "bot"):
                    want = [m.key for m in duck.search(SessionQuery(keyword=query, limit=limit), agent)]
                    assert [m.key for m in pg.search(SessionQuery(keyword=query, limit=limit), agent)] == want, (
                        query,
                        limit,
                        agent,
                    )
