"""Protocol overhead: the same operations as direct DuckDBSessionBackend calls and as MCP tool calls over stdio.

    .venv/bin/python -m benchmarks.stdio [--size 100000] [--reps 100]

Builds one store of --size corpus messages on disk, times each operation on the library, closes it, then starts
the real server (`python -m mcp_sessions --db PATH`) on the same file and times the matching tool calls with the
official client. Prints a markdown table and appends it to benchmarks/results/stdio-<date>.md.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python benchmarks/stdio.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import anyio

from benchmarks.corpus import BIG_SESSION, COMMON_WORD, Corpus
from benchmarks.timing import WARMUP, append_results, fmt, p95, time_calls
from mcp_sessions.models import ChatMessage, MessageSearch, SessionQuery
from mcp_sessions.store.duckdb import DuckDBSessionBackend

ROOT = Path(__file__).resolve().parent.parent
TITLE = "Protocol overhead: direct library calls vs MCP tool calls over stdio"
IMPORT_BATCH = 50_000
SEARCH_LIMIT = 50
SEARCH_MESSAGES_LIMIT = 20
CONTEXT = 2
CALL_TIMEOUT_S = 60

OPS = (
    ("append", "append (existing session)"),
    ("load_last20", "load offset=-20, big session"),
    ("search_common", f"search common word ({COMMON_WORD!r}), limit {SEARCH_LIMIT}"),
    ("search_messages_common", f"search_messages common word, limit {SEARCH_MESSAGES_LIMIT}"),
    ("search_messages_context", f"same, context {CONTEXT} (neighbours of each hit)"),
)


class Failed(Exception):
    """A tool call returned an error or a result that does not match the store."""


def build(path: Path, corpus: Corpus) -> dict[str, float]:
    """Import the corpus in append_many batches, optimize, close; return the seconds each step took."""
    started = time.perf_counter()
    backend = DuckDBSessionBackend(str(path))
    rows, added = corpus.rows(), 0
    while chunk := list(itertools.islice(rows, IMPORT_BATCH)):
        added += backend.append_many(chunk)
        print(f"  imported {added:,} / {corpus.size:,}", file=sys.stderr, flush=True)
    if added != corpus.size:
        raise Failed(f"append_many imported {added} messages, expected {corpus.size}")
    imported = time.perf_counter()
    backend.optimize()
    optimized = time.perf_counter()
    backend.close()
    closed = time.perf_counter()
    return {"import_s": imported - started, "optimize_s": optimized - imported, "close_s": closed - optimized}


async def _atime(call: Callable[[int], Awaitable[object]], reps: int) -> list[float]:
    for j in range(WARMUP):
        await call(-1 - j)
    samples: list[float] = []
    for i in range(reps):
        started = time.perf_counter()
        await call(i)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


class Workload:
    """The arguments of every timed call, the same for both sides: sessions to append to and their messages."""

    def __init__(self, corpus: Corpus, reps: int) -> None:
        rng = random.Random(11)
        self.sessions = corpus.regular_sessions[:]
        rng.shuffle(self.sessions)
        count = 2 * (reps + WARMUP)
        messages = [corpus.message(rng, "assistant") for _ in range(count)]
        # Direct calls take the first half, tool calls the second: no message is stored twice.
        self.direct = messages[: reps + WARMUP]
        self.stdio = messages[reps + WARMUP :]

    def append_args(self, i: int, side: str) -> tuple[str, ChatMessage]:
        messages = self.direct if side == "direct" else self.stdio
        return self.sessions[i % len(self.sessions)], messages[i % len(messages)]


def run_direct(path: Path, corpus: Corpus, work: Workload, reps: int) -> dict[str, Any]:
    """Open the store in this process and time each operation as a library call."""
    started = time.perf_counter()
    backend = DuckDBSessionBackend(str(path))
    result: dict[str, Any] = {"open_s": time.perf_counter() - started, "ops": {}}
    try:
        page = backend.load_page(BIG_SESSION, offset=-20)
        big = corpus.big_session_messages
        if (page.total, [m.index for m in page.messages]) != (big, list(range(big - 20, big))):
            indexes = [m.index for m in page.messages]
            raise Failed(f"load_page of {BIG_SESSION} gave total {page.total}, indexes {indexes}")
        result["last20"] = [{"role": m.role, "content": m.content} for m in page.messages]
        ops = result["ops"]
        ops["load_last20"] = time_calls(lambda i: backend.load_page(BIG_SESSION, offset=-20), reps)
        ops["append"] = time_calls(lambda i: backend.append(*work.append_args(i, "direct")), reps)
        # What the append tool does besides the append: it reads the count back for its result.
        result["get_session_metadata"] = time_calls(lambda i: backend.get_session_metadata(work.sessions[i]), reps)
        query = SessionQuery(keyword=COMMON_WORD, limit=SEARCH_LIMIT)
        ops["search_common"] = time_calls(lambda i: backend.search(query), reps)
        ops["search_messages_common"] = time_calls(
            lambda i: backend.search_messages(COMMON_WORD, limit=SEARCH_MESSAGES_LIMIT), reps
        )
        around = MessageSearch(query=COMMON_WORD, limit=SEARCH_MESSAGES_LIMIT, context=CONTEXT)
        ops["search_messages_context"] = time_calls(lambda i: backend.search_messages_page(around), reps)
        hits = backend.search_messages_page(around).hits
        if len(hits) != SEARCH_MESSAGES_LIMIT or not any(h.context_before or h.context_after for h in hits):
            raise Failed(f"search_messages with context {CONTEXT} gave {len(hits)} hits without neighbours")
        found = len(backend.search(query)), len(backend.search_messages(COMMON_WORD, limit=SEARCH_MESSAGES_LIMIT))
        if found != (SEARCH_LIMIT, SEARCH_MESSAGES_LIMIT):
            raise Failed(f"direct searches returned {found}, expected {(SEARCH_LIMIT, SEARCH_MESSAGES_LIMIT)}")
    finally:
        backend.close()
    return result


async def run_stdio(
    path: Path, corpus: Corpus, work: Workload, reps: int, direct_last20: object, timeout: float
) -> dict[str, Any]:
    """Start the real server on the store and time each operation as a tool call from the official client."""
    from mcp.client import Client
    from mcp.client.stdio import StdioServerParameters

    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "mcp_sessions", "--db", str(path)],
        cwd=str(ROOT),
        env={"PYTHONPATH": str(ROOT)},
    )
    result: dict[str, Any] = {"ops": {}, "calls": 0, "reply_bytes": {}}
    started = time.perf_counter()
    # read_timeout_seconds bounds each call; the outer limit bounds a server that never answers at all.
    with anyio.fail_after(timeout):
        async with Client(params, read_timeout_seconds=CALL_TIMEOUT_S) as client:
            result["start_s"] = time.perf_counter() - started
            result["protocol_version"] = client.protocol_version
            result["server"] = str(client.server_info.version if client.server_info else "?")

            async def call(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
                reply = await client.call_tool(name, arguments)
                result["calls"] += 1
                if reply.is_error is not False or reply.structured_content is None:
                    text = " ".join(getattr(c, "text", "") for c in reply.content)
                    raise Failed(f"{name}({arguments}) returned is_error={reply.is_error!r}: {text[:500]}")
                # The payload crosses twice: as structured content and as the same JSON in the text content.
                text_bytes = sum(len(getattr(c, "text", "").encode()) for c in reply.content)
                result["reply_bytes"][name] = (len(json.dumps(reply.structured_content).encode()), text_bytes)
                return reply.structured_content

            load_args = {"session_key": BIG_SESSION, "offset": -20}
            first = time.perf_counter()
            loaded = await call("load", load_args)
            result["first_call_ms"] = (time.perf_counter() - first) * 1000
            if loaded.get("total") != corpus.big_session_messages or loaded.get("messages") != direct_last20:
                raise Failed(f"load over stdio differs from the direct load_page: total {loaded.get('total')}")

            async def append(i: int) -> None:
                key, message = work.append_args(i, "stdio")
                out = await call("append", {"session_key": key, "message": message.model_dump()})
                if out.get("session_key") != key or not isinstance(out.get("message_count"), int):
                    raise Failed(f"append returned {out}")

            async def search(i: int) -> None:
                out = await call("search", {"query": {"keyword": COMMON_WORD, "limit": SEARCH_LIMIT}})
                if len(out["sessions"]) != SEARCH_LIMIT:
                    raise Failed(f"search returned {len(out['sessions'])} sessions, expected {SEARCH_LIMIT}")

            async def search_messages(i: int) -> None:
                out = await call("search_messages", {"query": COMMON_WORD, "limit": SEARCH_MESSAGES_LIMIT})
                if len(out["hits"]) != SEARCH_MESSAGES_LIMIT:
                    raise Failed(f"search_messages returned {len(out['hits'])} hits, expected {SEARCH_MESSAGES_LIMIT}")

            async def search_messages_context(i: int) -> None:
                arguments = {"query": COMMON_WORD, "limit": SEARCH_MESSAGES_LIMIT, "context": CONTEXT}
                out = await call("search_messages", arguments)
                if len(out["hits"]) != SEARCH_MESSAGES_LIMIT or not out["hits"][0]["context_after"]:
                    raise Failed(f"search_messages with context returned {out['hits'][:1]}")

            async def load(i: int) -> None:
                await call("load", load_args)

            ops = result["ops"]
            ops["load_last20"] = await _atime(load, reps)
            ops["append"] = await _atime(append, reps)
            ops["search_common"] = await _atime(search, reps)
            ops["search_messages_common"] = await _atime(search_messages, reps)
            ops["search_messages_context"] = await _atime(search_messages_context, reps)
    return result


def table(direct: dict[str, Any], stdio: dict[str, Any]) -> str:
    """One row per operation: direct and stdio p50/p95 in ms, overhead = stdio p50 - direct p50, ratio of p50s."""
    lines = [
        "| operation | direct p50 | direct p95 | stdio p50 | stdio p95 | overhead (p50) | ratio (p50) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for op, label in OPS:
        d, s = direct["ops"][op], stdio["ops"][op]
        dp50, sp50 = statistics.median(d), statistics.median(s)
        cells = [f"{label}, ms", fmt(dp50), fmt(p95(d)), fmt(sp50), fmt(p95(s)), fmt(sp50 - dp50)]
        cells.append(f"{sp50 / dp50:.2f}" if dp50 else "—")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _header(args: argparse.Namespace, corpus: Corpus) -> str:
    import duckdb

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "mcp_sessions"], cwd=ROOT, capture_output=True, text=True
        ).stdout
        head = commit.stdout.strip()
    except OSError:
        head, dirty = "?", ""
    try:
        sdk = version("mcp")
    except PackageNotFoundError:  # a checkout on sys.path without install metadata
        sdk = "?"
    command = ".venv/bin/python -m benchmarks.stdio " + " ".join(sys.argv[1:])
    return "\n".join(
        [
            f"## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: {corpus.size:,} messages",
            "",
            f"`{command.strip()}` at {head}{' (mcp_sessions has uncommitted changes)' if dirty.strip() else ''};"
            f" Python {platform.python_version()}, DuckDB {duckdb.__version__}, MCP SDK {sdk},"
            f" {os.cpu_count()} CPUs (shared), {platform.machine()}."
            f" Latencies in ms: median (p50) and p95 over {args.reps} calls after {WARMUP} untimed ones."
            " Direct: DuckDBSessionBackend methods in this process (append, load_page, search, search_messages)."
            " Stdio: `python -m mcp_sessions --db PATH` as a subprocess, driven by `mcp.client.Client` over stdio,"
            " timed around each `await client.call_tool(...)` (JSON-RPC both ways, argument and output-schema"
            " validation on both sides, the worker-thread hop in the server). Same store file, opened by one"
            " process at a time; the store was built with append_many in batches of"
            f" {IMPORT_BATCH:,}, then optimize(), then close(). Overhead = stdio p50 - direct p50;"
            " ratio = stdio p50 / direct p50.",
        ]
    )


def _cost(side: dict[str, Any], op: str, baseline: str) -> str:
    return f"{statistics.median(side['ops'][op]) / statistics.median(side['ops'][baseline]):.2f}×"


def notes(corpus: Corpus, built: dict[str, float], direct: dict[str, Any], stdio: dict[str, Any]) -> str:
    meta = direct["get_session_metadata"]
    return "\n".join(
        [
            f"- corpus: {corpus.size:,} messages in {len(corpus.sessions):,} sessions"
            f" (big session {corpus.big_session_messages:,} messages); import {built['import_s']:.1f} s"
            f" (generation included), optimize {built['optimize_s']:.1f} s, close {built['close_s']:.1f} s",
            f"- the append tool also reads the session back (`get_session_metadata`) for its message_count:"
            f" direct get_session_metadata p50 {fmt(statistics.median(meta))} ms, p95 {fmt(p95(meta))} ms,"
            " part of the append row's overhead",
            f"- server start (spawn, imports, store open, protocol {stdio['protocol_version']} negotiation):"
            f" {stdio['start_s']:.2f} s; first tool call {stdio['first_call_ms']:.1f} ms;"
            f" direct store open {direct['open_s']:.2f} s",
            f"- {stdio['calls']} tool calls, every one is_error False with structured content; load over stdio"
            " returned the same 20 messages as the direct load_page; searches returned full pages"
            f" ({SEARCH_LIMIT} sessions, {SEARCH_MESSAGES_LIMIT} hits) on both sides",
            "- reply size per tool call (structured content JSON + text content, bytes): "
            + ", ".join(f"{name} {s:,} + {t:,}" for name, (s, t) in stdio["reply_bytes"].items()),
            f"- context {CONTEXT} costs {_cost(direct, 'search_messages_context', 'search_messages_common')} a plain"
            f" search_messages directly, {_cost(stdio, 'search_messages_context', 'search_messages_common')} over"
            f" stdio (p50 ratio; the replies carry {CONTEXT * 2} neighbours per hit)",
            "- order on each side: load, append, search, search_messages, search_messages with context; the stdio"
            " side runs after the direct"
            f" side, so its store holds {len(direct['ops']['append']) + WARMUP:,} more messages and their"
            " unmerged postings",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.stdio", description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100_000, help="corpus size in messages (default 100000)")
    parser.add_argument("--reps", type=int, default=100, help="timed calls per operation and side (default 100)")
    parser.add_argument("--out", type=Path, help="markdown file to append to (default results/stdio-<date>.md)")
    parser.add_argument(
        "--timeout", type=float, default=900, help="give up on the stdio side after this many seconds (default 900)"
    )
    parser.add_argument("--keep", type=Path, help="build the store at this path and keep it (default: a temp dir)")
    args = parser.parse_args(argv)
    if args.reps < 1:
        parser.error(f"--reps must be at least 1, got {args.reps}")

    corpus = Corpus(args.size)
    work = Workload(corpus, args.reps)
    folder = None if args.keep else Path(tempfile.mkdtemp(prefix="bench-stdio-"))
    path: Path = args.keep if folder is None else folder / "sessions.duckdb"
    try:
        print(f"building {args.size:,} messages at {path}", file=sys.stderr, flush=True)
        built = build(path, corpus)
        print("timing direct calls", file=sys.stderr, flush=True)
        direct = run_direct(path, corpus, work, args.reps)
        print("timing tool calls over stdio", file=sys.stderr, flush=True)
        stdio = anyio.run(run_stdio, path, corpus, work, args.reps, direct["last20"], args.timeout)
    finally:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)

    report = "\n\n".join([_header(args, corpus), table(direct, stdio), notes(corpus, built, direct, stdio)]) + "\n"
    print(report)
    append_results(report, "stdio", TITLE, args.out)


if __name__ == "__main__":
    main()
