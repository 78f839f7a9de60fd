"""The real server process on a bad day: killed mid-write, torn or corrupt logs, a full disk, a read-only disk."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import anyio
import pytest
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from tool_calls import call, message, refused

from mcp_sessions.models import ChatMessage
from mcp_sessions.store.duckdb import DuckDBSessionBackend, Tuning

pytestmark = [pytest.mark.anyio, pytest.mark.skipif(sys.platform != "linux", reason="needs /proc, tmpfs and signals")]

START = 30  # seconds: room for a cold interpreter start and the MCP SDK import
# Consonants only, no s or y: the English stemmer leaves such words whole, so each code finds one message.
LETTERS = "bcdfghjkmnpqrtvwxz"


def code(n: int) -> str:
    """A word of its own for message n: searching it finds that message and no other."""
    letters = []
    for _ in range(6):
        n, digit = divmod(n, len(LETTERS))
        letters.append(LETTERS[digit])
    return "zq" + "".join(letters)


def params(db: str, *flags: str) -> StdioServerParameters:
    return StdioServerParameters(command=sys.executable, args=["-m", "mcp_sessions", "--db", db, *flags])


@asynccontextmanager
async def serve(db: str, errlog: IO[str], *flags: str) -> AsyncIterator[Client]:
    """The real program over stdio with the official client, its stderr going to errlog."""
    async with Client(stdio_client(params(db, *flags), errlog=errlog), read_timeout_seconds=START) as client:
        yield client


def server_pid(db: str) -> int:
    """The pid of this test's server child serving db (the client spawns it in a session of its own)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (stat.parent / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == os.getpid() and db.encode() in cmdline:
            return int(stat.parent.name)
    raise AssertionError(f"no server process for {db}")


async def stored(client: Client, key: str) -> list[dict[str, str]]:
    """A session's messages, checked against its count."""
    loaded = await call(client, "load", {"session_key": key})
    metadata = (await call(client, "get_session_metadata", {"session_key": key}))["metadata"]
    assert loaded["total"] == len(loaded["messages"])
    assert (metadata["message_count"] if metadata else 0) == loaded["total"]
    return loaded["messages"]


async def assert_search_agrees(client: Client, sessions: dict[str, list[dict[str, str]]], gone: set[str]) -> None:
    """Each message's code finds that message, at its index; codes of overwritten messages find nothing."""
    for key, messages in sessions.items():
        for index, stored_message in enumerate(messages):
            word = stored_message["content"].split()[-1]
            hits = (await call(client, "search_messages", {"query": word}))["hits"]
            assert [(h["session_key"], h["index"]) for h in hits] == [(key, index)], word
    live = {m["content"].split()[-1] for messages in sessions.values() for m in messages}
    for word in sorted(gone - live):
        assert (await call(client, "search_messages", {"query": word}))["hits"] == [], word


# Killed at any moment.


@dataclass
class Writer:
    """One session written by one task: what was acknowledged, and the call in flight when the server died."""

    key: str
    acked: list[dict[str, str]] = field(default_factory=list)
    in_flight: tuple[str, dict[str, str]] | None = None

    def apply(self, op: tuple[str, dict[str, str]]) -> list[dict[str, str]]:
        tool, sent = op
        return [*self.acked, sent] if tool == "append" else [*self.acked[:-1], sent]


