"""SessionBackend: the trait's four required operations abstract, the eighteen provided ones with default bodies."""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import UTC, datetime, timedelta

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
    check_unicode,
    is_blank,
)


def slice_bounds(total: int, offset: int | None, limit: int | None) -> tuple[int, int]:
    """Python slice semantics for offset (negative counts from the end) and limit."""
    start = 0 if offset is None else offset
    if start < 0:
        start = max(total + start, 0)
    start = min(start, total)
    stop = total if limit is None else min(start + limit, total)
    return start, stop


class SessionBackend(ABC):
    """Session persistence, mirroring the Rust trait; defaults work on the four required operations, slowly."""

    max_content_bytes: int = DEFAULT_MAX_CONTENT_BYTES

    def check_message(self, message: ChatMessage) -> None:
        """message.content is at most max_content_bytes of UTF-8 (the other rules live in ChatMessage)."""
        check_unicode("message.content", message.content)
        size = len(message.content.encode("utf-8"))
        if size > self.max_content_bytes:
            raise InvalidArgument(
                f"message.content must be at most {self.max_content_bytes} bytes of UTF-8, got {size}"
            )

    def answers_from_memory(self, tool: str, arguments: dict[str, object]) -> bool:
        """Whether this call of the tool is answered from memory, without blocking (the server then runs it on
        its event loop rather than a worker thread). False unless a backend knows better."""
        return False

    # Required operations.

    @abstractmethod
    def load(self, session_key: str) -> list[ChatMessage]:
        """Every message of the session, oldest first; empty if it does not exist."""

    @abstractmethod
    def append(self, session_key: str, message: ChatMessage) -> int:
        """Add one message at the end of the session, creating the session; return its message count.

        The trait returns nothing; the count, read inside the append's own transaction, is what the
        append tool reports (read afterwards, concurrent appends could be told the same count)."""

    @abstractmethod
    def remove_last(self, session_key: str) -> bool:
        """Remove the session's last message; False if it had none."""

    @abstractmethod
    def list_sessions(self) -> list[str]:
        """Every session key, most recent activity first."""

    # Provided operations, in the trait's order.

    def load_with_timestamps(self, session_key: str) -> list[TimestampedMessage]:
        """As load, each message with its index and created_at (null when the backend keeps none)."""
        return [
            TimestampedMessage(role=m.role, content=m.content, created_at=None, index=i)
            for i, m in enumerate(self.load(session_key))
        ]

    def update_last(self, session_key: str, message: ChatMessage) -> bool:
        """Replace the last message (streaming responses); False if the session is empty."""
        self.check_message(message)
        if not self.remove_last(session_key):
            return False
        self.append(session_key, message)
        return True

    def list_sessions_with_metadata(
        self, limit: int | None = None, offset: int = 0, agent_alias: str | None = None
    ) -> list[SessionMetadata]:
        """Metadata of sessions, most recent activity first; optionally only those attributed to agent_alias."""
        found = (self.get_session_metadata(key) for key in self.list_sessions())
        rows = [m for m in found if m is not None and (agent_alias is None or m.agent_alias == agent_alias)]
        stop = None if limit is None else offset + limit
        return rows[offset:stop]

    def compact(self, session_key: str) -> int:
        """Remove adjacent exact duplicates (same role and content); return how many went."""
        messages = self.load(session_key)
        kept = [m for i, m in enumerate(messages) if i == 0 or m != messages[i - 1]]
        removed = len(messages) - len(kept)
        if removed:
            self.clear_messages(session_key)
            for message in kept:
                self.append(session_key, message)
        return removed

    def cleanup_stale(self, ttl_hours: int) -> int:
        """Delete sessions idle for more than ttl_hours, except running ones; return how many."""
        cutoff = datetime.now(UTC) - timedelta(hours=ttl_hours)
        removed = 0
        for meta in self.list_sessions_with_metadata():
            state = self.get_session_state(meta.key)
            if state is not None and state.state == "running":
                continue
            if meta.last_activity is not None and meta.last_activity < cutoff and self.delete_session(meta.key):
                removed += 1
        return removed

    def search(self, query: SessionQuery, agent_alias: str | None = None) -> list[SessionMetadata]:
        """Sessions ranked by their best matching message; an empty keyword lists recent sessions."""
        if is_blank(query.keyword):
            return self.list_sessions_with_metadata(limit=query.limit, agent_alias=agent_alias)
        best: dict[str, float] = {}
        for hit in self.search_messages(query.keyword or "", None, MessageFilters(agent_alias=agent_alias)):
            best[hit.session_key] = max(best.get(hit.session_key, 0.0), hit.score)
        found = [m for key in best if (m := self.get_session_metadata(key)) is not None]
        found.sort(key=lambda m: (best[m.key], m.last_activity or datetime.min.replace(tzinfo=UTC)), reverse=True)
        return found[: query.limit]

    def clear_messages(self, session_key: str) -> int:
        """Delete every message, keep the session; return how many. O(n) remove_last calls: override it."""
        removed = 0
        while self.remove_last(session_key):
            removed += 1
        return removed

    def delete_session(self, session_key: str) -> bool:
        """Remove the session and its messages; True if it existed."""
        existed = session_key in self.list_sessions()
        self.clear_messages(session_key)
        return existed

    def set_session_name(self, session_key: str, name: str) -> str | None:
        """Set the human-readable name; empty clears it; return the name as stored. No-op (None) for backends
        that keep no names."""
        return None

    def get_session_name(self, session_key: str) -> str | None:
        """The human-readable name, if set."""
        return None

    def set_session_agent_alias(self, session_key: str, agent_alias: str) -> str | None:
        """Record the agent that owns the session; empty clears it; return the alias as stored. No-op (None)
        without attribution."""
        return None

    def get_session_agent_alias(self, session_key: str) -> str | None:
        """The agent the session is attributed to, if recorded."""
        return None

    def set_session_context(self, session_key: str, context: SessionContext) -> SessionContext:
        """Record channel / room / sender routing; return the routing as stored. No-op (nothing stored)
        without routing columns."""
        return SessionContext()

    def get_session_metadata(self, session_key: str) -> SessionMetadata | None:
        """Metadata of one session; this default derives it from load and stamps the times with now."""
        if session_key not in self.list_sessions():
            return None
        now = datetime.now(UTC)
        return SessionMetadata(
            key=session_key,
            name=self.get_session_name(session_key),
            created_at=now,
            last_activity=now,
            message_count=len(self.load(session_key)),
            agent_alias=self.get_session_agent_alias(session_key),
        )

    def set_session_state(self, session_key: str, state: str, turn_id: str | None = None) -> SessionState:
        """Set idle / running / error ...; turn_id names the current turn; return the state as stored.
        No-op without state (the state asked for comes back, with no start time)."""
        return SessionState(state=state, turn_id=turn_id)

    def get_session_state(self, session_key: str) -> SessionState | None:
        """The session's state; None if the backend does not track state."""
        return None

    def list_running_sessions(self) -> list[SessionMetadata]:
        """Sessions in state running."""
        return []

    def list_stuck_sessions(self, threshold_secs: int) -> list[SessionMetadata]:
        """Sessions running for longer than threshold_secs, longest first."""
        return []

    # Beyond the trait: what an agent needs to recall, and paging.

    def load_page(self, session_key: str, offset: int | None = None, limit: int | None = None) -> MessagePage:
        """A Python-style slice of the session's messages and its total count."""
        messages = self.load_with_timestamps(session_key)
        start, stop = slice_bounds(len(messages), offset, limit)
        return MessagePage(messages=messages[start:stop], total=len(messages))

    def search_messages(
        self, query: str, limit: int | None = SEARCH_MESSAGES_LIMIT_DEFAULT, filters: MessageFilters | None = None
    ) -> list[MessageHit]:
        """Messages matching any word of query, best first, narrowed by filters: the first page of
        search_messages_page, without neighbours or budget."""
        return self.search_messages_page(
            MessageSearch(query=query, limit=limit, filters=filters or MessageFilters())
        ).hits

    def search_messages_page(self, search: MessageSearch) -> MessageSearchPage:
        """One page of the search_messages tool: hits after search.offset, best first, each with its neighbours,
        fitted to the budget. This default scans every session."""
        from .recall import Candidate, assemble
        from .terms import Analyzer

        analyzer = Analyzer.shared()
        wanted = set(analyzer.query_terms(search.query))
        if not wanted:
            return MessageSearchPage(hits=[])
        f = search.filters
        found: list[tuple[float, int, int, Candidate]] = []
        keys = [f.session_key] if f.session_key is not None else self.list_sessions()
        for order, key in enumerate(keys):
            if key in f.exclude_session_keys or not self._passes_session_filters(key, f):
                continue
            messages = self.load_with_timestamps(key)
            for message in messages:
                if f.role is not None and message.role != f.role:
                    continue
                if f.since is not None and (message.created_at is None or message.created_at < f.since):
                    continue
                if f.until is not None and (message.created_at is None or message.created_at > f.until):
                    continue
                matched = wanted & set(analyzer.document_terms(message.content))
                if matched:
                    lo, hi = max(0, message.index - search.context), message.index + search.context + 1
                    neighbours = [m for m in messages[lo:hi] if m.index != message.index]
                    candidate = Candidate(
                        key,
                        message.index,
                        message.role,
                        message.content,
                        message.created_at,
                        float(len(matched)),
                        neighbours,
                    )
                    found.append((candidate.score, -order, message.index, candidate))
        found.sort(key=lambda h: h[:3], reverse=True)
        stop = None if search.limit is None else search.offset + search.limit
        page = [h[3] for h in found[search.offset : stop]]
        return assemble(search, page, stop is not None and len(found) > stop, analyzer)

    def _passes_session_filters(self, session_key: str, filters: MessageFilters) -> bool:
        """Whether the session's agent_alias and channel_id are those the filters ask for."""
        if filters.agent_alias is None and filters.channel_id is None:
            return True
        metadata = self.get_session_metadata(session_key)
        if metadata is None:
            return False
        alias = self.get_session_agent_alias(session_key)
        return (filters.agent_alias is None or alias == filters.agent_alias) and (
            filters.channel_id is None or metadata.channel_id == filters.channel_id
        )
