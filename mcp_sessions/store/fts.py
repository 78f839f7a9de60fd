"""DuckDB's fts extension, from the duckdb-extension-fts wheel: the reference for the index's stems."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import duckdb

from .. import pandas_absent  # noqa: F401  (before any query: see that module)


def fts_extension_path() -> Path:
    """The fts extension file shipped by the duckdb-extension-fts wheel for this DuckDB version."""
    version = duckdb.__version__
    try:
        import duckdb_extension_fts
    except ImportError:
        raise RuntimeError(
            f"DuckDB's fts extension is missing: install the package duckdb-extension-fts=={version}"
            f" (pip install 'duckdb-extension-fts=={version}')"
        ) from None
    path = Path(duckdb_extension_fts.__file__).parent / "extensions" / f"v{version}" / "fts.duckdb_extension"
    if not path.exists():
        raise RuntimeError(
            f"duckdb-extension-fts does not match duckdb {version}: install duckdb-extension-fts=={version}"
        )
    return path


class ExtensionStems:
    """stem(word, language) of the fts extension, many words a query, on a private in-memory connection."""

    def __init__(self) -> None:
        self._conn = duckdb.connect(":memory:")
        self._lock = threading.Lock()
        try:
            self._conn.execute(f"LOAD '{fts_extension_path()}'")
        except duckdb.Error as exc:
            raise RuntimeError(
                f"DuckDB's fts extension could not be loaded ({exc}):"
                f" install duckdb-extension-fts=={duckdb.__version__}"
            ) from exc

    def __call__(self, words: list[str], language: str) -> list[str]:
        # One JSON text, not a Python list: see store/params.py.
        with self._lock:
            row = self._conn.execute(
                "SELECT list_transform(from_json(?, '[\"VARCHAR\"]'), w -> stem(w, ?))",
                [json.dumps(words, ensure_ascii=False), language],
            ).fetchone()
        assert row is not None
        return list(row[0])
