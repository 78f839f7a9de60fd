"""Tuning: the store's thresholds and limits, one value per store (tests pass small ones to reach the rare paths)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tuning:
    # Messages per INSERT statement of a bulk append (the transaction stays one).
    insert_chunk: int = 2_000
    # Messages written since the last merge keep their postings in their own rows (see m004); once there are
    # this many, a merge moves them into the term-sorted table.
    merge_messages: int = 2_000
    # Up to this many of those messages (about 2.5 KiB each), their postings are also kept in memory as they
    # commit, and searches read them from there (see recent.py); past it (a bulk import), or at 0, from the rows.
    recent_in_memory_max: int = 5_000
    # Merges run on a thread of their own (see LiveIndex); False merges inside the write that asks.
    merge_in_background: bool = True
    # A merge of fewer postings than this makes a run that spans every term in a row group or two: scattered.
    # Once scattered postings pass scattered_min_rows and scattered_share of the sorted ones, the merge thread
    # runs optimize(), which sorts them in (live appends alone would otherwise make every search scan them).
    sorted_run_rows: int = 500_000
    scattered_min_rows: int = 250_000
    scattered_share: float = 0.1
    # Up to this many matching postings in all, a search fetches them and scores in Python; past it, in SQL.
    python_scoring_max: int = 2_000
    # Checkpoints are ours, not DuckDB's automatic ones, so a failed checkpoint never fails a durable commit.
    checkpoint_wal_bytes: int = 64 << 20
    # DuckDB's memory: small while serving (DuckDB would otherwise keep most of the machine's memory as cache;
    # a serving process stays under 200 MB at a million messages, as fast), large for the length of a bulk
    # write, a merge or optimize() (sorts spill to <file>.tmp past it), then small again once a checkpoint has
    # moved what they left in memory to the file.
    memory_limit: str = "100MB"
    # Up to this many sessions, every session row is kept in memory (see SessionView): reads of sessions need
    # no statement. Past it (or at 0) they are read from the file.
    session_view_max: int = 100_000
    bulk_memory_limit: str = "2GB"
