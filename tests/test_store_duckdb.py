"""DuckDBSessionBackend beyond the trait's defaults: metadata, times, state, files, locks, threads."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from mcp_sessions.errors import StoreFailure, StoreLocked, StoreReadOnly
from mcp_sessions.imported import ImportedMessage, ImportedSession
from mcp_sessions.models import (
    ChatMessage,
    InvalidArgument,
    MessageFilters,
    SessionContext,
    SessionMetadata,
    SessionQuery,
)
from mcp_sessions.store.duckdb import DuckDBSessionBackend, Tuning
from mcp_sessions.store.writes import Writer


@pytest.fixture
def db_file(tmp_path: Path) -> Path:
    return tmp_path / "sessions.duckdb"


def msg(content: str, role: str = "user") -> ChatMessage:
    return ChatMessage(role=role, content=content)


def meta(backend: DuckDBSessionBackend, key: str) -> SessionMetadata:
    found = backend.get_session_metadata(key)
    assert found is not None, f"session {key!r} should exist"
    return found


def activity(backend: DuckDBSessionBackend, key: str) -> datetime:
    value = meta(backend, key).last_activity
    assert value is not None
    return value


def shift_times(path: Path, key: str, column: str, seconds: int) -> None:
    """Move a session's stored time into the past, as if that many seconds had gone by."""
    assert column in {"last_activity", "turn_started_at", "created_at"}
    conn = duckdb.connect(str(path))
    conn.execute(f"UPDATE sessions SET {column} = {column} - INTERVAL {int(seconds)} SECOND WHERE key = ?", [key])
    conn.close()


# Setters create sessions; reads never do.


SETTERS: dict[str, Callable[[DuckDBSessionBackend, str], None]] = {
    "set_session_name": lambda b, k: b.set_session_name(k, "n"),
    "set_session_agent_alias": lambda b, k: b.set_session_agent_alias(k, "agent"),
    "set_session_context": lambda b, k: b.set_session_context(k, SessionContext(channel_id="c")),
    "set_session_context_empty": lambda b, k: b.set_session_context(k, SessionContext()),
    "set_session_state": lambda b, k: b.set_session_state(k, "running", "t1"),
}


@pytest.mark.parametrize("setter", SETTERS.values(), ids=list(SETTERS))
def test_setter_on_missing_session_creates_it(
    backend: DuckDBSessionBackend, setter: Callable[[DuckDBSessionBackend, str], None]
) -> None:
    before = datetime.now(UTC)
    setter(backend, "k")
    found = meta(backend, "k")
    assert found.message_count == 0
    assert found.created_at is not None and before <= found.created_at <= datetime.now(UTC)
    assert backend.list_sessions() == ["k"]
    assert backend.load_page("k").total == 0


READS: dict[str, Callable[[DuckDBSessionBackend, str], object]] = {
    "load": lambda b, k: b.load(k),
    "load_with_timestamps": lambda b, k: b.load_with_timestamps(k),
    "load_page": lambda b, k: b.load_page(k, offset=-3, limit=2),
    "get_session_name": lambda b, k: b.get_session_name(k),
    "get_session_agent_alias": lambda b, k: b.get_session_agent_alias(k),
    "get_session_metadata": lambda b, k: b.get_session_metadata(k),
    "get_session_state": lambda b, k: b.get_session_state(k),
    "search_messages": lambda b, k: b.search_messages("x", filters=MessageFilters(session_key=k)),
    "search": lambda b, k: b.search(SessionQuery(keyword=k)),
    "remove_last": lambda b, k: b.remove_last(k),
    "update_last": lambda b, k: b.update_last(k, msg("x")),
    "clear_messages": lambda b, k: b.clear_messages(k),
    "compact": lambda b, k: b.compact(k),
    "delete_session": lambda b, k: b.delete_session(k),
    "list_stuck_sessions": lambda b, k: b.list_stuck_sessions(0),
    "cleanup_stale": lambda b, k: b.cleanup_stale(0),
}


@pytest.mark.parametrize("read", READS.values(), ids=list(READS))
def test_only_append_and_setters_create_a_session(
    backend: DuckDBSessionBackend, read: Callable[[DuckDBSessionBackend, str], object]
) -> None:
    read(backend, "k")
    assert backend.get_session_metadata("k") is None
    assert backend.list_sessions() == []
    assert backend.get_session_state("k") is None


