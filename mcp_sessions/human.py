"""The commands for people beside `serve`: list, show, search, stats, import, export (as `llm logs` does)."""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from pydantic import ValidationError

from .models import (
    LIST_LIMIT_MAX,
    SEARCH_MESSAGES_LIMIT_MAX,
    ChatMessage,
    InvalidArgument,
    MessagePage,
    SessionMetadata,
    check_session_key,
    parse_time,
)

if TYPE_CHECKING:
    from .store.duckdb import DuckDBSessionBackend, ImportMark

COMMANDS = ("list", "show", "search", "stats", "import", "export")
# Messages per append_many call of an import: one transaction each, so memory stays flat and an
# interrupted import resumes from the last one (see ImportMark).
IMPORT_BATCH = 5_000
# Messages per load_page call of an export.
EXPORT_PAGE = 10_000
_DB_HELP = "database file (default: $MCP_SESSIONS_DB, else the XDG data folder)"


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
    search.add_argument("--json", action="store_true", help="one JSON object per hit instead of a table")

    stats = command("stats", "count sessions and messages")
    stats.add_argument("--json", action="store_true", help="a JSON object instead of a table")

    imports = command("import", "import sessions from JSON Lines files ({role, content} per line; key = file stem)")
    imports.add_argument("sources", nargs="+", metavar="SOURCE", help="a .jsonl file, or a folder of them")
    _progress_flags(imports)

    export = command("export", "write each session to DIR/<key>.jsonl, or the whole store to one file")
    export.add_argument("dir", nargs="?", metavar="DIR", help="folder to write <key>.jsonl files into")
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
    from .cli import db_path

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
    import duckdb

    from .store.duckdb import DuckDBSessionBackend
    from .store.errors import StoreLocked, StoreReadOnly
    from .store.migrations import pending

    try:
        if writes or path == ":memory:":
            return DuckDBSessionBackend(path)
        if not Path(path).exists():
            raise _CannotOpen(f"no store at {path} (use --db, or set MCP_SESSIONS_DB)")
        conn = duckdb.connect(path, read_only=True)
        try:
            upgrade = bool(pending(conn, create=False))
        finally:
            conn.close()
        return DuckDBSessionBackend(path, read_only=not upgrade)
    except (StoreLocked, StoreReadOnly, duckdb.Error, OSError) as exc:
        if not isinstance(exc, StoreLocked) and "lock" not in str(exc).lower():
            raise _CannotOpen(f"cannot open the store {path}: {exc}") from None
        held = exc
    if not writes:
        # A running `mcp-sessions serve` holds the file: read through it, as its relays do.
        from .relay import SharedBackend
        from .store.errors import StoreUnavailable

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
    rows = [
        [m.key, m.name or "", f"{m.message_count:,}", _when(m.last_activity), m.agent_alias or ""] for m in sessions
    ]
    _table(out, ["key", "name", "messages", "last activity (UTC)", "agent"], rows, right={2})
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


def markdown_transcript(metadata: SessionMetadata, page: MessagePage) -> str:
    """A session as Markdown: a heading with its name, key and facts, then one section per message."""
    title = f"{metadata.name} (`{metadata.key}`)" if metadata.name else f"`{metadata.key}`"
    facts = [_plural(metadata.message_count, "message")]
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


def cmd_search(store: DuckDBSessionBackend, options: argparse.Namespace, out: TextIO) -> int:
    """Matching messages as a table (or JSON Lines), best first."""
    since = parse_time("--since", options.since) if options.since else None
    until = parse_time("--until", options.until) if options.until else None
    hits = store.search_messages(options.text, options.limit, options.session, None, options.role, since, until)
    if options.json:
        for hit in hits:
            out.write(hit.model_dump_json() + "\n")
        return 0
    rows = [
        [h.session_key, str(h.index), h.role, _when(h.created_at), " ".join(h.snippet.split()), f"{h.score:.2f}"]
        for h in hits
    ]
    _table(out, ["session", "index", "role", "time (UTC)", "snippet", "score"], rows, right={1, 5}, widest=4)
    if not hits:
        print("no messages found", file=sys.stderr)
    return 0


