"""Write announcements between servers sharing one store: the holder pushes the session keys of each write to
every relay that watches, so a client subscribed on any of them hears of writes made through the others."""

from __future__ import annotations

import json
import logging
import queue
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, BinaryIO

log = logging.getLogger(__name__)

# Session keys -> nothing: told of a write another server made.
WriteWatcher = Callable[[list[str]], None]
# How long a relay waits before watching again after its holder went away (a new one takes a moment).
_RETRY_SECONDS = 0.2


def watch_request(origin: str) -> bytes:
    """The line a relay opens its watching connection with; origin names the relay, so its own writes are not
    sent back to it (its server announced them already)."""
    return json.dumps({"watch": origin}).encode() + b"\n"


def watching_origin(line: bytes) -> str | None:
    """The origin of a watch request, or None when the line is an ordinary call."""
    if not line.startswith(b'{"watch"'):
        return None
    try:
        origin = json.loads(line)["watch"]
    except (ValueError, KeyError, TypeError):
        return None
    return origin if isinstance(origin, str) else None


class Feed:
    """The holder's side: the watching relays' connections, and a thread writing each announcement to them (a
    write never waits on a relay's socket)."""

    def __init__(self) -> None:
        self._streams: dict[str, BinaryIO] = {}
        self._lock = threading.Lock()
        self._pending: queue.SimpleQueue[tuple[list[str], str | None] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._send, name="mcp-sessions-write-feed", daemon=True)
        self._thread.start()

    def add(self, origin: str, stream: BinaryIO) -> None:
        with self._lock:
            self._streams[origin] = stream

    def remove(self, origin: str) -> None:
        with self._lock:
            self._streams.pop(origin, None)

    def push(self, session_keys: list[str], origin: str | None) -> None:
        """Announce a write to every watching relay but the one it came from."""
        if self._streams:  # none watching (the usual case): no wake of the feed's thread per write
            self._pending.put((session_keys, origin))

    def close(self) -> None:
        self._pending.put(None)

    def _send(self) -> None:
        while (item := self._pending.get()) is not None:
            keys, origin = item
            line = json.dumps({"written": keys}, ensure_ascii=False).encode() + b"\n"
            with self._lock:
                streams = [(o, s) for o, s in self._streams.items() if o != origin]
            for watcher, stream in streams:
                try:
                    stream.write(line)
                    stream.flush()
                except (OSError, ValueError):  # that relay went away
                    self.remove(watcher)


class Watch:
    """The relay's side: a thread holding a connection to the holder and telling the watchers of each write it
    announces, until closed or until this process holds the store itself."""

    def __init__(
        self,
        connect: Callable[[], socket.socket],
        origin: str,
        watchers: list[WriteWatcher],
        done: Callable[[], bool],
    ) -> None:
        self._connect = connect
        self._origin = origin
        self._watchers = watchers
        self._done = done
        self._conn: socket.socket | None = None
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="mcp-sessions-write-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped = True
        conn = self._conn
        if conn is not None:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _run(self) -> None:
        while not self._stopped and not self._done():
            try:
                self._conn = conn = self._connect()
            except OSError:
                time.sleep(_RETRY_SECONDS)
                continue
            try:
                conn.sendall(watch_request(self._origin))
                for line in conn.makefile("rb"):
                    self._tell(json.loads(line))
            except (OSError, ValueError):
                pass  # the holder went away: watch whoever holds the store next
            finally:
                conn.close()
            time.sleep(_RETRY_SECONDS)

    def _tell(self, event: Any) -> None:
        keys = event.get("written") if isinstance(event, dict) else None
        if not isinstance(keys, list):
            return
        for watcher in list(self._watchers):
            try:
                watcher([k for k in keys if isinstance(k, str)])  # pyright: ignore[reportUnknownVariableType]
            except Exception:  # a watcher's failure must not stop the watch
                log.exception("a write watcher failed")
