"""Our own JSON Lines: <key>.jsonl, one {"role", "content"} object per line, timed by the file's modification.

A file's mark is a byte prefix (bytes, lines, SHA-256): a grown file is read from where the last import ended."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

from ..imported import ImportedMessage, ImportedSession, iso_utc
from ..models import InvalidArgument, check_session_key
from ..store.imports import ImportMark
from .claude_code import looks_like
from .feeds import Feed, Format, Reading, message_problem


def files(path: Path) -> list[Path]:
    return [path] if path.is_file() else sorted(p for p in path.glob("*.jsonl") if p.is_file())


def detect(path: Path) -> bool:
    """Lines with "role" and "content" at the top, and not Claude Code's."""
    for file in files(path)[:3]:
        try:
            with file.open("rb") as lines:
                first = next((json.loads(raw) for raw in lines if raw.strip()), None)
        except (OSError, ValueError):
            continue
        if isinstance(first, dict) and not looks_like(first) and "role" in first:
            return True
    return False


def read(reading: Reading) -> Iterator[Iterable[Feed]]:
    for path in files(reading.path):
        size = path.stat().st_size
        reading.files.append(path)
        try:
            key = check_session_key(path.stem)
        except InvalidArgument as exc:
            reading.report(f"{path}: the file name is not a valid session key: {exc}")
        else:
            yield _feed(reading, path, key)
        reading.advance(size)


def _feed(reading: Reading, path: Path, key: str) -> list[Feed]:
    data = path.read_bytes()
    marks = [m for m in reading.marks.get(key, ()) if m.bytes >= 0]
    done, lines, previous = _resume(reading, marks, data, path)
    if done == len(data) and previous is not None:
        reading.unchanged.append(path)
        return []
    at = iso_utc(datetime.fromtimestamp(path.stat().st_mtime, UTC))
    session = ImportedSession(key, created_at=at)
    digest = hashlib.sha256(data[:done])
    messages: list[ImportedMessage] = []
    for line in _lines(data, done):
        digest.update(line)
        lines += 1
        parsed = parse_line(line, reading.max_content_bytes)
        if isinstance(parsed, str):
            reading.bad(str(lines), f"{parsed}; line skipped", path)
        elif parsed is not None:
            messages.append(ImportedMessage(parsed[0], parsed[1], at))
    mark = ImportMark(key, len(data), lines, digest.hexdigest(), str(path), replaces=previous)
    return [Feed(session, messages, lambda: mark)]


def _lines(data: bytes, start: int) -> Iterator[bytes]:
    """Each line of data from start, with its newline."""
    parts = data[start:].split(b"\n")
    last = parts.pop()
    for part in parts:
        yield part + b"\n"
    if last:
        yield last


def _resume(reading: Reading, marks: Sequence[ImportMark], data: bytes, path: Path) -> tuple[int, int, str | None]:
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
        reading.warn(
            f"{path}: not a continuation of the file imported into session {marks[0].session_key!r} before;"
            " importing all of it"
        )
    return best


def parse_line(line: bytes, max_content_bytes: int) -> tuple[str, str] | str | None:
    """A line as (role, content), None for a blank line, or the reason it is bad."""
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
    problem = message_problem(role, content, max_content_bytes)
    return (role, content) if problem is None else problem


# No default: our own files are wherever `mcp-sessions export` wrote them.
FORMAT = Format("jsonl", None, detect, read, unit="line")
