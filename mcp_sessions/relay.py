"""Many servers, one store: the process holding the DuckDB file serves the others over a Unix socket.

DuckDB lets one process at a time open a file for writing. The first server to open it holds it and
listens on a socket private to the user; a later server finds the file held and relays its backend
calls to the holder. When the holder goes away, the next call of a relay takes the file over.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import socket
import socketserver
import tempfile
import threading
import time
import typing
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter
from pydantic_core import to_jsonable_python

from .backend import SessionBackend
from .errors import StoreLocked, StoreReadOnly, StoreUnavailable
from .models import (
    DEFAULT_MAX_CONTENT_BYTES,
    SEARCH_MESSAGES_LIMIT_DEFAULT,
    ChatMessage,
    InvalidArgument,
    MessageFilters,
    MessageHit,
    MessagePage,
    MessageSearch,
    MessageSearchPage,
    SessionContext,
    SessionMetadata,
    SessionQuery,
    SessionState,
    TimestampedMessage,
)
from .store.duckdb import DuckDBSessionBackend, ImportMark
from .tool_names import READ_ONLY_TOOLS, SETTERS, TOOLS
from .write_feed import Feed, Watch, WriteWatcher, watching_origin

log = logging.getLogger(__name__)

# Every operation a relay forwards: the tools' (the trait's and search_messages), then load_page,
# search_messages_page (what the search_messages tool calls) and append_many.
OPERATIONS = (*TOOLS, "load_page", "search_messages_page", "append_many")
# Calls that can be sent again after the holder vanished mid-call: reads (the read-only tools, and
# load_page beneath load) and setters of a value.
_RETRYABLE = READ_ONLY_TOOLS | SETTERS | {"load_page", "search_messages_page"}
_ERRORS: dict[str, type[Exception]] = {"InvalidArgument": InvalidArgument, "StoreReadOnly": StoreReadOnly}
# How long a relay keeps trying to reach a holder, or become one, before a call fails.
TAKEOVER_SECONDS = 10.0


def socket_path(db_path: str) -> Path:
    """The holder's socket: in a folder only this user can enter, named after the database's real path."""
    runtime = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    folder = Path(runtime) / f"mcp-sessions-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    if folder.stat().st_uid != os.getuid():
        raise StoreUnavailable(f"{folder} belongs to another user: refusing to share the store through it")
    folder.chmod(0o700)
    digest = hashlib.sha256(str(Path(db_path).resolve()).encode()).hexdigest()[:32]
    return folder / f"{digest}.sock"


def _adapters(name: str) -> tuple[dict[str, TypeAdapter[Any]], TypeAdapter[Any]]:
    """An adapter per parameter of the operation, and one for its result, from the store's type hints."""
    method = getattr(DuckDBSessionBackend, name)
    hints = typing.get_type_hints(method)
    params = {p: TypeAdapter(hints[p]) for p in inspect.signature(method).parameters if p != "self"}
    if name == "append_many":
        params["items"] = TypeAdapter(list[tuple[str, ChatMessage]])  # an Iterable would validate lazily
    return params, TypeAdapter(hints.get("return", type(None)))


_SIGNATURES = {name: _adapters(name) for name in OPERATIONS}


# Operations that change nothing: no watcher hears of them.
_READS = READ_ONLY_TOOLS | {"load_page", "search_messages_page"}


def _written_keys(name: str, kwargs: dict[str, Any]) -> list[str]:
    """The sessions a write operation's arguments name (none for cleanup_stale: only the recent list changes)."""
    if name == "append_many":
        return list(dict.fromkeys(key for key, _ in kwargs.get("items", ())))
    key = kwargs.get("session_key")
    return [key] if isinstance(key, str) else []


class _Handler(socketserver.StreamRequestHandler):
    """One relay connection: a JSON request per line, a JSON answer per line."""

    server: _SocketServer

    def handle(self) -> None:
        with self.server.lock:
            self.server.connections.add(self.connection)
        try:
            for line in self.rfile:
                origin = watching_origin(line)
                if origin is not None:
                    self._watch(origin)
                    return
                answer, written = self.server.answer(line)
                self.wfile.write(json.dumps(answer, ensure_ascii=False).encode() + b"\n")
                self.wfile.flush()
                if written is not None:
                    self.server.tell(*written)
        except OSError:
            pass  # the relay went away, or we are closing
        finally:
            with self.server.lock:
                self.server.connections.discard(self.connection)

    def _watch(self, origin: str) -> None:
        """A relay watching writes: announcements go out on this connection until the relay hangs up."""
        self.server.feed.add(origin, self.wfile)  # pyright: ignore[reportArgumentType]
        try:
            for _ in self.rfile:
                pass
        finally:
            self.server.feed.remove(origin)


