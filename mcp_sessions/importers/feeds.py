"""What a format module gives the import and gets from it: a Format, a Reading of one source, Feeds of sessions,
and Continuation, which skips what an earlier import of the same source already took."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..imported import ImportedMessage, ImportedSession
from ..models import MAX_ROLE_CHARS, InvalidArgument, check_session_key, check_text
from ..store.imports import ImportMark


@dataclass(frozen=True)
class Format:
    """One runtime's history: where it lives by default, how to recognise it, how to read it.

    read yields units, each imported in one transaction: an iterable of Feeds."""

    name: str
    default: Callable[[Path], Path] | None  # the user's home -> the default location (None: it has none)
    detect: Callable[[Path], bool]
    read: Callable[[Reading], Iterator[Iterable[Feed]]]
    unit: str = "row"  # what a bad one is called: a row of a database, a line of a file


@dataclass
class Feed:
    """One session of a source: its metadata, its messages in order, and the mark to record once they are in."""

    session: ImportedSession
    messages: Iterable[ImportedMessage]
    mark: Callable[[], ImportMark | None] = lambda: None


@dataclass
class Reading:
    """One source being imported: what earlier imports took, where bad rows and warnings go."""

    path: Path
    marks: dict[str, list[ImportMark]]
    max_content_bytes: int
    report: Callable[[str], None]  # a skipped row or line, as SOURCE:WHERE: reason (the import then fails)
    warn: Callable[[str], None]  # a note on stderr that fails nothing
    advance: Callable[[int], None] = lambda n: None  # progress, in bytes of the source
    unchanged: list[Path] = field(default_factory=list[Path])  # files already imported whole
    files: list[Path] = field(default_factory=list[Path])  # every file read

    def bad(self, where: str, reason: str, source: Path | None = None) -> None:
        """A row or line (of source, a file in the folder read) that is skipped, and why."""
        self.report(f"{source or self.path}:{where}: {reason}")

    def message(self, where: str, role: object, content: object, created_at: str) -> ImportedMessage | None:
        """The message, or None after reporting why it cannot be stored."""
        reason = message_problem(role, content, self.max_content_bytes)
        if reason is not None:
            self.bad(where, reason)
            return None
        return ImportedMessage(role, content, created_at)  # type: ignore[arg-type]

    def key(self, where: str, value: object) -> str | None:
        """A valid session key, or None after reporting why not."""
        if not isinstance(value, str):
            self.bad(where, f"session key must be text, got {type(value).__name__}")
            return None
        try:
            return check_session_key(value)
        except InvalidArgument as exc:
            self.bad(where, str(exc))
            return None

    def text(self, where: str, argument: str, value: object) -> str | None:
        """A metadata value the store accepts, or None (reported when there was one and it breaks a rule)."""
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            value = str(value)
        try:
            return check_text(argument, value)
        except InvalidArgument as exc:
            self.bad(where, f"{exc}; {argument} left out")
            return None


def message_problem(role: object, content: object, max_content_bytes: int) -> str | None:
    """Why (role, content) cannot be stored as a message, or None when it can."""
    if not isinstance(role, str) or not isinstance(content, str):
        return "role and content must be text"
    if not role:
        return "role must not be empty"
    if len(role) > MAX_ROLE_CHARS:
        return f"role must be at most {MAX_ROLE_CHARS} characters, got {len(role)}"
    try:
        # ASCII (most text) is its own size in UTF-8 and holds no lone surrogate: no copy to count it.
        size = len(content) if content.isascii() else len(content.encode("utf-8"))
        role.encode("utf-8")
    except UnicodeEncodeError:
        return "role and content must be valid Unicode text (one holds a lone surrogate)"
    if size > max_content_bytes:
        return f"content must be at most {max_content_bytes} bytes of UTF-8, got {size}"
    return None


def _digest_of(digest: hashlib._Hash, message: ImportedMessage) -> None:
    digest.update(f"{message.role}\0{message.content}\0{message.created_at}\x1e".encode())


class Continuation:
    """A session's messages after those an earlier import of the same source took.

    Its mark says "the first N messages of this session in this source, digest D, are in": messages are
    hashed as they come, and the first N are skipped when they hash to D. When they do not (the source was
    rewritten), all of them are imported again, with a warning, as a changed JSONL file is."""

    def __init__(
        self,
        reading: Reading,
        key: str,
        messages: Iterable[ImportedMessage],
        again: Callable[[], Iterable[ImportedMessage]] | None = None,
        source: Path | None = None,
    ) -> None:
        # The same file given another way (relative, through a link) is the same source.
        self.reading, self.key, self.source = reading, key, str(Path(source or reading.path).resolve())
        self.messages, self.again = messages, again
        earlier = [m for m in reading.marks.get(key, ()) if m.bytes < 0 and m.source == self.source]
        self.earlier = earlier[-1] if earlier else None
        self.taken = 0
        self.digest = hashlib.sha256()

    def __iter__(self) -> Iterator[ImportedMessage]:
        skip = self.earlier.lines if self.earlier else 0
        digest = self.digest
        for message in self.messages:
            _digest_of(digest, message)
            self.taken += 1
            if self.taken < skip:
                continue
            if self.taken == skip:
                assert self.earlier is not None
                if digest.hexdigest() != self.earlier.sha256:
                    yield from self._whole()
                    return
                continue
            yield message
        if self.taken < skip:
            yield from self._whole()

    def _whole(self) -> Iterator[ImportedMessage]:
        self.reading.warn(
            f"{self.source}: session {self.key!r} is not a continuation of what was imported from it before;"
            " importing all of it"
        )
        self.earlier = None
        self.taken = 0
        self.digest = hashlib.sha256()
        source = self.again() if self.again is not None else self.messages
        for message in source:
            _digest_of(self.digest, message)
            self.taken += 1
            yield message

    def mark(self) -> ImportMark | None:
        """The mark for what this session's source holds now (None when nothing changed)."""
        if self.earlier is not None and self.taken == self.earlier.lines:
            return None
        replaces = self.earlier.sha256 if self.earlier else None
        return ImportMark(self.key, -1, self.taken, self.digest.hexdigest(), self.source, replaces=replaces)


def continued(
    reading: Reading,
    session: ImportedSession,
    messages: Iterable[ImportedMessage],
    again: Callable[[], Iterable[ImportedMessage]] | None = None,
    source: Path | None = None,
) -> Feed:
    """A Feed of the session's messages that an earlier import of source (default: the one read) did not take;
    again reads them all once more (when messages can be iterated only once)."""
    continuation = Continuation(reading, session.key, messages, again, source)
    return Feed(session, continuation, continuation.mark)
