"""One structured result per tool, `<Tool>Result`, fields named as in CONTRACT.md; the root is always an object."""

from __future__ import annotations

from pydantic import BaseModel, Field

from .models import ChatMessage, MessageHit, SessionMetadata, SessionState, TimestampedMessage


class LoadResult(BaseModel):
    """A slice of a session's messages."""

    session_key: str
    messages: list[ChatMessage]
    total: int = Field(description="Messages in the session, whatever the slice.")


class LoadWithTimestampsResult(BaseModel):
    """A slice of a session's messages, each with its index and created_at."""

    session_key: str
    messages: list[TimestampedMessage]
    total: int = Field(description="Messages in the session, whatever the slice.")


class AppendResult(BaseModel):
    """The session written to and its message count after the append."""

    session_key: str
    message_count: int


class RemoveLastResult(BaseModel):
    """Whether a message was removed."""

    removed: bool


class UpdateLastResult(BaseModel):
    """Whether the last message was replaced."""

    updated: bool


class ListSessionsResult(BaseModel):
    """Session keys, most recent activity first."""

    sessions: list[str]


class ListSessionsWithMetadataResult(BaseModel):
    """Sessions with their metadata, most recent activity first."""

    sessions: list[SessionMetadata]


class CompactResult(BaseModel):
    """How many duplicate messages went."""

    removed: int


class CleanupStaleResult(BaseModel):
    """How many sessions went."""

    removed: int


class SearchResult(BaseModel):
    """Sessions, best match first."""

    sessions: list[SessionMetadata]


class ClearMessagesResult(BaseModel):
    """How many messages went."""

    removed: int


class DeleteSessionResult(BaseModel):
    """Whether the session existed."""

    deleted: bool


class SetSessionNameResult(BaseModel):
    """The name now stored (null when cleared)."""

    session_key: str
    name: str | None


class GetSessionNameResult(BaseModel):
    """The session's name, null when unset or the session is missing."""

    name: str | None


class SetSessionAgentAliasResult(BaseModel):
    """The agent alias now stored (null when cleared)."""

    session_key: str
    agent_alias: str | None


class GetSessionAgentAliasResult(BaseModel):
    """The session's agent alias, null when unset or the session is missing."""

    agent_alias: str | None


class SetSessionContextResult(BaseModel):
    """The routing context now stored."""

    session_key: str
    channel_id: str | None
    room_id: str | None
    sender_id: str | None


class GetSessionMetadataResult(BaseModel):
    """The session's metadata, null when the session is missing."""

    metadata: SessionMetadata | None


class SetSessionStateResult(BaseModel):
    """The state now stored."""

    session_key: str
    state: SessionState


class GetSessionStateResult(BaseModel):
    """The session's state, null only when the session is missing."""

    state: SessionState | None


class ListRunningSessionsResult(BaseModel):
    """Sessions in state running."""

    sessions: list[SessionMetadata]


class ListStuckSessionsResult(BaseModel):
    """Sessions running for too long, longest first."""

    sessions: list[SessionMetadata]


class SearchMessagesResult(BaseModel):
    """Matching messages, best first; next_cursor pages on (null when no hit follows)."""

    hits: list[MessageHit]
    next_cursor: str | None = Field(
        default=None, description="Pass as cursor for the hits after these; null when no further hit exists."
    )
    truncated: bool = Field(default=False, description="Whether the max_chars budget left out or cut anything.")
