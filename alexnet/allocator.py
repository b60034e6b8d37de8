"""Keep freed memory in the process on glibc.

glibc serves every buffer over 32 MB (a 227x227 batch, AlexNet's activations) with its own mmap
and unmaps it on free, so each training step faults all those pages in again. Measured here
(benchmarks/RESULTS.md) that costs the on-device input pipeline about half its speed. mallopt
can switch this off at run time: no mmap for large blocks, no trimming of the heap top."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_DEFAULT_TRIM_THRESHOLD, _DEFAULT_MMAP_MAX = 128 * 1024, 65536


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "mallopt") else None  # musl and others: no mallopt
    except OSError:
        return None


def keep_freed_memory(enabled: bool = True) -> bool:
    """Ask glibc to keep (True) or return (False, its default) large freed buffers; returns
    whether the setting took (False where the C library is not glibc)."""
    libc = _libc()
    if libc is None:
        return False
    mmap_max, trim = (0, 2**31 - 1) if enabled else (_DEFAULT_MMAP_MAX, _DEFAULT_TRIM_THRESHOLD)
    return bool(libc.mallopt(_M_MMAP_MAX, mmap_max)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, trim))
