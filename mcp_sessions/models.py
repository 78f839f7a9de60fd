"""Pydantic types of CONTRACT.md and the argument rules, each rule written once."""

from __future__ import annotations

import unicodedata
from datetime import UTC, date, datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

MAX_KEY_CHARS = 512
MAX_ROLE_CHARS = 64
DEFAULT_MAX_CONTENT_BYTES = 1_048_576
SEARCH_LIMIT_DEFAULT = 50
SEARCH_LIMIT_MAX = 1000
SEARCH_MESSAGES_LIMIT_DEFAULT = 20
SEARCH_MESSAGES_LIMIT_MAX = 200
LIST_LIMIT_MAX = 1000
CONTEXT_MAX = 20
EXCLUDED_KEYS_MAX = 100
MAX_CHARS_MIN = 200
MAX_CHARS_MAX = 1_000_000


class InvalidArgument(ValueError):
    """A bad argument: the text names the argument and the rule it broke."""


def _has_control(value: str) -> bool:
    return any(unicodedata.category(ch) == "Cc" for ch in value)


def check_unicode(argument: str, value: str) -> str:
    """Text must be storable as UTF-8: a lone surrogate (possible in JSON's \\ud800) is not."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgument(f"{argument} must be valid Unicode text (it holds a lone surrogate)") from None
    return value


def check_text(argument: str, value: str) -> str:
    """The rule for names, aliases, states, turn ids and context fields: at most 512 code points, no Cc."""
    check_unicode(argument, value)
    if len(value) > MAX_KEY_CHARS:
        raise InvalidArgument(f"{argument} must be at most {MAX_KEY_CHARS} characters, got {len(value)}")
    if _has_control(value):
        raise InvalidArgument(f"{argument} must not contain control characters (Unicode category Cc)")
    return value


def check_session_key(value: str, argument: str = "session_key") -> str:
    """session_key: not empty or whitespace, at most 512 code points, no Cc; never trimmed."""
    if not value.strip():
        raise InvalidArgument(f"{argument} must not be empty or whitespace")
    return check_text(argument, value)


def check_excluded_keys(value: list[str]) -> list[str]:
    """exclude_session_keys: at most 100 keys, each following the session_key rules."""
    if len(value) > EXCLUDED_KEYS_MAX:
        raise InvalidArgument(
            f"exclude_session_keys must hold at most {EXCLUDED_KEYS_MAX} session keys, got {len(value)}"
        )
    for i, key in enumerate(value):
        check_session_key(key, f"exclude_session_keys[{i}]")
    return value


def is_blank(text: str | None) -> bool:
    """Whether a search keyword holds nothing but spaces and control characters (which count as spaces)."""
    return not text or all(ch.isspace() or unicodedata.category(ch) == "Cc" for ch in text)


def _text_rule(argument: str) -> AfterValidator:
    return AfterValidator(lambda value: check_text(argument, value))


def _non_empty(argument: str) -> AfterValidator:
    def check(value: str) -> str:
        if not value:
            raise InvalidArgument(f"{argument} must not be empty")
        return value

    return AfterValidator(check)


def parse_time(argument: str, value: object) -> datetime:
    """ISO 8601 time (or date, meaning midnight UTC); no offset means UTC."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        parsed = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            raise InvalidArgument(
                f"{argument} must be an ISO 8601 time such as 2026-11-25T16:30:00Z or a date such as 2026-11-25,"
                f" got {value!r}"
            ) from None
    else:
        raise InvalidArgument(f"{argument} must be an ISO 8601 time string, got {type(value).__name__}")
    try:
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except OverflowError:
        raise InvalidArgument(f"{argument} must fall within years 1 to 9999 in UTC, got {value!r}") from None


def _max_chars(argument: str, limit: int) -> AfterValidator:
    def check(value: str) -> str:
        if len(value) > limit:
            raise InvalidArgument(f"{argument} must be at most {limit} characters, got {len(value)}")
        return value

    return AfterValidator(check)


def _time_rule(argument: str) -> BeforeValidator:
    return BeforeValidator(lambda value: value if value is None else parse_time(argument, value))


def _int_range(argument: str, low: int, high: int | None = None) -> AfterValidator:
    def check(value: int) -> int:
        if value < low:
            raise InvalidArgument(f"{argument} must be at least {low}, got {value}")
        if high is not None and value > high:
            raise InvalidArgument(f"{argument} must be at most {high}, got {value}")
        return value

    return AfterValidator(check)


def _as_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# Stored times are UTC; a naive one read back from the store is UTC wall-clock time.
UtcTime = Annotated[datetime | None, AfterValidator(_as_utc)]

