"""The worker process and the kernel: it dies with its arbiter, gives large freed blocks back."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys


def die_with_parent(ppid: int) -> None:
    """Ask the kernel to SIGKILL this process when its parent dies (Linux); a no-op elsewhere."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != ppid:  # the parent died before the request took effect
        os._exit(1)


def return_large_blocks() -> None:
    """Make glibc give every block over 128 KiB back to the kernel when it is freed (Linux).

    By default glibc raises its mmap threshold to the largest block freed so far (up to
    32 MiB): after the first large review, a decoded body's big blocks (the bytes, a dict's
    table) come from the heap of whichever thread decoded it, and stay there once freed. Each
    of the worker's threads then keeps its own high-water mark, and the worker grows past what
    the decode budget allows at once. A fixed threshold turns that adjustment off; ordinary
    reviews (a few KiB) are not affected.
    """
    if not sys.platform.startswith("linux"):
        return
    m_mmap_threshold = -3
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).mallopt(m_mmap_threshold, 128 * 1024)
