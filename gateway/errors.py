"""Errors that use cases raise for input a person must correct."""

from __future__ import annotations


class ValidationError(ValueError):
    """Input that a person must correct; ``field`` names the offending input."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
