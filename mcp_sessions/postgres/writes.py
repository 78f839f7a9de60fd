"""The writes: each change to a session's messages locks the session's row first, then changes the messages
and the corpus statistics in the same transaction.

Under READ COMMITTED a statement waiting for a row lock re-reads that row once it is free, but reads other
rows as of its own start: a write that must see the messages a concurrent append just committed (remove_last's
last message) therefore locks the row in one statement and reads the messages in the next."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..models import ChatMessage
from ..store.imports import ImportMark
from ..terms import Analyzer, term_id
from .pool import Cursor
from .schema import SHARDS

# Columns of a session row as every read returns it (see sessions.SessionRow).
COLUMNS = (
    "id, key, name, created_at, last_activity, message_count, agent_alias, channel_id, room_id, sender_id,"
    " state, turn_id, turn_started_at"
)
# Hours and seconds past these reach back before any stored time (PostgreSQL's calendar starts in 4713 BC).
MAX_HOURS = 50_000_000


@dataclass(frozen=True)
class Indexed:
    """A text's terms as messages holds them: distinct term ids, each one's count, and the term total."""

    dl: int
    terms: list[int]
    tfs: list[int]


def stored(message: ChatMessage) -> tuple[str, str, bytes | None]:
    """(role, content, raw) as a messages row holds them (see m001: TEXT cannot hold NUL)."""
    if "\x00" not in message.role and "\x00" not in message.content:
        return message.role, message.content, None
    raw = json.dumps([message.role, message.content]).encode("utf-8")
    return message.role.replace("\x00", "\ufffd"), message.content.replace("\x00", "\ufffd"), raw


def exact(role: str, content: str, raw: bytes | None) -> tuple[str, str]:
    """A messages row's role and content as they were written."""
    if raw is None:
        return role, content
    role, content = json.loads(bytes(raw).decode("utf-8"))
    return role, content


def index_text(analyzer: Analyzer, text: str) -> Indexed:
    counts = Counter(term_id(term) for term in analyzer.document_terms(text))
    return Indexed(sum(counts.values()), list(counts), list(counts.values()))


# Creates the session or bumps its count, taking its row lock either way (ON CONFLICT waits for and re-reads
# a row another transaction holds), and returns its id, new count and the change's time.
_BUMP = """
    INSERT INTO sessions AS s (key, created_at, last_activity, message_count)
    VALUES (%s, clock_timestamp(), clock_timestamp(), %s)
    ON CONFLICT (key) DO UPDATE
    SET message_count = s.message_count + EXCLUDED.message_count, last_activity = EXCLUDED.last_activity
    RETURNING id, message_count, last_activity"""

_INSERT = "INSERT INTO messages (session_id, idx, role, content, raw, created_at, dl, terms, tfs)"

# The postings of the messages in m (id, session_id, dl, terms, tfs), one row per term.
_POSTINGS = (
    "INSERT INTO postings (term, tf, dl, message_id, session_id)"
    " SELECT x.term, x.tf, m.dl, m.id, m.session_id FROM m, unnest(m.terms, m.tfs) AS x(term, tf)"
)

# Raises the session's bound for each term (see m003) by the rows of {source} (term, session_id, max_tf, min_dl,
# witnessed), at most one per (term, session). A row that would not change gets no new version (it is locked,
# though): the common case, a message holding the term no more often than, and not shorter than, the others.
# The conflict is decided on the row's latest version, whatever the statement's snapshot: _APPEND's was taken
# before it waited for the session's lock, and may not hold what the previous holder of that lock wrote.
_BOUND = """
    INSERT INTO session_terms AS st (term, session_id, max_tf, min_dl, witnessed) {source}
    ON CONFLICT (term, session_id) DO UPDATE SET
        max_tf = greatest(st.max_tf, EXCLUDED.max_tf),
        min_dl = least(st.min_dl, EXCLUDED.min_dl),
        witnessed = (EXCLUDED.witnessed AND EXCLUDED.max_tf >= st.max_tf AND EXCLUDED.min_dl <= st.min_dl)
            OR (st.witnessed AND st.max_tf >= EXCLUDED.max_tf AND st.min_dl <= EXCLUDED.min_dl)
    WHERE EXCLUDED.max_tf > st.max_tf OR EXCLUDED.min_dl < st.min_dl
        OR (EXCLUDED.witnessed AND NOT st.witnessed AND EXCLUDED.max_tf = st.max_tf AND EXCLUDED.min_dl = st.min_dl)"""

