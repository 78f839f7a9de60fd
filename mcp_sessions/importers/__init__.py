"""Histories of agent runtimes read into sessions: one module per format, each defining FORMAT (a feeds.Format).

A new format is a new module here; formats() finds it."""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .feeds import Format


@cache
def formats() -> dict[str, Format]:
    """Every format by name, in name order."""
    from .feeds import Format

    found: dict[str, Format] = {}
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        candidate = getattr(module, "FORMAT", None)
        if isinstance(candidate, Format):
            found[candidate.name] = candidate
    return dict(sorted(found.items()))


def detect(path: Path) -> Format | None:
    """The format of a source: an SQLite file by its tables, a .jsonl file by its lines, a folder by its files."""
    for candidate in formats().values():
        if candidate.detect(path):
            return candidate
    return None
