"""What an import hands the store: sessions with their source's metadata, messages with their own times."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple


class ImportedMessage(NamedTuple):
    """One message as its runtime kept it; created_at is ISO 8601 UTC text (see iso_utc)."""

    role: str
    content: str
    created_at: str


@dataclass
class ImportedSession:
    """A session as its runtime knows it; None is "the source does not say" and leaves the stored value."""

    key: str
    name: str | None = None
    created_at: str | None = None
    agent_alias: str | None = None
    channel_id: str | None = None
    room_id: str | None = None
    sender_id: str | None = None
    state: str | None = None
    turn_id: str | None = None
    turn_started_at: str | None = None

    def metadata(self) -> dict[str, str]:
        """The metadata columns the source gives a value for."""
        fields = ("name", "agent_alias", "channel_id", "room_id", "sender_id", "state", "turn_id", "turn_started_at")
        return {field: value for field in fields if (value := getattr(self, field)) is not None}


def iso_utc(value: datetime) -> str:
    """A time as ISO 8601 UTC text to the microsecond; a naive time is taken as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def parse_utc(text: str) -> str:
    """ISO 8601 / RFC 3339 text (any number of fractional digits, Z or an offset, naive as UTC) as iso_utc text;
    ValueError when it is not a time."""
    if not isinstance(text, str):
        raise ValueError(f"time must be text, got {type(text).__name__}")
    return iso_utc(datetime.fromisoformat(text))


def epoch_utc(seconds: float) -> str:
    """Epoch seconds as iso_utc text; ValueError when out of range or not a number."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise ValueError(f"time must be epoch seconds, got {seconds!r}")
    try:
        return iso_utc(datetime.fromtimestamp(seconds, UTC))
    except (OverflowError, OSError) as exc:
        raise ValueError(f"time {seconds!r} is out of range") from exc
