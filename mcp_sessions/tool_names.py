"""The tools' names and what each does to the store: read, change, destroy, repeat. A leaf: imports nothing."""

from __future__ import annotations

# One tool per SessionBackend operation, in the trait's order, then ours beyond it.
TOOLS = (
    "load",
    "load_with_timestamps",
    "append",
    "remove_last",
    "update_last",
    "list_sessions",
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
    "search_messages",
)
READ_ONLY_TOOLS = frozenset(
    {
        "load",
        "load_with_timestamps",
        "list_sessions",
        "list_sessions_with_metadata",
        "search",
        "get_session_name",
        "get_session_agent_alias",
        "get_session_metadata",
        "get_session_state",
        "list_running_sessions",
        "list_stuck_sessions",
        "search_messages",
    }
)
DESTRUCTIVE_TOOLS = frozenset(
    {"remove_last", "update_last", "compact", "cleanup_stale", "clear_messages", "delete_session"}
)
# Write tools whose second identical call changes the store again: append adds another message,
# remove_last takes another one, and set_session_state restarts turn_started_at of a running turn.
REPEATING_TOOLS = frozenset({"append", "remove_last", "set_session_state"})
# Writes a relay may send again after the holder vanished mid-call: setters of a value.
SETTERS = frozenset({"set_session_name", "set_session_agent_alias", "set_session_context"})

TITLES = {
    "load": "Load a session's messages",
    "load_with_timestamps": "Load messages with times and positions",
    "append": "Append a message",
    "remove_last": "Remove the last message",
    "update_last": "Replace the last message",
    "list_sessions": "List session keys",
    "list_sessions_with_metadata": "List sessions with metadata",
    "compact": "Remove duplicate messages",
    "cleanup_stale": "Delete stale sessions",
    "search": "Search sessions",
    "clear_messages": "Clear a session's messages",
    "delete_session": "Delete a session",
    "set_session_name": "Name a session",
    "get_session_name": "Get a session's name",
    "set_session_agent_alias": "Attribute a session to an agent",
    "get_session_agent_alias": "Get a session's agent",
    "set_session_context": "Set a session's routing context",
    "get_session_metadata": "Get a session's metadata",
    "set_session_state": "Set a session's run state",
    "get_session_state": "Get a session's run state",
    "list_running_sessions": "List running sessions",
    "list_stuck_sessions": "List stuck sessions",
    "search_messages": "Search past messages",
}