def cmd_stats(store: DuckDBSessionBackend, options: argparse.Namespace, out: TextIO) -> int:
    """How many sessions, messages and agents, the time span and the file size."""
    sessions = store.list_sessions_with_metadata()
    created = [m.created_at for m in sessions if m.created_at]
    active = [m.last_activity for m in sessions if m.last_activity]
    files = [Path(store.path), Path(store.path + ".wal")] if store.path != ":memory:" else []
    stats: dict[str, Any] = {
        "database": store.path,
        "sessions": len(sessions),
        "messages": sum(m.message_count for m in sessions),
        "agents": len({m.agent_alias for m in sessions if m.agent_alias}),
        "running_sessions": len(store.list_running_sessions()),
        "first_created_at": min(created).isoformat() if created else None,
        "last_activity": max(active).isoformat() if active else None,
        "file_bytes": sum(f.stat().st_size for f in files if f.exists()),
    }
    if options.json:
        out.write(json.dumps(stats) + "\n")
        return 0
    shown = {
        **stats,
        "sessions": f"{stats['sessions']:,}",
        "messages": f"{stats['messages']:,}",
        "first_created_at": _when(min(created)) + " UTC" if created else "",
        "last_activity": _when(max(active)) + " UTC" if active else "",
        "file_bytes": _size(stats["file_bytes"]),
    }
    _table(out, ["", ""], [[name.replace("_", " "), str(value)] for name, value in shown.items()], header=False)
    return 0


# Import.


@dataclass
class _Report:
    imported: int = 0
    skipped: int = 0
    unchanged: list[Path] = field(default_factory=list[Path])
    failed_files: int = 0


def cmd_import(store: DuckDBSessionBackend, options: argparse.Namespace, out: TextIO) -> int:
    """Import .jsonl files into sessions; 0 when no line was skipped, 1 otherwise."""
    from .store.duckdb import ImportMark

    files: list[Path] = []
    report = _Report()
    for source in options.sources:
        path = Path(source)
        if path.is_dir():
            files += sorted(p for p in path.glob("*.jsonl") if p.is_file())
        elif path.is_file():
            files.append(path)
        else:
            print(f"{source}: no such file or folder", file=sys.stderr)
            report.failed_files += 1
    started = time.monotonic()
    progress = Progress("importing", sum(p.stat().st_size for p in files), "bytes", _show_progress(options))
    batch: list[tuple[str, ChatMessage]] = []
    marks: list[ImportMark] = []

    def flush() -> None:
        report.imported += store.append_many(batch, marks)
        batch.clear()
        marks.clear()

    for path in files:
        try:
            key = check_session_key(path.stem)
        except InvalidArgument as exc:
            print(f"{path}: the file name is not a valid session key: {exc}", file=sys.stderr)
            report.failed_files += 1
            progress.advance(path.stat().st_size)
            continue
        data = path.read_bytes()
        done, lines, previous = _resume(store.import_marks(key), data, path)
        progress.advance(done)
        if done == len(data) and previous is not None:
            report.unchanged.append(path)
            continue
        digest = hashlib.sha256(data[:done])
        for line, end in _lines(data, done):
            digest.update(line)
            lines += 1
            parsed = parse_line(line, store.max_content_bytes)
            if isinstance(parsed, str):
                print(f"{path}:{lines}: {parsed}; line skipped", file=sys.stderr)
                report.skipped += 1
            elif parsed is not None:
                batch.append((key, parsed))
            if len(batch) >= IMPORT_BATCH or end == len(data):
                sha = digest.hexdigest()
                marks.append(ImportMark(key, end, lines, sha, str(path), replaces=previous))
                previous = sha
            if len(batch) >= IMPORT_BATCH:
                flush()
            progress.advance(len(line))
    flush()
    progress.close()
    seconds = time.monotonic() - started
    summary = f"imported {_plural(report.imported, 'message')} from {_plural(len(files), 'file')} in {seconds:.1f} s"
    if report.skipped:
        summary += f"; skipped {_plural(report.skipped, 'bad line')}"
    if report.unchanged:
        summary += f"; {_plural(len(report.unchanged), 'file')} already imported"
    print(summary, file=sys.stderr)
    return 1 if report.skipped or report.failed_files else 0