def test_get_of_missing_session_is_none(backend: DuckDBSessionBackend) -> None:
    assert backend.get_session_name("nope") is None
    assert backend.get_session_agent_alias("nope") is None
    assert backend.get_session_metadata("nope") is None
    assert backend.get_session_state("nope") is None


def test_delete_session_removes_it_from_every_list(backend: DuckDBSessionBackend) -> None:
    backend.append("k", msg("needle"))
    backend.set_session_name("k", "n")
    backend.set_session_state("k", "running")
    assert backend.delete_session("k") is True
    assert backend.list_sessions() == []
    assert backend.list_sessions_with_metadata() == []
    assert backend.list_running_sessions() == []
    assert backend.get_session_metadata("k") is None
    assert backend.get_session_name("k") is None
    assert backend.search(SessionQuery(keyword="needle")) == []
    assert backend.delete_session("k") is False


def test_session_deleted_then_appended_again_starts_fresh(backend: DuckDBSessionBackend) -> None:
    backend.append("k", msg("a"))
    backend.set_session_name("k", "old name")
    backend.delete_session("k")
    backend.append("k", msg("b"))
    assert [(m.index, m.content) for m in backend.load_with_timestamps("k")] == [(0, "b")]
    assert meta(backend, "k").name is None
    assert meta(backend, "k").message_count == 1


# last_activity and times


def test_append_stamps_created_at_and_bumps_count_and_last_activity(backend: DuckDBSessionBackend) -> None:
    before = datetime.now(UTC)
    backend.append("k", msg("a"))
    after = datetime.now(UTC)
    (row,) = backend.load_with_timestamps("k")
    assert row.created_at is not None and before <= row.created_at <= after
    first = meta(backend, "k")
    assert first.message_count == 1
    assert first.created_at is not None and before <= first.created_at <= after
    assert first.last_activity is not None and before <= first.last_activity <= after
    time.sleep(0.002)
    backend.append("k", msg("b"))
    second = meta(backend, "k")
    assert second.message_count == 2
    assert second.created_at == first.created_at
    assert second.last_activity is not None and second.last_activity > first.last_activity


def test_times_are_utc_and_carry_microseconds(backend: DuckDBSessionBackend) -> None:
    stamps: list[datetime] = []
    for i in range(5):
        backend.append("k", msg(str(i)))
        stamps.extend(m.created_at for m in backend.load_with_timestamps("k")[-1:] if m.created_at is not None)
        stamps.append(activity(backend, "k"))
    assert len(stamps) == 10
    for stamp in stamps:
        assert stamp.utcoffset() == timedelta(0)
    # Five appends in a row fall within one second; only microseconds tell them apart.
    created = [m.created_at for m in backend.load_with_timestamps("k")]
    assert len(set(created)) == 5
    assert any(stamp.microsecond != 0 for stamp in stamps)


_TZ_SCRIPT = """
import json
from mcp_sessions.models import ChatMessage
from mcp_sessions.store.duckdb import DuckDBSessionBackend
b = DuckDBSessionBackend(":memory:")
b.append("k", ChatMessage(role="user", content="x"))
b.set_session_state("k", "running")
m = b.get_session_metadata("k")
s = b.get_session_state("k")
print(json.dumps([b.load_with_timestamps("k")[0].created_at.isoformat(), m.created_at.isoformat(),
                  m.last_activity.isoformat(), s.turn_started_at.isoformat()]))
"""


@pytest.mark.parametrize("zone", ["Asia/Kolkata", "America/Los_Angeles"])
def test_times_are_utc_whatever_the_local_time_zone(zone: str) -> None:
    before = datetime.now(UTC)
    done = subprocess.run(
        [sys.executable, "-c", _TZ_SCRIPT], capture_output=True, text=True, timeout=60, env={"TZ": zone, "PATH": ""}
    )
    after = datetime.now(UTC)
    assert done.returncode == 0, done.stderr
    for text in json.loads(done.stdout):
        stamp = datetime.fromisoformat(text)
        assert stamp.utcoffset() == timedelta(0), text
        assert before <= stamp <= after, f"{text} is not between {before} and {after}"


CHANGES: dict[str, Callable[[DuckDBSessionBackend], object]] = {
    "append": lambda b: b.append("k", msg("c")),
    "update_last": lambda b: b.update_last("k", msg("z")),
    "remove_last": lambda b: b.remove_last("k"),
    "clear_messages": lambda b: b.clear_messages("k"),
    "compact": lambda b: b.compact("k"),
}


