"""ScopedBackend: one agent's view of a store, a security boundary for `--agent-alias`."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from .backend import SessionBackend
from .models import (
    ChatMessage,
    InvalidArgument,
    MessagePage,
    MessageSearch,
    MessageSearchPage,
    SessionContext,
    SessionMetadata,
    SessionQuery,
    SessionState,
    TimestampedMessage,
    check_text,
)


class ScopedBackend(SessionBackend):
    """Sees only sessions attributed to agent_alias; another agent's session is as if it did not exist.

    Writes to a session attributed to another agent, or to none, raise InvalidArgument and change nothing;
    sessions created here are attributed to agent_alias before anything else is written to them.
    """

    def __init__(self, inner: SessionBackend, agent_alias: str) -> None:
        if not agent_alias:
            raise InvalidArgument("agent_alias must not be empty")
        self.inner = inner
        self.agent_alias = check_text("agent_alias", agent_alias)
        self.max_content_bytes = inner.max_content_bytes
        # Check and write happen under one lock, so two calls can't both find a key missing and claim it.
        self._lock = threading.RLock()

    def answers_from_memory(self, tool: str, arguments: dict[str, object]) -> bool:
        # Every call first looks up the session's owner (or lists this agent's sessions).
        inner = self.inner
        return inner.answers_from_memory(tool, arguments) and inner.answers_from_memory("get_session_metadata", {})

    def check_message(self, message: ChatMessage) -> None:
        self.inner.check_message(message)

    # Ownership.

    def _metadata(self, session_key: str) -> SessionMetadata | None:
        metadata = self.inner.get_session_metadata(session_key)
        return metadata if metadata is not None and metadata.agent_alias == self.agent_alias else None

    def _visible(self, session_key: str) -> bool:
        return self._metadata(session_key) is not None

    def _refuse(self, session_key: str) -> InvalidArgument:
        return InvalidArgument(
            f"session_key {session_key!r} is not a session of agent {self.agent_alias!r}: this server writes only"
            " the sessions of its own agent"
        )

    @contextmanager
    def _owned(self, session_key: str, *, create: bool) -> Iterator[bool]:
        """Hold the lock over a write to session_key; yields whether the session exists (or was just created).

        A session of another agent or of none is refused. A missing one is attributed to this agent first
        when create is true, and removed again if the write that follows fails.
        """
        with self._lock:
            metadata = self.inner.get_session_metadata(session_key)
            if metadata is not None and metadata.agent_alias != self.agent_alias:
                raise self._refuse(session_key)
            if metadata is not None or not create:
                yield metadata is not None
                return
            self.inner.set_session_agent_alias(session_key, self.agent_alias)
            try:
                yield True
            except BaseException:
                self.inner.delete_session(session_key)
                raise

    def _narrow(self, agent_alias: str | None) -> bool:
        """Whether a filter on agent_alias leaves anything in this scope (it may narrow, never widen)."""
        return agent_alias is None or agent_alias == self.agent_alias

    # Required operations.

    def load(self, session_key: str) -> list[ChatMessage]:
        return self.inner.load(session_key) if self._visible(session_key) else []

    def append(self, session_key: str, message: ChatMessage) -> int:
        self.inner.check_message(message)
        with self._owned(session_key, create=True):
            return self.inner.append(session_key, message)

    def remove_last(self, session_key: str) -> bool:
        with self._owned(session_key, create=False) as exists:
            return exists and self.inner.remove_last(session_key)

    def list_sessions(self) -> list[str]:
        return [m.key for m in self.inner.list_sessions_with_metadata(agent_alias=self.agent_alias)]

    # Provided operations.

    def load_with_timestamps(self, session_key: str) -> list[TimestampedMessage]:
        return self.inner.load_with_timestamps(session_key) if self._visible(session_key) else []

    def update_last(self, session_key: str, message: ChatMessage) -> bool:
        self.inner.check_message(message)
        with self._owned(session_key, create=False) as exists:
            return exists and self.inner.update_last(session_key, message)

    def list_sessions_with_metadata(
        self, limit: int | None = None, offset: int = 0, agent_alias: str | None = None
    ) -> list[SessionMetadata]:
        if not self._narrow(agent_alias):
            return []
        return self.inner.list_sessions_with_metadata(limit, offset, self.agent_alias)

    def compact(self, session_key: str) -> int:
        with self._owned(session_key, create=False) as exists:
            return self.inner.compact(session_key) if exists else 0

    def cleanup_stale(self, ttl_hours: int) -> int:
        try:
            cutoff = datetime.now(UTC) - timedelta(hours=ttl_hours)
        except OverflowError:
            return 0  # a ttl reaching before year 1: nothing is that old
        removed = 0
        with self._lock:
            for metadata in self.inner.list_sessions_with_metadata(agent_alias=self.agent_alias):
                if metadata.last_activity is None or metadata.last_activity >= cutoff:
                    continue
                state = self.inner.get_session_state(metadata.key)
                if state is not None and state.state == "running":
                    continue
                removed += self.inner.delete_session(metadata.key)
        return removed

    def search(self, query: SessionQuery, agent_alias: str | None = None) -> list[SessionMetadata]:
        return self.inner.search(query, self.agent_alias) if self._narrow(agent_alias) else []

    def clear_messages(self, session_key: str) -> int:
        with self._owned(session_key, create=False) as exists:
            return self.inner.clear_messages(session_key) if exists else 0

    def delete_session(self, session_key: str) -> bool:
        with self._owned(session_key, create=False) as exists:
            return exists and self.inner.delete_session(session_key)

    def set_session_name(self, session_key: str, name: str) -> str | None:
        with self._owned(session_key, create=True):
            return self.inner.set_session_name(session_key, name)

    def get_session_name(self, session_key: str) -> str | None:
        return self.inner.get_session_name(session_key) if self._visible(session_key) else None

    def set_session_agent_alias(self, session_key: str, agent_alias: str) -> str | None:
        if agent_alias != self.agent_alias:
            raise InvalidArgument(f"agent_alias must be {self.agent_alias!r}, the agent this server serves")
        with self._owned(session_key, create=True):
            return self.inner.set_session_agent_alias(session_key, agent_alias)

    def get_session_agent_alias(self, session_key: str) -> str | None:
        return self.agent_alias if self._visible(session_key) else None

    def set_session_context(self, session_key: str, context: SessionContext) -> SessionContext:
        with self._owned(session_key, create=True):
            return self.inner.set_session_context(session_key, context)

    def get_session_metadata(self, session_key: str) -> SessionMetadata | None:
        return self._metadata(session_key)

    def set_session_state(self, session_key: str, state: str, turn_id: str | None = None) -> SessionState:
        with self._owned(session_key, create=True):
            return self.inner.set_session_state(session_key, state, turn_id)

    def get_session_state(self, session_key: str) -> SessionState | None:
        return self.inner.get_session_state(session_key) if self._visible(session_key) else None

    def list_running_sessions(self) -> list[SessionMetadata]:
        return [m for m in self.inner.list_running_sessions() if m.agent_alias == self.agent_alias]

    def list_stuck_sessions(self, threshold_secs: int) -> list[SessionMetadata]:
        return [m for m in self.inner.list_stuck_sessions(threshold_secs) if m.agent_alias == self.agent_alias]

    # Beyond the trait.

    def load_page(self, session_key: str, offset: int | None = None, limit: int | None = None) -> MessagePage:
        if not self._visible(session_key):
            return MessagePage(messages=[], total=0)
        return self.inner.load_page(session_key, offset, limit)

    def search_messages_page(self, search: MessageSearch) -> MessageSearchPage:
        if not self._narrow(search.filters.agent_alias):
            return MessageSearchPage(hits=[])
        filters = search.filters.model_copy(update={"agent_alias": self.agent_alias})
        return self.inner.search_messages_page(search.model_copy(update={"filters": filters}))
