"""Store failures a caller catches by type."""

from __future__ import annotations


class StoreLocked(RuntimeError):
    """Another process holds the database file for writing."""


class StoreReadOnly(RuntimeError):
    """A write was asked of a store opened read-only (or on a read-only file)."""


class StoreUnavailable(RuntimeError):
    """No server could be reached to serve a shared store, or its holder vanished during a write."""
