"""build_server(backend) -> MCPServer: one tool per SessionBackend operation, named and shaped as CONTRACT.md says."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Annotated, Any, ParamSpec, TypeVar

import anyio
import anyio.lowlevel
import pydantic_core
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools import Tool
from mcp.server.mcpserver.utilities.func_metadata import ArgModelBase, FuncMetadata
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import ConfigDict, WithJsonSchema

from . import __version__
from .backend import SessionBackend
from .errors import StoreError
from .models import (
    AgentAlias,
    ChannelId,
    ChatMessage,
    ContextSize,
    ExcludeSessionKeys,
    InvalidArgument,
    ListLimit,
    LoadLimit,
    MaxChars,
    MessageFilters,
    MessageSearch,
    Name,
    Offset,
    Role,
    SearchMessagesLimit,
    SessionContext,
    SessionKey,
    SessionQuery,
    Since,
    State,
    ThresholdSecs,
    TtlHours,
    TurnId,
    Until,
)
from .recall import read_cursor, write_cursor
from .resources import add_resources
from .results import (
    AppendResult,
    CleanupStaleResult,
    ClearMessagesResult,
    CompactResult,
    DeleteSessionResult,
    GetSessionAgentAliasResult,
    GetSessionMetadataResult,
    GetSessionNameResult,
    GetSessionStateResult,
    ListRunningSessionsResult,
    ListSessionsResult,
    ListSessionsWithMetadataResult,
    ListStuckSessionsResult,
    LoadResult,
    LoadWithTimestampsResult,
    RemoveLastResult,
    SearchMessagesResult,
    SearchResult,
    SetSessionAgentAliasResult,
    SetSessionContextResult,
    SetSessionNameResult,
    SetSessionStateResult,
    UpdateLastResult,
)
from .tool_names import DESTRUCTIVE_TOOLS, READ_ONLY_TOOLS, REPEATING_TOOLS, TITLES, TOOLS

INSTRUCTIONS = (
    "Session memory for agents: conversations stored as sessions of messages, with live full-text search. "
    "To recall something from a past conversation, call search_messages with a few words, then load the "
    "hit's session_key with offset/limit around the hit's index to read the surrounding turns."
)

# A date alone is accepted as well as a time, which the SDK's format "date-time" would deny.
_TimeSchema = WithJsonSchema(
    {"anyOf": [{"type": "string"}, {"type": "null"}], "description": "ISO 8601 time or date; UTC without an offset."}
)

P = ParamSpec("P")
R = TypeVar("R")


def build_server(backend: SessionBackend, *, read_only: bool = False) -> MCPServer:
    """An MCP server with a tool per backend operation; read_only registers only the tools that read."""

    def load(session_key: SessionKey, offset: int | None = None, limit: LoadLimit | None = None) -> LoadResult:
        """Read a session's messages, oldest first. Use it to recall a conversation, together with
        search_messages: search finds the message (session_key, index), load reads the turns around it.
        Without limit it returns every message, so page long sessions with offset/limit: offset counts from
        the start, or from the end when negative (offset -20 is the last 20 messages); limit is at least 1.
        Returns {session_key, messages: [{role, content}], total}; total counts the whole session, and a
        missing session gives no messages and total 0."""
        page = backend.load_page(session_key, offset, limit)
        messages = [ChatMessage(role=m.role, content=m.content) for m in page.messages]
        return LoadResult(session_key=session_key, messages=messages, total=page.total)

    def load_with_timestamps(
        session_key: SessionKey, offset: int | None = None, limit: LoadLimit | None = None
    ) -> LoadWithTimestampsResult:
        """Same as load, with each message's created_at (ISO 8601 UTC, null when unknown) and its 0-based
        index in the session. Page long sessions with offset/limit (negative offset counts from the end).
        Returns {session_key, messages: [{role, content, created_at, index}], total}."""
        page = backend.load_page(session_key, offset, limit)
        return LoadWithTimestampsResult(session_key=session_key, messages=page.messages, total=page.total)

    def append(session_key: SessionKey, message: ChatMessage) -> AppendResult:
        """Add one message {role, content} at the end of a session, creating the session if it is new.
        The message is searchable as soon as this returns. Returns {session_key, message_count}."""
        return AppendResult(session_key=session_key, message_count=backend.append(session_key, message))

    def remove_last(session_key: SessionKey) -> RemoveLastResult:
        """Delete the last message of a session. Returns {removed}: false when the session is empty or
        missing."""
        return RemoveLastResult(removed=backend.remove_last(session_key))

    def update_last(session_key: SessionKey, message: ChatMessage) -> UpdateLastResult:
        """Replace role and content of a session's last message, as when persisting a streamed answer:
        append a placeholder, then update_last as more arrives. Search sees the new content only.
        Returns {updated}: false when the session is empty or missing."""
        return UpdateLastResult(updated=backend.update_last(session_key, message))

    def list_sessions() -> ListSessionsResult:
        """Every session key, most recent activity first. Returns {sessions: [key]}; for names, counts and
        times use list_sessions_with_metadata."""
        return ListSessionsResult(sessions=backend.list_sessions())

    def list_sessions_with_metadata(
        limit: ListLimit | None = None, offset: Offset = 0
    ) -> ListSessionsWithMetadataResult:
        """Sessions with their metadata (key, name, created_at, last_activity, message_count, agent_alias,
        channel_id, room_id, sender_id), most recent activity first. Page with limit (1-1000) and offset
        (at least 0; past the end gives an empty list). Returns {sessions: [metadata]}."""
        return ListSessionsWithMetadataResult(sessions=backend.list_sessions_with_metadata(limit, offset))

    def compact(session_key: SessionKey) -> CompactResult:
        """Remove adjacent exact duplicates (same role and content, one after the other) from a session.
        Returns {removed}: how many messages went."""
        return CompactResult(removed=backend.compact(session_key))

    def cleanup_stale(ttl_hours: TtlHours) -> CleanupStaleResult:
        """Delete every session, messages and metadata, with no activity for more than ttl_hours hours
        (at least 0), except sessions in state running. Returns {removed}: how many sessions went."""
        return CleanupStaleResult(removed=backend.cleanup_stale(ttl_hours))

    def search(query: SessionQuery) -> SearchResult:
        """Find sessions by words: query {keyword, limit}. Words are OR'ed, matched case- and
        accent-insensitively by stem; a session ranks by its best message, ties to the more recent.
        An empty or missing keyword lists sessions by recent activity. limit defaults to 50 (at most 1000).
        Returns {sessions: [metadata]}, best first. To find the messages themselves, use search_messages."""
        return SearchResult(sessions=backend.search(query))

    def clear_messages(session_key: SessionKey) -> ClearMessagesResult:
        """Delete every message of a session but keep the session (its name, alias, context and state).
        Returns {removed}: how many messages went."""
        return ClearMessagesResult(removed=backend.clear_messages(session_key))

    def delete_session(session_key: SessionKey) -> DeleteSessionResult:
        """Delete a session entirely: messages and metadata. Returns {deleted}: true if it existed."""
        return DeleteSessionResult(deleted=backend.delete_session(session_key))

    def set_session_name(session_key: SessionKey, name: Name) -> SetSessionNameResult:
        """Set a session's human-readable name (creating the session if it is new); an empty name clears it.
        Returns {session_key, name}."""
        return SetSessionNameResult(session_key=session_key, name=backend.set_session_name(session_key, name))

    def get_session_name(session_key: SessionKey) -> GetSessionNameResult:
        """A session's human-readable name. Returns {name}: null when unset or the session is missing."""
        return GetSessionNameResult(name=backend.get_session_name(session_key))

    def set_session_agent_alias(session_key: SessionKey, agent_alias: AgentAlias) -> SetSessionAgentAliasResult:
        """Record which agent owns a session (creating the session if it is new); an empty alias clears it.
        Returns {session_key, agent_alias}."""
        alias = backend.set_session_agent_alias(session_key, agent_alias)
        return SetSessionAgentAliasResult(session_key=session_key, agent_alias=alias)

    def get_session_agent_alias(session_key: SessionKey) -> GetSessionAgentAliasResult:
        """The agent a session is attributed to. Returns {agent_alias}: null when unset or missing."""
        return GetSessionAgentAliasResult(agent_alias=backend.get_session_agent_alias(session_key))

    def set_session_context(session_key: SessionKey, context: SessionContext) -> SetSessionContextResult:
        """Record a session's routing context {channel_id, room_id, sender_id} (creating the session if it is
        new): a missing or null field keeps its stored value, an empty string clears it.
        Returns {session_key, channel_id, room_id, sender_id} as now stored."""
        stored = backend.set_session_context(session_key, context)
        return SetSessionContextResult(
            session_key=session_key, channel_id=stored.channel_id, room_id=stored.room_id, sender_id=stored.sender_id
        )

    def get_session_metadata(session_key: SessionKey) -> GetSessionMetadataResult:
        """Everything known about one session: key, name, created_at, last_activity, message_count,
        agent_alias, channel_id, room_id, sender_id. Returns {metadata}: null when the session is missing."""
        return GetSessionMetadataResult(metadata=backend.get_session_metadata(session_key))

    def set_session_state(
        session_key: SessionKey, state: State, turn_id: TurnId | None = None
    ) -> SetSessionStateResult:
        """Set a session's run state (idle, running, error, ...; creating the session if it is new) and the
        current turn_id. turn_started_at is set when the state is running and cleared otherwise.
        Returns {session_key, state: {state, turn_id, turn_started_at}}."""
        stored = backend.set_session_state(session_key, state, turn_id)
        return SetSessionStateResult(session_key=session_key, state=stored)

    def get_session_state(session_key: SessionKey) -> GetSessionStateResult:
        """A session's run state {state, turn_id, turn_started_at}; a session that never had one is idle.
        Returns {state}: null only when the session is missing."""
        return GetSessionStateResult(state=backend.get_session_state(session_key))

    def list_running_sessions() -> ListRunningSessionsResult:
        """Sessions whose state is running. Returns {sessions: [metadata]}."""
        return ListRunningSessionsResult(sessions=backend.list_running_sessions())

    def list_stuck_sessions(threshold_secs: ThresholdSecs) -> ListStuckSessionsResult:
        """Sessions in state running for longer than threshold_secs seconds (at least 0), as left by a crashed
        turn. Returns {sessions: [metadata]}, longest stuck first."""
        return ListStuckSessionsResult(sessions=backend.list_stuck_sessions(threshold_secs))

    def search_messages(
        query: str,
        limit: SearchMessagesLimit = 20,
        session_key: SessionKey | None = None,
        agent_alias: AgentAlias | None = None,
        role: Role | None = None,
        since: Annotated[Since, _TimeSchema] = None,
        until: Annotated[Until, _TimeSchema] = None,
        context: ContextSize = 0,
        exclude_session_keys: ExcludeSessionKeys | None = None,
        channel_id: ChannelId | None = None,
        max_chars: MaxChars | None = None,
        cursor: str | None = None,
    ) -> SearchMessagesResult:
        """Recall past conversations: find the messages that match any of the words in query, across every
        session or filtered by session_key, agent_alias, role, channel_id and an inclusive since/until time
        window (ISO 8601; a date alone is midnight UTC); exclude_session_keys leaves out sessions (up to 100,
        such as the conversation you are in). Matching ignores case and accents and matches word stems, code
        identifiers and their parts, numbers and versions; any text is a valid query.
        context (0-20) adds up to that many messages before and after each hit (context_before,
        context_after: {role, content, created_at, index}, oldest first), so one call reads the turns around
        a hit. max_chars (200-1,000,000) caps the characters of snippets plus context: hits come best first
        while they fit, a context message cut to fit says truncated: true, and the result's truncated says
        something was left out. Returns {hits: [{session_key, index, role, snippet, created_at, score,
        matched_terms, context_before, context_after}], next_cursor, truncated}, best first, at most limit
        (default 20, at most 200); pass next_cursor back as cursor, with the same query and filters, for the
        hits that follow (null when none do). To read further around a hit, call load with its session_key and
        an offset a few messages before its index."""
        filters = MessageFilters(
            session_key=session_key,
            agent_alias=agent_alias,
            role=role,
            since=since,
            until=until,
            # A set of keys: its order and repeats change neither the hits nor what a cursor is bound to.
            exclude_session_keys=tuple(sorted(set(exclude_session_keys or ()))),
            channel_id=channel_id,
        )
        offset = 0 if cursor is None else read_cursor(cursor, query, filters)
        search = MessageSearch(
            query=query, limit=limit, filters=filters, context=context, max_chars=max_chars, offset=offset
        )
        page = backend.search_messages_page(search)
        after = None if page.next_offset is None else write_cursor(query, filters, page.next_offset)
        return SearchMessagesResult(hits=page.hits, next_cursor=after, truncated=page.truncated)

    operations = [
        load,
        load_with_timestamps,
        append,
        remove_last,
        update_last,
        list_sessions,
        list_sessions_with_metadata,
        compact,
        cleanup_stale,
        search,
        clear_messages,
        delete_session,
        set_session_name,
        get_session_name,
        set_session_agent_alias,
        get_session_agent_alias,
        set_session_context,
        get_session_metadata,
        set_session_state,
        get_session_state,
        list_running_sessions,
        list_stuck_sessions,
        search_messages,
    ]
    assert tuple(fn.__name__ for fn in operations) == TOOLS, "one function per tool, in TOOLS' order"
    tools = [_tool(fn, backend) for fn in operations if not read_only or fn.__name__ in READ_ONLY_TOOLS]
    server = MCPServer("mcp-sessions", version=__version__, instructions=INSTRUCTIONS, tools=tools)
    add_resources(server, backend)
    return server


