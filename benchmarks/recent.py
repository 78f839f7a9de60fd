"""Searches in a live store, in-process: recent postings held in memory against read from the rows.

Messages written since the last merge (up to the 2,000 a merge waits for) keep their postings in their rows;
this process also holds them in memory (mcp_sessions/store/recent.py). Two copies of one store, one with
`recent_in_memory_max=0` (the rows, as before), are timed call by call in alternating rounds. One command:

    .venv/bin/python -m benchmarks.recent            # --messages 20000 --rounds 3 for a quick look
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from mcp_sessions import pandas_absent  # noqa: F401  (as the server runs DuckDB: see that module)
from mcp_sessions.models import ChatMessage, MessageFilters, MessageSearch
from mcp_sessions.store.duckdb import DuckDBSessionBackend, Tuning

from .corpus import Corpus
from .floors import GAP_S
from .timing import append_results, fmt

# Recent messages written before timing: a live store between two merges holds up to 2,000.
LIVE_RECENT = 1_500
SESSIONS = 50


def _build(path: Path, messages: int) -> None:
    with DuckDBSessionBackend(str(path)) as store:
        store.append_many(Corpus(messages).rows())
        store.merge()
        for i in range(LIVE_RECENT):
            store.append(f"live-{i % SESSIONS}", ChatMessage(role="user", content=f"the pipeline stalled again {i}"))


def _rows(store: DuckDBSessionBackend) -> dict[str, Callable[[int], object]]:
    def fresh(i: int, filters: MessageFilters | None = None) -> object:
        key, word = f"live-{i % SESSIONS}", f"freshword{i}q"
        store.append(key, ChatMessage(role="user", content=f"the pipeline stalled again {word}"))
        time.sleep(GAP_S)
        started = time.perf_counter()
        hits = store.search_messages_page(MessageSearch(query=word, filters=filters or MessageFilters())).hits
        assert [h.session_key for h in hits] == [key], (word, hits)
        return time.perf_counter() - started

    return {
        "search_messages for the word an append just wrote": fresh,
        "the same, filtered to its session": lambda i: fresh(i, MessageFilters(session_key=f"live-{i % SESSIONS}")),
        "the same, filtered by role": lambda i: fresh(i, MessageFilters(role="user")),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.recent", description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000, help="corpus size (default 100,000)")
    parser.add_argument("--rounds", type=int, default=8, help="alternating rounds (default 8)")
    parser.add_argument("--calls", type=int, default=25, help="timed calls per row, store and round (default 25)")
    parser.add_argument("--out", type=Path, help="markdown file to append to (default results/recent-<date>.md)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mcp-sessions-recent-") as tmp:
        held_path, rows_path = Path(tmp) / "held.duckdb", Path(tmp) / "rows.duckdb"
        _build(held_path, args.messages)
        shutil.copy(held_path, rows_path)
        held = DuckDBSessionBackend(str(held_path))
        rows = DuckDBSessionBackend(str(rows_path), tuning=Tuning(recent_in_memory_max=0))
        assert held._index.recent is not None and rows._index.recent is None
        sides = {"memory": _rows(held), "rows": _rows(rows)}
        times: dict[str, dict[str, list[float]]] = {row: {"memory": [], "rows": []} for row in sides["memory"]}
        ratios: dict[str, list[float]] = {row: [] for row in times}
        n = 0
        for r in range(args.rounds):
            for row in times:
                medians = {}
                for side in ("memory", "rows") if r % 2 == 0 else ("rows", "memory"):
                    samples = []
                    for _ in range(args.calls):
                        n += 1
                        samples.append(float(sides[side][row](n)) * 1000)  # type: ignore[arg-type]
                    times[row][side] += samples
                    medians[side] = statistics.median(samples)
                ratios[row].append(medians["memory"] / medians["rows"])
        held.close()
        rows.close()
    lines = [
        f"## {args.messages:,} messages, {LIVE_RECENT:,}+ recent ones; {args.rounds} rounds of {args.calls} calls",
        "",
        "`.venv/bin/python -m benchmarks.recent"
        + (f" --messages {args.messages}" if args.messages != 100_000 else "")
        + "`; each call appends a message with a fresh word, waits 2 ms, then times the search for it.",
        "",
        "| row | in memory p50 ms | from the rows p50 ms | ratio (median of rounds) |",
        "|---|---:|---:|---:|",
    ]
    for row, by_side in times.items():
        memory, from_rows = (statistics.median(by_side[s]) for s in ("memory", "rows"))
        lines.append(f"| {row} | {fmt(memory)} | {fmt(from_rows)} | {statistics.median(ratios[row]):.2f} |")
    report = "\n".join(lines) + "\n"
    print(report)
    append_results(report, "recent", "Recent postings: in memory against from the rows", args.out)


if __name__ == "__main__":
    main()
