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
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter
from pydantic_core import to_jsonable_python

from .backend import SessionBackend
from .models import DEFAULT_MAX_CONTENT_BYTES, ChatMessage, InvalidArgument
from .server import READ_ONLY_TOOLS
from .store.duckdb import DuckDBSessionBackend
from .store.errors import StoreLocked, StoreReadOnly, StoreUnavailable

log = logging.getLogger(__name__)

# Every operation a relay forwards: the trait's, then ours beyond it.
OPERATIONS = (
    "load",
    "append",
    "remove_last",
    "list_sessions",
    "load_with_timestamps",
    "update_last",
    "list_sessions_with_metadata",
    "compact",
    "cleanup_stale",
    "search",
    "clear_messages",
    "delete_session",
    "set_session_name",
    "get_session_name",
    "set_session_agent_alias",
    "get_session_agent_alias",
    "set_session_context",
    "get_session_metadata",
    "set_session_state",
    "get_session_state",
    "list_running_sessions",
    "list_stuck_sessions",
    "load_page",
    "search_messages",
    "append_many",
)
# Calls that can be sent again after the holder vanished mid-call: reads (the read-only tools, and
# load_page beneath load) and setters of a value.
_RETRYABLE = READ_ONLY_TOOLS | {"load_page", "set_session_name", "set_session_agent_alias", "set_session_context"}
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


def _adapters(name: str) -> tuple[inspect.Signature, dict[str, TypeAdapter[Any]], TypeAdapter[Any]]:
    """The operation's signature, an adapter per parameter, and one for its result."""
    method = getattr(SessionBackend, name, None) or getattr(DuckDBSessionBackend, name)
    hints = typing.get_type_hints(method)
    signature = inspect.signature(method)
    params = {p: TypeAdapter(hints[p]) for p in signature.parameters if p != "self"}
    if name == "append_many":
        params["items"] = TypeAdapter(list[tuple[str, ChatMessage]])  # an Iterable would validate lazily
    return signature, params, TypeAdapter(hints.get("return", type(None)))


_SIGNATURES = {name: _adapters(name) for name in OPERATIONS}


class _Handler(socketserver.StreamRequestHandler):
    """One relay connection: a JSON request per line, a JSON answer per line."""

    server: _SocketServer

    def handle(self) -> None:
        with self.server.lock:
            self.server.connections.add(self.connection)
        try:
            for line in self.rfile:
                answer = self.server.answer(line)
                self.wfile.write(json.dumps(answer, ensure_ascii=False).encode() + b"\n")
                self.wfile.flush()
        except OSError:
            pass  # the relay went away, or we are closing
        finally:
            with self.server.lock:
                self.server.connections.discard(self.connection)


class _SocketServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path: Path, backend: DuckDBSessionBackend) -> None:
        self.backend = backend
        self.closing = False
        self.lock = threading.Lock()
        self.connections: set[socket.socket] = set()
        path.unlink(missing_ok=True)  # left by a holder that was killed; we hold the file now
        old_mask = os.umask(0o177)
        try:
            super().__init__(str(path), _Handler)
        finally:
            os.umask(old_mask)

    def answer(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
            name = request["method"]
            if name not in _SIGNATURES:
                raise ValueError(f"unknown operation {name!r}")
            if self.closing:
                # Not applied: the relay may send it again to whoever holds the store next.
                return {"error": {"kind": "HolderClosing", "message": "the holder is closing"}}
            _, params, _ = _SIGNATURES[name]
            kwargs = {key: params[key].validate_python(value) for key, value in request["kwargs"].items()}
            result = getattr(self.backend, name)(**kwargs)
            return {"ok": to_jsonable_python(result)}
        except Exception as exc:  # every failure goes back to the relay that asked
            return {"error": {"kind": type(exc).__name__, "message": str(exc)}}


class Holder:
    """Serves an open store to relays on the store's socket until closed."""

    def __init__(self, backend: DuckDBSessionBackend, path: Path) -> None:
        self.path = path
        self._server = _SocketServer(path, backend)
        self._thread = threading.Thread(target=self._server.serve_forever, name="mcp-sessions-holder", daemon=True)
        self._thread.start()

    def stop_accepting(self) -> None:
        """Refuse new calls and connections; calls already running finish."""
        self._server.closing = True
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
        self._become_holder_or_relay()

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
            self._holder = Holder(store, self._socket)
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
        request = json.dumps({"method": name, "kwargs": to_jsonable_python(kwargs)}, ensure_ascii=False).encode()
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
        return _SIGNATURES[name][2].validate_python(answer["ok"])

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
            if self._holder is not None:
                self._holder.stop_accepting()
            if self._local is not None:
                self._local.close()  # waits for a write in progress
            if self._holder is not None:
                self._holder.disconnect()
        self._drop_channel()


def _forwarder(name: str) -> Callable[..., Any]:
    signature = _SIGNATURES[name][0]

    def forward(self: SharedBackend, *args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(self, *args, **kwargs)
        arguments = dict(bound.arguments)
        arguments.pop("self")
        if name == "append_many":
            arguments["items"] = list(arguments["items"])
        return self._call(name, arguments)

    forward.__name__ = name
    forward.__doc__ = getattr(SessionBackend, name, getattr(DuckDBSessionBackend, name)).__doc__
    return forward


for _name in OPERATIONS:
    setattr(SharedBackend, _name, _forwarder(_name))
# The four required operations are defined just above, after the class statement computed its abstract set.
SharedBackend.__abstractmethods__ = frozenset()
