"""Shared fixtures. Capability-specific helpers live in tests/support/."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.corpus import require_corpus

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    """The public modem/SMS test vectors in ``../shared/corpus`` (read in place, never copied).

    A test using it is skipped when the corpus is not beside the checkout (tests/support/corpus.py).
    """
    return require_corpus()
