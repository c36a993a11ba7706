"""Child processes that end with their parent, whatever kills it (Linux ``PR_SET_PDEATHSIG``).

A parent killed with SIGKILL cannot clean up its children; the kernel can, if each child asked for a signal on its
parent's death. Used by ``wp-launch`` for its node processes and by ``wp-eval`` for its worker processes.
"""

from __future__ import annotations

import ctypes
import os
import signal

_PR_SET_PDEATHSIG = 1


def die_with_parent(expected_parent: int | None = None, sig: int = signal.SIGTERM) -> None:
    """Ask for ``sig`` when the parent dies. ``expected_parent``: if the parent is already gone (this process was
    re-parented before the call), exit at once rather than run orphaned. No-op where prctl does not exist."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, sig)
    except (OSError, AttributeError):
        return
    if expected_parent is not None and os.getppid() != expected_parent:
        os._exit(1)