class _SocketServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path: Path, backend: DuckDBSessionBackend, watchers: list[WriteWatcher]) -> None:
        self.backend = backend
        self.watchers = watchers
        self.feed = Feed()
        self.closing = False
        self.lock = threading.Lock()
        self.connections: set[socket.socket] = set()
        path.unlink(missing_ok=True)  # left by a holder that was killed; we hold the file now
        old_mask = os.umask(0o177)
        try:
            super().__init__(str(path), _Handler)
        finally:
            os.umask(old_mask)

    def answer(self, line: bytes) -> tuple[dict[str, Any], tuple[list[str], str | None] | None]:
        """The answer to one request, and the sessions it wrote with the relay it came from (None when it wrote
        nothing)."""
        try:
            request = json.loads(line)
            name = request["method"]
            if name not in _SIGNATURES:
                raise ValueError(f"unknown operation {name!r}")
            if self.closing:
                # Not applied: the relay may send it again to whoever holds the store next.
                return {"error": {"kind": "HolderClosing", "message": "the holder is closing"}}, None
            params, _ = _SIGNATURES[name]
            kwargs = {key: params[key].validate_python(value) for key, value in request["kwargs"].items()}
            result = getattr(self.backend, name)(**kwargs)
            origin = request.get("origin")
            written = None if name in _READS else (_written_keys(name, kwargs), origin)
            return {"ok": to_jsonable_python(result)}, written
        except Exception as exc:  # every failure goes back to the relay that asked
            return {"error": {"kind": type(exc).__name__, "message": str(exc)}}, None

    def tell(self, session_keys: list[str], origin: str | None) -> None:
        """A relay's write was applied: tell this process's watchers and the other watching relays."""
        self.feed.push(session_keys, origin)
        for watcher in list(self.watchers):
            try:
                watcher(session_keys)
            except Exception:  # a watcher's failure must not cost the relay its connection
                log.exception("a write watcher failed")