@pytest.mark.slow
async def test_sigkill_during_appends_and_updates_loses_no_acknowledged_write(tmp_path: Path) -> None:
    db = str(tmp_path / "crash.duckdb")
    seed = random.randrange(1 << 32)
    rng = random.Random(seed)
    writers = [Writer(f"crash {i}") for i in range(3)]
    overwritten: set[str] = set()
    counter = iter(range(1 << 30))
    errlog = (tmp_path / "stderr.txt").open("w")

    async def write(client: Client, writer: Writer, stop: anyio.Event, signalled: anyio.Event) -> None:
        while not stop.is_set():
            n = next(counter)
            tool = "update_last" if writer.acked and rng.random() < 0.35 else "append"
            sent = message(f"crash stream message {n} {code(n)}", rng.choice(["user", "assistant"]))
            writer.in_flight = (tool, sent)
            try:
                result = await client.call_tool(tool, {"session_key": writer.key, "message": sent})
            except Exception:
                if not signalled.is_set():
                    raise  # a failure of the server's own, not the kill
                return  # the server is gone: this call was never acknowledged
            if result.is_error:
                # Only a server shutting down may refuse a well-formed write.
                assert signalled.is_set(), (tool, sent, result.content, f"seed {seed}")
                return
            expected = {"session_key": writer.key, "message_count": len(writer.acked) + 1}
            assert result.structured_content == (expected if tool == "append" else {"updated": True})
            if tool == "update_last":
                overwritten.add(writer.acked[-1]["content"].split()[-1])
            writer.acked = writer.apply((tool, sent))
            writer.in_flight = None

    for round_ in range(5):
        # Restart on what the last kill left: it opens, and holds every acknowledged write in order.
        with anyio.fail_after(START):
            async with serve(db, errlog) as client:
                for writer in writers:
                    found = await stored(client, writer.key)
                    allowed = [writer.acked] + ([writer.apply(writer.in_flight)] if writer.in_flight else [])
                    assert found in allowed, f"seed {seed}, round {round_}, {writer.key}"
                    if writer.in_flight and found != writer.acked and writer.in_flight[0] == "update_last":
                        overwritten.add(writer.acked[-1]["content"].split()[-1])
                    writer.acked, writer.in_flight = found, None
                await assert_search_agrees(client, {w.key: w.acked for w in writers}, overwritten)
                if round_ == 4:
                    break
                pid = server_pid(db)
                stop, signalled = anyio.Event(), anyio.Event()
                async with anyio.create_task_group() as tasks:
                    for writer in writers:
                        tasks.start_soon(write, client, writer, stop, signalled)
                    await anyio.sleep(rng.uniform(0.05, 0.6))
                    signalled.set()
                    if round_ % 2:
                        # SIGTERM closes the store with a checkpoint: a kill soon after lands in it.
                        os.kill(pid, signal.SIGTERM)
                        await anyio.sleep(rng.uniform(0, 0.03))
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass  # SIGTERM finished first
                    stop.set()
    errlog.close()
    assert sum(len(w.acked) for w in writers) > 10, "the stream never got going"


# Torn and corrupt logs.


async def write_logged(tmp_path: Path, db: str, errlog: IO[str]) -> tuple[list[dict[str, str]], list[tuple[int, int]]]:
    """A checkpointed base of 5 messages, then 30 more left only in the log by a SIGKILL.

    Returns the messages and, for each acknowledged append after the base, (log size once it returned, count).
    """
    sent = [message(f"logged message {n} {code(n)}") for n in range(35)]
    with anyio.fail_after(START):
        async with serve(db, errlog) as client:
            for m in sent[:5]:
                await call(client, "append", {"session_key": "logged", "message": m})
    # The clean exit checkpointed: no log left, the base is in the main file.
    assert not Path(db + ".wal").exists()
    sizes: list[tuple[int, int]] = []
    with anyio.fail_after(START):
        async with serve(db, errlog) as client:
            for count, m in enumerate(sent[5:], start=6):
                await call(client, "append", {"session_key": "logged", "message": m})
                sizes.append((Path(db + ".wal").stat().st_size, count))
            os.kill(server_pid(db), signal.SIGKILL)
    return sent, sizes