@pytest.mark.parametrize("change", CHANGES.values(), ids=list(CHANGES))
def test_last_activity_moves_on_every_message_change(
    backend: DuckDBSessionBackend, change: Callable[[DuckDBSessionBackend], object]
) -> None:
    for content in ["a", "b", "b"]:
        backend.append("k", msg(content))
    before = activity(backend, "k")
    time.sleep(0.002)
    change(backend)
    assert activity(backend, "k") > before


UNCHANGING: dict[str, Callable[[DuckDBSessionBackend], object]] = {
    "set_session_name": lambda b: b.set_session_name("k", "n"),
    "set_session_agent_alias": lambda b: b.set_session_agent_alias("k", "a"),
    "set_session_context": lambda b: b.set_session_context("k", SessionContext(room_id="r")),
    "set_session_state": lambda b: b.set_session_state("k", "running", "t"),
    "load": lambda b: b.load("k"),
    "load_page": lambda b: b.load_page("k", offset=-1),
    "load_with_timestamps": lambda b: b.load_with_timestamps("k"),
    "get_session_metadata": lambda b: b.get_session_metadata("k"),
    "get_session_state": lambda b: b.get_session_state("k"),
    "search": lambda b: b.search(SessionQuery(keyword="a")),
    "search_messages": lambda b: b.search_messages("a"),
    "compact_nothing_to_remove": lambda b: b.compact("k"),
    "optimize": lambda b: b.optimize(),
}


@pytest.mark.parametrize("call", UNCHANGING.values(), ids=list(UNCHANGING))
def test_last_activity_stays_on_setters_reads_and_compact_that_removed_nothing(
    backend: DuckDBSessionBackend, call: Callable[[DuckDBSessionBackend], object]
) -> None:
    backend.append("k", msg("a"))
    backend.append("k", msg("b"))
    before = activity(backend, "k")
    time.sleep(0.002)
    call(backend)
    assert activity(backend, "k") == before


@pytest.mark.parametrize("call", ["remove_last", "clear_messages", "compact", "update_last"])
def test_last_activity_stays_on_writes_to_an_empty_session_that_remove_nothing(
    backend: DuckDBSessionBackend, call: str
) -> None:
    backend.set_session_name("k", "empty")
    before = activity(backend, "k")
    time.sleep(0.002)
    if call == "update_last":
        assert backend.update_last("k", msg("x")) is False
    else:
        assert getattr(backend, call)("k") in (False, 0)
    assert activity(backend, "k") == before
    assert meta(backend, "k").message_count == 0


# names, aliases, context


def test_set_session_name_and_clear_it_with_empty(backend: DuckDBSessionBackend) -> None:
    backend.append("k", msg("a"))
    backend.set_session_name("k", "Planning the trip")
    assert backend.get_session_name("k") == "Planning the trip"
    assert meta(backend, "k").name == "Planning the trip"
    backend.set_session_name("k", "Renamed ✈")
    assert backend.get_session_name("k") == "Renamed ✈"
    backend.set_session_name("k", "")
    assert backend.get_session_name("k") is None
    assert meta(backend, "k").name is None


def test_set_session_agent_alias_and_clear_it_with_empty(backend: DuckDBSessionBackend) -> None:
    backend.set_session_agent_alias("k", "planner")
    assert backend.get_session_agent_alias("k") == "planner"
    assert meta(backend, "k").agent_alias == "planner"
    backend.set_session_agent_alias("k", "")
    assert backend.get_session_agent_alias("k") is None
    assert meta(backend, "k").agent_alias is None


def test_list_sessions_with_metadata_filters_by_agent_alias(backend: DuckDBSessionBackend) -> None:
    backend.append("a", msg("x"))
    backend.append("b", msg("x"))
    backend.append("c", msg("x"))
    backend.set_session_agent_alias("a", "one")
    backend.set_session_agent_alias("c", "one")
    backend.set_session_agent_alias("b", "two")
    assert [m.key for m in backend.list_sessions_with_metadata(agent_alias="one")] == ["c", "a"]


def test_set_session_context_null_keeps_and_empty_clears(backend: DuckDBSessionBackend) -> None:
    backend.set_session_context("k", SessionContext(channel_id="ch", room_id="room", sender_id="me"))
    found = meta(backend, "k")
    assert (found.channel_id, found.room_id, found.sender_id) == ("ch", "room", "me")
    backend.set_session_context("k", SessionContext(room_id="room2"))
    found = meta(backend, "k")
    assert (found.channel_id, found.room_id, found.sender_id) == ("ch", "room2", "me")
    backend.set_session_context("k", SessionContext(channel_id=None, room_id="", sender_id=None))
    found = meta(backend, "k")
    assert (found.channel_id, found.room_id, found.sender_id) == ("ch", None, "me")
    backend.set_session_context("k", SessionContext.model_validate({"channel_id": "", "sender_id": ""}))
    found = meta(backend, "k")
    assert (found.channel_id, found.room_id, found.sender_id) == (None, None, None)


