"""MCP resources and the recall prompt: each session as Markdown at session://{session_key}, recent sessions, events."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote

import anyio
import anyio.from_thread
import anyio.lowlevel
import mcp_types as types
from mcp.server.connection import Connection
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError
from mcp.server.mcpserver.resources.templates import ResourceSecurity
from mcp.server.subscriptions import ResourceUpdated, SubscriptionBus
from mcp.shared.exceptions import MCPError

from .backend import SessionBackend
from .models import InvalidArgument, check_session_key
from .tool_names import READ_ONLY_TOOLS
from .transcript import markdown_transcript

log = logging.getLogger(__name__)

RECENT_URI = "sessions://recent"
SESSION_TEMPLATE = "session://{session_key}"
# A resource is read whole by the client: a long session shows its last turns; load pages through the rest.
TRANSCRIPT_MESSAGES = 500
RECENT_SESSIONS = 50

RECALL_DESCRIPTION = "Search past sessions for a topic and summarise what was decided, citing session keys."
RECALL_TEXT = (
    "Recall what was discussed and decided about {topic} in my past sessions.\n\n"
    "1. Call search_messages with a few distinctive words for the topic; if little comes back, try synonyms, "
    "names and code identifiers.\n"
    "2. For the most relevant hits, call load with the hit's session_key, an offset a few messages before "
    "the hit's index and a limit of about 10, to read the turns around it.\n"
    "3. Summarise what was decided about {topic}: each decision, its reason, and what was left open, newest "
    "first. Cite the session key (and message index) for every point, like [session-key#12].\n\n"
    "If nothing relevant is found, say so instead of guessing."
)


def session_uri(session_key: str) -> str:
    """The resource URI of a session: its key percent-encoded into session://{session_key}."""
    return "session://" + quote(session_key, safe="")


def add_resources(server: MCPServer, backend: SessionBackend) -> None:
    """Register the session resources and the recall prompt, and announce sessions the tools change."""

    @server.resource(
        SESSION_TEMPLATE,
        name="session",
        title="Session transcript",
        description=f"A session as Markdown: its name, agent and times, then each message with role and time "
        f"(the last {TRANSCRIPT_MESSAGES} messages of a longer session).",
        mime_type="text/markdown",
        # Keys are data, never paths: a key like "../x" or "/tmp" is a session like any other.
        security=ResourceSecurity(exempt_params={"session_key"}),
    )
    def session(session_key: str) -> str:
        try:
            check_session_key(session_key)
        except InvalidArgument as exc:
            raise ResourceError(str(exc)) from None
        metadata = backend.get_session_metadata(session_key)
        if metadata is None:
            raise ResourceError(f"no session {session_key!r}")
        return markdown_transcript(metadata, backend.load_page(session_key, -TRANSCRIPT_MESSAGES))

    @server.resource(
        RECENT_URI,
        name="recent_sessions",
        title="Recent sessions",
        description=f"The {RECENT_SESSIONS} sessions with the most recent activity, as a Markdown list of "
        "session:// links with names, message counts and times.",
        mime_type="text/markdown",
    )
    def recent_sessions() -> str:
        sessions = backend.list_sessions_with_metadata(limit=RECENT_SESSIONS)
        lines = ["# Recent sessions", ""]
        for meta in sessions:
            label = f"{meta.name} (`{meta.key}`)" if meta.name else f"`{meta.key}`"
            when = meta.last_activity.strftime("%Y-%m-%d %H:%M:%S UTC") if meta.last_activity else "never"
            agent = f", agent {meta.agent_alias}" if meta.agent_alias else ""
            count = f"{meta.message_count:,} message{'' if meta.message_count == 1 else 's'}"
            lines.append(f"- [{label}]({session_uri(meta.key)}): {count}, last activity {when}{agent}")
        if not sessions:
            lines.append("No sessions yet.")
        return "\n".join(lines) + "\n"

    @server.prompt(name="recall", title="Recall a topic from past sessions", description=RECALL_DESCRIPTION)
    def recall(topic: str) -> str:
        return RECALL_TEXT.format(topic=topic)

    subscribers = _Subscribers()
    lowlevel = server._lowlevel_server  # pyright: ignore[reportPrivateUsage]
    # MCPServer 2.3 registers no resources/subscribe handler of its own; with one, it says subscribe: true to
    # clients of protocols up to 2025-11-25 (later ones use subscriptions/listen).
    lowlevel.add_request_handler("resources/subscribe", types.SubscribeRequestParams, subscribers.subscribe)
    lowlevel.add_request_handler("resources/unsubscribe", types.UnsubscribeRequestParams, subscribers.unsubscribe)
    shared = _shared(backend)
    announce = _Announcer(_bus(server), subscribers)
    server.middleware.append(_ChangeEvents(announce, None if shared is None else shared.announce_writes))
    if shared is not None:
        shared.watch_relayed_writes(announce.from_thread)