async def test_a_log_cut_short_keeps_every_commit_before_the_cut(tmp_path: Path) -> None:
    db = str(tmp_path / "torn.duckdb")
    with (tmp_path / "stderr.txt").open("w") as errlog:
        sent, sizes = await write_logged(tmp_path, db, errlog)
        main, log = Path(db).read_bytes(), Path(db + ".wal").read_bytes()
        # Inside a commit, exactly at the end of one, and inside the first commit after the base.
        cuts = [random.randrange(sizes[0][0] + 1, sizes[-1][0]), sizes[len(sizes) // 2][0], sizes[0][0] - 7]
        for cut in cuts:
            Path(db).write_bytes(main)
            Path(db + ".wal").write_bytes(log[:cut])
            kept = max([count for size, count in sizes if size <= cut], default=5)
            with anyio.fail_after(START):
                async with serve(db, errlog) as client:
                    assert await stored(client, "logged") == sent[:kept], f"cut at {cut} of {len(log)}"
                    await assert_search_agrees(client, {"logged": sent[:kept]}, set())
                    # And it takes writes again.
                    await call(client, "append", {"session_key": "logged", "message": message("after the cut")})
    assert not list(tmp_path.glob("*.unreplayable-*"))
    assert "could not be replayed" not in (tmp_path / "stderr.txt").read_text()


async def test_a_corrupt_log_is_moved_aside_reported_and_the_main_file_served(tmp_path: Path) -> None:
    db = str(tmp_path / "corrupt.duckdb")
    with (tmp_path / "stderr.txt").open("w") as errlog:
        sent, sizes = await write_logged(tmp_path, db, errlog)
        log = bytearray(Path(db + ".wal").read_bytes())
        middle = sizes[len(sizes) // 2][0] - 40
        log[middle : middle + 16] = bytes(b ^ 0x5A for b in log[middle : middle + 16])
        Path(db + ".wal").write_bytes(log)
        errlog.flush()
        reported = (tmp_path / "stderr.txt").stat().st_size
        with anyio.fail_after(START):
            async with serve(db, errlog) as client:
                # What the main file holds: the checkpointed base.
                assert await stored(client, "logged") == sent[:5]
                await call(client, "append", {"session_key": "logged", "message": message("after the move")})
        with anyio.fail_after(START):
            async with serve(db, errlog) as client:
                assert await stored(client, "logged") == [*sent[:5], message("after the move")]
    [kept] = tmp_path.glob("corrupt.duckdb.wal.unreplayable-*")
    assert kept.read_bytes() == bytes(log)
    stderr = (tmp_path / "stderr.txt").read_text()[reported:]
    assert "could not be replayed" in stderr and kept.name in stderr, stderr


# Full and read-only disks: a small tmpfs of our own (root on Linux, as in CI).


@pytest.fixture
def mount_tmpfs(tmp_path: Path) -> Iterator[Any]:
    """mount_tmpfs(size) -> a fresh tmpfs folder of that size, unmounted after the test."""
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        point = tmp_path / f"disk{len(mounted)}"
        point.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)], capture_output=True)
        if done.returncode:
            reason = f"mounting a tmpfs is not permitted here (needs root on Linux): {done.stderr.decode().strip()}"
            # CI runs as root: there a skip would hide that the disk tests never ran.
            if os.environ.get("MCP_SESSIONS_CI"):
                pytest.fail(reason)
            pytest.skip(reason)
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], check=True)


def fill(disk: Path, room: int = 0) -> Path:
    """A file taking every free byte of disk but room."""
    filler = disk / "filler"
    stat = os.statvfs(disk)
    with filler.open("wb") as f:
        left = stat.f_bavail * stat.f_frsize - room
        try:
            while left > 0:
                left -= f.write(b"\0" * min(left, 1 << 20))
                f.flush()
        except OSError:
            pass  # full already
    return filler


async def snapshot(client: Client, key: str) -> dict[str, Any]:
    return {
        "load": await call(client, "load_with_timestamps", {"session_key": key}),
        "metadata": await call(client, "get_session_metadata", {"session_key": key}),
        "sessions": await call(client, "list_sessions_with_metadata"),
    }


async def test_a_full_disk_fails_writes_cleanly_keeps_reads_and_recovers(mount_tmpfs: Any, tmp_path: Path) -> None:
    disk = mount_tmpfs("8m")
    db = str(disk / "full.duckdb")
    base = [message(f"before the disk filled {code(n)}") for n in range(5)]
    big = message("overflowing " * 20_000 + code(99))
    with (tmp_path / "stderr.txt").open("w") as errlog:
        with anyio.fail_after(START):
            async with serve(db, errlog) as client:
                for m in base:
                    await call(client, "append", {"session_key": "full", "message": m})
                filler = fill(disk)
                before = await snapshot(client, "full")
                for _ in range(3):
                    for tool in ("append", "update_last"):
                        text = await refused(client, tool, {"session_key": "full", "message": big})
                        assert "could not write" in text and "No space left on device" in text, text
                # Nothing changed, and reads keep working.
                assert await snapshot(client, "full") == before
                await assert_search_agrees(client, {"full": base}, {code(99)})
                filler.unlink()
                result = await call(client, "append", {"session_key": "full", "message": big})
                assert result == {"session_key": "full", "message_count": 6}
                await assert_search_agrees(client, {"full": [*base, big]}, set())
        with anyio.fail_after(START):
            async with serve(db, errlog) as client:
                assert await stored(client, "full") == [*base, big]


