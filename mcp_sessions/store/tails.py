"""Tails: the last messages of recently read or written sessions, in memory, so reading a conversation's end
(what an agent does before every turn) needs no statement.

Exact for the same reason as the session view: writes tell it after they commit, under the write lock.
A read fills a tail from its own snapshot only if no write touched the session since the read began.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable

from ..backend import slice_bounds
from ..models import MessagePage, TimestampedMessage

# Messages kept per session, and characters of content kept in all (the least recently used go first).
TAIL_MESSAGES = 256
TAIL_CHARS = 16 << 20


class _Tail:
    __slots__ = ("count", "messages", "chars")

    def __init__(self, count: int, messages: list[TimestampedMessage]) -> None:
        self.count = count  # the session's message count; messages are its last len(messages)
        self.messages = messages
        self.chars = sum(len(m.content) for m in messages)


class Tails:
    """Session key -> its last messages and count, least recently used first."""

    def __init__(self, max_messages: int = TAIL_MESSAGES, max_chars: int = TAIL_CHARS) -> None:
        self._lock = threading.Lock()
        self._tails: OrderedDict[str, _Tail] = OrderedDict()
        self._chars = 0
        self._max_messages = max_messages
        self._max_chars = max_chars
        # Bumped by every write to a session: a read that saw another version may not fill its tail. The
        # epoch starts the versions afresh (they only matter while a read is under way).
        self._versions: dict[str, int] = {}
        self._epoch = 0

    def page(self, key: str, offset: int | None, limit: int | None) -> MessagePage | None:
        """The slice, when the tail holds all of it; None when it must be read from the file."""
        with self._lock:
            tail = self._tails.get(key)
            if tail is None:
                return None
            start, stop = slice_bounds(tail.count, offset, limit)
            first = tail.count - len(tail.messages)
            if start < first:
                return None
            self._tails.move_to_end(key)
            return MessagePage(messages=tail.messages[start - first : stop - first], total=tail.count)

    def holds(self, key: str, offset: int | None, limit: int | None) -> bool:
        with self._lock:
            tail = self._tails.get(key)
            if tail is None:
                return False
            return slice_bounds(tail.count, offset, limit)[0] >= tail.count - len(tail.messages)

    def version(self, key: str) -> tuple[int, int]:
        with self._lock:
            return self._epoch, self._versions.get(key, 0)

    def fill(self, key: str, version: tuple[int, int], page: MessagePage) -> None:
        """After a read: keep the page as the session's tail if it ends the session and nothing wrote since."""
        messages = page.messages
        if (messages[-1].index if messages else -1) != page.total - 1:
            return
        with self._lock:
            if (self._epoch, self._versions.get(key, 0)) != version:
                return
            current = self._tails.get(key)
            if current is not None and len(current.messages) >= len(messages):
                return
            self._set(key, _Tail(page.total, list(messages[-self._max_messages :])))

    # Writes: after their commit, under the store's write lock.

    def appended(self, key: str, count: int, messages: list[TimestampedMessage]) -> None:
        """messages were added at the end; the session now has count messages."""
        with self._lock:
            self._bump(key)
            tail = self._tails.get(key)
            if tail is None or tail.count + len(messages) != count:
                self._drop(key)
                return
            kept = (tail.messages + messages)[-self._max_messages :]
            self._set(key, _Tail(count, kept))

    def replaced_last(self, key: str, message: TimestampedMessage) -> None:
        with self._lock:
            self._bump(key)
            tail = self._tails.get(key)
            if tail is None or not tail.messages or tail.messages[-1].index != message.index:
                self._drop(key)
                return
            self._set(key, _Tail(tail.count, [*tail.messages[:-1], message]))

    def removed_last(self, key: str) -> None:
        with self._lock:
            self._bump(key)
            tail = self._tails.get(key)
            if tail is None or not tail.messages:
                self._drop(key)
                return
            self._set(key, _Tail(tail.count - 1, tail.messages[:-1]))

    def forget(self, keys: Iterable[str]) -> None:
        """These sessions changed in another way (cleared, compacted, deleted, bulk-appended)."""
        with self._lock:
            for key in keys:
                self._bump(key)
                self._drop(key)

    def _bump(self, key: str) -> None:
        if len(self._versions) > 100_000:
            self._versions.clear()
            self._epoch += 1
        self._versions[key] = self._versions.get(key, 0) + 1

    def _set(self, key: str, tail: _Tail) -> None:
        self._drop(key)
        if tail.chars > self._max_chars // 4:
            return  # a few huge messages would push every other tail out
        self._tails[key] = tail
        self._chars += tail.chars
        while self._chars > self._max_chars and self._tails:
            _, old = self._tails.popitem(last=False)
            self._chars -= old.chars

    def _drop(self, key: str) -> None:
        old = self._tails.pop(key, None)
        if old is not None:
            self._chars -= old.chars
