"""Benchmark DuckDBSessionBackend against a plain SQLite FTS5 baseline on a synthetic chat corpus.

    .venv/bin/python -m benchmarks.store [--sizes 10000,100000,1000000] [--quick]

Each (store, size) runs in its own process, one after another, so peak RSS is that store's alone. Prints a
markdown table and appends it to benchmarks/results/store-<date>.md.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import platform
import random
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python benchmarks/store.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.corpus import BIG_SESSION, COMMON_WORD, PAGE_SESSION, RARE_WORD, THREE_WORDS, Corpus
from benchmarks.timing import WARMUP, append_results, fmt, p95, time_calls
from mcp_sessions.models import SessionQuery

ROOT = Path(__file__).resolve().parent.parent
STORES = ("duckdb", "sqlite")
DEFAULT_SIZES = "10000,100000"
FAST_REPS, SEARCH_REPS = 200, 50
QUICK_FAST_REPS, QUICK_SEARCH_REPS = 20, 5

# (key, label) in table order; latency rows are in ms, the others carry their unit in the label.
LATENCY_OPS = (
    ("append", "append (existing session)"),
    ("update_last", "update_last (just appended)"),
    ("load_page_200", "load_page, 200-message session"),
    ("load_page_last20", "load_page offset=-20, big session"),
    ("search_common", f"search common word ({COMMON_WORD!r})"),
    ("search_rare", f"search rare word ({RARE_WORD!r})"),
    ("search_three", f"search three words ({THREE_WORDS!r})"),
    ("search_messages_common", "search_messages common word, limit 20"),
    ("update_last_old", "update_last, old message (merged postings)"),
    ("remove_last_old", "remove_last, old message (merged postings)"),
)


def _open(store: str, path: Path) -> Any:
    if store == "duckdb":
        from mcp_sessions.store.duckdb import DuckDBSessionBackend

        return DuckDBSessionBackend(str(path))
    from benchmarks.sqlite_fts import SQLiteFTSBackend

    return SQLiteFTSBackend(str(path))


def _source_digest() -> str:
    """A short hash of mcp_sessions' source as this process sees it: the store may change between runs."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "mcp_sessions").rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:10]


def _peak_rss_mib() -> float:
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _error(exc: BaseException) -> str:
    frame = traceback.extract_tb(exc.__traceback__)[-1]
    return f"{type(exc).__name__}: {exc} (at {Path(frame.filename).name}:{frame.lineno})"


def run_worker(
    store: str,
    size: int,
    folder: Path,
    fast: int,
    searches: int,
    generation_s: float,
    out: Path,
    import_batch: int | None = None,
    phase: str = "build",
) -> dict[str, Any]:
    """phase "build": make one store of size messages in folder (import, optimize, close); phase "serve", in a
    fresh process: open it and time each operation, so its peak RSS is a serving process's. Errors are
    recorded, not raised; the result so far is rewritten to out after each step, so a worker stopped by the
    timeout still reports."""
    corpus = Corpus(size)
    path = folder / ("sessions.duckdb" if store == "duckdb" else "sessions.sqlite")
    if phase == "serve":
        return _serve(store, corpus, path, fast, searches, out, json.loads(out.read_text()))
    result: dict[str, Any] = {"store": store, "size": size, "ops": {}, "errors": {}, "checks": {}}
    result["source_digest"] = _source_digest()

    def step(phase: str) -> None:
        result["phase"] = phase
        out.write_text(json.dumps(result))
        print(f"  {store} {size:,}: {phase}", file=sys.stderr, flush=True)

    result["rss_before_open_mib"] = _peak_rss_mib()
    try:
        backend = _open(store, path)
    except BaseException as exc:
        result["errors"]["open"] = _error(exc)
        return result

    step("append_many")
    started = time.perf_counter()
    try:
        if import_batch:
            rows, added = corpus.rows(), 0
            while chunk := list(itertools.islice(rows, import_batch)):
                added += backend.append_many(chunk)
        else:
            added = backend.append_many(corpus.rows())
    except BaseException as exc:
        result["errors"]["append_many"] = _error(exc)
        return result
    import_s = time.perf_counter() - started
    result["import_s"] = import_s
    result["import_rate"] = size / max(import_s - generation_s, 1e-9)
    if added != size:
        result["checks"]["append_many"] = f"returned {added!r}, expected {size}"
    step("optimize")
    started = time.perf_counter()
    try:
        backend.optimize()
        result["optimize_s"] = time.perf_counter() - started
    except BaseException as exc:
        result["errors"]["optimize"] = _error(exc)
    try:
        backend.close()
    except BaseException as exc:
        result["errors"]["close after import"] = _error(exc)
    result["rss_after_import_mib"] = _peak_rss_mib()
    result["file_bytes_after_import"] = _folder_bytes(folder)
    step("built")
    return result


