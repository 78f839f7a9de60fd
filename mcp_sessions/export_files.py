"""`mcp-sessions export`: each session to DIR/<key>.jsonl, or every message to one .jsonl or .parquet file."""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from .display import Progress, plural, show_progress
from .models import InvalidArgument

if TYPE_CHECKING:
    from .store.duckdb import DuckDBSessionBackend

# Messages per load_page call of an export.
EXPORT_PAGE = 10_000


def cmd_export(store: DuckDBSessionBackend, options: argparse.Namespace, out: TextIO) -> int:
    """Each session to DIR/<key>.jsonl, or every message to one .jsonl/.parquet file with --all."""
    started = time.monotonic()
    if options.to == "zeroclaw":
        from .export_zeroclaw import cmd_export_zeroclaw

        if not options.dir or options.all:
            raise InvalidArgument("export --to zeroclaw needs FILE.db (and no --all)")
        total = sum(m.message_count for m in store.list_sessions_with_metadata())
        return cmd_export_zeroclaw(
            store, Path(options.dir), Progress("exporting", total, "messages", show_progress(options))
        )
    if options.all:
        if options.dir:
            raise InvalidArgument("give DIR or --all FILE, not both")
        target = Path(options.all)
        formats = {".jsonl": "json", ".parquet": "parquet"}
        if target.suffix not in formats:
            raise InvalidArgument(f"--all FILE must end in .jsonl or .parquet, got {target.name!r}")
        target.parent.mkdir(parents=True, exist_ok=True)
        count = store.export_messages(target, formats[target.suffix])
        print(f"wrote {plural(count, 'message')} to {target} in {time.monotonic() - started:.1f} s", file=sys.stderr)
        return 0
    if not options.dir:
        raise InvalidArgument("export needs DIR or --all FILE")
    folder = Path(options.dir)
    folder.mkdir(parents=True, exist_ok=True)
    sessions = store.list_sessions_with_metadata()
    progress = Progress("exporting", sum(m.message_count for m in sessions), "messages", show_progress(options))
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
    what = f"{plural(written, 'message')} of {plural(len(sessions), 'session')}"
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