# The same, written by a statement that runs after the sessions' locks were taken (so its snapshot holds their
# bounds as they are): the rows that would not change are left out before the upsert, which would otherwise
# lock (write) each of them. {sessions}: an array of the sessions' ids, so that only their bounds are read
# (by their index) rather than the whole table hashed.
_CHANGED_BOUND = _BOUND.format(
    source="""SELECT n.* FROM ({source}) AS n (term, session_id, max_tf, min_dl, witnessed)
    LEFT JOIN (SELECT * FROM session_terms WHERE session_id = ANY({sessions})) AS o USING (term, session_id)
    WHERE o.term IS NULL OR n.max_tf > o.max_tf OR n.min_dl < o.min_dl
        OR (n.witnessed AND NOT o.witnessed AND n.max_tf = o.max_tf AND n.min_dl = o.min_dl)"""
)

# The bound rows of the messages in m (id, session_id, dl, terms, tfs), each message witnessing its own terms.
_MESSAGE_BOUNDS = "SELECT x.term, m.session_id, x.tf, m.dl, true FROM m, unnest(m.terms, m.tfs) AS x(term, tf)"

# One statement, one round trip: the new message takes the place the locked row's count gives it.
_APPEND = f"""
    WITH s AS ({_BUMP}),
    m AS ({_INSERT}
        SELECT id, message_count - 1, %s, %s, %s, last_activity, %s, %s::bigint[], %s::integer[] FROM s
        RETURNING id, session_id, dl, terms, tfs),
    p AS ({_POSTINGS}),
    b AS ({_BOUND.format(source=_MESSAGE_BOUNDS)}),
    c AS (UPDATE _corpus SET docs = docs + 1, terms = terms + %s WHERE shard = (SELECT mod(id, {SHARDS}) FROM s))
    SELECT message_count FROM s"""


def append(cur: Cursor, session_key: str, message: ChatMessage, ix: Indexed) -> int:
    """Append one message (autocommit: the statement is its transaction); return the session's new count."""
    row = cur.execute(_APPEND, [session_key, 1, *stored(message), ix.dl, ix.terms, ix.tfs, ix.dl]).fetchone()
    assert row is not None
    return int(row[0])


def append_many(
    cur: Cursor,
    batch: Sequence[tuple[str, ChatMessage, Indexed]],
    marks: Sequence[ImportMark],
    times: Sequence[str] | None = None,
) -> dict[str, int]:
    """Append the messages in order, in the open transaction; return each session's new count. Sessions are
    locked in key order, so two batches over the same sessions wait for each other instead of deadlocking.
    times: each message's own time (an import), else the batch's."""
    counts = Counter(key for key, _, _ in batch)
    places: dict[str, list[Any]] = {}
    for key in sorted(counts):
        row = cur.execute(_BUMP, [key, counts[key]]).fetchone()
        assert row is not None
        places[key] = [row[0], row[1] - counts[key], row[2]]
    # Ids in batch order, so that ties in search go to the later message as they do for single appends.
    ids = [
        row[0]
        for row in cur.execute(
            "SELECT nextval(pg_get_serial_sequence('messages', 'id')) FROM generate_series(1, %s) ORDER BY 1",
            [len(batch)],
        ).fetchall()
    ]
    shards: Counter[int] = Counter()
    docs: Counter[int] = Counter()
    columns = "id, session_id, idx, role, content, raw, created_at, dl, terms, tfs"
    with cur.copy(f"COPY messages ({columns}) FROM STDIN") as copy:
        for n, (message_id, (key, message, ix)) in enumerate(zip(ids, batch, strict=True)):
            place = places[key]
            at = place[2] if times is None else times[n]
            copy.write_row((message_id, place[0], place[1], *stored(message), at, ix.dl, ix.terms, ix.tfs))
            place[1] += 1
            shards[place[0] % SHARDS] += ix.dl
            docs[place[0] % SHARDS] += 1
    with cur.copy("COPY postings (term, tf, dl, message_id, session_id) FROM STDIN") as copy:
        for message_id, (key, _, ix) in zip(ids, batch, strict=True):
            session_id = places[key][0]
            for term, tf in zip(ix.terms, ix.tfs, strict=True):
                copy.write_row((term, tf, ix.dl, message_id, session_id))
    # One bound row per (term, session) of the batch: its largest tf, smallest dl, and whether one message
    # holds both.
    bounds: dict[tuple[int, int], list[Any]] = {}
    for key, _, ix in batch:
        session_id = places[key][0]
        for term, tf in zip(ix.terms, ix.tfs, strict=True):
            b = bounds.get((term, session_id))
            if b is None:
                bounds[(term, session_id)] = [tf, ix.dl, True]
            elif tf >= b[0] and ix.dl <= b[1]:
                b[:] = [tf, ix.dl, True]
            elif tf > b[0] or ix.dl < b[1]:
                b[:] = [max(tf, b[0]), min(ix.dl, b[1]), False]
    if bounds:
        items = sorted(bounds.items())
        cur.execute(
            _CHANGED_BOUND.format(
                source="SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::integer[], %s::integer[], %s::boolean[])",
                sessions="%s::bigint[]",
            ),
            [
                [k[0] for k, _ in items],
                [k[1] for k, _ in items],
                *([v[i] for _, v in items] for i in range(3)),
                sorted({place[0] for place in places.values()}),
            ],
        )
    for shard in sorted(docs):
        cur.execute(
            "UPDATE _corpus SET docs = docs + %s, terms = terms + %s WHERE shard = %s",
            [docs[shard], shards[shard], shard],
        )
    record_imports(cur, marks)
    return {key: place[1] for key, place in places.items()}