class Holder:
    """Serves an open store to relays on the store's socket until closed."""

    def __init__(self, backend: DuckDBSessionBackend, path: Path, watchers: list[WriteWatcher]) -> None:
        self.path = path
        self._server = _SocketServer(path, backend, watchers)
        self._thread = threading.Thread(target=self._server.serve_forever, name="mcp-sessions-holder", daemon=True)
        self._thread.start()

    def announce(self, session_keys: list[str]) -> None:
        """Tell the watching relays of a write this process made."""
        self._server.feed.push(session_keys, None)

    def stop_accepting(self) -> None:
        """Refuse new calls and connections; calls already running finish."""
        self._server.closing = True
        self._server.feed.close()
        self._server.shutdown()
        self._server.server_close()
        self.path.unlink(missing_ok=True)

    def disconnect(self) -> None:
        """Hang up on every relay, so each notices at once and takes over or finds who did."""
        with self._server.lock:
            connections = list(self._server.connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class SharedBackend(SessionBackend):
    """A store shared by every server started on one file: local while this process holds it, else relayed."""

    def __init__(
        self,
        path: str,
        *,
        max_content_bytes: int = DEFAULT_MAX_CONTENT_BYTES,
        read_only_file: bool = False,
        wait: float = TAKEOVER_SECONDS,
    ) -> None:
        self.path = path
        self._wait = wait
        self.max_content_bytes = max_content_bytes
        self._read_only_file = read_only_file
        self._socket = socket_path(path)
        self._local: DuckDBSessionBackend | None = None
        self._holder: Holder | None = None
        self._lock = threading.Lock()
        self._connections = threading.local()
        self._closed = False
        self._watchers: list[WriteWatcher] = []
        # Names this process to the holder, so the writes it relays are not announced back to it.
        self._origin = uuid.uuid4().hex
        self._watch: Watch | None = None
        self._become_holder_or_relay()

    def watch_relayed_writes(self, watcher: WriteWatcher) -> None:
        """Call watcher with the session keys of each write another server sharing the store made: relayed to
        this one while it holds the file, else announced by the holder (its own writes this process knows of)."""
        self._watchers.append(watcher)
        if self._local is None and self._watch is None:
            self._watch = Watch(self._connect, self._origin, self._watchers, lambda: self._local is not None)

    def announce_writes(self, session_keys: list[str]) -> None:
        """This process's tools wrote these sessions: while holding the file, tell the watching relays (a relay's
        writes reach the holder, which tells the others)."""
        holder = self._holder
        if holder is not None:
            holder.announce(session_keys)

    @property
    def holds_file(self) -> bool:
        """True while this process holds the database file."""
        return self._local is not None

    def _try_hold(self) -> bool:
        try:
            store = DuckDBSessionBackend(
                self.path, read_only=self._read_only_file, max_content_bytes=self.max_content_bytes
            )
        except StoreLocked:
            return False
        self._local = store
        if not self._read_only_file:
            self._holder = Holder(store, self._socket, self._watchers)
        log.info("holding %s; serving other servers on %s", self.path, self._socket)
        return True

    def _become_holder_or_relay(self) -> None:
        """Hold the file if it is free, else wait until a holder answers on the socket."""
        deadline = time.monotonic() + self._wait
        while True:
            if self._try_hold():
                return
            try:
                self._connect().close()
                log.info("%s is held by another server: relaying to it through %s", self.path, self._socket)
                return
            except OSError:
                pass  # the holder is starting or has just gone: try again
            if time.monotonic() > deadline:
                raise StoreUnavailable(
                    f"{self.path} is held by a process that does not answer on {self._socket}: stop it, or give"
                    " this server its own file with --db"
                )
            time.sleep(0.05)

    def _connect(self) -> socket.socket:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.connect(str(self._socket))
        except OSError:
            conn.close()
            raise
        return conn

    def _channel(self) -> tuple[socket.socket, Any]:
        channel = getattr(self._connections, "channel", None)
        if channel is None:
            conn = self._connect()
            channel = (conn, conn.makefile("rb"))
            self._connections.channel = channel
        return channel

    def _drop_channel(self) -> None:
        channel = getattr(self._connections, "channel", None)
        self._connections.channel = None
        if channel is not None:
            channel[1].close()
            channel[0].close()

    def _relay(self, name: str, kwargs: dict[str, Any]) -> Any:
        body = {"method": name, "kwargs": to_jsonable_python(kwargs), "origin": self._origin}
        request = json.dumps(body, ensure_ascii=False).encode()
        sent = False
        try:
            conn, reader = self._channel()
            conn.sendall(request + b"\n")
            sent = True
            line = reader.readline()
            if not line:
                raise ConnectionResetError("the holder closed the connection")
        except OSError as exc:
            self._drop_channel()
            self._recover()
            if sent and name not in _RETRYABLE:
                raise StoreUnavailable(
                    f"the server holding the store went away during {name}; it may or may not have been applied"
                    " (load the session to see), and the store is available again"
                ) from exc
            return self._call(name, kwargs)
        answer = json.loads(line)
        if "error" in answer:
            error = answer["error"]
            if error["kind"] == "HolderClosing":
                self._drop_channel()
                self._recover()
                return self._call(name, kwargs)
            raise _ERRORS.get(error["kind"], StoreUnavailable)(error["message"])
        return _SIGNATURES[name][1].validate_python(answer["ok"])

    def _recover(self) -> None:
        """After the holder vanished: take the file over, or find who did."""
        with self._lock:
            if self._local is None and not self._closed:
                self._become_holder_or_relay()

    def _call(self, name: str, kwargs: dict[str, Any]) -> Any:
        local = self._local
        if local is not None:
            return getattr(local, name)(**kwargs)
        return self._relay(name, kwargs)

    def close(self) -> None:
        """Stop serving relays, then close the store (or the connections to its holder)."""
        with self._lock:
            self._closed = True
            if self._watch is not None:
                self._watch.stop()
            if self._holder is not None:
                self._holder.stop_accepting()
            if self._local is not None:
                self._local.close()  # waits for a write in progress
            if self._holder is not None:
                self._holder.disconnect()
        self._drop_channel()

    def answers_from_memory(self, tool: str, arguments: dict[str, object]) -> bool:
        local = self._local
        return local is not None and local.answers_from_memory(tool, arguments)

    # The operations, each sent to the holder (or run here while this process holds the file).

    def load(self, session_key: str) -> list[ChatMessage]:
        return self._call("load", {"session_key": session_key})

    def append(self, session_key: str, message: ChatMessage) -> int:
        return self._call("append", {"session_key": session_key, "message": message})

    def remove_last(self, session_key: str) -> bool:
        return self._call("remove_last", {"session_key": session_key})

    def list_sessions(self) -> list[str]:
        return self._call("list_sessions", {})

    def load_with_timestamps(self, session_key: str) -> list[TimestampedMessage]:
        return self._call("load_with_timestamps", {"session_key": session_key})

    def update_last(self, session_key: str, message: ChatMessage) -> bool:
        return self._call("update_last", {"session_key": session_key, "message": message})

    def list_sessions_with_metadata(
        self, limit: int | None = None, offset: int = 0, agent_alias: str | None = None
    ) -> list[SessionMetadata]:
        arguments = {"limit": limit, "offset": offset, "agent_alias": agent_alias}
        return self._call("list_sessions_with_metadata", arguments)

    def compact(self, session_key: str) -> int:
        return self._call("compact", {"session_key": session_key})

    def cleanup_stale(self, ttl_hours: int) -> int:
        return self._call("cleanup_stale", {"ttl_hours": ttl_hours})

    def search(self, query: SessionQuery, agent_alias: str | None = None) -> list[SessionMetadata]:
        return self._call("search", {"query": query, "agent_alias": agent_alias})

    def clear_messages(self, session_key: str) -> int:
        return self._call("clear_messages", {"session_key": session_key})

    def delete_session(self, session_key: str) -> bool:
        return self._call("delete_session", {"session_key": session_key})

    def set_session_name(self, session_key: str, name: str) -> str | None:
        return self._call("set_session_name", {"session_key": session_key, "name": name})

    def get_session_name(self, session_key: str) -> str | None:
        return self._call("get_session_name", {"session_key": session_key})

    def set_session_agent_alias(self, session_key: str, agent_alias: str) -> str | None:
        return self._call("set_session_agent_alias", {"session_key": session_key, "agent_alias": agent_alias})

    def get_session_agent_alias(self, session_key: str) -> str | None:
        return self._call("get_session_agent_alias", {"session_key": session_key})

    def set_session_context(self, session_key: str, context: SessionContext) -> SessionContext:
        return self._call("set_session_context", {"session_key": session_key, "context": context})

    def get_session_metadata(self, session_key: str) -> SessionMetadata | None:
        return self._call("get_session_metadata", {"session_key": session_key})

    def set_session_state(self, session_key: str, state: str, turn_id: str | None = None) -> SessionState:
        return self._call("set_session_state", {"session_key": session_key, "state": state, "turn_id": turn_id})

    def get_session_state(self, session_key: str) -> SessionState | None:
        return self._call("get_session_state", {"session_key": session_key})

    def list_running_sessions(self) -> list[SessionMetadata]:
        return self._call("list_running_sessions", {})

    def list_stuck_sessions(self, threshold_secs: int) -> list[SessionMetadata]:
        return self._call("list_stuck_sessions", {"threshold_secs": threshold_secs})

    def load_page(self, session_key: str, offset: int | None = None, limit: int | None = None) -> MessagePage:
        return self._call("load_page", {"session_key": session_key, "offset": offset, "limit": limit})

    def search_messages(
        self, query: str, limit: int | None = SEARCH_MESSAGES_LIMIT_DEFAULT, filters: MessageFilters | None = None
    ) -> list[MessageHit]:
        return self._call("search_messages", {"query": query, "limit": limit, "filters": filters})

    def search_messages_page(self, search: MessageSearch) -> MessageSearchPage:
        return self._call("search_messages_page", {"search": search})

    def append_many(self, items: Iterable[tuple[str, ChatMessage]], marks: Sequence[ImportMark] = ()) -> int:
        """Append many messages in one transaction of the holder's; return how many (see DuckDBSessionBackend)."""
        return self._call("append_many", {"items": list(items), "marks": list(marks)})
