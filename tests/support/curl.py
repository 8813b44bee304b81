"""The real curl, for tests that talk to the daemon the way users' scripts do."""

from __future__ import annotations

import subprocess


def curl(url: str, *args: str) -> tuple[int, str]:
    """The HTTP status and the body (stripped) of one curl request; ``args`` are curl options."""
    out = subprocess.run(
        ["curl", "-sS", "-m", "10", "-w", "\n%{http_code}", *args, url], capture_output=True, text=True, check=True
    ).stdout
    body, _, code = out.rpartition("\n")
    return int(code), body.strip()
