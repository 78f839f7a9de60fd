"""Over the wire: this server against an MCP server over SQLite FTS5, both driven by the official client over stdio.

    .venv/bin/python -m benchmarks.wire --sizes 100000,1000000 [--rounds 8] [--batch 20]

For each size: the corpus is written as one JSON Lines file per session; ours loads it with `mcp-sessions import`,
the baseline (benchmarks/sqlite_server.py: the store of sqlite_fts.py behind plain `@mcp.tool()` functions on the
same SDK) with its own bulk insert. Both servers then run side by side and each round times a batch of calls per
row on one, then the other (which goes first alternates), so noise hits both. Prints a Markdown table and appends
it to benchmarks/results/wire-<date>.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python benchmarks/wire.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import anyio

from benchmarks import floors
from benchmarks.corpus import BIG_SESSION, COMMON_WORD, PAGE_SESSION, RARE_WORD, THREE_WORDS, Corpus
from benchmarks.timing import WARMUP, append_results, fmt, p95

ROOT = Path(__file__).resolve().parent.parent
TITLE = "Over the wire: mcp-sessions against an MCP server over SQLite FTS5"
SIDES = ("ours", "sqlite")
CALL_TIMEOUT_S = 120
SEARCH_MESSAGES_LIMIT = 20
LIST_LIMIT = 50
IN_FLIGHT = 16
# The mixed workload, by weight: mostly writes and reads of recent turns, some searches.
MIX = {
    "append": 25,
    "update_last": 10,
    "load_last20": 20,
    "load_page": 10,
    "list50": 10,
    "sm_three": 10,
    "sm_rare": 5,
    "search_rare": 5,
    "sm_common": 5,
}
ROWS = (
    "append",
    "update_last",
    "load_last20",
    "load_page",
    "search_common",
    "search_rare",
    "search_three",
    "sm_three",
    "sm_common",
    "sm_rare",
    "list50",
    "metadata",
    "ryw",
)
# Letters no stemmer strips or changes: every fresh word is its own term on both sides.
_FRESH_LETTERS = "bcdfghjkmnpqrtvwxz"


class Failed(Exception):
    """A tool call returned an error, or the two servers disagree on a result they must share."""


@dataclass
class Side:
    """One server under test: its client session and process id."""

    name: str
    client: Any
    pid: int
    check: bool = True
    calls: int = 0
    # Milliseconds the client spent checking results against the tools' output schemas (jsonschema).
    check_ms: float = 0.0

    def __post_init__(self) -> None:
        session = self.client.session
        validate = session.validate_tool_result

        async def timed(name: str, result: Any) -> None:
            if self.check:  # --no-client-check: the SDK's check skipped, to see the servers' part alone
                started = time.perf_counter()
                await validate(name, result)
                self.check_ms += (time.perf_counter() - started) * 1000

        session.validate_tool_result = timed

    async def call(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        reply = await self.client.call_tool(tool, arguments)
        self.calls += 1
        if reply.is_error is not False or reply.structured_content is None:
            text = " ".join(getattr(c, "text", "") for c in reply.content)
            raise Failed(f"{self.name}: {tool}({json.dumps(arguments)[:200]}) failed: {text[:500]}")
        return reply.structured_content


def _letters(n: int, count: int) -> str:
    letters = []
    for _ in range(count):
        n, digit = divmod(n, len(_FRESH_LETTERS))
        letters.append(_FRESH_LETTERS[digit])
    return "".join(letters)


class Workload:
    """The arguments of every call, the same on both sides; each call returns what both sides must agree on."""

    def __init__(self, corpus: Corpus) -> None:
        rng = random.Random(20261203)
        # Fresh words differ from run to run: a store reused with --workdir holds the earlier runs' ones.
        self.run = _letters(int(time.time()), 4)
        self.corpus = corpus
        self.sessions = corpus.regular_sessions[:]
        rng.shuffle(self.sessions)
        self.messages = [corpus.message(rng, "assistant").model_dump() for _ in range(500)]
        self.rows: dict[str, tuple[str, Callable[[Side, int], Awaitable[object]]]] = {
            "append": ("append", self.append),
            "update_last": ("update_last", self.update_last),
            "load_last20": (f"load, last 20 of a {corpus.big_session_messages:,}-message session", self.load_last20),
            "load_page": ("load, 200-message session", self.load_page),
            "search_common": (f"search, common word ({COMMON_WORD!r})", self.search_common),
            "search_rare": (f"search, rare word ({RARE_WORD!r})", self.search_rare),
            "search_three": (f"search, 3 words ({THREE_WORDS!r})", self.search_three),
            "sm_three": ("search_messages, 3 words", self.sm_three),
            "sm_common": ("search_messages, common word", self.sm_common),
            "sm_rare": ("search_messages, rare word", self.sm_rare),
            "list50": (f"list_sessions_with_metadata({LIST_LIMIT})", self.list50),
            "metadata": ("get_session_metadata", self.metadata),
            "ryw": ("read-your-writes: append, then search_messages for its fresh word", self.read_your_writes),
        }
        assert tuple(self.rows) == ROWS

    def _session(self, i: int) -> str:
        return self.sessions[i % len(self.sessions)]

    def _message(self, i: int) -> dict[str, str]:
        return self.messages[i % len(self.messages)]

    async def append(self, side: Side, i: int) -> object:
        out = await side.call("append", {"session_key": self._session(i), "message": self._message(i)})
        return out["message_count"]

    async def update_last(self, side: Side, i: int) -> object:
        # The session the append row wrote to with the same i: its last message is a recent one.
        out = await side.call("update_last", {"session_key": self._session(i), "message": self._message(i + 7)})
        return out["updated"]

    async def load_last20(self, side: Side, i: int) -> object:
        out = await side.call("load", {"session_key": BIG_SESSION, "offset": -20})
        return out["total"], len(out["messages"])

    async def load_page(self, side: Side, i: int) -> object:
        out = await side.call("load", {"session_key": PAGE_SESSION})
        return out["total"], len(out["messages"])

    async def _search(self, side: Side, keyword: str) -> list[dict[str, Any]]:
        return (await side.call("search", {"query": {"keyword": keyword}}))["sessions"]

    async def search_common(self, side: Side, i: int) -> object:
        return len(await self._search(side, COMMON_WORD))

    async def search_rare(self, side: Side, i: int) -> object:
        return sorted(s["key"] for s in await self._search(side, RARE_WORD))

    async def search_three(self, side: Side, i: int) -> object:
        return len(await self._search(side, THREE_WORDS))

    async def _hits(self, side: Side, query: str) -> list[dict[str, Any]]:
        out = await side.call("search_messages", {"query": query, "limit": SEARCH_MESSAGES_LIMIT})
        return out["hits"]

    async def sm_three(self, side: Side, i: int) -> object:
        return len(await self._hits(side, THREE_WORDS))

    async def sm_common(self, side: Side, i: int) -> object:
        return len(await self._hits(side, COMMON_WORD))

    async def sm_rare(self, side: Side, i: int) -> object:
        return sorted((h["session_key"], h["index"]) for h in await self._hits(side, RARE_WORD))

    async def list50(self, side: Side, i: int) -> object:
        return len((await side.call("list_sessions_with_metadata", {"limit": LIST_LIMIT}))["sessions"])

    async def metadata(self, side: Side, i: int) -> object:
        return (await side.call("get_session_metadata", {"session_key": self._session(i)}))["metadata"] is not None

    async def read_your_writes(self, side: Side, i: int) -> object:
        key, word = self._session(i + 3), f"fresh{self.run}{_letters(i, 6)}"
        message = dict(self._message(i), content=self._message(i)["content"] + f" {word}.")
        count = (await side.call("append", {"session_key": key, "message": message}))["message_count"]
        hits = [(h["session_key"], h["index"]) for h in await self._hits(side, word)]
        if hits != [(key, count - 1)]:
            raise Failed(f"{side.name}: search_messages({word!r}) right after its append found {hits}")
        return count


@dataclass
class Samples:
    """Per row, per side, per round: milliseconds of each call (for the mixed row: the batch's calls/s)."""

    rounds: dict[str, dict[str, list[list[float]]]] = field(default_factory=dict)
    checks: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    answers: dict[str, dict[str, list[object]]] = field(default_factory=dict)

    def add(self, row: str, side: str, values: list[float], checks: list[float], answers: list[object]) -> None:
        self.rounds.setdefault(row, {s: [] for s in SIDES})[side].append(values)
        self.checks.setdefault(row, {s: [] for s in SIDES})[side].extend(checks)
        self.answers.setdefault(row, {s: [] for s in SIDES})[side].extend(answers)


async def _batch(
    work: Workload, row: str, side: Side, start: int, count: int
) -> tuple[list[float], list[float], list[object]]:
    """Each call's milliseconds, the client's result checks' share of them, and its answer."""
    call = work.rows[row][1]
    times, checks, answers = [], [], []
    for i in range(start, start + count):
        side.check_ms = 0.0
        started = time.perf_counter()
        answers.append(await call(side, i))
        times.append((time.perf_counter() - started) * 1000)
        checks.append(side.check_ms)
    return times, checks, answers


def mixed_calls(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return rng.choices(list(MIX), weights=list(MIX.values()), k=count)


async def _mixed(work: Workload, side: Side, plan: list[str], start: int) -> float:
    """Calls/s of plan's calls, IN_FLIGHT at a time."""
    jobs = iter(enumerate(plan, start))

    async def worker() -> None:
        for i, row in jobs:
            await work.rows[row][1](side, i)

    started = time.perf_counter()
    async with anyio.create_task_group() as tasks:
        for _ in range(IN_FLIGHT):
            tasks.start_soon(worker)
    return len(plan) / (time.perf_counter() - started)


def _server_pid(marker: str) -> int:
    """The child process of this one whose command line holds marker (the client starts it, without telling)."""
    me = str(os.getpid())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if ppid == me and marker in cmdline:
            return int(entry.name)
    raise Failed(f"no server process with {marker!r} in its command line")


def memory_mib(pid: int) -> dict[str, float]:
    """VmRSS (now) and VmHWM (peak) of a process, MiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) / 1024
    return fields


async def measure(paths: dict[str, Path], work: Workload, args: argparse.Namespace) -> dict[str, Any]:
    """Start both servers, run the interleaved rounds, read each server's memory, stop them."""
    from mcp.client import Client
    from mcp.client.stdio import StdioServerParameters

    commands = {
        "ours": ["-m", "mcp_sessions", "--db", str(paths["ours"])],
        "sqlite": ["-m", "benchmarks.sqlite_server", "--db", str(paths["sqlite"]), "--synchronous", args.synchronous],
    }
    params = {
        name: StdioServerParameters(command=sys.executable, args=argv, cwd=str(ROOT), env={"PYTHONPATH": str(ROOT)})
        for name, argv in commands.items()
    }
    samples = Samples()
    rows = [row for row in work.rows if row in args.rows]
    per_round = max(1, args.mixed // args.rounds)
    async with (
        Client(params["ours"], read_timeout_seconds=CALL_TIMEOUT_S) as ours,
        Client(params["sqlite"], read_timeout_seconds=CALL_TIMEOUT_S) as baseline,
    ):
        sides = {
            "ours": Side("ours", ours, _server_pid(str(paths["ours"])), args.client_check),
            "sqlite": Side("sqlite", baseline, _server_pid(str(paths["sqlite"])), args.client_check),
        }
        for row in rows:  # untimed warmup, with arguments the timed calls never use
            for side in sides.values():
                await _batch(work, row, side, 1_000_000, WARMUP)
        for r in range(args.rounds):
            print(f"  round {r + 1}/{args.rounds}", file=sys.stderr, flush=True)
            for k, row in enumerate([*rows, "mixed"] if args.mixed else rows):
                order = SIDES if (r + k) % 2 == 0 else SIDES[::-1]
                for name in order:
                    if row == "mixed":
                        plan = mixed_calls(per_round, seed=r)
                        rate = await _mixed(work, sides[name], plan, 2_000_000 + r * per_round)
                        samples.add(row, name, [rate], [], [])
                    else:
                        times, checks, answers = await _batch(work, row, sides[name], r * args.batch, args.batch)
                        samples.add(row, name, times, checks, answers)
        memory = {name: memory_mib(side.pid) for name, side in sides.items()}
        calls = {name: side.calls for name, side in sides.items()}
    for row, answers in samples.answers.items():
        if answers["ours"] != answers["sqlite"]:
            diff = next(i for i, (a, b) in enumerate(zip(*answers.values(), strict=True)) if a != b)
            raise Failed(
                f"{row}: the servers disagree, call {diff}: {answers['ours'][diff]} != {answers['sqlite'][diff]}"
            )
    return {"samples": samples, "memory": memory, "calls": calls, "per_round_mixed": per_round}


def median_interval(values: list[float], confidence: float = 0.95) -> tuple[float, float, float] | None:
    """A distribution-free interval for the median: order statistics k and n+1-k, with its exact coverage."""
    n, best = len(values), None
    ordered = sorted(values)
    for k in range(1, n // 2 + 1):
        # P(X < k) for X ~ Binomial(n, 1/2): the chance that fewer than k values fall below the median.
        tail = sum(math.comb(n, j) for j in range(k)) / 2**n
        if 1 - 2 * tail < confidence:
            break
        best = (ordered[k - 1], ordered[n - k], 1 - 2 * tail)
    return best


def table(result: dict[str, Any], work: Workload) -> str:
    samples: Samples = result["samples"]
    lines = [
        "| operation | ours p50 | ours p95 | SQLite p50 | SQLite p95 | ratio | 95% interval | client check p50 |",
        "|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    for row, per_side in samples.rounds.items():
        a, b = per_side["ours"], per_side["sqlite"]
        if row == "mixed":
            label = f"{sum(map(len, a)) * result['per_round_mixed']:,} mixed calls, {IN_FLIGHT} in flight, calls/s"
            # Time for the same calls: ours / SQLite's = SQLite's rate / ours.
            ratios = [rb[0] / ra[0] for ra, rb in zip(a, b, strict=True)]
            cells = [fmt(statistics.median(x[0] for x in a)), "", fmt(statistics.median(x[0] for x in b)), ""]
        else:
            label = f"{work.rows[row][0]}, ms"
            ratios = [statistics.median(ra) / statistics.median(rb) for ra, rb in zip(a, b, strict=True)]
            pooled_a, pooled_b = sum(a, []), sum(b, [])
            cells = [fmt(statistics.median(pooled_a)), fmt(p95(pooled_a))]
            cells += [fmt(statistics.median(pooled_b)), fmt(p95(pooled_b))]
        interval = median_interval(ratios)
        span = "—" if interval is None else f"{interval[0]:.2f}–{interval[1]:.2f}"
        checks = samples.checks[row]
        check = " / ".join(fmt(statistics.median(checks[s])) for s in SIDES) if checks["ours"] else ""
        cells += [f"{statistics.median(ratios):.2f}", span, check]
        lines.append("| " + " | ".join([label, *cells]) + " |")
    memory = result["memory"]
    for field_name, label in (("VmRSS", "server RSS after the run, MiB"), ("VmHWM", "server peak RSS, MiB")):
        ours, theirs = memory["ours"][field_name], memory["sqlite"][field_name]
        lines.append(f"| {label} | {fmt(ours)} |  | {fmt(theirs)} |  | {ours / theirs:.2f} |  |  |")
    return "\n".join(lines)


def write_corpus(corpus: Corpus, folder: Path) -> float:
    """One <session_key>.jsonl per session, as agent runtimes write them; seconds taken."""
    started = time.perf_counter()
    folder.mkdir(parents=True)
    handle, current = None, None
    for key, message in corpus.rows():
        if key != current:
            if handle is not None:
                handle.close()
            handle, current = (folder / f"{key}.jsonl").open("w", encoding="utf-8"), key
        handle.write(json.dumps(message.model_dump()) + "\n")
    if handle is not None:
        handle.close()
    return time.perf_counter() - started


def run_loader(argv: list[str]) -> dict[str, float]:
    """Run a loading command; its wall time and peak RSS (this child's own, from wait4)."""
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, *argv], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert process.stderr is not None
    errors = process.stderr.read().decode(errors="replace")
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise Failed(f"{' '.join(argv)} exited with {process.returncode}: {errors[-2000:]}")
    return {"s": time.perf_counter() - started, "peak_mib": usage.ru_maxrss / 1024}


def load_stores(corpus: Corpus, folder: Path) -> tuple[dict[str, Path], dict[str, Any]]:
    """Write the corpus once and load it into both stores, each through its own bulk path; reuse what exists."""
    paths = {"ours": folder / "ours.duckdb", "sqlite": folder / "sqlite.db"}
    jsonl = folder / "jsonl"
    loaded: dict[str, Any] = {}
    if not jsonl.exists():
        print(f"writing {corpus.size:,} messages to {jsonl}", file=sys.stderr, flush=True)
        loaded["write_s"] = write_corpus(corpus, jsonl)
    commands = {
        "ours": ["-m", "mcp_sessions", "import", "--db", str(paths["ours"]), str(jsonl)],
        "sqlite": ["-m", "benchmarks.sqlite_server", "--db", str(paths["sqlite"]), "--import", str(jsonl)],
    }
    for name, argv in commands.items():
        if paths[name].exists():
            loaded[name] = None
            continue
        print(f"loading {name}: {' '.join(argv)}", file=sys.stderr, flush=True)
        loaded[name] = run_loader(argv)
        loaded[name]["mib"] = sum(p.stat().st_size for p in folder.glob(paths[name].name + "*")) / 2**20
    return paths, loaded


def header(args: argparse.Namespace, corpus: Corpus) -> str:
    import duckdb

    def git(*argv: str) -> str:
        return subprocess.run(["git", *argv], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    dirty = " (mcp_sessions has uncommitted changes)" if git("status", "--porcelain", "mcp_sessions") else ""
    command = ".venv/bin/python -m benchmarks.wire " + " ".join(sys.argv[1:])
    return "\n".join(
        [
            f"## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: {corpus.size:,} messages in {len(corpus.sessions):,} sessions",
            "",
            f"`{command.strip()}` at {git('rev-parse', '--short', 'HEAD')}{dirty}; Python {platform.python_version()},"
            f" DuckDB {duckdb.__version__}, SQLite {sqlite3.sqlite_version}, MCP SDK {version('mcp')},"
            f" {os.cpu_count()} CPUs (shared with other work; load average {os.getloadavg()[0]:.1f} at the end),"
            f" {platform.machine()}. Ours: `python -m mcp_sessions --db FILE`. SQLite: `python -m"
            f" benchmarks.sqlite_server --db FILE --synchronous {args.synchronous}` (external-content FTS5 table kept"
            " by triggers, WAL, BM25, snippet(); plain `@mcp.tool()` functions on the same MCPServer). Both driven by"
            " `mcp.client.Client` over stdio from one process, one call in flight except in the mixed row."
            f" {args.rounds} rounds; each round times {args.batch} calls per row on one server, then on the other"
            f" (which goes first alternates by round and row), after {WARMUP} untimed calls per row and server."
            " p50/p95: over every call of every round. Ratio: median over rounds of ours' round median / SQLite's"
            " (for the mixed row: the time of the same calls, i.e. SQLite's calls/s / ours); >1 means ours is slower."
            " Interval: a distribution-free 95% interval for the median of the per-round ratios (order statistics).",
        ]
    )


def notes(corpus: Corpus, loaded: dict[str, Any], result: dict[str, Any], args: argparse.Namespace) -> str:
    def load_note(name: str, how: str) -> str:
        info = loaded[name]
        if info is None:
            return f"- {name}: store reused from an earlier run ({how})"
        return (
            f"- {name} loaded by {how}: {info['s']:.1f} s ({corpus.size / info['s']:,.0f} messages/s),"
            f" peak RSS {fmt(info['peak_mib'])} MiB, files {fmt(info['mib'])} MiB"
        )

    mix = ", ".join(f"{row} {weight}%" for row, weight in MIX.items())
    lines = [
        f"- corpus (benchmarks/corpus.py): {corpus.size:,} messages in {len(corpus.sessions):,} sessions, one"
        " .jsonl file per session"
        + (f", written in {loaded['write_s']:.1f} s (not in either load time)" if "write_s" in loaded else ""),
        load_note(
            "ours", "`python -m mcp_sessions import --db FILE DIR` (its own bulk path, 5,000 messages a transaction)"
        ),
        load_note(
            "sqlite",
            "`python -m benchmarks.sqlite_server --db FILE --import DIR` (append_many, 5,000 messages a"
            " transaction, same files in the same order, then FTS5 optimize)",
        ),
        f"- mixed row: {result['per_round_mixed']:,} calls per round and server, {IN_FLIGHT} in flight; mix: {mix}",
        "- every call on both servers returned is_error false with structured content"
        f" ({result['calls']['ours']:,} calls to ours, {result['calls']['sqlite']:,} to SQLite); the servers gave"
        " the same message counts, load totals and rare-word hits, full pages for the other searches, and each"
        " found every fresh word right after its append",
        "- client check: the part of a call's time the official client spends checking the result against the"
        " tool's output schema (jsonschema), ms, ours / SQLite; it is in both sides' times"
        + (
            ""
            if args.client_check
            else "; OFF in this run (--no-client-check): the times are the servers' and the wire's"
        ),
        "- RSS: VmRSS and VmHWM of each server process from /proc/PID/status after the last round",
    ]
    return "\n".join(lines)


def floors_note(result: dict[str, Any]) -> str:
    """The engines' own write floors, and what they leave of the append target."""
    samples: Samples = result["samples"]
    found = result["floors"]
    text = [floors.table(found)]
    if "append" in samples.rounds and "metadata" in samples.rounds:
        trip = statistics.median(sum(samples.rounds["metadata"]["ours"], []))
        theirs = statistics.median(sum(samples.rounds["append"]["sqlite"], []))
        least = trip + found["duckdb_row"]
        text.append(
            f"Floor of an append with a DuckDB commit in its path: our round trip for a call answered from memory"
            f" (get_session_metadata, {fmt(trip)} ms) + DuckDB's bare one-row write ({fmt(found['duckdb_row'])} ms)"
            f" = {fmt(least)} ms, {least / theirs:.2f}x the SQLite server's append ({fmt(theirs)} ms)."
        )
    return "\n\n".join(text)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.wire", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000", help="corpus sizes, comma-separated (default 100000)")
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds (default 10)")
    parser.add_argument("--batch", type=int, default=20, help="timed calls per row, server and round (default 20)")
    parser.add_argument("--mixed", type=int, default=2000, help="mixed calls per server over all rounds (0: none)")
    parser.add_argument("--rows", default=",".join(ROWS), help="rows to time, comma-separated (default: all)")
    parser.add_argument("--synchronous", choices=("NORMAL", "FULL"), default="NORMAL", help="the SQLite server's")
    parser.add_argument(
        "--no-client-check",
        dest="client_check",
        action="store_false",
        help="skip the client's jsonschema check of each result (on by default, as the official client does)",
    )
    parser.add_argument("--workdir", type=Path, help="keep the corpus and stores here, reusing them (default: temp)")
    parser.add_argument("--out", type=Path, help="markdown file to append to (default results/wire-<date>.md)")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.rounds < 1 or args.batch < 1:
        parser.error("--rounds and --batch must be at least 1")
    args.rows = set(args.rows.split(","))
    if unknown := args.rows - set(ROWS):
        parser.error(f"--rows: unknown {sorted(unknown)}; known: {','.join(ROWS)}")

    for size in sizes:
        corpus = Corpus(size)
        temp = None if args.workdir else Path(tempfile.mkdtemp(prefix="bench-wire-"))
        folder = (args.workdir / str(size)) if temp is None else temp
        folder.mkdir(parents=True, exist_ok=True)
        try:
            paths, loaded = load_stores(corpus, folder)
            print(f"timing {size:,} messages over stdio", file=sys.stderr, flush=True)
            work = Workload(corpus)
            result = anyio.run(measure, paths, work, args)
            result["floors"] = floors.measure(folder / "floors")
        finally:
            if temp is not None:
                shutil.rmtree(temp, ignore_errors=True)
        parts = [header(args, corpus), table(result, work), notes(corpus, loaded, result, args)]
        report = "\n\n".join([*parts, floors_note(result)]) + "\n"
        print(report, flush=True)
        append_results(report, "wire", TITLE, args.out)


if __name__ == "__main__":
    main()
