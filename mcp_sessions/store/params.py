"""Many values as one query parameter: a JSON text unnested into rows in SQL.

DuckDB converts each Python parameter, and each element of a list parameter, separately, trying to
import pandas every time; where pandas is not installed each try searches sys.path (~60 µs). One
JSON text per statement keeps a write at a handful of parameters whatever its size.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from .sql import quoted

# JSON has no time type: times travel as ISO 8601 text and are cast back.
_JSON_TYPE = {"TIMESTAMPTZ": "VARCHAR"}


def rows_sql(columns: dict[str, str]) -> str:
    """A subquery yielding one row per element of the columns (name -> SQL type) of one JSON parameter."""
    schema = json.dumps({name: [_JSON_TYPE.get(t, t)] for name, t in columns.items()})
    selected = ", ".join(f"CAST(unnest(j['{name}']) AS {sql_type}) AS {name}" for name, sql_type in columns.items())
    return f"(SELECT {selected} FROM (SELECT from_json(?, '{schema}') AS j))"


def rows_param(**columns: Iterable[object]) -> str:
    """The JSON text for rows_sql; every column must have the same length, times given as ISO 8601 text."""
    return json.dumps({name: list(values) for name, values in columns.items()}, ensure_ascii=False)


def file_rows_sql(columns: dict[str, str], path: str, size: int) -> str:
    """rows_sql reading the JSON text from a file of size bytes (our own path, written into the SQL): DuckDB
    parses a big JSON file about twice as fast as the same text given as a parameter."""
    schema = ", ".join(f"'{name}': '{_JSON_TYPE.get(t, t)}[]'" for name, t in columns.items())
    selected = ", ".join(f"CAST(unnest({name}) AS {sql_type}) AS {name}" for name, sql_type in columns.items())
    return (
        f"(SELECT {selected} FROM read_json({quoted(path)}, format = 'unstructured', columns = {{{schema}}},"
        f" maximum_object_size = {int(size) + 1}))"
    )


@contextmanager
def spooled(text: str) -> Iterator[tuple[str, int]]:
    """The text in a temporary file of its own (readable by this user only), as (path, bytes); removed after."""
    data = text.encode("utf-8", "surrogatepass")
    fd, path = tempfile.mkstemp(prefix="mcp-sessions-rows-", suffix=".json")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        yield path, len(data)
    finally:
        os.unlink(path)
