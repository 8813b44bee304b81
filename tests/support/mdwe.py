"""``python mdwe.py PROGRAM ARGS...``: run PROGRAM with writable+executable memory refused.

The kernel's prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN) (Linux 6.3+) is what systemd's
MemoryDenyWriteExecute=yes enforces with seccomp; it survives execve, so PROGRAM and its children
run under it. Exits 1 if the kernel does not support it.
"""

from __future__ import annotations

import ctypes
import os
import sys

PR_SET_MDWE = 65
PR_MDWE_REFUSE_EXEC_GAIN = 1


def main() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
        sys.exit(f"mdwe: PR_SET_MDWE failed: {os.strerror(ctypes.get_errno())}")
    os.execv(sys.argv[1], sys.argv[1:])


if __name__ == "__main__":
    main()