def hints(name: str) -> ToolAnnotations:
    """The contract's hints for a tool: read-only, or a write that is destructive or not."""
    read_only = name in READ_ONLY_TOOLS
    return ToolAnnotations(
        title=TITLES[name],
        read_only_hint=read_only,
        destructive_hint=name in DESTRUCTIVE_TOOLS,
        idempotent_hint=name not in REPEATING_TOOLS,
        open_world_hint=False,
    )


def _tool(fn: Callable[..., Any], backend: SessionBackend) -> Tool:
    name = fn.__name__
    tool = Tool.from_function(
        _tool_errors(fn),
        name=name,
        title=TITLES[name],
        description=inspect.cleandoc(fn.__doc__ or ""),
        annotations=hints(name),
        structured_output=True,
    )
    metadata = tool.fn_metadata
    # The SDK's argument model ignores unknown keys; the contract wants them refused, at every level.
    arguments = _forbid_extra(metadata.arg_model)
    tool.fn_metadata = _ArgumentsAsSent(
        arg_model=arguments,
        output_schema=metadata.output_schema,
        output_model=metadata.output_model,
        wrap_output=metadata.wrap_output,
        inline=functools.partial(backend.answers_from_memory, name),
    )
    tool.parameters = arguments.model_json_schema(by_alias=True)
    return tool