def record_imports(cur: Cursor, marks: Sequence[ImportMark]) -> None:
    """Write the marks in the open transaction, each replacing the shorter mark of its file."""
    for mark in marks:
        if mark.replaces is not None:
            cur.execute(
                "DELETE FROM _imports WHERE session_key = %s AND sha256 = %s", [mark.session_key, mark.replaces]
            )
        cur.execute(
            "INSERT INTO _imports (session_key, bytes, lines, sha256, source, imported_at)"
            " VALUES (%s, %s, %s, %s, %s, clock_timestamp())",
            [mark.session_key, mark.bytes, mark.lines, mark.sha256, mark.source],
        )


def import_marks(cur: Cursor) -> dict[str, list[ImportMark]]:
    """What earlier imports read, by session key, shortest first; marks from before a session was last created
    (it was deleted since) no longer count."""
    found = cur.execute(
        "SELECT i.session_key, i.bytes, i.lines, i.sha256, i.source FROM _imports AS i JOIN sessions AS s"
        " ON s.key = i.session_key WHERE i.imported_at >= s.created_at ORDER BY i.session_key, i.bytes, i.lines"
    ).fetchall()
    marks: dict[str, list[ImportMark]] = {}
    for key, size, lines, sha256, source in found:
        marks.setdefault(key, []).append(ImportMark(key, size, lines, sha256, source))
    return marks


def lock(cur: Cursor, session_key: str) -> tuple[int, int] | None:
    """Lock the session's row until the transaction ends; its (id, message count), None if missing."""
    row = cur.execute("SELECT id, message_count FROM sessions WHERE key = %s FOR UPDATE", [session_key]).fetchone()
    return None if row is None else (int(row[0]), int(row[1]))


# Deletes the postings of the messages in {source} (id, dl, terms, tfs): each entry is found by its whole key.
_UNPOST = (
    "DELETE FROM postings AS p USING {source}, unnest({source}.terms, {source}.tfs) AS x(term, tf)"
    " WHERE p.term = x.term AND p.tf = x.tf AND p.dl = {source}.dl AND p.message_id = {source}.id"
)


# A bound whose witness (see m003) may be among the messages in {source} (id, session_id, dl, terms, tfs) is no
# longer known to be met: it stays, too high perhaps, and searches score that session's messages instead.
_UNWITNESS = (
    "UPDATE session_terms AS st SET witnessed = false"
    " FROM {source}, unnest({source}.terms, {source}.tfs) AS x(term, tf)"
    " WHERE st.term = x.term AND st.session_id = {source}.session_id AND st.witnessed AND st.max_tf = x.tf"
    " AND st.min_dl = {source}.dl"
)


# The bounds that messages in {source} attain, their tf being the bound's max_tf or their dl its min_dl: without
# those messages such a bound may be above every message's (see tighten_bounds).
_ATTAINED = (
    "SELECT st.term, st.session_id FROM {source}, unnest({source}.terms, {source}.tfs) AS x(term, tf),"
    " session_terms AS st WHERE st.term = x.term AND st.session_id = {source}.session_id"
    " AND (st.max_tf = x.tf OR st.min_dl = {source}.dl)"
)
_ATTAINED_ARRAYS = "(SELECT array_agg(term) FROM k), (SELECT array_agg(session_id) FROM k)"


