"""Benchmarks of the session stores: `python -m benchmarks.store` compares DuckDB with a plain SQLite FTS5 baseline."""
