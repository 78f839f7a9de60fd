"""Group commit: appends that wait for the writer commit together, each told its own count once it is durable."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import duckdb
import pytest

from mcp_sessions.errors import StoreFailure
from mcp_sessions.models import ChatMessage, MessageFilters
from mcp_sessions.store.duckdb import DuckDBSessionBackend
from mcp_sessions.store.writes import Writer


def queue_while_held(backend: DuckDBSessionBackend, sends: list[tuple[str, str]]) -> dict[str, object]:
    """Hold the writer while every send queues, then let go: returns each content's count, or its error."""
    outcomes: dict[str, object] = {}
    lock = backend._conn.write_lock

    def send(key: str, content: str) -> None:
        try:
            outcomes[content] = backend.append(key, ChatMessage(role="user", content=content))
        except Exception as exc:
            outcomes[content] = exc

    threads = [threading.Thread(target=send, args=pair) for pair in sends]
    with lock:
        for thread in threads:
            thread.start()
            # Queue in this order: each send is in the queue before the next starts.
            deadline = time.monotonic() + 10
            while len(backend._writer._queue) < threads.index(thread) + 1:
                assert time.monotonic() < deadline, "the append never queued"
                time.sleep(0.001)
    for thread in threads:
        thread.join(10)
    return outcomes


@pytest.fixture
def groups(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every group committed."""
    sizes: list[int] = []
    commit = Writer._commit_group

    def counted(self: Writer, group: list) -> None:  # type: ignore[type-arg]
        sizes.append(len(group))
        commit(self, group)

    monkeypatch.setattr(Writer, "_commit_group", counted)
    return sizes


def test_appends_queued_behind_the_writer_commit_as_one_group_each_with_its_own_count(
    tmp_path: Path, groups: list[int]
) -> None:
    db = tmp_path / "group.duckdb"
    backend = DuckDBSessionBackend(str(db))
    backend.append("a", ChatMessage(role="user", content="first of a"))
    groups.clear()
    # Known sessions and a new one, interleaved.
    sends = [(key, f"{key} groupword {n}") for n in range(4) for key in ("a", "b", "new")]
    outcomes = queue_while_held(backend, sends)
    assert groups == [len(sends)]
    expected = {"a": 1, "b": 0, "new": 0}
    for key, content in sends:
        expected[key] += 1
        assert outcomes[content] == expected[key], (content, outcomes)
    for key in ("a", "b", "new"):
        contents = [m.content for m in backend.load(key)]
        assert contents == ([("first of a")] if key == "a" else []) + [c for k, c in sends if k == key]
    hits = backend.search_messages("groupword", 50, MessageFilters())
    assert sorted(h.snippet for h in hits) == sorted(c for _, c in sends)
    assert backend.get_session_metadata("new").message_count == 4  # type: ignore[union-attr]
    backend.close()
    # Durable: every acknowledged append is in the file.
    reopened = DuckDBSessionBackend(str(db))
    assert [len(reopened.load(k)) for k in ("a", "b", "new")] == [5, 4, 4]
    reopened.close()


def test_a_group_whose_commit_fails_tells_every_member_and_stores_none_of_it(
    tmp_path: Path, groups: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = DuckDBSessionBackend(str(tmp_path / "fail.duckdb"))
    backend.append("a", ChatMessage(role="user", content="kept"))
    insert = Writer.insert_messages
    failures = iter([True])

    def failing(self: Writer, *args, **kwargs):  # type: ignore[no-untyped-def]
        if next(failures, False):
            raise duckdb.IOException("the disk went away")
        return insert(self, *args, **kwargs)

    monkeypatch.setattr(Writer, "insert_messages", failing)
    sends = [("a", f"lost {n}") for n in range(3)] + [("b", "lost b")]
    outcomes = queue_while_held(backend, sends)
    assert groups[-1] == len(sends)
    for _, content in sends:
        assert isinstance(outcomes[content], StoreFailure), outcomes
        assert "the disk went away" in str(outcomes[content])
    assert [m.content for m in backend.load("a")] == ["kept"]
    assert backend.get_session_metadata("b") is None
    # The writer carries on from what is stored.
    assert backend.append("a", ChatMessage(role="user", content="after")) == 2
    assert backend.append("b", ChatMessage(role="user", content="after")) == 1
    backend.close()


def test_a_bad_message_is_refused_before_it_queues_and_spares_the_group(tmp_path: Path, groups: list[int]) -> None:
    backend = DuckDBSessionBackend(str(tmp_path / "bad.duckdb"), max_content_bytes=16)
    refused: list[Exception] = []

    def send_bad() -> None:
        try:
            backend.append("a", ChatMessage(role="user", content="x" * 17))
        except Exception as exc:
            refused.append(exc)

    with backend._conn.write_lock:
        # While another holds the writer, the bad message is refused at once: it never waits in the queue.
        bad = threading.Thread(target=send_bad)
        bad.start()
        bad.join(10)
        assert not bad.is_alive() and len(refused) == 1 and "message.content" in str(refused[0])
        assert backend._writer._queue == []
    outcomes = queue_while_held(backend, [("a", "fits 1"), ("a", "fits 2")])
    assert outcomes == {"fits 1": 1, "fits 2": 2}
    assert groups == [2]
    backend.close()


@pytest.mark.parametrize(
    "content",
    ["it's 'quoted' -- not a comment; COMMIT;", "a\x00b", "é🙂\\n" * 3, "x" * 20_000, "$$ dollar $$"],
    ids=["quotes", "nul", "unicode", "long", "dollars"],
)
def test_an_append_committed_in_its_insert_call_keeps_the_text_exactly(tmp_path: Path, content: str) -> None:
    """Texts that go into the SQL as literals (and those that cannot: a NUL, a long one) come back unchanged,
    and the append is durable: it is there after reopening."""
    path = tmp_path / "literal.duckdb"
    with DuckDBSessionBackend(path) as backend:
        backend.append("s", ChatMessage(role="user", content="first"))  # the writer knows the session now
        assert backend.append("s", ChatMessage(role="assistant", content=content)) == 2
        assert backend.load("s")[-1].content == content
    with DuckDBSessionBackend(path) as backend:
        assert [m.content for m in backend.load("s")] == ["first", content]
