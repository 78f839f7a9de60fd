"""Where the store is: --db, else $MCP_SESSIONS_DB, else the XDG data folder; or a PostgreSQL URI."""

from __future__ import annotations

import os
from pathlib import Path

# libpq's URI schemes: a --db starting with one names a PostgreSQL database, never a file.
DATABASE_URI_SCHEMES = ("postgresql://", "postgres://")


def is_database_uri(db: str) -> bool:
    """Whether db is a libpq URI (postgresql://USER@HOST:PORT/DBNAME?host=/socket/dir ...)."""
    return db.startswith(DATABASE_URI_SCHEMES)


def db_path(flag: str | None) -> str:
    """The database: --db, else $MCP_SESSIONS_DB, else the XDG data folder. A file's parent folders are
    created; a PostgreSQL URI is returned as given, before anything touches the file system."""
    path = flag or os.environ.get("MCP_SESSIONS_DB")
    if path and is_database_uri(path):
        return path
    if not path:
        data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
        path = str(Path(data_home) / "mcp-sessions" / "sessions.duckdb")
    if path != ":memory:":
        Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
        path = str(Path(path).expanduser())
    return path