def delete_messages(cur: Cursor, where: str, params: Sequence[object], *, whole: bool = False) -> int:
    """Delete the messages matching where (over messages' columns), taking them out of the corpus statistics;
    return how many. The sessions' rows must be locked already. whole: they are all of their sessions' messages
    (the caller then drops the sessions' bounds, see forget_bounds)."""
    bounds = "" if whole else f"w AS ({_UNWITNESS.format(source='d')}), k AS ({_ATTAINED.format(source='d')}),"
    row = cur.execute(
        f"""WITH d AS (DELETE FROM messages WHERE {where} RETURNING id, session_id, dl, terms, tfs),
        p AS ({_UNPOST.format(source="d")}), {bounds}
        g AS (SELECT mod(session_id, {SHARDS}) AS shard, count(*) AS n, sum(dl) AS t FROM d GROUP BY 1),
        c AS (UPDATE _corpus SET docs = docs - g.n, terms = terms - g.t FROM g WHERE _corpus.shard = g.shard)
        SELECT coalesce(sum(n), 0), {"NULL, NULL" if whole else _ATTAINED_ARRAYS} FROM g""",
        params,
    ).fetchone()
    if row is None:
        return 0
    if row[1]:
        tighten_bounds(cur, row[1], row[2])
    return int(row[0])


# Sessions of up to this many messages have their bounds worked out again from their messages when a change
# takes out a message attaining one; a larger session's stays as it is (never too low, perhaps too high).
TIGHTEN_MAX = 1000


def tighten_bounds(cur: Cursor, terms: list[int], session_ids: list[int]) -> None:
    """Set each (term, session) bound of a session of up to TIGHTEN_MAX messages to what its messages hold now
    (dropping it when none holds the term), in the transaction holding the sessions' locks."""
    cur.execute(
        f"""WITH t AS (SELECT DISTINCT t.term, t.session_id FROM unnest(%s::bigint[], %s::bigint[])
                AS t (term, session_id) JOIN sessions AS s ON s.id = t.session_id
            WHERE s.message_count <= {TIGHTEN_MAX}),
        b AS (SELECT x.term, m.session_id, max(x.tf) AS max_tf, min(m.dl) AS min_dl,
                max((x.tf::bigint << 32) - m.dl) = (max(x.tf)::bigint << 32) - min(m.dl) AS witnessed
            FROM messages AS m, unnest(m.terms, m.tfs) AS x(term, tf)
            WHERE m.session_id IN (SELECT session_id FROM t) AND (x.term, m.session_id) IN (SELECT * FROM t)
            GROUP BY x.term, m.session_id),
        u AS (UPDATE session_terms AS st SET max_tf = b.max_tf, min_dl = b.min_dl, witnessed = b.witnessed
            FROM b WHERE st.term = b.term AND st.session_id = b.session_id)
        DELETE FROM session_terms AS st USING t WHERE st.term = t.term AND st.session_id = t.session_id
            AND NOT EXISTS (SELECT FROM b WHERE b.term = t.term AND b.session_id = t.session_id)""",
        [terms, session_ids],
    )


def forget_bounds(cur: Cursor, session_ids: list[int]) -> None:
    """Drop the bounds of sessions left without messages (or deleted), in the transaction that emptied them."""
    cur.execute("DELETE FROM session_terms WHERE session_id = ANY(%s::bigint[])", [session_ids])


def remove_last(cur: Cursor, session_key: str) -> bool:
    row = cur.execute(
        "UPDATE sessions SET message_count = message_count - 1, last_activity = clock_timestamp()"
        " WHERE key = %s AND message_count > 0 RETURNING id, message_count",
        [session_key],
    ).fetchone()
    if row is None:
        return False
    delete_messages(cur, "session_id = %s AND idx = %s", [row[0], row[1]])
    return True


def update_last(cur: Cursor, session_key: str, message: ChatMessage, ix: Indexed) -> bool:
    found = lock(cur, session_key)
    if found is None or found[1] == 0:
        return False
    session_id, count = found
    # Two statements: the old postings go before the new ones come (they may share a key), in this order.
    attained = cur.execute(
        f"""WITH old AS (SELECT id, session_id, dl, terms, tfs FROM messages WHERE session_id = %s AND idx = %s),
        p AS ({_UNPOST.format(source="old")}),
        w AS ({_UNWITNESS.format(source="old")}),
        k AS ({_ATTAINED.format(source="old")}),
        u AS (UPDATE messages AS m SET role = %s, content = %s, raw = %s, created_at = clock_timestamp(), dl = %s,
                terms = %s::bigint[], tfs = %s::integer[]
              FROM old WHERE m.id = old.id RETURNING old.dl AS old_dl, m.created_at),
        s AS (UPDATE sessions SET last_activity = (SELECT created_at FROM u) WHERE id = %s),
        c AS (UPDATE _corpus SET terms = terms + %s - (SELECT old_dl FROM u) WHERE shard = %s)
        SELECT {_ATTAINED_ARRAYS}""",
        [
            session_id,
            count - 1,
            *stored(message),
            ix.dl,
            ix.terms,
            ix.tfs,
            session_id,
            ix.dl,
            session_id % SHARDS,
        ],
    ).fetchone()
    cur.execute(
        f"WITH m AS (SELECT id, session_id, dl, terms, tfs FROM messages WHERE session_id = %s AND idx = %s),"
        f" p AS ({_POSTINGS}) {_CHANGED_BOUND.format(source=_MESSAGE_BOUNDS, sessions='ARRAY[%s::bigint]')}",
        [session_id, count - 1, session_id],
    )
    if attained is not None and attained[0]:
        tighten_bounds(cur, attained[0], attained[1])
    return True