def _forbid_extra(model: type[ArgModelBase]) -> type[ArgModelBase]:
    class Arguments(model):
        model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, title=model.__name__)

    return Arguments


# Reads that block run on at most READ_THREADS worker threads, not the SDK's 40: each thread keeps a DuckDB cursor
# and its own allocations (16 threads searching a 1M-message store hold ~60 MB more than 4), and with a couple of
# CPUs more threads only wait. Writes get threads of their own: they mostly wait for the one writer (group commit
# batches the appends waiting), and must not take the threads reads need while a merge holds the writer.
READ_THREADS = 4
WRITE_THREADS = 16
_limiters: anyio.lowlevel.RunVar[dict[bool, anyio.CapacityLimiter]] = anyio.lowlevel.RunVar("mcp_sessions_threads")


def _threads(read_only: bool) -> anyio.CapacityLimiter:
    """The running event loop's limiter for reads or for writes (a limiter belongs to one loop)."""
    try:
        limiters = _limiters.get()
    except LookupError:
        limiters = {True: anyio.CapacityLimiter(READ_THREADS), False: anyio.CapacityLimiter(WRITE_THREADS)}
        _limiters.set(limiters)
    return limiters[read_only]


class _ArgumentsAsSent(FuncMetadata):
    """Validates the arguments as the client sent them; runs calls the backend answers from memory on the event
    loop (a worker thread's hop costs more than the answer); sends results as compact JSON."""

    # arguments -> whether the backend answers this call from memory, without blocking.
    inline: Annotated[Any, WithJsonSchema(None)] = None

    async def call_fn(
        self,
        fn: Callable[..., Any],
        fn_is_async: bool,
        arguments: dict[str, Any],
        arguments_to_pass_directly: dict[str, Any] | None = None,
    ) -> Any:
        if fn_is_async:
            return await super().call_fn(fn, fn_is_async, arguments, arguments_to_pass_directly)
        call = functools.partial(fn, **arguments, **(arguments_to_pass_directly or {}))
        if self.inline is not None and self.inline(arguments):
            return call()
        return await anyio.to_thread.run_sync(call, limiter=_threads(fn.__name__ in READ_ONLY_TOOLS))

    def convert_result(self, result: Any) -> Any:
        # Our tools return their own result model, validated as it was built: dump it once, no second validation,
        # and the text content as the same JSON without the SDK's indentation.
        if self.output_model is not None and type(result) is self.output_model and not self.wrap_output:
            structured = result.model_dump(mode="json", by_alias=True)
            text = pydantic_core.to_json(structured).decode()
            return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=structured)
        return super().convert_result(result)

    def pre_parse_json(self, data: dict[str, Any]) -> dict[str, Any]:
        # The SDK would json.loads a string given to a field not typed plain str: a session_key "null"
        # would become None (no filter) and "[1]" a list. Keys are never changed, so no pre-parsing.
        return data


def _tool_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Bad arguments and store failures become tool errors that keep their text (others reach the model blank)."""
    action = "read" if fn.__name__ in READ_ONLY_TOOLS else "write"

    @functools.wraps(fn)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except InvalidArgument as exc:
            raise ToolError(str(exc)) from exc
        except (StoreError, OSError) as exc:
            raise ToolError(f"the store could not {action}: {exc}") from exc

    return call
