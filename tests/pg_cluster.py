"""A real PostgreSQL cluster for the tests: initdb into a temp folder, a Unix socket only (no TCP port), no fsync.

initdb and pg_ctl refuse to run as root: as root they run as the `postgres` user (Debian's package creates
it), in a folder that user owns. Each test gets a fresh database copied from a migrated template."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from mcp_sessions.postgres.backend import PostgresSessionBackend
from mcp_sessions.postgres.schema import MIGRATIONS

TEMPLATE = "mcp_sessions_template"


def pg_bin() -> Path:
    """The folder holding initdb and pg_ctl: $PG_BIN, else the newest /usr/lib/postgresql/N/bin, else PATH."""
    if os.environ.get("PG_BIN"):
        return Path(os.environ["PG_BIN"])
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    if initdb is None:
        raise RuntimeError(
            "PostgreSQL's initdb was not found (set PG_BIN, or install Debian's postgresql package:"
            " apt-get install -y postgresql)"
        )
    return Path(initdb).parent


class Cluster:
    """A running cluster in its own folder, reached at its socket folder as the `postgres` user."""

    def __init__(self) -> None:
        self.bin = pg_bin()
        self.root = Path(tempfile.mkdtemp(prefix="mcp-sessions-pg-"))
        self.data = self.root / "data"
        self.socket_dir = str(self.root)
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.root, "postgres")
        self.root.chmod(0o755)
        self._names = itertools.count()
        self._free: list[str] = []
        self._run("initdb", "-D", str(self.data), "--no-sync", "-A", "trust", "-U", "postgres", "-E", "UTF8")
        self.start()
        with self.admin() as conn:
            conn.execute(f"CREATE DATABASE {TEMPLATE}")
        # Migrated once: each test's database is a copy, with the schema already in place.
        PostgresSessionBackend(self.uri(TEMPLATE)).close()
        self._migrations = len(MIGRATIONS)

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bin / tool), *args]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, cwd="/")

    def start(self) -> None:
        options = f"-c fsync=off -c full_page_writes=off -c listen_addresses='' -k {self.socket_dir}"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-w", "-o", options, "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def uri(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@/{dbname}?host={self.socket_dir}"

    @contextmanager
    def admin(self) -> Iterator[psycopg.Connection]:
        with psycopg.connect(self.uri(), autocommit=True) as conn:
            yield conn

    def new_database(self, *, migrated: bool = True) -> str:
        """A fresh database (migrated, or empty); its URI. An emptied one is reused: creating one costs more."""
        if migrated and self._free:
            return self._free.pop()
        name = f"t{os.getpid()}_{next(self._names)}"
        with self.admin() as conn:
            conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE if migrated else 'template0'}")
        return self.uri(name)

    def recycle(self, uri: str) -> None:
        """Empty a migrated database for the next test, or drop it if that cannot be done at once."""
        try:
            with psycopg.connect(uri, autocommit=True) as conn:
                conn.execute("SET lock_timeout = '2s'")
                tables = conn.execute(
                    "SELECT string_agg(quote_ident(tablename), ', ') FROM pg_tables"
                    " WHERE schemaname = 'public' AND tablename NOT IN ('_migrations', '_corpus')"
                ).fetchone()
                assert tables is not None
                conn.execute(f"TRUNCATE {tables[0]} RESTART IDENTITY")
                conn.execute("UPDATE _corpus SET docs = 0, terms = 0")
                migrations = conn.execute("SELECT count(*) FROM _migrations").fetchone()
            if migrations == (self._migrations,):
                self._free.append(uri)
                return
        except psycopg.Error:
            pass
        self.drop(uri)

    def drop(self, uri: str) -> None:
        name = uri.split("@/", 1)[1].split("?", 1)[0]
        with self.admin() as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def close(self) -> None:
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
