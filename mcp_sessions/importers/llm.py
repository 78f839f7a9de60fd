"""Simon Willison's llm: logs.db in its user folder; each row of `responses` is a prompt and its response."""

from __future__ import annotations

import itertools
import os
import sqlite3
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..imported import ImportedMessage, ImportedSession, parse_utc
from .feeds import Feed, Format, Reading, continued
from .sqlite import read_database, tables

_SELECT = "SELECT coalesce(conversation_id, id), id, prompt, response, datetime_utc FROM responses"


def default(home: Path) -> Path:
    """llm's own rule: $LLM_USER_PATH, else its folder in the platform's application data."""
    given = os.environ.get("LLM_USER_PATH")
    if given:
        return Path(given) / "logs.db"
    if sys.platform == "darwin":
        return home / "Library" / "Application Support" / "io.datasette.llm" / "logs.db"
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA", home / "AppData" / "Local")) / "io.datasette.llm" / "logs.db"
    config = os.environ.get("XDG_CONFIG_HOME") or str(home / ".config")
    return Path(config) / "io.datasette.llm" / "logs.db"


def detect(path: Path) -> bool:
    return {"responses", "conversations"} <= tables(path)


def read(reading: Reading) -> Iterator[Iterable[Feed]]:
    return read_database(reading, _feeds)


def _messages(reading: Reading, rows: Iterable[tuple[object, ...]]) -> Iterator[ImportedMessage]:
    """Each response as a user message and an assistant one, by time (naive means UTC) then id."""
    timed: list[tuple[str, int, object, object, object]] = []
    for n, (row_id, prompt, response, when) in enumerate(rows):
        try:
            at = parse_utc(when)  # type: ignore[arg-type]
        except ValueError as exc:
            reading.bad(f"responses id {row_id}", f"datetime_utc is not a time ({exc})")
            continue
        timed.append((at, n, row_id, prompt, response))
    timed.sort(key=lambda row: row[:2])  # the query ordered by id within a time already
    for at, _, row_id, prompt, response in timed:
        where = f"responses id {row_id}"
        user = reading.message(where, "user", "" if prompt is None else prompt, at)
        assistant = reading.message(where, "assistant", "" if response is None else response, at)
        if user is not None and assistant is not None:
            yield user
            yield assistant


def _feeds(reading: Reading, conn: sqlite3.Connection) -> Iterator[Feed]:
    names = dict(conn.execute("SELECT id, name FROM conversations"))
    rows = conn.execute(f"{_SELECT} ORDER BY 1, datetime_utc, id")
    for raw_key, group in itertools.groupby(rows, key=lambda row: row[0]):
        where = f"responses conversation_id {raw_key!r}"
        key = reading.key(where, str(raw_key) if isinstance(raw_key, int) else raw_key)
        if key is None:
            continue
        session = ImportedSession(key, name=reading.text(where, "name", names.get(raw_key)))
        messages = list(_messages(reading, (row[1:] for row in group)))
        yield continued(reading, session, messages)


FORMAT = Format("llm", default, detect, read)
