"""The PostgreSQL backend (postgres.backend.PostgresSessionBackend): the same tools over one database shared
by servers on many machines. Only this package imports psycopg, as only store/ imports duckdb; the CLI
imports it when --db is a URI."""
