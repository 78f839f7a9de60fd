"""What the store answers from memory (session rows, the tails of sessions) is what the file holds, always."""

from __future__ import annotations

import threading

import pytest

from mcp_sessions.models import ChatMessage, SessionContext
from mcp_sessions.store.duckdb import DuckDBSessionBackend, Tuning


def msg(content: str, role: str = "user") -> ChatMessage:
    return ChatMessage(role=role, content=content)


def from_file(path: str) -> DuckDBSessionBackend:
    """The same file opened afresh, reading session rows from the file (no view, no tails yet)."""
    return DuckDBSessionBackend(path, read_only=True, tuning=Tuning(session_view_max=0))


def test_every_kind_of_write_leaves_memory_and_file_agreeing(db_path: str) -> None:
    with DuckDBSessionBackend(db_path) as store:
        for i in range(40):
            store.append(f"s{i % 4}", msg(f"m{i}"))
            store.load_page(f"s{i % 4}", -5)  # reads fill the tails
        store.update_last("s1", msg("rewritten", "assistant"))
        store.remove_last("s2")
        store.append_many([("s3", msg("bulk a")), ("s5", msg("bulk b"))])
        store.set_session_name("s0", "named")
        store.set_session_context("s0", SessionContext(channel_id="c", room_id="r"))
        store.set_session_state("s1", "running", "turn-1")
        store.set_session_agent_alias("s3", "agent")
        store.append("s0", msg("dup"))
        store.append("s0", msg("dup"))
        store.compact("s0")
        store.clear_messages("s2")
        store.delete_session("s4")
        store.set_session_name("fresh", "made by a setter")
        memory = (
            store.list_sessions_with_metadata(),
            [store.load_page(f"s{i}", -7) for i in range(6)],
            [store.get_session_state(f"s{i}") for i in range(6)],
            store.list_running_sessions(),
            store.list_sessions(),
        )
    with from_file(db_path) as reread:
        on_file = (
            reread.list_sessions_with_metadata(),
            [reread.load_page(f"s{i}", -7) for i in range(6)],
            [reread.get_session_state(f"s{i}") for i in range(6)],
            reread.list_running_sessions(),
            reread.list_sessions(),
        )
    assert memory == on_file


@pytest.mark.parametrize("offset, limit", [(-20, None), (0, None), (None, 3), (5, 2), (-1, 1), (100, 5)])
def test_a_tail_answers_exactly_what_the_file_would(offset: int | None, limit: int | None) -> None:
    with DuckDBSessionBackend(":memory:") as store:
        for i in range(30):
            store.append("k", msg(f"m{i}"))
        store.load_page("k", -30)
        assert store._tails.holds("k", offset, limit)
        cached = store.load_page("k", offset, limit)
        store._tails.forget(["k"])
        assert store.load_page("k", offset, limit) == cached


def test_reads_racing_writes_never_see_a_stale_or_torn_tail() -> None:
    with DuckDBSessionBackend(":memory:") as store:
        store.append("k", msg("m0"))
        errors: list[str] = []
        done = threading.Event()

        def write() -> None:
            for i in range(1, 400):
                store.append("k", msg(f"m{i}"))
                if i % 7 == 0:
                    store.update_last("k", msg(f"m{i}"))
                if i % 50 == 0:
                    store.remove_last("k")
                    store.append("k", msg(f"m{i}"))
            done.set()

        def read() -> None:
            while not done.is_set():
                page = store.load_page("k", -10)
                for m in page.messages:
                    if m.content != f"m{m.index}":
                        errors.append(f"message {m.index} reads {m.content!r}")
                if page.messages and page.messages[-1].index != page.total - 1:
                    errors.append(f"the last of {page.total} messages is {page.messages[-1].index}")

        threads = [threading.Thread(target=write), threading.Thread(target=read), threading.Thread(target=read)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        final = store.load_page("k", -10)
        store._tails.forget(["k"])
        assert final == store.load_page("k", -10)
        assert final.total == 400


def test_a_huge_session_tail_keeps_only_its_last_messages_and_a_budget(db_path: str) -> None:
    with DuckDBSessionBackend(db_path) as store:
        store.append_many([("big", msg(f"m{i}")) for i in range(1000)])
        whole = store.load_page("big")
        assert len(whole.messages) == 1000
        assert store._tails.holds("big", -256, None)
        assert not store._tails.holds("big", -257, None)
        assert store.load_page("big", -300).messages == whole.messages[-300:]
        store.append("huge", msg("x" * 1_000_000))
        store.load_page("huge")
        assert store.load_page("huge").messages[0].content == "x" * 1_000_000


def test_with_many_sessions_rows_come_from_the_file(db_path: str) -> None:
    with DuckDBSessionBackend(db_path) as store:
        store.append_many([(f"s{i}", msg("hello")) for i in range(30)])
    with DuckDBSessionBackend(db_path, tuning=Tuning(session_view_max=10)) as store:
        assert store._view is None
        assert not store.answers_from_memory("get_session_metadata", {"session_key": "s1"})
        assert store.get_session_metadata("s1") is not None
        assert len(store.list_sessions_with_metadata(limit=100)) == 30
