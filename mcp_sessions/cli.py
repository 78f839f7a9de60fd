"""The mcp-sessions command: flags to paths and options, then build_server(...) serves them."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from . import __version__, human
from .backend import SessionBackend
from .models import DEFAULT_MAX_CONTENT_BYTES, InvalidArgument, check_text
from .paths import db_path, is_database_uri
from .scope import ScopedBackend

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from .postgres.backend import PostgresSessionBackend
    from .relay import SharedBackend
    from .store.duckdb import DuckDBSessionBackend

    Closable = DuckDBSessionBackend | SharedBackend | PostgresSessionBackend

log = logging.getLogger("mcp_sessions")

COMMANDS = ("serve", "schemas", "manifest", *human.COMMANDS)
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _agent_alias(text: str) -> str:
    if not text:
        raise argparse.ArgumentTypeError("must not be empty")
    try:
        return check_text("agent alias", text)
    except InvalidArgument as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mcp-sessions", description="Session memory for LLM agents over MCP.")
    parser.add_argument("--version", action="version", version=f"mcp-sessions {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve MCP over stdio (the default) or streamable HTTP")
    serve.add_argument(
        "--db",
        help="database file, :memory:, or a PostgreSQL URI postgresql://... shared by many servers"
        " (default: $MCP_SESSIONS_DB, else the XDG data folder)",
    )
    serve.add_argument("--transport", choices=("stdio", "streamable-http"), default="stdio")
    serve.add_argument("--host", default="127.0.0.1", help="HTTP host (default: loopback only)")
    serve.add_argument("--port", type=int, default=8000, help="HTTP port (default: 8000)")
    serve.add_argument("--read-only", action="store_true", help="list and serve only the tools that read")
    serve.add_argument(
        "--agent-alias", type=_agent_alias, help="see only this agent's sessions; attribute new sessions to it"
    )
    serve.add_argument(
        "--max-content-bytes",
        type=_positive,
        default=DEFAULT_MAX_CONTENT_BYTES,
        help=f"largest message content in bytes of UTF-8 (default: {DEFAULT_MAX_CONTENT_BYTES})",
    )
    serve.add_argument("--log-level", type=str.upper, choices=LOG_LEVELS, default="WARNING")

    schemas = commands.add_parser("schemas", help="write each tool's input and output JSON schema")
    schemas.add_argument("dir", nargs="?", default="schemas", help="output folder (default: ./schemas)")

    manifest = commands.add_parser("manifest", help="write manifest.json, the Claude Desktop bundle's manifest")
    manifest.add_argument("file", nargs="?", default="manifest.json", help="output file (default: ./manifest.json)")
    manifest.add_argument("--check", action="store_true", help="write nothing; exit 1 if the file is out of date")
    human.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the mcp-sessions console script; bare flags mean `serve`."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or (args[0] not in COMMANDS and args[0] not in ("-h", "--help", "--version")):
        args.insert(0, "serve")
    options = _parser().parse_args(args)
    if options.command in human.COMMANDS:
        sys.exit(human.run(options))
    if options.command == "manifest":
        from .manifest import write_manifest

        sys.exit(write_manifest(Path(options.file), check=options.check))
    if options.command == "schemas":
        write_schemas(Path(options.dir))
    else:
        serve(options)


def serve(options: argparse.Namespace) -> None:
    """Open the store, serve until stdin closes or a signal comes, close the store."""
    # Logs go to stderr: on stdio, stdout carries JSON-RPC and nothing else.
    logging.basicConfig(level=options.log_level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    from .errors import StoreError

    store: Closable
    try:
        path = db_path(options.db)
        if is_database_uri(path):
            # Every server talks to the database itself: no relay, whatever number of them share it.
            from .postgres.backend import PostgresSessionBackend

            store = PostgresSessionBackend(path, max_content_bytes=options.max_content_bytes)
            path = store.path  # logged without its password
        elif path == ":memory:":
            from .store.duckdb import DuckDBSessionBackend

            store = DuckDBSessionBackend(path, max_content_bytes=options.max_content_bytes)
        else:
            from .relay import SharedBackend

            # The first server on a file holds it; later ones relay to it (see relay.py). Even a --read-only
            # server holds the file for writing, so the servers it shares with can still write.
            store = SharedBackend(path, max_content_bytes=options.max_content_bytes)
    except (StoreError, OSError) as exc:
        sys.exit(f"mcp-sessions: cannot open the store: {exc}")
    # Imported once the store is open: the MCP SDK takes a second to import, and a held file must fail fast.
    from .server import build_server

    try:
        backend: SessionBackend = store
        if options.agent_alias is not None:
            backend = ScopedBackend(store, options.agent_alias)
        server = build_server(backend, read_only=options.read_only)
        log.info("serving %s over %s (read_only=%s)", path, options.transport, options.read_only)
        anyio.run(_run, server, store, options)
    except KeyboardInterrupt:
        pass
    finally:
        store.close()


async def _run(server: MCPServer, store: Closable, options: argparse.Namespace) -> None:
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(_close_on_signal, store)
        if options.transport == "stdio":
            await server.run_stdio_async()  # returns when the client closes stdin
        else:
            await _serve_http(server, options)
        tasks.cancel_scope.cancel()


async def _serve_http(server: MCPServer, options: argparse.Namespace) -> None:
    import uvicorn
    from mcp.server.transport_security import DEFAULT_MAX_REQUEST_BODY_SIZE

    # JSON escapes can make a message up to six times its UTF-8 size; the SDK's 4 MiB must not undercut
    # --max-content-bytes.
    body_limit = max(DEFAULT_MAX_REQUEST_BODY_SIZE, 8 * options.max_content_bytes)
    app = server.streamable_http_app(host=options.host, max_request_body_size=body_limit)
    # log_config=None keeps uvicorn's loggers on ours (stderr); its own config sends access logs to stdout.
    level = options.log_level.lower()
    config = uvicorn.Config(app, host=options.host, port=options.port, log_config=None, log_level=level)
    await uvicorn.Server(config).serve()


async def _close_on_signal(store: Closable) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async for signum in signals:
            log.info("%s: closing the store", signal.Signals(signum).name)
            # The stdio transport reads stdin in a worker thread that cancellation can't interrupt, so the
            # process would wait for a line that may never come: close the store (it waits for a write in
            # progress, then checkpoints) and leave at once.
            await anyio.to_thread.run_sync(store.close)
            sys.stderr.flush()
            os._exit(0)


def write_schemas(folder: Path) -> None:
    """Write <tool>.input.json and <tool>.output.json for every tool, as tools/list serves them."""
    from .memory import MemorySessionBackend
    from .server import build_server

    tools = anyio.run(build_server(MemorySessionBackend()).list_tools)
    folder.mkdir(parents=True, exist_ok=True)
    wanted: set[str] = set()
    for tool in tools:
        for kind, schema in (("input", tool.input_schema), ("output", tool.output_schema)):
            name = f"{tool.name}.{kind}.json"
            wanted.add(name)
            (folder / name).write_text(json.dumps(schema, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    for stale in [*folder.glob("*.input.json"), *folder.glob("*.output.json")]:
        if stale.name not in wanted:
            stale.unlink()
    print(f"wrote {len(wanted)} schemas to {folder}", file=sys.stderr)
