"""The baseline MCP server: the SQLite FTS5 store of sqlite_fts.py behind plain `@mcp.tool()` functions.

    .venv/bin/python -m benchmarks.sqlite_server --db FILE               # serve over stdio
    .venv/bin/python -m benchmarks.sqlite_server --db FILE --import DIR  # load DIR/*.jsonl, then exit

What a user would write on the same SDK: MCPServer's default handling (sync tools on worker threads, argument and
output validation, structured content plus indented JSON text). The tools are the ones benchmarks/wire.py measures,
with this server's names, argument shapes and result models.
"""

from __future__ import annotations

import argparse
import itertools
import json
import queue
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

if __package__ in (None, ""):  # run as `python benchmarks/sqlite_server.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mcp.server.mcpserver import MCPServer

from benchmarks.sqlite_fts import SQLiteFTSBackend
from mcp_sessions.importers.run import IMPORT_BATCH
from mcp_sessions.models import ChatMessage, SessionQuery
from mcp_sessions.results import (
    AppendResult,
    GetSessionMetadataResult,
    ListSessionsWithMetadataResult,
    LoadResult,
    SearchMessagesResult,
    SearchResult,
    UpdateLastResult,
)


class Pool:
    """Connections for the worker threads: one per call in flight (WAL lets readers run beside the writer),
    writes one at a time behind a lock, as SQLite allows a single writer."""

    def __init__(self, path: str, synchronous: str) -> None:
        self._path, self._synchronous = path, synchronous
        self._idle: queue.SimpleQueue[SQLiteFTSBackend] = queue.SimpleQueue()
        self._write = threading.Lock()
        self._idle.put(SQLiteFTSBackend(path, synchronous))  # the schema exists before the first call

    @contextmanager
    def read(self) -> Iterator[SQLiteFTSBackend]:
        try:
            backend = self._idle.get_nowait()
        except queue.Empty:
            backend = SQLiteFTSBackend(self._path, self._synchronous)
        try:
            yield backend
        finally:
            self._idle.put(backend)

    @contextmanager
    def write(self) -> Iterator[SQLiteFTSBackend]:
        with self._write, self.read() as backend:
            yield backend


def build_server(path: str, synchronous: str = "NORMAL") -> MCPServer:
    pool = Pool(path, synchronous)
    mcp = MCPServer("sqlite-fts-baseline")

    @mcp.tool()
    def load(session_key: str, offset: int | None = None, limit: int | None = None) -> LoadResult:
        """A session's messages, oldest first, sliced by offset/limit (negative offset counts from the end)."""
        with pool.read() as store:
            page = store.load_page(session_key, offset, limit)
        messages = [ChatMessage(role=m.role, content=m.content) for m in page.messages]
        return LoadResult(session_key=session_key, messages=messages, total=page.total)

    @mcp.tool()
    def append(session_key: str, message: ChatMessage) -> AppendResult:
        """Add a message at the end of a session, creating the session."""
        with pool.write() as store:
            count = store.append(session_key, message)
        return AppendResult(session_key=session_key, message_count=count)

    @mcp.tool()
    def update_last(session_key: str, message: ChatMessage) -> UpdateLastResult:
        """Replace a session's last message."""
        with pool.write() as store:
            return UpdateLastResult(updated=store.update_last(session_key, message))

    @mcp.tool()
    def search(query: SessionQuery) -> SearchResult:
        """Sessions ranked by their best matching message."""
        with pool.read() as store:
            return SearchResult(sessions=store.search(query))

    @mcp.tool()
    def search_messages(query: str, limit: int = 20, session_key: str | None = None) -> SearchMessagesResult:
        """The messages matching any word of query, best first."""
        with pool.read() as store:
            return SearchMessagesResult(hits=store.search_messages(query, limit, session_key))

    @mcp.tool()
    def list_sessions_with_metadata(limit: int | None = None, offset: int = 0) -> ListSessionsWithMetadataResult:
        """Sessions, most recent activity first."""
        with pool.read() as store:
            return ListSessionsWithMetadataResult(sessions=store.list_sessions_with_metadata(limit, offset))

    @mcp.tool()
    def get_session_metadata(session_key: str) -> GetSessionMetadataResult:
        """One session's metadata, null when missing."""
        with pool.read() as store:
            return GetSessionMetadataResult(metadata=store.get_session_metadata(session_key))

    return mcp


def _messages(folder: Path) -> Iterator[tuple[str, ChatMessage]]:
    """Every line of folder/*.jsonl, files in name order (as `mcp-sessions import` reads them), key = file stem."""
    for path in sorted(folder.glob("*.jsonl")):
        with path.open("rb") as lines:
            for line in lines:
                value = json.loads(line)
                yield path.stem, ChatMessage(role=value["role"], content=value["content"])


def import_folder(path: str, folder: Path, synchronous: str) -> None:
    """The store's own bulk path: append_many in transactions of IMPORT_BATCH messages, then FTS5 optimize."""
    started = time.perf_counter()
    store = SQLiteFTSBackend(path, synchronous)
    rows, added = _messages(folder), 0
    while chunk := list(itertools.islice(rows, IMPORT_BATCH)):
        added += store.append_many(chunk)
    imported = time.perf_counter()
    store.optimize()
    store.close()
    done = time.perf_counter()
    print(
        f"imported {added} messages in {imported - started:.1f} s, optimize and close {done - imported:.1f} s",
        file=sys.stderr,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sqlite_server", description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True, help="SQLite database file")
    parser.add_argument("--import", dest="folder", type=Path, help="load FOLDER/*.jsonl into --db and exit")
    parser.add_argument("--synchronous", choices=("NORMAL", "FULL"), default="NORMAL", help="SQLite's PRAGMA")
    args = parser.parse_args(argv)
    if args.folder is not None:
        import_folder(args.db, args.folder, args.synchronous)
    else:
        build_server(args.db, args.synchronous).run()


if __name__ == "__main__":
    main()
