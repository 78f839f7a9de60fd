"""`mcp-sessions import`: JSON Lines files into sessions, resumable (see ImportMark), bad lines reported."""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from pydantic import ValidationError

from .display import Progress, plural, show_progress
from .models import ChatMessage, InvalidArgument, check_session_key
from .store.imports import ImportMark

if TYPE_CHECKING:
    from .store.duckdb import DuckDBSessionBackend

# Messages per append_many call of an import: one transaction each, so memory stays flat and an
# interrupted import resumes from the last one (see ImportMark).
IMPORT_BATCH = 5_000


@dataclass
class _Report:
    imported: int = 0
    skipped: int = 0
    unchanged: list[Path] = field(default_factory=list[Path])
    failed_files: int = 0


def cmd_import(store: DuckDBSessionBackend, options: argparse.Namespace, out: TextIO) -> int:
    """Import .jsonl files into sessions; 0 when no line was skipped, 1 otherwise."""
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
    progress = Progress("importing", sum(p.stat().st_size for p in files), "bytes", show_progress(options))
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
    summary = f"imported {plural(report.imported, 'message')} from {plural(len(files), 'file')} in {seconds:.1f} s"
    if report.skipped:
        summary += f"; skipped {plural(report.skipped, 'bad line')}"
    if report.unchanged:
        summary += f"; {plural(len(report.unchanged), 'file')} already imported"
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
