"""The store's errors."""

from __future__ import annotations


class StoreError(Exception):
    """Root of the store's own errors."""


class Conflict(StoreError):
    """A uniqueness rule was violated (e.g. a check name that exists)."""


class NotFound(StoreError):
    """The named row does not exist."""


class Ambiguous(Conflict):
    """More than one row answers to the name given (e.g. two checks with one slug)."""


class Refused(StoreError):
    """A write that a rule checked inside its transaction refused (the message says why)."""
