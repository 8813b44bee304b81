"""Shared fixtures. Capability-specific helpers live in tests/support/."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from modem.simulator import Network, PtyModem, SimOptions, Simulator
from tests.support.corpus import require_corpus
from tests.test_at_modem import Rig

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    """The public modem/SMS test vectors in ``../shared/corpus`` (read in place, never copied).

    A test using it is skipped when the corpus is not beside the checkout (tests/support/corpus.py).
    """
    return require_corpus()


@pytest.fixture
def make_pty_rig(tmp_path: Path) -> Iterator[Callable[..., Rig]]:
    """``make_pty_rig(options)``: a simulated modem with those options on a real pty, stopped
    after the test; ``rig.modem()`` is an AtModem on it."""
    started: list[PtyModem] = []

    def make(options: SimOptions) -> Rig:
        net = Network()
        sim = Simulator(net, options)
        transport = PtyModem(sim, link=str(tmp_path / f"ttyRIG{len(started)}")).start()
        started.append(transport)
        return Rig(net, sim, transport, transport.device)

    yield make
    for transport in started:
        transport.stop()
