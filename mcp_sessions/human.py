"""The commands for people beside `serve`: list, show, search, stats, import, export (as `llm logs` does)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from .display import size, table, when
from .errors import StoreError, StoreLocked, StoreUnavailable
from .models import (
    CONTEXT_MAX,
    LIST_LIMIT_MAX,
    SEARCH_MESSAGES_LIMIT_MAX,
    InvalidArgument,
    MessageFilters,
    MessageSearch,
    check_session_key,
    check_text,
    parse_time,
)
from .paths import db_path, is_database_uri
from .transcript import markdown_transcript

if TYPE_CHECKING:
    from .store.duckdb import DuckDBSessionBackend

COMMANDS = ("list", "show", "search", "stats", "import", "export")
_DB_HELP = "database file or PostgreSQL URI postgresql://... (default: $MCP_SESSIONS_DB, else the XDG data folder)"


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the human commands on the mcp-sessions parser."""

    def command(name: str, help: str) -> argparse.ArgumentParser:
        parser = commands.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".")
        parser.add_argument("--db", help=_DB_HELP)
        return parser

    listing = command("list", "list sessions, most recent activity first")
    listing.add_argument(
        "-n", "--limit", type=_count(LIST_LIMIT_MAX), default=20, help="at most this many (default 20)"
    )
    listing.add_argument("--agent-alias", help="only the sessions of this agent")
    listing.add_argument("--json", action="store_true", help="one JSON object per session instead of a table")

    show = command("show", "print a session's transcript")
    show.add_argument("key", help="the session key")
    show.add_argument("-t", "--tail", type=_count(None), help="only the last N messages")
    show.add_argument("--json", action="store_true", help="the messages as JSON Lines, with index and created_at")

    search = command("search", "find past messages by words, best first")
    search.add_argument("text", help="words to look for (any of them)")
    search.add_argument(
        "-n", "--limit", type=_count(SEARCH_MESSAGES_LIMIT_MAX), default=20, help="at most this many (default 20)"
    )
    search.add_argument("--session", help="only in this session")
    search.add_argument("--role", help="only messages of this role")
    search.add_argument("--since", help="only messages written at or after this ISO 8601 time or date")
    search.add_argument("--until", help="only messages written at or before this ISO 8601 time or date")
    search.add_argument(
        "-C",
        "--context",
        type=_range(0, CONTEXT_MAX),
        default=0,
        metavar="N",
        help="also print N messages around each hit",
    )
    search.add_argument(
        "--exclude", action="append", default=[], metavar="KEY", help="leave out this session (repeatable)"
    )
    search.add_argument("--channel", help="only sessions of this channel_id")
    search.add_argument("--json", action="store_true", help="one JSON object per hit instead of a table")

    stats = command("stats", "count sessions and messages")
    stats.add_argument("--json", action="store_true", help="a JSON object instead of a table")

    imports = command("import", "import sessions from an agent runtime's history, or from JSON Lines files")
    imports.add_argument(
        "sources",
        nargs="*",
        metavar="SOURCE",
        help="a file or folder (default with --from: the runtime's own location)",
    )
    imports.add_argument(
        "--from",
        dest="source_format",
        metavar="FORMAT",
        help="jsonl, claude-code, zeroclaw, hermes, llm or openai-agents (default: found from each SOURCE)",
    )
    _progress_flags(imports)

    export = command("export", "write each session to DIR/<key>.jsonl, or the whole store to one file")
    export.add_argument("dir", nargs="?", metavar="DIR", help="folder to write <key>.jsonl files into (FILE with --to)")
    export.add_argument("--to", choices=("zeroclaw",), help="write FILE.db in this runtime's own session store format")
    export.add_argument(
        "--all",
        metavar="FILE",
        help="write every message to one .jsonl or .parquet file (with session_key, index, ...)",
    )
    _progress_flags(export)


def _progress_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--progress", action="store_true", default=None, help="show progress (default: on a terminal)")
    group.add_argument("--no-progress", dest="progress", action="store_false", help="never show progress")


def _range(low: int, high: int) -> Any:
    def parse(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}, got {value}")
        return value

    return parse


def _count(high: int | None) -> Any:
    def parse(text: str) -> int:
        value = int(text)
        if value < 1 or (high is not None and value > high):
            raise argparse.ArgumentTypeError(
                f"must be between 1 and {high}, got {value}" if high else "must be at least 1"
            )
        return value

    return parse


