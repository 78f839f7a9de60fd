"""A search never fails for memory: under a serving limit far too small, with merges and optimize beside it."""

from __future__ import annotations

import random
import threading
from pathlib import Path

import pytest

from mcp_sessions.models import ChatMessage
from mcp_sessions.store.duckdb import DuckDBSessionBackend, Tuning

WORDS = [f"w{i}" for i in range(2000)]


@pytest.fixture(scope="module")
def big_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60,000 messages of 40 words, a third of them from 50 common words: a store whose searches need room."""
    rng = random.Random(7)
    path = tmp_path_factory.mktemp("pressure") / "sessions.duckdb"

    def text() -> str:
        return " ".join(rng.choice(WORDS[:50] if j % 3 == 0 else WORDS) for j in range(40))

    with DuckDBSessionBackend(path) as store:
        store.append_many([(f"s{i % 300}", ChatMessage(role="user", content=text())) for i in range(60_000)])
    return path


def test_searches_succeed_beside_optimize_under_a_tiny_memory_limit(big_store: Path) -> None:
    # The serving limit (12 MB) is below what these searches need beside optimize(), which rewrites the index
    # on another thread: each search that runs out waits for room and runs again, rather than fail.
    errors: list[str] = []
    with DuckDBSessionBackend(big_store, tuning=Tuning(memory_limit="12MB")) as store:
        optimizing = threading.Event()

        def optimize() -> None:
            try:
                store.optimize()
            except Exception as exc:  # noqa: BLE001 - every failure is the finding
                errors.append(f"optimize: {exc}")
            finally:
                optimizing.set()

        def search() -> None:
            try:
                rounds = 0
                while not optimizing.is_set() or rounds < 3:
                    rounds += 1
                    for query, limit in (("w1 w2 w3", 20), ("w1", None), (" ".join(WORDS[:50]), 20)):
                        if not store.search_messages(query, limit):
                            errors.append(f"nothing for {query!r}")
            except Exception as exc:  # noqa: BLE001
                errors.append(f"search: {exc}")

        threads = [threading.Thread(target=search), threading.Thread(target=search), threading.Thread(target=optimize)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert len(store.search_messages("w1", None)) > 10_000