def _shared(backend: SessionBackend) -> Any:
    """The store shared with other servers (relay.SharedBackend) beneath backend, if any: its writes are announced
    to them, and theirs here."""
    for candidate in (backend, getattr(backend, "inner", None)):
        if hasattr(candidate, "watch_relayed_writes"):
            return candidate
    return None


def _bus(server: MCPServer) -> SubscriptionBus:
    # MCPServer 2.3 hands its subscriptions/listen bus only to handler Contexts (ctx.notify_resource_updated);
    # a write tool's changes are known here, in the middleware, which gets no such Context.
    return server._subscriptions  # pyright: ignore[reportPrivateUsage]


class _Subscribers:
    """Connections that asked for a resource with resources/subscribe: URI -> those connections."""

    def __init__(self) -> None:
        self.by_uri: dict[str, set[Connection]] = {}

    async def subscribe(self, ctx: ServerRequestContext[Any, Any], params: types.SubscribeRequestParams) -> Any:
        uri = str(params.uri)
        if not (uri.startswith("session://") or uri == RECENT_URI):
            raise MCPError(types.INVALID_PARAMS, f"only session:// resources and {RECENT_URI} can be subscribed to")
        self.by_uri.setdefault(uri, set()).add(_connection(ctx))
        return types.EmptyResult()

    async def unsubscribe(self, ctx: ServerRequestContext[Any, Any], params: types.UnsubscribeRequestParams) -> Any:
        sessions = self.by_uri.get(str(params.uri))
        if sessions is not None:
            sessions.discard(_connection(ctx))
            if not sessions:
                del self.by_uri[str(params.uri)]
        return types.EmptyResult()

    async def notify(self, uri: str) -> None:
        for connection in list(self.by_uri.get(uri, ())):
            try:
                await connection.send_resource_updated(uri)
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                self.by_uri.get(uri, set()).discard(connection)  # that client has gone


def _connection(ctx: ServerRequestContext[Any, Any]) -> Connection:
    # Each request gets a ServerSession of its own; the connection beneath is the client's, and its standalone
    # channel outlives the subscribe request (which the notifications come long after).
    return ctx.session._connection  # pyright: ignore[reportPrivateUsage]


class _Announcer:
    """Tells listen streams and subscribers that sessions (and so the recent list) changed."""

    def __init__(self, bus: SubscriptionBus, subscribers: _Subscribers) -> None:
        self.bus = bus
        self.subscribers = subscribers
        # The event loop serving this server's clients, for announcements made from other threads.
        self.token: anyio.lowlevel.EventLoopToken | None = None

    async def changed(self, session_keys: Iterable[str]) -> None:
        for uri in [*(session_uri(key) for key in dict.fromkeys(session_keys)), RECENT_URI]:
            await self.bus.publish(ResourceUpdated(uri=uri))
            await self.subscribers.notify(uri)

    def from_thread(self, session_keys: list[str]) -> None:
        """changed(), called from a thread of the shared store when another server sharing it wrote."""
        token = self.token
        if token is None:
            return  # no request served yet: nobody listens
        try:
            anyio.from_thread.run(self.changed, session_keys, token=token)
        except RuntimeError:
            log.debug("the event loop is gone; write to %s not announced", session_keys)


class _ChangeEvents:
    """After a write tool succeeds, tells subscribers its session and the recent list changed."""

    def __init__(self, announce: _Announcer, tell_others: Callable[[list[str]], None] | None) -> None:
        self.announce = announce
        self.tell_others = tell_others

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if self.announce.token is None:
            self.announce.token = anyio.lowlevel.current_token()
        result = await call_next(ctx)
        if ctx.method != "tools/call" or not isinstance(ctx.params, dict):
            return result
        params: dict[str, Any] = ctx.params  # pyright: ignore[reportUnknownVariableType]
        if params.get("name") in READ_ONLY_TOOLS or _is_error(result):
            return result
        arguments = params.get("arguments")
        key = arguments.get("session_key") if isinstance(arguments, dict) else None  # pyright: ignore[reportUnknownMemberType,reportUnknownVariableType]
        keys = [key] if isinstance(key, str) else []
        await self.announce.changed(keys)
        if self.tell_others is not None:
            self.tell_others(keys)  # queued, never waits
        return result


def _is_error(result: HandlerResult) -> bool:
    if isinstance(result, dict):
        return bool(result.get("isError") or result.get("is_error"))
    return bool(getattr(result, "is_error", False)) or result is None
