"""The store's errors."""

from __future__ import annotations


class StoreError(Exception):
    """Root of the store's own errors."""


class Conflict(StoreError):
    """A uniqueness rule was violated (e.g. a check name that exists)."""


class NotFound(StoreError):
    """The named row does not exist."""
