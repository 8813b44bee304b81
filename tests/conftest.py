"""Shared fixtures. Capability-specific helpers live in tests/support/."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    """The public modem/SMS test vectors in ``../shared/corpus`` (read in place, never copied)."""
    path = Path(os.environ.get("HBGW_CORPUS", ROOT.parent / "shared" / "corpus"))
    if not (path / "README.md").is_file():
        pytest.fail(f"modem test corpus not found at {path} (set HBGW_CORPUS)")
    return path
