"""Store failures, one family the edges (tools, commands, relay) catch without knowing the engine."""

from __future__ import annotations


class StoreError(RuntimeError):
    """The store could not do what was asked; the text says why."""


class StoreLocked(StoreError):
    """Another process holds the database file for writing."""


class StoreReadOnly(StoreError):
    """A write was asked of a store opened read-only (or on a read-only file)."""


class StoreUnavailable(StoreError):
    """No server could be reached to serve a shared store, or its holder vanished during a write."""


class StoreFailure(StoreError):
    """The engine refused or failed a statement (a full disk, memory, a broken file); its text is the engine's."""
