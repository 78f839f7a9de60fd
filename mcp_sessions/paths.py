"""Where the store is: --db, else $MCP_SESSIONS_DB, else the XDG data folder."""

from __future__ import annotations

import os
from pathlib import Path


def db_path(flag: str | None) -> str:
    """The database path: --db, else $MCP_SESSIONS_DB, else the XDG data folder; parent folders are created."""
    path = flag or os.environ.get("MCP_SESSIONS_DB")
    if not path:
        data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
        path = str(Path(data_home) / "mcp-sessions" / "sessions.duckdb")
    if path != ":memory:":
        Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
        path = str(Path(path).expanduser())
    return path