@pytest.mark.slow
async def test_a_checkpoint_failing_after_a_durable_commit_is_not_a_failed_write(
    mount_tmpfs: Any, tmp_path: Path
) -> None:
    disk = mount_tmpfs("200m")
    db = str(disk / "checkpoint.duckdb")
    # Our checkpoint runs after every 64th write once the log has passed Tuning.checkpoint_wal_bytes.
    bulk = [message(f"bulk {code(n)} " + "lorem ipsum " * 630_000) for n in range(9)]
    small = [message(f"small write {code(100 + n)}") for n in range(130)]
    assert sum(len(m["content"]) for m in bulk) > Tuning.checkpoint_wal_bytes
    stderr = tmp_path / "stderr.txt"
    with stderr.open("w") as errlog:
        with anyio.fail_after(120):
            async with serve(db, errlog, "--max-content-bytes", str(8 << 20)) as client:
                for m in bulk + small[:54]:
                    await call(client, "append", {"session_key": "big", "message": m})
                assert Path(db + ".wal").stat().st_size >= Tuning.checkpoint_wal_bytes
                # Room for the 64th commit in the log, none for the checkpoint after it.
                filler = fill(disk, room=1 << 20)
                result = await call(client, "append", {"session_key": "small", "message": small[54]})
                assert result == {"session_key": "small", "message_count": 1}
                errlog.flush()
                assert "checkpoint deferred" in stderr.read_text()
                # The server still reads and writes.
                assert await stored(client, "small") == small[54:55]
                await call(client, "append", {"session_key": "small", "message": small[55]})
                await assert_search_agrees(client, {"small": small[54:56]}, set())
                loaded = await call(client, "load", {"session_key": "big", "offset": -2})
                assert loaded == {"session_key": "big", "messages": small[52:54], "total": 63}
                # With room again, the checkpoint after the 128th write folds the log into the file.
                filler.unlink()
                for m in small[56:118]:
                    await call(client, "append", {"session_key": "small", "message": m})
                assert Path(db + ".wal").stat().st_size >= Tuning.checkpoint_wal_bytes
                await call(client, "append", {"session_key": "small", "message": small[118]})
                assert not Path(db + ".wal").exists() or Path(db + ".wal").stat().st_size < 1 << 20
                assert await stored(client, "small") == small[54:119]
        with anyio.fail_after(START):
            async with serve(db, errlog) as client:
                assert await stored(client, "small") == small[54:119]
                assert (await call(client, "load", {"session_key": "big", "limit": 1}))["messages"] == bulk[:1]
                metadata = (await call(client, "get_session_metadata", {"session_key": "big"}))["metadata"]
                assert metadata["message_count"] == 63


async def test_a_read_only_file_system_serves_reads_and_refuses_writes(mount_tmpfs: Any, tmp_path: Path) -> None:
    disk = mount_tmpfs("16m")
    db = str(disk / "ro.duckdb")
    sent = [message(f"written before the remount {code(n)}") for n in range(5)]
    with (tmp_path / "stderr.txt").open("w") as errlog:
        with anyio.fail_after(START):
            async with serve(db, errlog) as client:
                for m in sent[:3]:
                    await call(client, "append", {"session_key": "ro", "message": m})
        # Two more left only in the log.
        with anyio.fail_after(START):
            async with serve(db, errlog) as client:
                for m in sent[3:]:
                    await call(client, "append", {"session_key": "ro", "message": m})
                os.kill(server_pid(db), signal.SIGKILL)
        files = {p.name: p.read_bytes() for p in disk.iterdir()}
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        errlog.flush()
        reported = (tmp_path / "stderr.txt").stat().st_size
        with anyio.fail_after(START):
            async with serve(db, errlog) as client:
                assert await stored(client, "ro") == sent
                await assert_search_agrees(client, {"ro": sent}, set())
                for tool, arguments in [
                    ("append", {"message": message("no")}),
                    ("update_last", {"message": message("no")}),
                    ("delete_session", {}),
                    ("set_session_name", {"name": "no"}),
                ]:
                    text = await refused(client, tool, {"session_key": "ro", **arguments})
                    assert "read-only" in text, text
                assert await stored(client, "ro") == sent
    assert "read-only" in (tmp_path / "stderr.txt").read_text()[reported:]
    assert {p.name: p.read_bytes() for p in disk.iterdir()} == files


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file modes; the read-only tmpfs test covers root")
async def test_a_read_only_file_serves_reads_and_refuses_writes(tmp_path: Path) -> None:
    db = str(tmp_path / "mode.duckdb")
    store = DuckDBSessionBackend(db)
    store.append("k", ChatMessage(role="user", content="kept"))
    store.close()
    os.chmod(db, 0o444)
    with (tmp_path / "stderr.txt").open("w") as errlog:
        with anyio.fail_after(START):
            async with serve(db, errlog) as client:
                assert await stored(client, "k") == [message("kept")]
                assert "read-only" in await refused(client, "append", {"session_key": "k", "message": message("x")})
