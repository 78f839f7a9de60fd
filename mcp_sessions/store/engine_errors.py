"""engine_errors: DuckDB's errors leave the store as StoreFailure, after a retry when only memory ran out."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import duckdb

from ..errors import StoreFailure
from .connection import Connection

P = ParamSpec("P")
R = TypeVar("R")


def engine_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """DuckDB's errors leave the store as StoreFailure, with DuckDB's text (and the error as its cause); a call
    that ran out of memory under the serving limit is first run again with more (see Connection.spare_memory)."""

    @functools.wraps(fn)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        conn: Connection | None = getattr(args[0], "_conn", None)
        try:
            if conn is None:
                return fn(*args, **kwargs)
            return conn.spare_memory(lambda: fn(*args, **kwargs))
        except duckdb.Error as exc:
            raise StoreFailure(str(exc)) from exc

    return call
