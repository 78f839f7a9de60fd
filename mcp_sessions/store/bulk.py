"""BulkImport: one import transaction fed message by message, each with its own time, sessions with their
source's metadata; chunks are inserted on the writer's insert thread while the next one is indexed."""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, wait
from contextlib import contextmanager
from dataclasses import dataclass

import duckdb

from ..errors import StoreFailure
from ..imported import ImportedMessage, ImportedSession
from .imports import ImportMark, record_imports
from .params import rows_param, rows_sql
from .postings import Encoded
from .session_view import COLUMNS
from .sql import Cursor, now
from .writes import Writer

_KEYS = rows_sql({"k": "VARCHAR"})
# An import's transactions leave their postings in their rows: merged after each one, a folder of small files
# would make a scattered run per file (and soon call for optimize()); the import merges once, at its end.
_NO_MERGE = 1 << 62
# Messages are sent to be analysed this many at a time, so the analysis keeps up with the reading and a
# transaction's end waits for a few of them only; after ANALYSIS_AFTER messages of bulk imports, in the analysis
# process (see analysis.Analysis: starting it takes a few tenths of a second).
ANALYSIS_CHUNK = 500
ANALYSIS_AFTER = 2_000
# Messages sent and not yet inserted, at most: past this the reader waits for the analysis (the slower side), so
# a big transaction does not hold its whole source in memory.
IN_FLIGHT = 16_000
BEHIND = 12
_METADATA = ("name", "agent_alias", "channel_id", "room_id", "sender_id", "state", "turn_id", "turn_started_at")
_TIMES = ("turn_started_at",)
_TOTALS = rows_sql(
    {
        "sid": "BIGINT",
        "n_added": "BIGINT",
        "n_new": "BOOLEAN",
        "n_created": "TIMESTAMPTZ",
        "n_last": "TIMESTAMPTZ",
        **{f"n_{field}": "TIMESTAMPTZ" if field in _TIMES else "VARCHAR" for field in _METADATA},
    }
)


@dataclass
class _Session:
    """A session this import touches: where its next message goes, what the source says of it."""

    session_id: int
    next_idx: int
    new: bool
    source: ImportedSession | None = None
    added: int = 0
    first: str | None = None
    last: str | None = None