def test_setters_leave_messages_and_other_fields(backend: DuckDBSessionBackend) -> None:
    backend.append("k", msg("a"))
    backend.set_session_name("k", "n")
    backend.set_session_agent_alias("k", "agent")
    backend.set_session_context("k", SessionContext(channel_id="c"))
    backend.set_session_state("k", "running", "t")
    found = meta(backend, "k")
    assert (found.name, found.agent_alias, found.channel_id, found.message_count) == ("n", "agent", "c", 1)
    assert backend.load("k") == [msg("a")]


# state


def test_session_that_never_had_a_state_is_idle(backend: DuckDBSessionBackend) -> None:
    backend.append("k", msg("a"))
    state = backend.get_session_state("k")
    assert state is not None
    assert (state.state, state.turn_id, state.turn_started_at) == ("idle", None, None)
    backend.set_session_name("named", "n")
    named = backend.get_session_state("named")
    assert named is not None and named.state == "idle"


def test_running_sets_turn_started_at_and_other_states_clear_it(backend: DuckDBSessionBackend) -> None:
    before = datetime.now(UTC)
    backend.set_session_state("k", "running", "turn-1")
    after = datetime.now(UTC)
    state = backend.get_session_state("k")
    assert state is not None
    assert (state.state, state.turn_id) == ("running", "turn-1")
    assert state.turn_started_at is not None and before <= state.turn_started_at <= after
    assert state.turn_started_at.utcoffset() == timedelta(0)
    for other in ["idle", "error", "waiting"]:
        backend.set_session_state("k", other)
        state = backend.get_session_state("k")
        assert state is not None
        assert (state.state, state.turn_started_at) == (other, None)
        backend.set_session_state("k", "running", "turn-2")
        state = backend.get_session_state("k")
        assert state is not None and state.turn_started_at is not None


def test_list_running_sessions_lists_only_running(backend: DuckDBSessionBackend) -> None:
    backend.set_session_state("a", "running", "t")
    backend.set_session_state("b", "idle")
    backend.append("c", msg("x"))
    backend.set_session_state("d", "running")
    backend.set_session_state("e", "running")
    backend.set_session_state("e", "error")
    assert sorted(m.key for m in backend.list_running_sessions()) == ["a", "d"]


def test_list_stuck_sessions_lists_running_past_threshold_longest_first(db_file: Path) -> None:
    with DuckDBSessionBackend(db_file) as backend:
        for key in ["recent", "hour", "day", "idle_old"]:
            backend.set_session_state(key, "running", f"turn-{key}")
        backend.set_session_state("idle_old", "idle")
    shift_times(db_file, "hour", "turn_started_at", 3600)
    shift_times(db_file, "day", "turn_started_at", 86_400)
    with DuckDBSessionBackend(db_file) as backend:
        assert [m.key for m in backend.list_stuck_sessions(60)] == ["day", "hour"]
        assert [m.key for m in backend.list_stuck_sessions(7200)] == ["day"]
        assert backend.list_stuck_sessions(10 * 86_400) == []
        assert [m.key for m in backend.list_stuck_sessions(0)] == ["day", "hour", "recent"]


def test_list_stuck_sessions_with_zero_threshold_orders_by_start(backend: DuckDBSessionBackend) -> None:
    for key in ["first", "second", "third"]:
        backend.set_session_state(key, "running")
        time.sleep(0.002)
    assert [m.key for m in backend.list_stuck_sessions(0)] == ["first", "second", "third"]
    assert backend.list_stuck_sessions(3600) == []


# cleanup_stale