def _resume(marks: Sequence[ImportMark], data: bytes, path: Path) -> tuple[int, int, str | None]:
    """Where to start reading data: after the longest earlier import it extends, as (bytes, lines, digest)."""
    best: tuple[int, int, str | None] = (0, 0, None)
    digest = hashlib.sha256()
    read = 0
    for mark in marks:  # shortest first, so one pass hashes each prefix
        if mark.bytes > len(data):
            break
        digest.update(data[read : mark.bytes])
        read = mark.bytes
        if digest.hexdigest() == mark.sha256:
            best = (mark.bytes, mark.lines, mark.sha256)
    if marks and best[2] is None:
        print(
            f"{path}: not a continuation of the file imported into session {marks[0].session_key!r} before;"
            " importing all of it",
            file=sys.stderr,
        )
    return best


def _lines(data: bytes, start: int) -> Iterator[tuple[bytes, int]]:
    """Each line of data from start, with its newline, and the offset just after it."""
    while start < len(data):
        end = data.find(b"\n", start)
        end = len(data) if end < 0 else end + 1
        yield data[start:end], end
        start = end


def parse_line(line: bytes, max_content_bytes: int) -> ChatMessage | str | None:
    """A line as a message, None for a blank line, or the reason it is bad."""
    if not line.strip():
        return None
    try:
        value = json.loads(line)
    except UnicodeDecodeError:
        return "not UTF-8"
    except ValueError as exc:
        return f"not JSON ({exc})"
    if not isinstance(value, dict):
        return f"not a JSON object but {type(value).__name__}"
    role, content = value.get("role"), value.get("content")  # other keys a runtime adds are ignored
    if not isinstance(role, str) or not isinstance(content, str):
        return 'needs "role" and "content" strings'
    try:
        message = ChatMessage(role=role, content=content)
    except ValidationError as exc:
        return "; ".join(str(error["msg"]).removeprefix("Value error, ") for error in exc.errors())
    size = len(content.encode("utf-8", "surrogatepass"))
    if size > max_content_bytes:
        return f"content must be at most {max_content_bytes} bytes of UTF-8, got {size}"
    try:
        content.encode("utf-8")
    except UnicodeEncodeError:
        return "content must be valid Unicode text (it holds a lone surrogate)"
    return message


# Export.


def cmd_export(store: DuckDBSessionBackend, options: argparse.Namespace, out: TextIO) -> int:
    """Each session to DIR/<key>.jsonl, or every message to one .jsonl/.parquet file with --all."""
    started = time.monotonic()
    if options.all:
        if options.dir:
            raise InvalidArgument("give DIR or --all FILE, not both")
        target = Path(options.all)
        formats = {".jsonl": "json", ".parquet": "parquet"}
        if target.suffix not in formats:
            raise InvalidArgument(f"--all FILE must end in .jsonl or .parquet, got {target.name!r}")
        target.parent.mkdir(parents=True, exist_ok=True)
        count = store.export_messages(target, formats[target.suffix])
        print(f"wrote {_plural(count, 'message')} to {target} in {time.monotonic() - started:.1f} s", file=sys.stderr)
        return 0
    if not options.dir:
        raise InvalidArgument("export needs DIR or --all FILE")
    folder = Path(options.dir)
    folder.mkdir(parents=True, exist_ok=True)
    sessions = store.list_sessions_with_metadata()
    progress = Progress("exporting", sum(m.message_count for m in sessions), "messages", _show_progress(options))
    written = 0
    for meta in sessions:
        name = export_file_name(meta.key)
        if name != meta.key + ".jsonl":
            print(f"session {meta.key!r} written to {name!r}: its key can't be a file name", file=sys.stderr)
        with open(folder / name, "w", encoding="utf-8") as file:
            for offset in range(0, meta.message_count, EXPORT_PAGE):
                page = store.load_page(meta.key, offset, EXPORT_PAGE)
                for message in page.messages:
                    file.write(json.dumps({"role": message.role, "content": message.content}, ensure_ascii=False))
                    file.write("\n")
                written += len(page.messages)
                progress.advance(len(page.messages))
    progress.close()
    seconds = time.monotonic() - started
    what = f"{_plural(written, 'message')} of {_plural(len(sessions), 'session')}"
    print(f"wrote {what} to {folder} in {seconds:.1f} s", file=sys.stderr)
    return 0