class BulkImport:
    """Messages and sessions of one import transaction; finish() writes the session rows and marks."""

    def __init__(self, writer: Writer, cur: Cursor) -> None:
        self.writer = writer
        self.cur = cur
        self.chunk = writer.tuning.insert_chunk
        self.analysis_chunk = min(self.chunk, ANALYSIS_CHUNK)
        self.sessions: dict[str, _Session] = {}
        self.announced: dict[str, ImportedSession] = {}
        self.pending: list[tuple[str, ImportedMessage]] = []
        self.marks: list[ImportMark] = []
        self.added = 0
        self._inserting: Future[object] | None = None
        self._analyzing: deque[tuple[list[tuple[str, ImportedMessage]], Future[Encoded]]] = deque()
        writer.conn.raise_memory()

    def session(self, session: ImportedSession) -> None:
        """The source's metadata for this session (created if missing when the import finishes)."""
        self.announced[session.key] = session

    def add(self, key: str, message: ImportedMessage) -> None:
        """Append the message (checked by the caller) to the session, after what it already holds."""
        self.pending.append((key, message))
        if len(self.pending) >= self.analysis_chunk:
            self._flush()

    def mark(self, mark: ImportMark) -> None:
        self.marks.append(mark)

    def _place(self, keys: list[str]) -> None:
        """Find or create the sessions of these keys, in two statements."""
        found = self.cur.execute(
            f"SELECT key, id, message_count FROM sessions WHERE key IN (SELECT k FROM {_KEYS})", [rows_param(k=keys)]
        ).fetchall()
        for key, session_id, count in found:
            self.sessions[key] = _Session(session_id, count, new=False)
        missing = [key for key in keys if key not in self.sessions]
        if not missing:
            return
        at = now()
        created = self.cur.execute(
            "INSERT INTO sessions (id, key, created_at, last_activity, message_count)"
            f" SELECT nextval('session_ids'), k, ?, ?, 0 FROM {_KEYS} RETURNING key, id",
            [at, at, rows_param(k=missing)],
        ).fetchall()
        # Marks of an earlier session of the same key (deleted since) say nothing of this one.
        self.cur.execute(
            f"DELETE FROM _imports WHERE session_key IN (SELECT k FROM {_KEYS})", [rows_param(k=missing)]
        ).fetchall()
        for key, session_id in created:
            self.sessions[key] = _Session(session_id, 0, new=True)

    def _flush(self, *, last: bool = False) -> None:
        """Send the pending messages to be analysed; insert a chunk of those analysed (all of them when last)."""
        batch, self.pending = self.pending, []
        writer = self.writer
        if batch:
            writer.analysis.sent += len(batch)
            # With BEHIND chunks still queued there, the analysis process is the slower side: this chunk is
            # analysed here, by the reader that would otherwise wait for it (the two processes share the work).
            queued = sum(1 for _, analysis in self._analyzing if not analysis.done())
            elsewhere = writer.analysis.sent > ANALYSIS_AFTER and queued < BEHIND
            contents = [message.content for _, message in batch]
            self._analyzing.append((batch, writer.analysis.soon(contents, elsewhere=elsewhere)))
            self.added += len(batch)
        # Messages are analysed (in the analysis process) while the next ones are read and the chunk before is
        # inserted (DuckDB, off the GIL); statements on the cursor wait for the INSERT.
        analyzing = self._analyzing
        if not last and len(analyzing) * self.analysis_chunk > IN_FLIGHT:
            # The reader is ahead: wait for the analyses that make the next INSERT.
            ahead = max(self.chunk // self.analysis_chunk, 1)
            wait([analysis for _, analysis in itertools.islice(analyzing, ahead)])
        while analyzing:
            ready = 0
            for sent, analysis in analyzing:
                if not (last or analysis.done()) or ready >= self.chunk:
                    break
                ready += len(sent)
            if ready < self.chunk and not (last and ready):
                return
            taken: list[tuple[str, ImportedMessage]] = []
            parts: list[Encoded] = []
            while len(taken) < ready:
                sent, analysis = analyzing.popleft()
                part = analysis.result()
                writer.index.add_terms(part.tids)
                taken += sent
                parts.append(part)
            self._insert(taken, parts)

    def _insert(self, batch: list[tuple[str, ImportedMessage]], parts: list[Encoded]) -> None:
        sessions = self.sessions
        if any(key not in sessions for key, _ in batch):
            # Placing waits for the INSERT before: the sessions of the messages read since are placed with these
            # (in the same order, so their ids are the same), not one wait for each chunk that brings new ones.
            later = itertools.chain(batch, (m for sent, _ in self._analyzing for m in sent), self.pending)
            unplaced = list(dict.fromkeys(key for key, _ in later if key not in sessions))
            self._wait()
            self._place(unplaced)
        rows: list[tuple[int, int, str, str | None]] = []
        for key, message in batch:
            session = sessions[key]
            at = message.created_at
            rows.append((session.session_id, session.next_idx, message.role, at))
            session.next_idx += 1
            session.added += 1
            if session.first is None or at < session.first:
                session.first = at
            if session.last is None or at > session.last:
                session.last = at
        self._wait()
        self._inserting = self.writer._inserter().submit(self.writer.insert_encoded, self.cur, rows, parts)

    def _wait(self) -> None:
        if self._inserting is not None:
            inserting, self._inserting = self._inserting, None
            inserting.result()

    def abandon(self) -> None:
        """Never leave an INSERT running on the cursor that is about to roll back."""
        self._analyzing.clear()
        if self._inserting is not None:
            wait([self._inserting])

    def finish(self) -> int:
        """Write the session rows (counts, times, metadata) and the marks; return how many messages were added."""
        self._flush(last=True)
        self._wait()
        unplaced = [key for key in self.announced if key not in self.sessions]
        if unplaced:
            self._place(unplaced)
        for key, source in self.announced.items():
            self.sessions[key].source = source
        if self.sessions:
            self._write_sessions()
        record_imports(self.cur, self.marks, now())
        keys = list(self.sessions)
        self.writer.after_commit(lambda: self.writer.tails.forget(keys))
        for key in keys:
            self.writer.forget(key)
        return self.added

    def _write_sessions(self) -> None:
        """One UPDATE for every touched session: a new one takes the source's times, an old one keeps its
        creation and moves its last activity only forward; metadata the source gives replaces what is stored."""
        columns: dict[str, list[object]] = {name: [] for name in ("sid", "n_added", "n_new", "n_created", "n_last")}
        for field in _METADATA:
            columns[f"n_{field}"] = []
        at = now()
        for session in self.sessions.values():
            source = session.source
            columns["sid"].append(session.session_id)
            columns["n_added"].append(session.added)
            columns["n_new"].append(session.new)
            created = (source.created_at if source else None) or session.first
            if created is not None and session.first is not None:
                created = min(created, session.first)
            if created is not None:
                # Not after now, however the runtime's clock ran: marks older than the session do not count.
                created = min(created, at)
            columns["n_created"].append(created)
            columns["n_last"].append(session.last or created)
            given = source.metadata() if source else {}
            for field in _METADATA:
                columns[f"n_{field}"].append(given.get(field))
        keep = ", ".join(f"{field} = coalesce(n.n_{field}, {field})" for field in _METADATA)
        updated = self.cur.execute(
            "UPDATE sessions SET message_count = message_count + n.n_added,"
            " created_at = CASE WHEN n.n_new THEN coalesce(n.n_created, created_at) ELSE created_at END,"
            " last_activity = CASE WHEN n.n_new THEN coalesce(n.n_last, last_activity)"
            " ELSE greatest(last_activity, coalesce(n.n_last, last_activity)) END,"
            f" {keep} FROM {_TOTALS} AS n WHERE sessions.id = n.sid RETURNING {COLUMNS}",
            [rows_param(**columns)],
        ).fetchall()
        for row in updated:
            self.writer.stored(row)


@contextmanager
def open_bulk(writer: Writer) -> Iterator[BulkImport]:
    """One import transaction: all of what was fed commits, or none of it; DuckDB's errors as StoreFailure."""
    try:
        with writer.transaction(merge_after=_NO_MERGE) as cur:
            bulk = BulkImport(writer, cur)
            try:
                yield bulk
                bulk.finish()
            except BaseException:
                bulk.abandon()
                raise
    except duckdb.Error as exc:
        raise StoreFailure(str(exc)) from exc
