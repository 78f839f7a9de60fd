"""A session as Markdown: what `show` prints and what the session:// resource serves."""

from __future__ import annotations

from .display import plural
from .display import when as _when
from .models import MessagePage, SessionMetadata


def markdown_transcript(metadata: SessionMetadata, page: MessagePage) -> str:
    """A session as Markdown: a heading with its name, key and facts, then one section per message."""
    title = f"{metadata.name} (`{metadata.key}`)" if metadata.name else f"`{metadata.key}`"
    facts = [plural(metadata.message_count, "message")]
    if metadata.agent_alias:
        facts.append(f"agent {metadata.agent_alias}")
    facts.append(f"created {_when(metadata.created_at)} UTC")
    facts.append(f"last activity {_when(metadata.last_activity)} UTC")
    for name in ("channel_id", "room_id", "sender_id"):
        value = getattr(metadata, name)
        if value:
            facts.append(f"{name} {value}")
    lines = [f"# {title}", "", " · ".join(facts), ""]
    if page.messages and page.messages[0].index > 0:
        lines += [f"*… {page.messages[0].index:,} earlier messages not shown*", ""]
    for message in page.messages:
        when = f" · {_when(message.created_at)}" if message.created_at else ""
        lines += [f"## {message.index + 1}. {message.role}{when}", "", message.content.rstrip("\n"), ""]
    return "\n".join(lines)
