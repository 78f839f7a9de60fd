"""Transfers: what import and export ask of the store beyond the trait (marks, bulk transactions, one file)."""

from __future__ import annotations

import os
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

from .bulk import BulkImport, open_bulk
from .engine_errors import engine_errors
from .imports import ImportMark, export_messages, import_marks

if TYPE_CHECKING:
    from .connection import Connection
    from .writes import Writer


class Transfers:
    """Mixed into DuckDBSessionBackend: its _conn and _writer do the work."""

    _conn: Connection
    _writer: Writer

    @engine_errors
    def import_marks(self) -> dict[str, list[ImportMark]]:
        """What earlier imports read, by session key: one mark per source prefix, shortest first."""
        return import_marks(self._conn.cursor())

    def bulk_import(self) -> AbstractContextManager[BulkImport]:
        """One import transaction, fed message by message (see store/bulk.py)."""
        return open_bulk(self._writer)

    @engine_errors
    def export_messages(self, path: str | os.PathLike[str], format: str) -> int:
        """Write every message to one file, format 'json' (JSON Lines) or 'parquet'; return how many."""
        return export_messages(self._conn, path, format)