def compact(cur: Cursor, session_key: str) -> int:
    found = lock(cur, session_key)
    if found is None or found[1] < 2:
        return 0
    session_id, _ = found
    messages = cur.execute(
        "SELECT id, role, content, raw FROM messages WHERE session_id = %s ORDER BY idx", [session_id]
    ).fetchall()
    kept = [r[0] for i, r in enumerate(messages) if i == 0 or r[1:] != messages[i - 1][1:]]
    if len(kept) == len(messages):
        return 0
    gone = sorted(set(r[0] for r in messages) - set(kept))
    delete_messages(cur, "id = ANY(%s::bigint[])", [gone])
    # Renumbered through negative places, so no two messages hold one place in between.
    cur.execute(
        "UPDATE messages AS m SET idx = -k.n FROM unnest(%s::bigint[]) WITH ORDINALITY AS k(id, n) WHERE m.id = k.id",
        [kept],
    )
    cur.execute("UPDATE messages SET idx = -idx - 1 WHERE session_id = %s AND idx < 0", [session_id])
    cur.execute(
        "UPDATE sessions SET message_count = %s, last_activity = clock_timestamp() WHERE id = %s",
        [len(kept), session_id],
    )
    return len(messages) - len(kept)


def clear_messages(cur: Cursor, session_key: str) -> int:
    found = lock(cur, session_key)
    if found is None or found[1] == 0:
        return 0
    removed = delete_messages(cur, "session_id = %s", [found[0]], whole=True)
    forget_bounds(cur, [found[0]])
    cur.execute("UPDATE sessions SET message_count = 0, last_activity = clock_timestamp() WHERE id = %s", [found[0]])
    return removed


def delete_session(cur: Cursor, session_key: str) -> bool:
    found = lock(cur, session_key)
    if found is None:
        return False
    delete_messages(cur, "session_id = %s", [found[0]], whole=True)
    forget_bounds(cur, [found[0]])
    cur.execute("DELETE FROM sessions WHERE id = %s", [found[0]])
    return True


def cleanup_stale(cur: Cursor, ttl_hours: int) -> int:
    # FOR UPDATE re-checks a row another transaction changed meanwhile (it may have become active or running).
    ids = [
        row[0]
        for row in cur.execute(
            "SELECT id FROM sessions WHERE last_activity < clock_timestamp() - make_interval(hours => %s::integer)"
            " AND state IS DISTINCT FROM 'running' ORDER BY id FOR UPDATE",
            [min(ttl_hours, MAX_HOURS)],
        ).fetchall()
    ]
    if ids:
        delete_messages(cur, "session_id = ANY(%s::bigint[])", [ids], whole=True)
        forget_bounds(cur, ids)
        cur.execute("DELETE FROM sessions WHERE id = ANY(%s::bigint[])", [ids])
    return len(ids)


def set_columns(cur: Cursor, session_key: str, values: dict[str, str], params: list[object]) -> tuple[Any, ...]:
    """Set columns of the session, creating it, in one statement; its row as stored. values maps our own column
    names to SQL expressions, whose parameters are params in order."""
    columns = "".join(f", {column}" for column in values)
    exprs = "".join(f", {sql}" for sql in values.values())
    sets = ", ".join(f"{column} = EXCLUDED.{column}" for column in values) or "key = s.key"
    row = cur.execute(
        f"INSERT INTO sessions AS s (key, created_at, last_activity{columns})"
        f" VALUES (%s, clock_timestamp(), clock_timestamp(){exprs})"
        f" ON CONFLICT (key) DO UPDATE SET {sets} RETURNING {COLUMNS}",
        [session_key, *params],
    ).fetchone()
    assert row is not None
    return row