def export_file_name(key: str) -> str:
    """<key>.jsonl, so that importing it gives the same key; percent-escaped, and shortened, when it can't be."""
    name = key + ".jsonl"
    if "/" not in key and len(name.encode("utf-8")) <= 255:
        return name
    escaped = key.replace("%", "%25").replace("/", "%2F")
    if len(escaped.encode("utf-8")) > 200:
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]
        escaped = escaped.encode("utf-8")[:180].decode("utf-8", "ignore") + "-" + digest
    return escaped + ".jsonl"


# Output.


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else ""


def _size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1024
    return f"{size} B"


def _table(
    out: TextIO,
    headers: list[str],
    rows: list[list[str]],
    *,
    right: set[int] | frozenset[int] = frozenset(),
    widest: int | None = None,
    header: bool = True,
) -> None:
    """Aligned columns; cells with control characters or past the column's width are cut to fit the terminal."""
    if not rows:
        return
    cells = [[" ".join(cell.split()) if "\n" in cell or "\t" in cell else cell for cell in row] for row in rows]
    widths = [max(len(headers[i]) if header else 0, *(len(row[i]) for row in cells)) for i in range(len(headers))]
    room = max(shutil_columns() - 2 * (len(headers) - 1), 40)
    for i in sorted(range(len(widths)), key=lambda i: (i != widest, -widths[i])):
        excess = sum(widths) - room
        if excess <= 0:
            break
        widths[i] = max(widths[i] - excess, min(widths[i], 12))

    def line(values: list[str]) -> str:
        fitted = [v if len(v) <= w else v[: w - 1] + "…" for v, w in zip(values, widths, strict=True)]
        padded = [v.rjust(w) if i in right else v.ljust(w) for i, (v, w) in enumerate(zip(fitted, widths, strict=True))]
        return "  ".join(padded).rstrip()

    if header:
        out.write(line(headers) + "\n")
        out.write("  ".join("-" * w for w in widths) + "\n")
    for row in cells:
        out.write(line(row) + "\n")


def shutil_columns() -> int:
    """The terminal's width; 120 when output is not a terminal (so piped tables are not cut short)."""
    import shutil

    return shutil.get_terminal_size((120, 24)).columns if sys.stdout.isatty() else 120


def _show_progress(options: argparse.Namespace) -> bool:
    return sys.stderr.isatty() if options.progress is None else bool(options.progress)


class Progress:
    """A one-line progress bar on stderr: redrawn in place on a terminal, a line every few seconds otherwise."""

    WIDTH = 30

    def __init__(self, label: str, total: int, unit: str, enabled: bool, stream: TextIO | None = None) -> None:
        self.label, self.total, self.unit, self.enabled = label, total, unit, enabled
        self.stream = stream or sys.stderr
        self.done = 0
        self.started = self.drawn = time.monotonic()
        self.tty = self.stream.isatty()
        self.interval = 0.1 if self.tty else 5.0

    def advance(self, amount: int) -> None:
        self.done += amount
        now = time.monotonic()
        if self.enabled and now - self.drawn >= self.interval:
            self.drawn = now
            self._draw(end="\r" if self.tty else "\n")

    def close(self) -> None:
        if self.enabled:
            self._draw(end="\n")

    def _draw(self, end: str) -> None:
        fraction = min(self.done / self.total, 1.0) if self.total else 1.0
        filled = int(fraction * self.WIDTH)
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if rate and fraction < 1 else 0.0
        amount = (
            f"{_size(self.done)}/{_size(self.total)}"
            if self.unit == "bytes"
            else f"{self.done:,}/{self.total:,} {self.unit}"
        )
        speed = f"{_size(int(rate))}/s" if self.unit == "bytes" else f"{rate:,.0f}/s"
        text = f"{self.label} {fraction:4.0%} [{'#' * filled}{'.' * (self.WIDTH - filled)}] {amount} {speed}"
        if fraction < 1:
            text += f" ETA {eta:,.0f} s"
        self.stream.write(text.ljust(79) + end if self.tty else text + end)
        self.stream.flush()
