"""RecentPostings: the postings of messages above the merge boundary, kept in memory as they commit.

Those postings also live in the messages' own terms texts (see m004), where a search would read them with a
scan of the recent rows and a regular expression per term: 5-7 ms at the 2,000 messages a merge waits for,
paid by every search for a word a recent message holds (a fresh word, a common one). This process is the only
writer of its file, so it knows each of them as it commits and can answer that part from memory.
"""

from __future__ import annotations

from collections.abc import Iterable

from .postings import parse_counts


class Doc:
    """One recent message's postings. A rewrite or removal marks it dead; the lists holding it drop it lazily."""

    __slots__ = ("alive", "dl", "message_id", "session_id", "terms")

    def __init__(self, message_id: int, session_id: int, dl: int, terms: dict[int, int]) -> None:
        self.message_id = message_id
        self.session_id = session_id
        self.dl = dl
        self.terms = terms  # term id -> count
        self.alive = True


class RecentPostings:
    """Term id -> the recent messages holding it. Written under the write lock once a write commits (so a
    search never sees what may roll back), read by searches without a lock: lists are only appended to and
    docs only marked dead, both atomic for a reader. A merge replaces the whole object (see LiveIndex._moved)."""

    def __init__(self, max_docs: int) -> None:
        self.by_term: dict[int, list[Doc]] = {}
        self.docs: dict[int, Doc] = {}
        # Past this many messages (a bulk write) the memory is not worth it: searches read the rows instead.
        self.max_docs = max_docs

    def fits(self, more: int) -> bool:
        return len(self.docs) + more <= self.max_docs

    def add(self, message_id: int, session_id: int, dl: int, text: str | None) -> None:
        """A message committed with this terms text; one already held under its id is replaced (a rewrite)."""
        old = self.docs.get(message_id)
        if old is not None:
            old.alive = False
        doc = Doc(message_id, session_id, dl, parse_counts(text))
        self.docs[message_id] = doc
        for tid in doc.terms:
            self.by_term.setdefault(tid, []).append(doc)

    def remove(self, message_ids: Iterable[int]) -> None:
        for message_id in message_ids:
            doc = self.docs.pop(message_id, None)
            if doc is not None:
                doc.alive = False

    def postings(self, k: int, tid: int, above: int) -> list[tuple[int, int, int, int, int]]:
        """(k, message_id, session_id, tf, dl) of the live messages with ids above `above` holding the term."""
        return [
            (k, doc.message_id, doc.session_id, doc.terms[tid], doc.dl)
            for doc in self.by_term.get(tid, ())
            if doc.alive and doc.message_id > above
        ]
