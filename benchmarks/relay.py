"""Extra latency of a relayed call (a second server on a held file) over a direct one.

Run: .venv/bin/python -m benchmarks.relay [--messages 20000] [--reps 200]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from mcp_sessions.models import ChatMessage
from mcp_sessions.relay import SharedBackend

OPERATIONS = ("append", "load last 20", "search_messages")


def measure(store: SharedBackend, reps: int) -> dict[str, list[float]]:
    """Milliseconds per call of each operation, after three untimed calls."""
    calls: dict[str, Callable[[], object]] = {
        "append": lambda: store.append("bench", ChatMessage(role="user", content="relay benchmark message")),
        "load last 20": lambda: store.load_page("bench", offset=-20),
        "search_messages": lambda: store.search_messages("benchmark"),
    }
    times: dict[str, list[float]] = {}
    for name, fn in calls.items():
        for _ in range(3):
            fn()
        samples = []
        for _ in range(reps):
            started = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - started) * 1000)
        times[name] = samples
    return times


def _child(db: str, reps: int) -> None:
    store = SharedBackend(db)
    assert not store.holds_file, "the benchmark's relay found the file free"
    print(json.dumps(measure(store, reps)))
    store.close()


def _p(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        _child(options.child, options.reps)
        return
    with tempfile.TemporaryDirectory() as folder:
        db = str(Path(folder) / "relay.duckdb")
        holder = SharedBackend(db)
        words = "deploy database timeout retry pipeline cache index benchmark".split()
        holder.append_many(
            (f"s{i % 200}", ChatMessage(role="user", content=" ".join(words[(i + j) % len(words)] for j in range(12))))
            for i in range(options.messages)
        )
        direct = measure(holder, options.reps)
        child = subprocess.run(
            [sys.executable, "-m", "benchmarks.relay", "--child", db, "--reps", str(options.reps)],
            capture_output=True,
            text=True,
            check=True,
        )
        relayed: dict[str, list[float]] = json.loads(child.stdout)
        holder.close()
    print(f"{options.messages} messages, {options.reps} calls each, ms")
    print("| operation | direct p50 | direct p95 | relayed p50 | relayed p95 | extra p50 |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in OPERATIONS:
        d, r = direct[name], relayed[name]
        extra = statistics.median(r) - statistics.median(d)
        print(
            f"| {name} | {statistics.median(d):.2f} | {_p(d, 0.95):.2f} | {statistics.median(r):.2f}"
            f" | {_p(r, 0.95):.2f} | {extra:+.2f} |"
        )


if __name__ == "__main__":
    main()
