"""What every benchmark here shares: timing calls, a p95, and numbers formatted for a table."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"

# Untimed calls before the timed ones.
WARMUP = 3


def time_calls(call: Callable[[int], object], reps: int, warmup: int = WARMUP) -> list[float]:
    """Milliseconds of each of reps calls call(i), after warmup untimed calls call(-1 - j)."""
    for j in range(warmup):
        call(-1 - j)
    samples: list[float] = []
    for i in range(reps):
        started = time.perf_counter()
        call(i)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def p95(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def fmt(value: float | None) -> str:
    """Three significant figures or so; a dash for no value."""
    if value is None:
        return "—"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def append_results(report: str, kind: str, title: str, out: Path | None = None) -> Path:
    """Append the report to out (default results/KIND-<date>.md), headed by title when the file is new."""
    out = out or RESULTS / f"{kind}-{datetime.now(UTC):%Y-%m-%d}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    existed = out.exists()
    with out.open("a", encoding="utf-8") as f:
        f.write(("\n" if existed else f"# {title}\n\n") + report)
    print(f"written to {out}", file=sys.stderr)
    return out
