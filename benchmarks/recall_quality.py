"""Recall quality of search_messages on a labelled set: recall at 5 and mean reciprocal rank, by kind of query.

    .venv/bin/python -m benchmarks.recall_quality [--filler 20000] [--misses]

The answer sessions of benchmarks/data/recall_set.json are imported in the middle of a synthetic filler corpus
(benchmarks/corpus.py: Zipf-distributed English function words, technical words and made-up ones), so every
query word also appears in many messages that do not answer it. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections import defaultdict
from pathlib import Path

if __package__ in (None, ""):  # run as `python benchmarks/recall_quality.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.corpus import Corpus
from mcp_sessions.models import ChatMessage
from mcp_sessions.store.duckdb import DuckDBSessionBackend

SET = Path(__file__).resolve().parent / "data" / "recall_set.json"
TOP = 5


def build(filler: int) -> DuckDBSessionBackend:
    """A store in memory: half the filler, the answer sessions, the other half."""
    labelled = json.loads(SET.read_text(encoding="utf-8"))
    store = DuckDBSessionBackend(":memory:")
    rows = Corpus(filler).rows()
    store.append_many(itertools.islice(rows, filler // 2))
    roles = ("user", "assistant")
    store.append_many(
        (key, ChatMessage(role=roles[i % 2], content=text))
        for key, texts in labelled["sessions"].items()
        for i, text in enumerate(texts)
    )
    store.append_many(rows)
    return store


def evaluate(store: DuckDBSessionBackend, *, misses: bool) -> dict[str, list[tuple[bool, float]]]:
    """Category -> (found in the top TOP, reciprocal rank) per case."""
    labelled = json.loads(SET.read_text(encoding="utf-8"))
    results: dict[str, list[tuple[bool, float]]] = defaultdict(list)
    for category, query, answers in labelled["cases"]:
        wanted = {(key, index) for key, index in answers}
        hits = [(h.session_key, h.index) for h in store.search_messages(query, 100)]
        rank = next((i + 1 for i, hit in enumerate(hits) if hit in wanted), None)
        results[category].append((rank is not None and rank <= TOP, 0.0 if rank is None else 1 / rank))
        if misses and (rank is None or rank > TOP):
            print(f"miss [{category}] {query!r}: answer at rank {rank}; top: {hits[:TOP]}", file=sys.stderr)
    return results


def table(results: dict[str, list[tuple[bool, float]]]) -> str:
    lines = [f"| kind of query | cases | recall@{TOP} | MRR |", "|---|---:|---:|---:|"]
    every = [case for cases in results.values() for case in cases]
    for category, cases in [*results.items(), ("all", every)]:
        recall = sum(found for found, _ in cases) / len(cases)
        mrr = sum(rr for _, rr in cases) / len(cases)
        lines.append(f"| {category} | {len(cases)} | {recall:.2f} | {mrr:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--filler", type=int, default=20_000, help="synthetic messages around the answers")
    parser.add_argument("--misses", action="store_true", help="print each case whose answer is not in the top 5")
    args = parser.parse_args(argv)
    store = build(args.filler)
    try:
        print(table(evaluate(store, misses=args.misses)))
    finally:
        store.close()


if __name__ == "__main__":
    main()
