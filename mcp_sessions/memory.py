"""A dict-backed backend with only the four required operations: exercises the defaults, models the store."""

from __future__ import annotations

import threading

from .backend import SessionBackend
from .models import ChatMessage


class MemorySessionBackend(SessionBackend):
    """Keeps sessions in a dict; insertion order of the dict is the order of last activity."""

    def __init__(self) -> None:
        self._sessions: dict[str, list[ChatMessage]] = {}
        self._lock = threading.Lock()

    def answers_from_memory(self, tool: str, arguments: dict[str, object]) -> bool:
        return True

    def load(self, session_key: str) -> list[ChatMessage]:
        with self._lock:
            return list(self._sessions.get(session_key, ()))

    def append(self, session_key: str, message: ChatMessage) -> int:
        self.check_message(message)
        with self._lock:
            messages = self._sessions.pop(session_key, [])
            messages.append(message)
            self._sessions[session_key] = messages
            return len(messages)

    def remove_last(self, session_key: str) -> bool:
        with self._lock:
            messages = self._sessions.get(session_key)
            if not messages:
                return False
            messages.pop()
            self._sessions[session_key] = self._sessions.pop(session_key)
            return True

    def list_sessions(self) -> list[str]:
        with self._lock:
            return list(reversed(self._sessions))
