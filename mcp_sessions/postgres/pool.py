"""One pool of connections per server, and psycopg's errors turned into the store's StoreError family.

Connections run in autocommit (a write's transaction is explicit, see Database.transaction) with server-side
prepared statements off (prepare_threshold=None): a search's plan depends on its terms' frequencies, so a
generic plan reused across queries is slow, and PgBouncer in transaction mode needs it off as well. Each
connection is checked as it leaves the pool, so one killed while idle (a restart, a cloud proxy's timeout) is
replaced rather than handed to a call, and the server carries on once the database is back."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from ..errors import StoreFailure, StoreReadOnly, StoreUnavailable

P = ParamSpec("P")
R = TypeVar("R")

# Seconds: to connect, and for a call to wait for a connection (busy pool, or a database that is down).
CONNECT_TIMEOUT = 5
POOL_TIMEOUT = 10.0
# Connections idle this long are closed (and reopened on demand): a server does not pin a database's slots.
MAX_IDLE = 300.0
POOL_MAX = 8

Cursor = psycopg.Cursor[Any]


def shown(conninfo: str) -> str:
    """The connection string without its password, for messages and logs."""
    conninfo = re.sub(r"(://[^:/@?]*):[^@/?]*@", r"\1:***@", conninfo)
    return re.sub(r"(password=)[^&\s]*", r"\1***", conninfo)


def connection_options(read_only: bool) -> dict[str, Any]:
    """psycopg.connect keyword arguments for every connection of a store."""
    options: dict[str, Any] = {"autocommit": True, "prepare_threshold": None, "connect_timeout": CONNECT_TIMEOUT}
    # Our statements are short: starting parallel workers or compiling with JIT costs more than they save.
    settings = "-c timezone=UTC -c max_parallel_workers_per_gather=0 -c jit=off"
    if read_only:
        settings += " -c default_transaction_read_only=on"
    options["options"] = settings
    return options


class Database:
    """A pool of connections to one database."""

    def __init__(self, conninfo: str, *, read_only: bool = False, pool_max: int = POOL_MAX) -> None:
        self.conninfo = conninfo
        self.read_only = read_only
        self.pool = ConnectionPool(
            conninfo,
            min_size=1,
            max_size=pool_max,
            kwargs=connection_options(read_only),
            check=ConnectionPool.check_connection,
            timeout=POOL_TIMEOUT,
            max_idle=MAX_IDLE,
            open=False,
            name="mcp-sessions",
        )

    def open(self) -> None:
        self.pool.open(wait=True, timeout=POOL_TIMEOUT)

    def close(self) -> None:
        self.pool.close()

    @property
    def closed(self) -> bool:
        return self.pool.closed

    @contextmanager
    def cursor(self) -> Iterator[Cursor]:
        """A cursor on a pooled connection in autocommit: each statement is its own transaction."""
        with self.pool.connection() as conn, conn.cursor() as cur:
            yield cur

    @contextmanager
    def transaction(self) -> Iterator[Cursor]:
        """A cursor inside one transaction (READ COMMITTED: each statement sees what committed before it),
        committed when the block ends, rolled back if it raises."""
        with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            yield cur

    @contextmanager
    def snapshot(self) -> Iterator[Cursor]:
        """A cursor inside one read-only REPEATABLE READ transaction: all its statements see the database as it
        was at the first, for a read that takes several statements to answer one question."""
        with self.pool.connection() as conn:
            # Set for the BEGIN that starts it (one round trip), then back to the pool's defaults.
            conn.isolation_level, conn.read_only = psycopg.IsolationLevel.REPEATABLE_READ, True
            try:
                with conn.transaction(), conn.cursor() as cur:
                    yield cur
            finally:
                if not conn.broken:  # a broken one leaves the pool anyway
                    conn.isolation_level, conn.read_only = None, None


def connect(conninfo: str, *, read_only: bool = False) -> psycopg.Connection[Any]:
    """One connection outside the pool (migrations run on it), with the pool's options."""
    return psycopg.connect(conninfo, **connection_options(read_only))


# A call whose transaction PostgreSQL aborted to break a deadlock (writes that lock several sessions, such as
# cleanup_stale and a bulk append, can meet in opposite orders) is run again: nothing of it was applied.
RETRIES = 3


def _retried(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    for attempt in range(RETRIES):
        try:
            return fn(*args, **kwargs)
        except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure):
            if attempt == RETRIES - 1:
                raise
    raise AssertionError("unreachable")


def db_errors(*, write: bool) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """psycopg's errors leave the store as StoreError: a lost database as StoreUnavailable saying so (for a
    write: that it may or may not have been applied), a refused write as StoreReadOnly, the rest as
    StoreFailure with PostgreSQL's text."""

    def wrap(fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def call(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return _retried(fn, *args, **kwargs)
            except PoolTimeout as exc:
                # No connection was had: nothing was sent.
                said = f"the database cannot be reached (no connection within {POOL_TIMEOUT:g} s)"
                raise StoreUnavailable(said + ("; nothing was applied" if write else "")) from exc
            except psycopg.errors.ReadOnlySqlTransaction as exc:
                raise StoreReadOnly(f"the database is open read-only: {exc}") from exc
            except psycopg.OperationalError as exc:
                reason = " ".join(str(exc).split()) or type(exc).__name__
                if write:
                    raise StoreUnavailable(
                        f"the database connection was lost during {fn.__name__.lstrip('_')}; it may or may not"
                        f" have been applied ({reason})"
                    ) from exc
                raise StoreUnavailable(f"the database connection was lost ({reason})") from exc
            except psycopg.Error as exc:
                raise StoreFailure(" ".join(str(exc).split()) or type(exc).__name__) from exc

        return call

    return wrap