def _serve(
    store: str, corpus: Corpus, path: Path, fast: int, searches: int, out: Path, result: dict[str, Any]
) -> dict[str, Any]:
    """Open the built store in this fresh process and time each operation."""

    def step(phase: str) -> None:
        result["phase"] = phase
        out.write_text(json.dumps(result))
        print(f"  {store} {corpus.size:,}: {phase}", file=sys.stderr, flush=True)

    step("open to serve")
    result["serve_rss_before_open_mib"] = _peak_rss_mib()
    try:
        backend = _open(store, path)
    except BaseException as exc:
        result["errors"]["open to serve"] = _error(exc)
        return result
    rng = random.Random(7)
    regular = corpus.regular_sessions[:]
    rng.shuffle(regular)
    # Disjoint session groups: appends land on A; the old-message edits on B and C touch only imported rows.
    cut_a, cut_b = max(1, len(regular) // 10), max(2, len(regular) * 11 // 20)
    group_a, group_b, group_c = regular[:cut_a], regular[cut_a:cut_b], regular[cut_b:]
    messages = [corpus.message(rng, "assistant") for _ in range(2 * fast + 2 * WARMUP)]

    def measure(op: str, call: Callable[[int], object], reps: int, warmup: int = WARMUP) -> None:
        step(op)
        try:
            result["ops"][op] = time_calls(call, reps, warmup)
        except BaseException as exc:
            result["errors"][op] = _error(exc)

    def check(name: str, got: object, expected: object) -> None:
        if got != expected:
            result["checks"][name] = f"got {got!r}, expected {expected!r}"

    try:
        page = backend.load_page(PAGE_SESSION, offset=None, limit=None)
        check("load_page 200 total", (page.total, len(page.messages)), (200, 200))
        last = backend.load_page(BIG_SESSION, offset=-20, limit=None)
        big = corpus.big_session_messages
        tail = (last.total, [m.index for m in last.messages])
        check("load_page big last 20", tail, (big, list(range(big - 20, big))))
        rare = backend.search(SessionQuery(keyword=RARE_WORD, limit=50))
        result["rare_sessions"] = sorted(m.key for m in rare)
    except BaseException as exc:
        result["errors"]["checks"] = _error(exc)

    measure("load_page_200", lambda i: backend.load_page(PAGE_SESSION, offset=None, limit=None), fast)
    measure("load_page_last20", lambda i: backend.load_page(BIG_SESSION, offset=-20, limit=None), fast)
    measure("append", lambda i: backend.append(group_a[i % len(group_a)], messages[i]), fast)
    measure("update_last", lambda i: backend.update_last(group_a[i % len(group_a)], messages[fast + WARMUP + i]), fast)
    # The searches run with the few hundred unmerged messages the writes above left, as a live server would.
    for op, keyword in (("search_common", COMMON_WORD), ("search_rare", RARE_WORD), ("search_three", THREE_WORDS)):
        measure(op, lambda i, k=keyword: backend.search(SessionQuery(keyword=k, limit=50)), searches)
    measure("search_messages_common", lambda i: backend.search_messages(COMMON_WORD, limit=20), searches)
    # Each old edit needs a session of its own (a second edit would hit a fresh posting): fewer reps at 10k.
    old_edits = min(fast, len(group_b) - WARMUP)
    measure("update_last_old", lambda i: backend.update_last(group_b[i], messages[i]), old_edits)
    measure("remove_last_old", lambda i: backend.remove_last(group_c[i % len(group_c)]), fast)
    try:
        hits = backend.search_messages(COMMON_WORD, limit=20)
        check("search_messages limit 20", len(hits), 20)
    except BaseException as exc:
        result["errors"]["checks"] = _error(exc)

    result["peak_rss_mib"] = _peak_rss_mib()
    step("close")
    try:
        backend.close()
    except BaseException as exc:
        result["errors"]["close"] = _error(exc)
    result["file_bytes"] = _folder_bytes(path.parent)
    step("done")
    return result


def _ratio(duck: float | None, lite: float | None) -> str:
    if duck is None or lite is None or lite == 0:
        return "—"
    ratio = duck / lite
    return f"{ratio:.2f}" if ratio >= 0.1 else f"{ratio:.3f}"


def table(results: dict[int, dict[str, dict[str, Any]]]) -> str:
    """The markdown table: one row per (operation, size)."""
    lines = [
        "| operation | size | duckdb p50 | duckdb p95 | sqlite p50 | sqlite p95 | ratio |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for size, by_store in results.items():
        duck, lite = by_store.get("duckdb", {}), by_store.get("sqlite", {})
        for op, label in LATENCY_OPS:
            d, s = duck.get("ops", {}).get(op), lite.get("ops", {}).get(op)
            dp50 = statistics.median(d) if d else None
            sp50 = statistics.median(s) if s else None
            cells = [
                f"{label}, ms",
                f"{size:,}",
                fmt(dp50) if d else ("error" if op in duck.get("errors", {}) else "—"),
                fmt(p95(d)) if d else "",
                fmt(sp50) if s else ("error" if op in lite.get("errors", {}) else "—"),
                fmt(p95(s)) if s else "",
                _ratio(dp50, sp50),
            ]
            lines.append("| " + " | ".join(cells) + " |")
        singles = (
            ("import (append_many), messages/s, generation excluded", "import_rate", 1.0),
            ("import wall time incl. generation, s", "import_s", 1.0),
            ("optimize() after import, s", "optimize_s", 1.0),
            ("peak RSS of the import process (import + optimize), MiB", "rss_after_import_mib", 1.0),
            ("peak RSS serving (fresh process: open + every timed operation), MiB", "peak_rss_mib", 1.0),
            ("file size after import + optimize, MiB", "file_bytes_after_import", 1 / 2**20),
            ("file size at end (closed), MiB", "file_bytes", 1 / 2**20),
        )
        for label, field, scale in singles:
            dv, sv = duck.get(field), lite.get(field)
            dv = None if dv is None else dv * scale
            sv = None if sv is None else sv * scale
            lines.append(f"| {label} | {size:,} | {fmt(dv)} |  | {fmt(sv)} |  | {_ratio(dv, sv)} |")
    return "\n".join(lines)


def notes(results: dict[int, dict[str, dict[str, Any]]], generation: dict[int, float]) -> str:
    """Per size: corpus shape, repetitions, errors and check failures of each store."""
    out: list[str] = []
    for size, by_store in results.items():
        corpus = Corpus(size)
        out.append(
            f"- size {size:,}: {len(corpus.sessions):,} sessions"
            f" (big session {corpus.big_session_messages:,} messages);"
            f" generating the corpus alone took {generation[size]:.1f} s"
        )
        rare = {store: r.get("rare_sessions") for store, r in by_store.items()}
        if len({json.dumps(v) for v in rare.values()}) > 1:
            out.append(f"  - the stores disagree on the sessions holding {RARE_WORD!r}: {rare}")
        for store, r in by_store.items():
            reps = {op: len(v) for op, v in r.get("ops", {}).items()}
            if reps:
                out.append(f"  - {store} repetitions: " + ", ".join(f"{op} {n}" for op, n in reps.items()))
            for op, message in r.get("errors", {}).items():
                out.append(f"  - **{store} {op} failed**: `{message}`")
            for name, message in r.get("checks", {}).items():
                out.append(f"  - **{store} check {name}**: {message}")
            if "rss_before_open_mib" in r:
                out.append(
                    f"  - {store} process RSS before opening the store: {r['rss_before_open_mib']:.0f} MiB;"
                    f" mcp_sessions source digest {r.get('source_digest', '?')}"
                )
    return "\n".join(out)


def _generation_seconds(size: int) -> float:
    started = time.perf_counter()
    for _ in Corpus(size).rows():
        pass
    return time.perf_counter() - started


def _rss_kib(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    return next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)


def _spawn(
    store: str,
    size: int,
    fast: int,
    searches: int,
    generation_s: float,
    timeout: float | None,
    max_rss_gib: float,
    no_pandas: bool,
    import_batch: int | None,
) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix=f"bench-{store}-{size}-"))
    out = Path(tempfile.mkdtemp(prefix="bench-result-")) / "result.json"
    try:
        command = [
            sys.executable, "-m", "benchmarks.store", "--worker", store, "--size", str(size), "--dir", str(folder),
            "--fast-reps", str(fast), "--search-reps", str(searches), "--generation-seconds", str(generation_s),
            "--result", str(out),
        ]  # fmt: skip
        if no_pandas:
            command.append("--no-pandas")
        if import_batch:
            command += ["--import-batch", str(import_batch)]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        deadline = None if timeout is None else time.monotonic() + timeout
        result: dict[str, Any] = {"ops": {}, "errors": {}}
        # Built in one process, served from another: the serving process's peak RSS is its own.
        for phase in ("build", "serve"):
            stopped, code = _watch(command + ["--phase", phase], env, deadline, max_rss_gib, timeout)
            result = json.loads(out.read_text()) if out.exists() else {"ops": {}, "errors": {}}
            if stopped:
                result.setdefault("errors", {})[result.get("phase", "start")] = stopped
            elif code != 0:
                result.setdefault("errors", {})["worker"] = (
                    f"exit status {code} in phase {result.get('phase', 'start')}"
                )
            if stopped or code != 0:
                break
        return result
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(out.parent, ignore_errors=True)


