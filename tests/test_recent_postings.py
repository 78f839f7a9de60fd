"""Recent postings held in memory (store/recent.py) give exactly the results of reading them from the rows."""

from __future__ import annotations

import random
from pathlib import Path

from mcp_sessions.models import ChatMessage, MessageFilters, MessageSearch, SessionQuery
from mcp_sessions.store.duckdb import DuckDBSessionBackend, Tuning

WORDS = "alpha beta gamma delta pipeline timeout retry zymurgy quartz ember".split()
QUERIES = ["alpha", "zymurgy", "pipeline timeout", "gamma delta retry", "quartz", "fresh0", "fresh7", "ember beta"]


def _text(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 8))) + f" fresh{n}"


FILTERS = [
    MessageFilters(),
    MessageFilters(session_key="s1"),
    MessageFilters(role="user"),
    MessageFilters(agent_alias="bot"),
    MessageFilters(exclude_session_keys=["s2", "s3"]),
    MessageFilters(session_key="s4", role="assistant"),
]


def _results(backend: DuckDBSessionBackend) -> list[object]:
    out: list[object] = []
    for query in QUERIES:
        for filters in FILTERS:
            page = backend.search_messages_page(MessageSearch(query=query, limit=50, filters=filters))
            out.append([(h.session_key, h.index, round(h.score, 9), h.snippet) for h in page.hits])
        out.append([m.key for m in backend.search(SessionQuery(keyword=query, limit=50))])
        out.append([m.key for m in backend.search(SessionQuery(keyword=query, limit=50), agent_alias="bot")])
    return out


Op = tuple[str, str, str, str]  # what, session key, role, content


def _ops(rng: random.Random, steps: int) -> list[Op]:
    ops: list[Op] = []
    for n in range(steps):
        what = rng.choices(
            ["append", "update_last", "remove_last", "compact", "clear", "delete", "alias"], [12, 3, 2, 1, 1, 1, 1]
        )
        ops.append((what[0], f"s{rng.randrange(6)}", rng.choice(["user", "assistant"]), _text(rng, n)))
    return ops


def _apply(backend: DuckDBSessionBackend, ops: list[Op]) -> None:
    for what, key, role, content in ops:
        if what == "append":
            backend.append(key, ChatMessage(role=role, content=content))
        elif what == "update_last":
            backend.update_last(key, ChatMessage(role=role, content=content))
        elif what == "remove_last":
            backend.remove_last(key)
        elif what == "compact":
            backend.compact(key)
        elif what == "alias":
            backend.set_session_agent_alias(key, "bot")
        elif what == "clear":
            backend.clear_messages(key)
        else:
            backend.delete_session(key)


def _pair(tmp_path: Path, **tuning: int | bool) -> tuple[DuckDBSessionBackend, DuckDBSessionBackend]:
    held = DuckDBSessionBackend(tmp_path / "held.duckdb", tuning=Tuning(**tuning))  # type: ignore[arg-type]
    rows = DuckDBSessionBackend(
        tmp_path / "rows.duckdb",
        tuning=Tuning(recent_in_memory_max=0, **tuning),  # type: ignore[arg-type]
    )
    return held, rows


def test_searches_answer_alike_with_recent_postings_in_memory_or_in_the_rows(tmp_path: Path) -> None:
    held, rows = _pair(tmp_path, merge_messages=1_000_000)
    try:
        rng = random.Random(11)
        for _ in range(6):
            ops = _ops(rng, 40)
            _apply(held, ops)
            _apply(rows, ops)
            assert held._index.recent is not None and held._index.recent.docs, "held should keep them in memory"
            assert rows._index.recent is None
            assert _results(held) == _results(rows)
    finally:
        held.close()
        rows.close()


def test_recent_postings_survive_merges_and_reopening(tmp_path: Path) -> None:
    path = tmp_path / "reopen.duckdb"
    tuning = Tuning(merge_messages=25, merge_in_background=False)
    rng = random.Random(5)
    with DuckDBSessionBackend(path, tuning=tuning) as backend:
        _apply(backend, _ops(rng, 140))  # several merges, then some messages left recent
        assert backend._index.merged_upto > 0
        before = _results(backend)
    with DuckDBSessionBackend(path, tuning=tuning) as backend:  # recent ones read back from their rows at open
        assert backend._index.recent is not None
        assert _results(backend) == before
    with DuckDBSessionBackend(path, tuning=Tuning(recent_in_memory_max=0)) as backend:
        assert _results(backend) == before


def test_filtered_searches_see_recent_messages_too(tmp_path: Path) -> None:
    with DuckDBSessionBackend(tmp_path / "f.duckdb") as backend:
        backend.append("a", ChatMessage(role="user", content="zymurgy in a"))
        backend.append("b", ChatMessage(role="assistant", content="zymurgy in b"))
        everywhere = backend.search_messages_page(MessageSearch(query="zymurgy"))
        only_b = backend.search_messages_page(MessageSearch(query="zymurgy", filters=MessageFilters(session_key="b")))
        by_role = backend.search_messages_page(MessageSearch(query="zymurgy", filters=MessageFilters(role="user")))
    assert {h.session_key for h in everywhere.hits} == {"a", "b"}
    assert [h.session_key for h in only_b.hits] == ["b"]
    assert [h.session_key for h in by_role.hits] == ["a"]


def test_a_bulk_import_leaves_recent_postings_to_the_rows_until_the_next_merge(tmp_path: Path) -> None:
    tuning = Tuning(recent_in_memory_max=50, merge_messages=1_000_000)
    with DuckDBSessionBackend(tmp_path / "bulk.duckdb", tuning=tuning) as backend:
        backend.append("first", ChatMessage(role="user", content="written before anything else"))
        assert backend._index.recent is not None
        backend.append_many([(f"k{i % 4}", ChatMessage(role="user", content=f"imported word{i}")) for i in range(80)])
        assert backend._index.recent is None  # past its cap: searches read the rows
        found = backend.search_messages_page(MessageSearch(query="word79 imported", limit=100))
        assert len(found.hits) == 80 and found.hits[0].session_key == "k3"
        backend.merge()
        assert backend._index.recent is not None and not backend._index.recent.docs
        backend.append("after", ChatMessage(role="user", content="word79 again"))
        assert backend.search_messages_page(MessageSearch(query="word79", limit=5)).hits[0].session_key == "after"