def test_cleanup_stale_deletes_idle_sessions_and_spares_running_ones(db_file: Path) -> None:
    with DuckDBSessionBackend(db_file) as backend:
        backend.append("old", msg("stale needle"))
        backend.set_session_name("old", "old one")
        backend.append("old_running", msg("needle"))
        backend.set_session_state("old_running", "running")
        backend.append("old_errored", msg("needle"))
        backend.set_session_state("old_errored", "error")
        backend.append("fresh", msg("needle"))
    for key in ["old", "old_running", "old_errored"]:
        shift_times(db_file, key, "last_activity", 3 * 3600)
    with DuckDBSessionBackend(db_file) as backend:
        assert backend.cleanup_stale(2) == 2
        assert sorted(backend.list_sessions()) == ["fresh", "old_running"]
        for key in ["old", "old_errored"]:
            assert backend.get_session_metadata(key) is None
            assert backend.get_session_name(key) is None
            assert backend.load_page(key).total == 0
        assert sorted(h.session_key for h in backend.search_messages("needle")) == ["fresh", "old_running"]
        assert backend.search_messages("stale") == []
        assert backend.cleanup_stale(2) == 0
        backend.append("old", msg("again"))
        assert [(m.index, m.content) for m in backend.load_with_timestamps("old")] == [(0, "again")]


def test_cleanup_stale_zero_hours_deletes_every_session_but_running(backend: DuckDBSessionBackend) -> None:
    backend.append("a", msg("x"))
    backend.set_session_name("b", "n")
    backend.set_session_state("r", "running")
    time.sleep(0.002)
    assert backend.cleanup_stale(0) == 2
    assert backend.list_sessions() == ["r"]


def test_cleanup_stale_keeps_sessions_active_within_the_ttl(backend: DuckDBSessionBackend) -> None:
    backend.append("a", msg("x"))
    backend.set_session_name("b", "n")
    assert backend.cleanup_stale(1) == 0
    assert sorted(backend.list_sessions()) == ["a", "b"]


# content size


def test_content_over_max_content_bytes_raises_and_changes_nothing() -> None:
    with DuckDBSessionBackend(":memory:", max_content_bytes=16) as backend:
        backend.append("k", msg("a" * 16))
        backend.append("k", msg("€" * 5))  # 15 bytes
        before = backend.load_with_timestamps("k")
        before_meta = meta(backend, "k")
        for bad in ["a" * 17, "€" * 6, "😀" * 5]:
            with pytest.raises(InvalidArgument, match=r"content.*16"):
                backend.append("k", msg(bad))
            with pytest.raises(InvalidArgument, match=r"content.*16"):
                backend.append("new", msg(bad))
            with pytest.raises(InvalidArgument, match=r"content.*16"):
                backend.update_last("k", msg(bad))
            with pytest.raises(InvalidArgument, match=r"content.*16"):
                backend.append_many([("k", msg("fine")), ("other", msg(bad))])
        assert backend.load_with_timestamps("k") == before
        assert meta(backend, "k") == before_meta
        assert backend.list_sessions() == ["k"]
        assert backend.search_messages("fine") == []


# files: persistence, locks, read-only


def test_everything_persists_across_close_and_reopen(db_file: Path) -> None:
    with DuckDBSessionBackend(db_file) as backend:
        backend.append("k", msg("persisted needle"))
        backend.append("k", msg("reply", "assistant"))
        backend.set_session_name("k", "name")
        backend.set_session_agent_alias("k", "agent")
        backend.set_session_context("k", SessionContext(channel_id="c", room_id="r", sender_id="s"))
        backend.set_session_state("k", "running", "turn")
        backend.append("gone", msg("deleted needle"))
        backend.delete_session("gone")
        rows = backend.load_with_timestamps("k")
        metadata = meta(backend, "k")
        state = backend.get_session_state("k")
    assert db_file.exists()
    with DuckDBSessionBackend(db_file) as backend:
        assert backend.load_with_timestamps("k") == rows
        assert meta(backend, "k") == metadata
        assert backend.get_session_state("k") == state
        assert backend.list_sessions() == ["k"]
        assert [(h.session_key, h.index) for h in backend.search_messages("needle")] == [("k", 0)]
        backend.append("k", msg("third"))
        assert backend.load_page("k", offset=-1).messages[0].index == 2
    with DuckDBSessionBackend(db_file) as backend:
        assert backend.load_page("k").total == 3
        assert [(h.session_key, h.index) for h in backend.search_messages("third")] == [("k", 2)]