def _watch(
    command: list[str], env: dict[str, str], deadline: float | None, max_rss_gib: float, timeout: float | None
) -> tuple[str, int | None]:
    """Run a worker to its end, or stop it at a limit (by its pid alone); return (why stopped, exit code)."""
    # stderr passes through (progress).
    worker = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    while (code := worker.poll()) is None:
        rss_gib = _rss_kib(worker.pid) / 2**20
        stopped = ""
        if rss_gib > max_rss_gib:
            stopped = f"stopped: its RSS reached {rss_gib:.1f} GiB (limit {max_rss_gib:g} GiB)"
        elif deadline is not None and time.monotonic() > deadline:
            stopped = f"stopped by the {timeout:.0f} s timeout"
        if stopped:
            worker.kill()
            worker.wait()
            return stopped, None
        time.sleep(0.2)
    return "", code


def _header(args: argparse.Namespace, sizes: list[int], fast: int, searches: int) -> str:
    import duckdb

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "mcp_sessions"], cwd=ROOT, capture_output=True, text=True
        ).stdout
    except OSError:
        commit, dirty = "?", ""
    command = "python -m benchmarks.store " + " ".join(sys.argv[1:])
    return "\n".join(
        [
            f"## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: sizes {', '.join(f'{s:,}' for s in sizes)}",
            "",
            f"`{command.strip()}` at {commit}{' (mcp_sessions has uncommitted changes)' if dirty.strip() else ''};"
            f" Python {platform.python_version()}, DuckDB {duckdb.__version__}, SQLite {sqlite3.sqlite_version},"
            f" {os.cpu_count()} CPUs, {platform.machine()}. Latencies in ms: median (p50) and p95 over"
            f" {fast} repetitions (searches {searches}) after {WARMUP} untimed calls; ratio = duckdb p50 / sqlite p50"
            " (below 1: DuckDB faster or smaller; for the import rate, above 1 is DuckDB faster)."
            " Each store is built (import, optimize, close) in one process and measured in a fresh one that reopens"
            " the file, on disk in a temp folder."
            " DuckDB: append_many, then optimize(). SQLite: WAL, synchronous=NORMAL, external-content FTS5"
            " (porter unicode61) kept by triggers, import in one transaction, then FTS5 'optimize'."
            " The import rate subtracts the time generating the corpus takes on its own."
            + (
                f" **Import split into append_many calls of {args.import_batch:,} messages, one transaction each.**"
                if args.import_batch
                else ""
            )
            + (
                " **Diagnostic run (--no-pandas): `import pandas` fails fast in both workers; pandas is not"
                " installed and DuckDB's Python binding otherwise re-attempts the import for every list element.**"
                if args.no_pandas
                else ""
            ),
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.store", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", help=f"comma-separated corpus sizes in messages (default {DEFAULT_SIZES})")
    parser.add_argument("--quick", action="store_true", help="few repetitions; sizes default to 10000")
    parser.add_argument("--stores", default=",".join(STORES), help="comma-separated: duckdb,sqlite")
    parser.add_argument("--out", type=Path, help="markdown file to append to (default results/store-<date>.md)")
    parser.add_argument("--worker", choices=STORES, help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--fast-reps", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--search-reps", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--generation-seconds", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--phase", choices=("build", "serve"), default="build", help=argparse.SUPPRESS)
    parser.add_argument("--timeout", type=float, help="stop a store's run after this many seconds, keep its results")
    parser.add_argument(
        "--import-batch", type=int, help="import in append_many calls of this many messages (default: one call)"
    )
    parser.add_argument(
        "--max-rss-gib", type=float, default=12.0, help="stop a store's run when its RSS passes this (default 12)"
    )
    parser.add_argument(
        "--no-pandas",
        action="store_true",
        help="diagnostic: make `import pandas` fail fast in the workers (DuckDB's binding retries it per list element)",
    )
    args = parser.parse_args(argv)

    if args.worker:
        if args.no_pandas:
            sys.modules["pandas"] = None  # type: ignore[assignment]
        run_worker(
            args.worker,
            args.size,
            args.dir,
            args.fast_reps,
            args.search_reps,
            args.generation_seconds,
            args.result,
            args.import_batch,
            args.phase,
        )
        return

    sizes = [int(s.replace("_", "")) for s in (args.sizes or ("10000" if args.quick else DEFAULT_SIZES)).split(",")]
    fast, searches = (QUICK_FAST_REPS, QUICK_SEARCH_REPS) if args.quick else (FAST_REPS, SEARCH_REPS)
    stores = [s for s in args.stores.split(",") if s]
    results: dict[int, dict[str, dict[str, Any]]] = {}
    generation: dict[int, float] = {}
    for size in sizes:
        generation[size] = _generation_seconds(size)
        print(f"size {size:,}: corpus generation alone {generation[size]:.1f} s", file=sys.stderr, flush=True)
        results[size] = {}
        for store in stores:
            started = time.perf_counter()
            results[size][store] = _spawn(
                store,
                size,
                fast,
                searches,
                generation[size],
                args.timeout,
                args.max_rss_gib,
                args.no_pandas,
                args.import_batch,
            )
            print(f"size {size:,}: {store} done in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)

    report = "\n\n".join([_header(args, sizes, fast, searches), table(results), notes(results, generation)]) + "\n"
    print(report)
    append_results(report, "store", "Store benchmark: DuckDB vs SQLite FTS5", args.out)


if __name__ == "__main__":
    main()
