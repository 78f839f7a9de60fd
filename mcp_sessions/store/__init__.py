"""The embedded DuckDB store."""

from .. import pandas_absent  # noqa: F401  (before any query: see that module)
