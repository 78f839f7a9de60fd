"""`mcp-sessions import [--from FORMAT] [SOURCE...]`: sources found or defaulted, read by their format's module,
written through the store's bulk path (a transaction ends after the source file that fills a batch)."""

from __future__ import annotations

import argparse
import gc
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from ..display import Progress, plural, show_progress
from ..errors import StoreError
from ..models import InvalidArgument
from . import detect, formats
from .feeds import Feed, Format, Reading

if TYPE_CHECKING:
    from ..store.bulk import BulkImport
    from ..store.duckdb import DuckDBSessionBackend
    from ..store.imports import ImportMark

# Messages after which the transaction ends, once the session that reached it is in: a folder of small files
# is not a commit per file, and a database of a million messages not one transaction. Past DuckDB's row group
# (122,880 rows), a transaction's rows are written to the file as it runs, not through the log: its commit
# and the checkpoints after it cost a fraction of what a log of them would.
IMPORT_BATCH = 125_000
GC_THRESHOLDS = (100_000, 50, 100)


def _sources(options: argparse.Namespace, report: list[str]) -> list[tuple[Path, Format]]:
    """(path, format) of each source; InvalidArgument when the command is misused, FileNotFoundError when a
    default location holds nothing."""
    known = formats()
    chosen: str | None = options.source_format
    if chosen is not None and chosen not in known:
        raise InvalidArgument(f"--from must be one of {', '.join(known)}; got {chosen!r}")
    if not options.sources:
        if chosen is None:
            raise InvalidArgument("give a SOURCE, or --from FORMAT to read its runtime's default location")
        default = known[chosen].default
        if default is None:
            raise InvalidArgument(f"--from {chosen} has no default location: give the SOURCE to read")
        where = default(Path.home())
        if not where.exists():
            raise FileNotFoundError(f"no {chosen} history at {where} (its default location): give the SOURCE to read")
        return [(where, known[chosen])]
    found: list[tuple[Path, Format]] = []
    for source in options.sources:
        path = Path(source)
        if not path.exists():
            report.append(f"{source}: no such file or folder")
            continue
        format = known[chosen] if chosen else detect(path)
        if format is None:
            report.append(f"{source}: not a history of {', '.join(known)} (name one with --from)")
            continue
        found.append((path, format))
    return found


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for pattern in ("*.jsonl", "*/*.jsonl") for p in path.glob(pattern) if p.is_file())


def cmd_import(store: DuckDBSessionBackend, options: argparse.Namespace, out: TextIO) -> int:
    """Import every source; 0 when nothing was skipped, 1 otherwise (InvalidArgument when misused)."""
    problems: list[str] = []
    try:
        sources = _sources(options, problems)
    except FileNotFoundError as exc:
        print(f"mcp-sessions: {exc}", file=sys.stderr)
        return 1
    for problem in problems:
        print(problem, file=sys.stderr)
    started = time.monotonic()
    skipped = 0

    def report(text: str) -> None:
        nonlocal skipped
        skipped += 1
        print(text, file=sys.stderr)

    def warn(text: str) -> None:
        print(text, file=sys.stderr)

    progress = Progress("importing", sum(_size(path) for path, _ in sources), "bytes", show_progress(options))
    marks = store.import_marks()
    unchanged: list[Path] = []
    files: list[Path] = []
    imported = 0
    # Millions of messages live a while (read, then analysed, then inserted): at the default thresholds the
    # collector would scan them over and over, for no cycle among them.
    thresholds = gc.get_threshold()
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        for path, format in sources:
            advanced = progress.done
            reading = Reading(path, marks, store.max_content_bytes, report, warn, progress.advance, unchanged, files)
            imported += _import_source(store, format, reading, marks)
            progress.advance(max(_size(path) - (progress.done - advanced), 0))
    except StoreError as exc:
        print(f"mcp-sessions: the import stopped, what it committed stays: {exc}", file=sys.stderr)
        return 1
    finally:
        progress.close()
        gc.set_threshold(*thresholds)
    merged = 0.0
    if imported:
        # The import's postings wait in their rows (its transactions do not merge them, see bulk.py): one sorted
        # run now, so the next server searches the term-sorted table rather than scanning them.
        merging = time.monotonic()
        store.merge()
        merged = time.monotonic() - merging
    seconds = time.monotonic() - started
    read = plural(len(files), "file")
    summary = f"imported {plural(imported, 'message')} from {read} in {seconds:.1f} s"
    if merged:
        summary += f" ({merged:.1f} s of it indexing them for search)"
    if skipped:
        units = sorted({format.unit for _, format in sources}) or ["line"]
        summary += f"; skipped {plural(skipped, 'bad ' + ' or '.join(units))}"
    if unchanged:
        summary += f"; {plural(len(unchanged), 'file')} already imported"
    print(summary, file=sys.stderr)
    return 1 if skipped or problems else 0


def _import_source(
    store: DuckDBSessionBackend, format: Format, reading: Reading, marks: dict[str, list[ImportMark]]
) -> int:
    """Read one source into the store; return how many messages it added. A transaction ends after the session
    that fills a batch: a session is never split, memory stays flat, and a stopped import resumes after the
    sessions it committed (each one's mark is written with its messages)."""
    added = 0
    with ExitStack() as open_transaction:
        bulk: BulkImport | None = None
        for unit in format.read(reading):
            for feed in unit:
                if bulk is None:
                    bulk = open_transaction.enter_context(store.bulk_import())
                _feed(bulk, feed, marks)
                if bulk.added + len(bulk.pending) >= IMPORT_BATCH:
                    open_transaction.close()  # commits
                    added += bulk.added
                    bulk = None
        open_transaction.close()
        if bulk is not None:
            added += bulk.added
    return added


def _feed(bulk: BulkImport, feed: Feed, marks: dict[str, list[ImportMark]]) -> None:
    key = feed.session.key
    bulk.session(feed.session)
    add = bulk.add
    for message in feed.messages:
        add(key, message)
    mark = feed.mark()
    if mark is not None:
        bulk.mark(mark)
        # A source given twice in one command, or a session in two sources, sees what was just read.
        kept = [m for m in marks.get(key, ()) if m.sha256 != mark.replaces]
        marks[key] = sorted([*kept, mark], key=lambda m: (m.bytes, m.lines))
