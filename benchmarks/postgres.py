"""The PostgreSQL store against the embedded one: the wire rows over stdio, and many servers on one database.

    .venv/bin/python -m benchmarks.postgres [--size 100000] [--reps 50] [--servers 4] [--clients 8] [--db URI]

Builds the same --size corpus messages in a DuckDB file and in a PostgreSQL database (a temporary cluster
from tests/pg_cluster.py, Unix socket, fsync off, unless --db names one), then:
- the wire rows (benchmarks/stdio.py): append, load offset=-20, search and search_messages for a common word,
  each as tool calls from the official client to `python -m mcp_sessions --db ...` over stdio;
- --servers server processes with --clients concurrent callers each, every caller appending to one of
  --clients shared sessions and searching, on the database, and on the DuckDB file (the first server holds
  it, the others relay to it): throughput and p50/p95 per operation, and a check that every session's
  appends were told distinct, gapless counts.
Prints a markdown table and appends it to benchmarks/results/postgres-<date>.md.
"""

from __future__ import annotations

import argparse
import itertools
import platform
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python benchmarks/postgres.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import anyio

from benchmarks.corpus import BIG_SESSION, COMMON_WORD, RARE_WORD, THREE_WORDS, Corpus
from benchmarks.stdio import OPS, Workload, run_stdio
from benchmarks.timing import append_results, fmt, p95, time_calls
from mcp_sessions.models import SessionQuery
from mcp_sessions.postgres.backend import PostgresSessionBackend
from mcp_sessions.store.duckdb import DuckDBSessionBackend

ROOT = Path(__file__).resolve().parent.parent
IMPORT_BATCH = 10_000
CALL_TIMEOUT_S = 120


def build(store: Any, corpus: Corpus) -> dict[str, float]:
    """Import the corpus in append_many batches, then optimize; seconds of each."""
    started = time.perf_counter()
    rows = corpus.rows()
    while chunk := list(itertools.islice(rows, IMPORT_BATCH)):
        store.append_many(chunk)
    imported = time.perf_counter()
    store.optimize()
    return {"import_s": imported - started, "optimize_s": time.perf_counter() - imported}


def direct_searches(store: Any, reps: int) -> dict[str, list[float]]:
    """Library calls in this process: the searches the issue measures, by word frequency."""
    out: dict[str, list[float]] = {}
    for label, words in (("common", COMMON_WORD), ("rare", RARE_WORD), ("three words", THREE_WORDS)):
        query = SessionQuery(keyword=words, limit=50)
        out[f"search {label}"] = time_calls(lambda i, q=query: store.search(q), reps)
        out[f"search_messages {label}"] = time_calls(lambda i, w=words: store.search_messages(w, 20), reps)
    return out


async def crowd(db: str, servers: int, clients: int, rounds: int) -> dict[str, Any]:
    """servers processes with clients concurrent callers each; every caller does rounds of (append to its
    shared session, search_messages). Returns wall seconds, latencies by operation, and the counts told."""
    from mcp.client import Client
    from mcp.client.stdio import StdioServerParameters

    params = StdioServerParameters(
        command=sys.executable, args=["-m", "mcp_sessions", "--db", db], cwd=str(ROOT), env={"PYTHONPATH": str(ROOT)}
    )
    latencies: dict[str, list[float]] = {"append": [], "search_messages": []}
    told: dict[str, list[int]] = {f"crowd-{c}": [] for c in range(clients)}
    errors: list[str] = []

    async def caller(client: Client, server: int, c: int) -> None:
        key = f"crowd-{c}"
        for i in range(rounds):
            started = time.perf_counter()
            message = {"role": "user", "content": f"server {server} caller {c} round {i} {COMMON_WORD} crowd"}
            reply = await client.call_tool("append", {"session_key": key, "message": message})
            latencies["append"].append((time.perf_counter() - started) * 1000)
            if reply.is_error or reply.structured_content is None:
                errors.append(str(reply.content)[:200])
            else:
                told[key].append(reply.structured_content["message_count"])
            started = time.perf_counter()
            reply = await client.call_tool("search_messages", {"query": f"{COMMON_WORD} crowd", "limit": 20})
            latencies["search_messages"].append((time.perf_counter() - started) * 1000)
            if reply.is_error:
                errors.append(str(reply.content)[:200])

    async def server(n: int, ready: anyio.Event, go: anyio.Event, done: list[float]) -> None:
        async with Client(params, read_timeout_seconds=CALL_TIMEOUT_S) as client:
            await client.call_tool("list_sessions", {})
            ready.set()
            await go.wait()
            async with anyio.create_task_group() as tasks:
                for c in range(clients):
                    tasks.start_soon(caller, client, n, c)
            done.append(time.perf_counter())

    readies = [anyio.Event() for _ in range(servers)]
    go = anyio.Event()
    done: list[float] = []
    async with anyio.create_task_group() as tasks:
        for n in range(servers):
            tasks.start_soon(server, n, readies[n], go, done)
            await readies[n].wait()  # the first server holds a DuckDB file before the others start
        started = time.perf_counter()
        go.set()
    wall = max(done) - started
    gapless = all(sorted(counts) == list(range(1, len(counts) + 1)) for counts in told.values())
    return {"wall_s": wall, "latencies": latencies, "errors": errors, "gapless": gapless}


def _row(label: str, pg: list[float], duck: list[float]) -> str:
    pm, dm = statistics.median(pg), statistics.median(duck)
    ratio = f"{pm / dm:.2f}" if dm else "—"
    return f"| {label}, ms | {fmt(dm)} | {fmt(p95(duck))} | {fmt(pm)} | {fmt(p95(pg))} | {ratio} |"