def test_reopen_without_close_keeps_every_committed_write(db_file: Path) -> None:
    script = (
        "from mcp_sessions.models import ChatMessage\n"
        "from mcp_sessions.store.duckdb import DuckDBSessionBackend\n"
        f"b = DuckDBSessionBackend({str(db_file)!r})\n"
        "for i in range(20): b.append('k', ChatMessage(role='user', content=f'word{i}'))\n"
        "import os; os._exit(0)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    with DuckDBSessionBackend(db_file) as backend:
        assert [m.content for m in backend.load("k")] == [f"word{i}" for i in range(20)]
        assert [h.index for h in backend.search_messages("word7")] == [7]


def test_a_file_held_by_another_process_raises_store_locked_naming_the_pid(db_file: Path) -> None:
    script = (
        "import sys, time\n"
        "from mcp_sessions.store.duckdb import DuckDBSessionBackend\n"
        f"b = DuckDBSessionBackend({str(db_file)!r})\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "ready"
        started = time.monotonic()
        with pytest.raises(StoreLocked) as caught:
            DuckDBSessionBackend(db_file)
        assert time.monotonic() - started < 5
        assert str(holder.pid) in str(caught.value)
        assert str(db_file) in str(caught.value)
        assert holder.poll() is None, "the holder must not be harmed"
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
    with DuckDBSessionBackend(db_file) as backend:
        assert backend.list_sessions() == []


WRITES: dict[str, Callable[[DuckDBSessionBackend], object]] = {
    "append": lambda b: b.append("k", msg("x")),
    "append_new_session": lambda b: b.append("new", msg("x")),
    "append_many": lambda b: b.append_many([("k", msg("x"))]),
    "remove_last": lambda b: b.remove_last("k"),
    "update_last": lambda b: b.update_last("k", msg("x")),
    "clear_messages": lambda b: b.clear_messages("k"),
    "compact": lambda b: b.compact("k"),
    "delete_session": lambda b: b.delete_session("k"),
    "cleanup_stale": lambda b: b.cleanup_stale(0),
    "set_session_name": lambda b: b.set_session_name("k", "n"),
    "set_session_agent_alias": lambda b: b.set_session_agent_alias("k", "a"),
    "set_session_context": lambda b: b.set_session_context("k", SessionContext(channel_id="c")),
    "set_session_state": lambda b: b.set_session_state("k", "idle"),
    "optimize": lambda b: b.optimize(),
}


def test_read_only_store_opens_a_store_file_and_reads_it(db_file: Path) -> None:
    with DuckDBSessionBackend(db_file) as backend:
        backend.append("k", msg("needle"))
        rows = backend.load_with_timestamps("k")
    with DuckDBSessionBackend(db_file, read_only=True) as backend:
        assert backend.load_with_timestamps("k") == rows
        assert [h.session_key for h in backend.search_messages("needle")] == ["k"]


@pytest.mark.parametrize("write", WRITES.values(), ids=list(WRITES))
def test_read_only_store_refuses_writes(db_file: Path, write: Callable[[DuckDBSessionBackend], object]) -> None:
    with DuckDBSessionBackend(db_file) as backend:
        backend.append("k", msg("needle"))
        backend.append("k", msg("needle"))
        backend.set_session_state("k", "running")
    with DuckDBSessionBackend(db_file, read_only=True) as backend:
        rows = backend.load_with_timestamps("k")
        metadata = meta(backend, "k")
        with pytest.raises(StoreReadOnly):
            write(backend)
        assert backend.load_with_timestamps("k") == rows
        assert meta(backend, "k") == metadata
        assert backend.list_sessions() == ["k"]
        assert [h.index for h in backend.search_messages("needle")] == [1, 0]
        assert [m.key for m in backend.search(SessionQuery(keyword="needle"))] == ["k"]


def test_read_only_store_of_a_missing_file_raises_store_read_only(tmp_path: Path) -> None:
    with pytest.raises(StoreReadOnly):
        DuckDBSessionBackend(tmp_path / "missing.duckdb", read_only=True)
    assert not (tmp_path / "missing.duckdb").exists()


# threads


def test_concurrent_appends_to_one_session_give_exact_counts_and_contiguous_indexes(
    backend: DuckDBSessionBackend,
) -> None:
    threads_n, each = 8, 40
    errors: list[BaseException] = []
    start = threading.Barrier(threads_n)

    def work(t: int) -> None:
        try:
            start.wait()
            for i in range(each):
                backend.append("k", msg(f"t{t} m{i}"))
        except BaseException as exc:  # collected and re-raised in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    rows = backend.load_with_timestamps("k")
    assert len(rows) == threads_n * each
    assert [r.index for r in rows] == list(range(threads_n * each))
    assert meta(backend, "k").message_count == threads_n * each
    assert sorted(r.content for r in rows) == sorted(f"t{t} m{i}" for t in range(threads_n) for i in range(each))
    for t in range(threads_n):
        mine = [r.content for r in rows if r.content.startswith(f"t{t} ")]
        assert mine == [f"t{t} m{i}" for i in range(each)]
    assert len(backend.search_messages("m5", limit=200)) == threads_n


def test_concurrent_writes_and_reads_on_many_sessions(backend: DuckDBSessionBackend) -> None:
    errors: list[BaseException] = []

    def writer(t: int) -> None:
        try:
            for i in range(30):
                backend.append(f"s{t}", msg(f"word{i}"))
                if i % 5 == 4:
                    backend.update_last(f"s{t}", msg(f"word{i}"))
        except BaseException as exc:  # collected and re-raised in the test thread
            errors.append(exc)

    def reader() -> None:
        try:
            for _ in range(30):
                backend.search_messages("word3")
                backend.list_sessions_with_metadata()
                for page in (backend.load_page(f"s{t}", offset=-2) for t in range(4)):
                    assert page.total >= len(page.messages)
        except BaseException as exc:  # collected and re-raised in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
    threads += [threading.Thread(target=reader) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for t in range(4):
        assert [m.content for m in backend.load(f"s{t}")] == [f"word{i}" for i in range(30)]
        assert meta(backend, f"s{t}").message_count == 30
    assert sorted(h.session_key for h in backend.search_messages("word3")) == ["s0", "s1", "s2", "s3"]


# optimize


def test_optimize_keeps_every_result(backend: DuckDBSessionBackend) -> None:
    for key in ["a", "b", "c", "d"]:
        for i in range(6):
            backend.append(key, msg(f"{key} message {i} about deploy timeout {'retry ' * i}"))
    backend.update_last("a", msg("rewritten deploy answer", "assistant"))
    backend.remove_last("b")
    backend.clear_messages("c")
    backend.append("c", msg("fresh deploy"))
    backend.delete_session("d")
    backend.append("e", msg("deploy deploy"))
    backend.append("e", msg("deploy deploy"))
    backend.compact("e")
    queries = ["deploy", "timeout retry", "message", "rewritten", "a b c d", "fresh deploy timeout"]

    def snapshot() -> object:
        return (
            [backend.search_messages(q, limit=200) for q in queries],
            [backend.search(SessionQuery(keyword=q)) for q in queries],
            backend.list_sessions_with_metadata(),
            [backend.load_with_timestamps(k) for k in "abcde"],
        )

    before = snapshot()
    backend.optimize()
    assert snapshot() == before
    backend.optimize()
    assert snapshot() == before


# What the writer remembers of a session (its slot) only guides reads and writes: a wrong one is caught.


def test_load_page_reads_the_true_count_when_the_remembered_one_is_wrong(backend: DuckDBSessionBackend) -> None:
    for i in range(70):
        backend.append("k", ChatMessage(role="user", content=f"m{i}"))
    real = backend._writer.slots["k"]
    for wrong in (real._replace(count=3), real._replace(count=500), real._replace(session_id=real.session_id + 99)):
        backend._writer.slots["k"] = wrong
        page = backend.load_page("k", offset=-20)
        assert page.total == 70
        assert [m.content for m in page.messages] == [f"m{i}" for i in range(50, 70)]
    backend._writer.slots.clear()
    assert backend.load_page("k", offset=65, limit=2).messages[1].content == "m66"
    assert backend.load_page("gone").total == 0


def test_update_last_with_a_wrong_remembered_last_message_still_replaces_the_last(
    backend: DuckDBSessionBackend,
) -> None:
    backend.append("k", ChatMessage(role="user", content="first"))
    backend.append("k", ChatMessage(role="user", content="second"))
    slot = backend._writer.slots["k"]
    backend._writer.slots["k"] = slot._replace(last_id=(slot.last_id or 0) + 1000)
    assert backend.update_last("k", ChatMessage(role="assistant", content="replaced"))
    assert [m.content for m in backend.load("k")] == ["first", "replaced"]
    assert [h.index for h in backend.search_messages("replaced")] == [1]
    assert backend.search_messages("second") == []


# Bulk appends: chunk by chunk, each chunk indexed while the one before is inserted.


def test_bulk_append_in_many_chunks_keeps_order_counts_and_search() -> None:
    backend = DuckDBSessionBackend(":memory:", tuning=Tuning(insert_chunk=3))
    backend.append("a", ChatMessage(role="user", content="before"))
    batch = [(f"{'ab'[i % 2]}", ChatMessage(role="user", content=f"bulk{i} shared")) for i in range(20)]
    assert backend.append_many(batch) == 20
    assert [m.content for m in backend.load("a")] == ["before", *[f"bulk{i} shared" for i in range(0, 20, 2)]]
    assert [m.content for m in backend.load("b")] == [f"bulk{i} shared" for i in range(1, 20, 2)]
    assert {(h.session_key, h.index) for h in backend.search_messages("bulk7")} == {("b", 3)}
    assert len(backend.search_messages("shared", limit=None)) == 20
    assert backend.append("b", ChatMessage(role="user", content="after")) == 11


def test_bulk_append_failing_in_a_later_chunk_writes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    backend = DuckDBSessionBackend(":memory:", tuning=Tuning(insert_chunk=3))
    backend.append("a", ChatMessage(role="user", content="kept"))
    calls = 0
    original = Writer.insert_messages

    def fail_third(self: Writer, cur: duckdb.DuckDBPyConnection, rows: list) -> list:  # type: ignore[type-arg]
        nonlocal calls
        calls += 1
        if calls == 3:  # a fault injected where only a broken disk would fail
            raise duckdb.IOException("disk went away")
        return original(self, cur, rows)

    monkeypatch.setattr(Writer, "insert_messages", fail_third)
    with pytest.raises(StoreFailure, match="disk went away"):
        backend.append_many([("a", ChatMessage(role="user", content=f"lost{i}")) for i in range(12)])
    monkeypatch.setattr(Writer, "insert_messages", original)
    assert [m.content for m in backend.load("a")] == ["kept"]
    assert backend.search_messages("lost3") == []
    assert backend.append("a", ChatMessage(role="user", content="next")) == 2


def test_an_import_analysed_in_the_analysis_process_indexes_as_appends_do() -> None:
    words = ["Running runs", "update_last updateLast", "HTTPServer 1.5.5 café", "日本語 text", "the the the"]
    messages = [ImportedMessage("user", f"{words[i % 5]} m{i % 97} {'x' * (i % 3)}", "2025-01-01T00:00:00+00:00")
                for i in range(2_500)]  # fmt: skip
    imported = DuckDBSessionBackend(":memory:", tuning=Tuning(insert_chunk=1_000))
    with imported.bulk_import() as bulk:
        bulk.session(ImportedSession("k"))
        for message in messages:
            bulk.add("k", message)
    assert imported._writer.analysis.started
    appended = DuckDBSessionBackend(":memory:")
    appended.append_many([("k", ChatMessage(role="user", content=m.content)) for m in messages])
    postings = "SELECT m.idx, p.term, p.tf, p.dl FROM _postings p JOIN messages m ON m.id = p.message_id ORDER BY ALL"
    for backend in (imported, appended):
        backend.merge()
    assert imported._conn.db.execute(postings).fetchall() == appended._conn.db.execute(postings).fetchall()
    assert [h.index for h in imported.search_messages("run m5", limit=None)] == [
        h.index for h in appended.search_messages("run m5", limit=None)
    ]
    imported.close()
    appended.close()


def test_memory_limit_is_raised_for_a_bulk_append_and_lowered_after_its_merge(db_path: str) -> None:
    tuning = Tuning(merge_in_background=False, insert_chunk=500, memory_limit="100MB", bulk_memory_limit="1GB")
    with DuckDBSessionBackend(db_path, tuning=tuning) as backend:
        seen: set[str] = set()
        done = threading.Event()

        def limit(cur: duckdb.DuckDBPyConnection) -> str:
            return cur.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]

        def watch() -> None:  # the setting is the database's: another connection sees it change
            cur = backend._conn.db.cursor()
            while not done.is_set():
                seen.add(limit(cur))
                time.sleep(0.001)
            cur.close()

        serving = limit(backend._conn.db.cursor())
        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            backend.append_many([(f"s{i % 9}", ChatMessage(role="user", content=f"m{i} word")) for i in range(30_000)])
        finally:
            done.set()
            watcher.join()
        assert seen - {serving}, f"the limit stayed at {serving} during the bulk append"
        assert backend._index.merged_upto == backend._index.last_id, "the bulk append was merged"
        assert limit(backend._conn.db.cursor()) == serving
        assert not backend._conn.memory_raised
        backend.optimize()
        assert limit(backend._conn.db.cursor()) == serving
        assert len(backend.search_messages("word", limit=None)) == 30_000
