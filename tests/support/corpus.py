"""Test vectors: the public corpus beside the checkout, and the project's own in tests/vectors.

The public corpus (``../shared/corpus``, or ``$HBGW_CORPUS``) is read in place and never
shipped, so a plain clone does not have it: tests driven by it are skipped then, with
:data:`SKIP_REASON`, never errors. The project's own vectors (tests/vectors/, made by
tests/vectors/make_vectors.py with python-gammu as the oracle) are always there.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from _pytest.mark.structures import ParameterSet

ROOT = Path(__file__).resolve().parents[2]
ENV = "HBGW_CORPUS"
DEFAULT = ROOT.parent / "shared" / "corpus"
VECTORS = ROOT / "tests" / "vectors"
SKIP_REASON = "../shared/corpus not beside the checkout"


def corpus_path() -> Path | None:
    """The corpus directory, or None when ``../shared/corpus`` is not there.

    Raises pytest.UsageError when ``$HBGW_CORPUS`` is set but names no corpus: a path
    asked for explicitly must not turn into silently skipped tests.
    """
    configured = os.environ.get(ENV)
    path = Path(configured) if configured else DEFAULT
    if (path / "README.md").is_file():
        return path
    if configured:
        raise pytest.UsageError(f"{ENV}={configured}: no modem test corpus there (no README.md)")
    return None


def require_corpus() -> Path:
    """The corpus directory; skips the calling test when it is absent."""
    path = corpus_path()
    if path is None:
        pytest.skip(SKIP_REASON)
    return path


@cache
def _read(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def load(name: str) -> Any | None:
    """The parsed corpus file ``name``, or None when the corpus is absent."""
    path = corpus_path()
    return None if path is None else _read(path / name)


def params(name: str, pick: Callable[[Any], Iterable[ParameterSet]], *, argnames: int = 1) -> list[ParameterSet]:
    """Parametrize values drawn from corpus file ``name`` by ``pick(data)``.

    Without the corpus: one parameter set (``argnames`` Nones) marked skip with
    :data:`SKIP_REASON`, so the test shows up once as skipped and collection never fails.
    """
    data = load(name)
    if data is None:
        return [pytest.param(*([None] * argnames), id="no-corpus", marks=pytest.mark.skip(reason=SKIP_REASON))]
    return list(pick(data))


def vectors(name: str) -> Any:
    """The project's own vector file ``tests/vectors/<name>`` (always present)."""
    return _read(VECTORS / name)
