"""Shared fixtures: a DuckDB backend in memory, a database path in tmp, an environment pointing at tmp."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pg_cluster import Cluster

from mcp_sessions.store.duckdb import DuckDBSessionBackend


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    # Session-scoped so that module-scoped async fixtures (one server process per module) can use it.
    return "asyncio"


@pytest.fixture(autouse=True)
def env_setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads or writes the user's real database."""
    monkeypatch.setenv("MCP_SESSIONS_DB", str(tmp_path / "env" / "sessions.duckdb"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))


@pytest.fixture
def backend() -> Iterator[DuckDBSessionBackend]:
    store = DuckDBSessionBackend(":memory:")
    yield store
    store.close()


@pytest.fixture
def db_path(tmp_path: Path) -> str:
    return str(tmp_path / "sessions.duckdb")


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """One real PostgreSQL cluster for the whole run, on a Unix socket in a temp folder."""
    cluster = Cluster()
    yield cluster
    cluster.close()


@pytest.fixture
def pg_uri(pg_cluster: Cluster) -> Iterator[str]:
    """A fresh, migrated database of the cluster, dropped after the test."""
    uri = pg_cluster.new_database()
    yield uri
    pg_cluster.recycle(uri)
