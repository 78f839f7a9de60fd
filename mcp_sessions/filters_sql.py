"""The SQL conditions of a message search's filters, one definition for both stores: each gives its parameter
mark, how a list of session keys is excluded, and how a value travels."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from .models import MessageFilters


def filter_conditions(
    filters: MessageFilters,
    mark: str,
    excluded: Callable[[list[str]], tuple[str, list[object]]],
    value: Callable[[str | datetime], object],
) -> tuple[list[str], list[object]]:
    """Conditions over (message_id, session_id) rows, to be joined with AND, and their parameters in order.
    excluded(keys): the condition text after `key` (say `IN (?, ?)`) and its parameters."""
    where: list[str] = []
    params: list[object] = []
    # A key names one session (a value the planner can use); an alias or a channel, any number.
    for condition, wanted in (
        (f"session_id = (SELECT id FROM sessions WHERE key = {mark})", filters.session_key),
        (f"session_id IN (SELECT id FROM sessions WHERE agent_alias = {mark})", filters.agent_alias),
        (f"session_id IN (SELECT id FROM sessions WHERE channel_id = {mark})", filters.channel_id),
    ):
        if wanted is not None:
            where.append(condition)
            params.append(wanted)
    if filters.exclude_session_keys:
        condition, keys = excluded(sorted(filters.exclude_session_keys))
        where.append(f"session_id NOT IN (SELECT id FROM sessions WHERE key {condition})")
        params.extend(keys)
    # Message filters read only the narrow columns they test, never the content.
    message_where: list[str] = []
    for column, op, given in (
        ("role", "=", filters.role),
        ("created_at", ">=", filters.since),
        ("created_at", "<=", filters.until),
    ):
        if given is not None:
            message_where.append(f"{column} {op} {mark}")
            params.append(value(given))
    if message_where:
        where.append(f"message_id IN (SELECT id FROM messages WHERE {' AND '.join(message_where)})")
    return where, params