SessionKey = Annotated[str, AfterValidator(check_session_key), Field(description="The session's key, as given.")]
Role = Annotated[
    str, _non_empty("role"), _max_chars("role", MAX_ROLE_CHARS), AfterValidator(lambda v: check_unicode("role", v))
]
Name = Annotated[str, _text_rule("name")]
AgentAlias = Annotated[str, _text_rule("agent_alias")]
State = Annotated[str, _non_empty("state"), _text_rule("state")]
TurnId = Annotated[str, _text_rule("turn_id")]
TtlHours = Annotated[int, _int_range("ttl_hours", 0)]
ThresholdSecs = Annotated[int, _int_range("threshold_secs", 0)]
Offset = Annotated[int, _int_range("offset", 0)]
LoadLimit = Annotated[int, _int_range("limit", 1)]
ListLimit = Annotated[int, _int_range("limit", 1, LIST_LIMIT_MAX)]
SearchLimit = Annotated[int, _int_range("limit", 1, SEARCH_LIMIT_MAX)]
SearchMessagesLimit = Annotated[int, _int_range("limit", 1, SEARCH_MESSAGES_LIMIT_MAX)]
ContextSize = Annotated[int, _int_range("context", 0, CONTEXT_MAX)]
MaxChars = Annotated[int, _int_range("max_chars", MAX_CHARS_MIN, MAX_CHARS_MAX)]
ExcludeSessionKeys = Annotated[list[str], AfterValidator(check_excluded_keys)]
ChannelId = Annotated[str, _text_rule("channel_id")]
Since = Annotated[datetime | None, _time_rule("since")]
Until = Annotated[datetime | None, _time_rule("until")]


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ChatMessage(_Input):
    """One message of a conversation."""

    role: Role = Field(description="Who wrote it: user, assistant, system, tool, ...")
    content: str = Field(description="The message text.")


class TimestampedMessage(BaseModel):
    """A stored message with its position and the time it was written (null when unknown)."""

    role: str
    content: str
    created_at: UtcTime
    index: int


class SessionContext(_Input):
    """Channel / room / sender routing: a missing or null field keeps its value, an empty string clears it."""

    channel_id: ChannelId | None = None
    room_id: Annotated[str, _text_rule("room_id")] | None = None
    sender_id: Annotated[str, _text_rule("sender_id")] | None = None


class SessionQuery(_Input):
    """A session search: words are OR'ed; an empty keyword lists sessions by recent activity."""

    keyword: str | None = Field(default=None, description="Words to look for; empty lists recent sessions.")
    limit: SearchLimit = Field(default=SEARCH_LIMIT_DEFAULT, description="At most this many sessions (1-1000).")


class SessionMetadata(BaseModel):
    """What is known about a session; absent values are null."""

    key: str
    name: str | None = None
    created_at: UtcTime = None
    last_activity: UtcTime = None
    message_count: int = 0
    agent_alias: str | None = None
    channel_id: str | None = None
    room_id: str | None = None
    sender_id: str | None = None


class SessionState(BaseModel):
    """A session's run state; turn_started_at is set only while running."""

    state: str
    turn_id: str | None = None
    turn_started_at: UtcTime = None


class ContextMessage(TimestampedMessage):
    """A message next to a hit, in full unless the result's max_chars budget cut it (then truncated is true)."""

    truncated: bool = False


class MessageHit(BaseModel):
    """One message that matched a search_messages query, with the messages around it when context was asked."""

    session_key: str
    index: int
    role: str
    snippet: str
    created_at: UtcTime
    score: float
    matched_terms: list[str] = Field(
        default_factory=list[str], description="The query's words (as written) this message matched, in query order."
    )
    context_before: list[ContextMessage] = Field(
        default_factory=list[ContextMessage], description="Messages just before the hit, oldest first."
    )
    context_after: list[ContextMessage] = Field(
        default_factory=list[ContextMessage], description="Messages just after the hit, oldest first."
    )


class MessagePage(BaseModel):
    """A slice of a session's messages and the session's full message count."""

    messages: list[TimestampedMessage]
    total: int


class MessageFilters(BaseModel):
    """search_messages' narrowing arguments, one value from the tool to the store; None means no filter."""

    model_config = ConfigDict(frozen=True)

    session_key: str | None = None
    agent_alias: str | None = None
    role: str | None = None
    since: UtcTime = None
    until: UtcTime = None
    exclude_session_keys: tuple[str, ...] = ()
    channel_id: str | None = None


class MessageSearch(BaseModel):
    """One search_messages call as the store answers it: the query, the filters, and how to shape the page.

    offset is how many hits earlier pages returned (decoded from the tool's cursor)."""

    model_config = ConfigDict(frozen=True)

    query: str
    limit: int | None = SEARCH_MESSAGES_LIMIT_DEFAULT
    filters: MessageFilters = MessageFilters()
    context: int = 0
    max_chars: int | None = None
    offset: int = 0


class MessageSearchPage(BaseModel):
    """The store's answer to a MessageSearch: the hits, the offset the next page starts at (None when no hit
    follows), and whether the budget left out or cut anything."""

    hits: list[MessageHit]
    next_offset: int | None = None
    truncated: bool = False