def run(options: argparse.Namespace) -> int:
    """Run one human command; return the exit status."""
    from .export_files import cmd_export
    from .importers.run import cmd_import

    path = db_path(options.db)
    writes = options.command == "import"
    try:
        store = _open(path, writes=writes)
    except _CannotOpen as exc:
        print(f"mcp-sessions: {exc}", file=sys.stderr)
        return 1
    try:
        handler = {
            "list": cmd_list,
            "show": cmd_show,
            "search": cmd_search,
            "stats": cmd_stats,
            "import": cmd_import,
            "export": cmd_export,
        }[options.command]
        return handler(store, options, sys.stdout)
    except InvalidArgument as exc:
        print(f"mcp-sessions: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # `mcp-sessions list | head`: the reader left; say nothing more.
        sys.stderr.close()
        return 0
    finally:
        store.close()


class _CannotOpen(Exception):
    """The store could not be opened; the text says why and what to do."""


def _open(path: str, *, writes: bool) -> DuckDBSessionBackend:
    """The store at path: read-only for the commands that only read, unless its schema needs an upgrade."""
    from .store.connection import needs_upgrade
    from .store.duckdb import DuckDBSessionBackend, Tuning

    if is_database_uri(path):
        from .postgres.backend import PostgresSessionBackend

        try:
            return PostgresSessionBackend(path, pool_max=2)  # type: ignore[return-value]  # the same methods
        except StoreError as exc:
            raise _CannotOpen(f"cannot open the store: {exc}") from None
    try:
        if writes or path == ":memory:":
            # An import's sorts spill to disk past this rather than take the store's 2 GB for bulk writes.
            return DuckDBSessionBackend(path, tuning=Tuning(bulk_memory_limit="512MB"))
        if not Path(path).exists():
            raise _CannotOpen(f"no store at {path} (use --db, or set MCP_SESSIONS_DB)")
        return DuckDBSessionBackend(path, read_only=not needs_upgrade(path))
    except StoreLocked as exc:
        held = exc
    except (StoreError, OSError) as exc:
        raise _CannotOpen(f"cannot open the store {path}: {exc}") from None
    if not writes:
        # A running `mcp-sessions serve` holds the file: read through it, as its relays do.
        from .relay import SharedBackend

        try:
            return SharedBackend(path, wait=2.0)  # type: ignore[return-value]  # it has every reading method
        except StoreUnavailable:
            pass
    raise _CannotOpen(
        f"cannot open the store: {held}\nAnother process holds it and serves no relay: stop it, or run this on"
        " a copy of the file with --db."
    ) from None


# Reading.


def cmd_list(store: DuckDBSessionBackend, options: argparse.Namespace, out: TextIO) -> int:
    """Sessions as a table (or JSON Lines), most recent activity first."""
    sessions = store.list_sessions_with_metadata(limit=options.limit, agent_alias=options.agent_alias)
    if options.json:
        for meta in sessions:
            out.write(meta.model_dump_json() + "\n")
        return 0
    rows = [[m.key, m.name or "", f"{m.message_count:,}", when(m.last_activity), m.agent_alias or ""] for m in sessions]
    table(out, ["key", "name", "messages", "last activity (UTC)", "agent"], rows, right={2})
    if not sessions:
        print("no sessions", file=sys.stderr)
    return 0


def cmd_show(store: DuckDBSessionBackend, options: argparse.Namespace, out: TextIO) -> int:
    """A session's transcript as Markdown (or its messages as JSON Lines)."""
    key = check_session_key(options.key)
    metadata = store.get_session_metadata(key)
    if metadata is None:
        print(f"mcp-sessions: no session {key!r}", file=sys.stderr)
        return 1
    page = store.load_page(key, -options.tail if options.tail else None)
    if options.json:
        for message in page.messages:
            out.write(message.model_dump_json() + "\n")
        return 0
    out.write(markdown_transcript(metadata, page))
    return 0


def cmd_search(store: DuckDBSessionBackend, options: argparse.Namespace, out: TextIO) -> int:
    """Matching messages as a table (or JSON Lines), best first; with --context, each hit's neighbours under it."""
    since = parse_time("--since", options.since) if options.since else None
    until = parse_time("--until", options.until) if options.until else None
    excluded = tuple(check_session_key(key, "--exclude") for key in options.exclude)
    channel = None if options.channel is None else check_text("--channel", options.channel)
    filters = MessageFilters(
        session_key=options.session,
        role=options.role,
        since=since,
        until=until,
        exclude_session_keys=excluded,
        channel_id=channel,
    )
    search = MessageSearch(query=options.text, limit=options.limit, filters=filters, context=options.context)
    hits = store.search_messages_page(search).hits
    if options.json:
        for hit in hits:
            out.write(hit.model_dump_json() + "\n")
        return 0
    rows: list[list[str]] = []
    for h in hits:
        rows.append(
            [h.session_key, str(h.index), h.role, when(h.created_at), " ".join(h.snippet.split()), f"{h.score:.2f}"]
        )
        # Neighbours in session order under their hit, marked so they do not read as hits.
        for m in [*h.context_before, *h.context_after]:
            rows.append(["", str(m.index), m.role, when(m.created_at), "· " + " ".join(m.content.split()), ""])
    table(out, ["session", "index", "role", "time (UTC)", "snippet", "score"], rows, right={1, 5}, widest=4)
    if not hits:
        print("no messages found", file=sys.stderr)
    return 0


def cmd_stats(store: DuckDBSessionBackend, options: argparse.Namespace, out: TextIO) -> int:
    """How many sessions, messages and agents, the time span and the file size."""
    sessions = store.list_sessions_with_metadata()
    created = [m.created_at for m in sessions if m.created_at]
    active = [m.last_activity for m in sessions if m.last_activity]
    in_file = store.path != ":memory:" and not is_database_uri(store.path)
    files = [Path(store.path), Path(store.path + ".wal")] if in_file else []
    stats: dict[str, Any] = {
        "database": store.path,
        "sessions": len(sessions),
        "messages": sum(m.message_count for m in sessions),
        "agents": len({m.agent_alias for m in sessions if m.agent_alias}),
        "running_sessions": len(store.list_running_sessions()),
        "first_created_at": min(created).isoformat() if created else None,
        "last_activity": max(active).isoformat() if active else None,
        "file_bytes": sum(f.stat().st_size for f in files if f.exists())
        if not hasattr(store, "database_bytes")
        else store.database_bytes(),
    }
    if options.json:
        out.write(json.dumps(stats) + "\n")
        return 0
    shown = {
        **stats,
        "sessions": f"{stats['sessions']:,}",
        "messages": f"{stats['messages']:,}",
        "first_created_at": when(min(created)) + " UTC" if created else "",
        "last_activity": when(max(active)) + " UTC" if active else "",
        "file_bytes": size(stats["file_bytes"]),
    }
    table(out, ["", ""], [[name.replace("_", " "), str(value)] for name, value in shown.items()], header=False)
    return 0