def report(args: argparse.Namespace, corpus: Corpus, results: dict[str, dict[str, Any]]) -> str:
    pg, duck = results["postgres"], results["duckdb"]
    import duckdb
    import psycopg

    lines = [
        f"## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: {corpus.size:,} messages",
        "",
        f"`.venv/bin/python -m benchmarks.postgres {' '.join(sys.argv[1:])}`; Python {platform.python_version()},"
        f" DuckDB {duckdb.__version__}, PostgreSQL {pg['server_version']} (psycopg {psycopg.__version__}),"
        f" {platform.machine()}, CPUs shared with other work. ms: p50 and p95 over {args.reps} calls.",
        "",
        "| operation | embedded p50 | embedded p95 | postgres p50 | postgres p95 | ratio (p50) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for op, label in OPS if not args.library_only else ():
        lines.append(_row(f"stdio: {label}", pg["stdio"]["ops"][op], duck["stdio"]["ops"][op]))
    for name in pg["direct"]:
        lines.append(_row(f"library: {name}", pg["direct"][name], duck["direct"][name]))
    calls = 2 * args.servers * args.clients * args.rounds
    crowds: list[str] = []
    if not args.library_only:
        for name in ("append", "search_messages"):
            label = f"{args.servers} servers x {args.clients} callers: {name}"
            lines.append(_row(label, pg["crowd"]["latencies"][name], duck["crowd"]["latencies"][name]))
        crowds = [
            f"- {args.servers} servers x {args.clients} callers, {args.rounds} rounds of append + search_messages each"
            f" ({calls:,} calls): embedded (one holder, {args.servers - 1} relays)"
            f" {calls / duck['crowd']['wall_s']:,.0f} calls/s, postgres {calls / pg['crowd']['wall_s']:,.0f} calls/s;"
            " distinct gapless counts per session:"
            f" embedded {duck['crowd']['gapless']}, postgres {pg['crowd']['gapless']}; tool errors: embedded"
            f" {len(duck['crowd']['errors'])}, postgres {len(pg['crowd']['errors'])}"
        ]
    lines += [
        "",
        *crowds,
        f"- build (append_many in batches of {IMPORT_BATCH:,}, generation included, then optimize): embedded"
        f" {duck['built']['import_s']:.1f} s + {duck['built']['optimize_s']:.1f} s, postgres"
        f" {pg['built']['import_s']:.1f} s + {pg['built']['optimize_s']:.1f} s; size on disk: embedded"
        f" {duck['bytes'] / 2**20:,.0f} MiB, postgres database {pg['bytes'] / 2**20:,.0f} MiB",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.postgres", description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100_000, help="corpus size in messages (default 100000)")
    parser.add_argument("--reps", type=int, default=50, help="timed calls per operation (default 50)")
    parser.add_argument("--servers", type=int, default=4)
    parser.add_argument("--clients", type=int, default=8, help="concurrent callers per server (default 8)")
    parser.add_argument("--rounds", type=int, default=10, help="append + search rounds per caller (default 10)")
    parser.add_argument(
        "--library-only", action="store_true", help="only build and time library searches (for large sizes)"
    )
    parser.add_argument("--db", help="an empty PostgreSQL database to use (default: a temporary cluster)")
    parser.add_argument("--out", type=Path, help="markdown file to append to (default results/postgres-<date>.md)")
    args = parser.parse_args(argv)

    corpus = Corpus(args.size)
    work = Workload(corpus, args.reps)
    folder = Path(tempfile.mkdtemp(prefix="bench-postgres-"))
    cluster = None
    if args.db is None:
        sys.path.insert(0, str(ROOT / "tests"))
        from pg_cluster import Cluster

        cluster = Cluster()
    results: dict[str, dict[str, Any]] = {}
    try:
        uri = args.db or cluster.new_database(migrated=False)  # type: ignore[union-attr]
        path = str(folder / "sessions.duckdb")
        for name in ("duckdb", "postgres"):
            db = path if name == "duckdb" else uri
            print(f"{name}: building {args.size:,} messages", file=sys.stderr, flush=True)
            store = DuckDBSessionBackend(db) if name == "duckdb" else PostgresSessionBackend(db)
            result: dict[str, Any] = {"built": build(store, corpus)}
            print(f"{name}: library calls", file=sys.stderr, flush=True)
            result["direct"] = direct_searches(store, args.reps)
            page = store.load_page(BIG_SESSION, offset=-20)
            last20 = [{"role": m.role, "content": m.content} for m in page.messages]
            if name == "postgres":
                result["bytes"] = store.database_bytes()
                with store._db.cursor() as cur:
                    result["server_version"] = cur.execute("SHOW server_version").fetchone()[0]
            store.close()
            if name == "duckdb":
                result["bytes"] = sum(p.stat().st_size for p in folder.iterdir())
            results[name] = result
            if args.library_only:
                continue
            print(f"{name}: tool calls over stdio", file=sys.stderr, flush=True)
            result["stdio"] = anyio.run(run_stdio, db, corpus, work, args.reps, last20, 900.0)
            print(f"{name}: {args.servers} servers x {args.clients} callers", file=sys.stderr, flush=True)
            result["crowd"] = anyio.run(crowd, db, args.servers, args.clients, args.rounds)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if cluster is not None:
            cluster.close()
    text = report(args, corpus, results)
    print(text)
    append_results(text, "postgres", "PostgreSQL store vs embedded store", args.out)


if __name__ == "__main__":
    main()
