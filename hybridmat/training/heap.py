"""Keep freed memory inside the process during CPU training and inference (glibc), so a step does not page-fault
its tensors.

A training step on CPU allocates and frees tensors of tens of MB (ALIGNN's line-graph features: bond pairs x hidden
x 4 bytes, ~60 MB for a 64-structure batch at hidden 64). glibc serves every allocation above its mmap threshold (at
most 32 MB) with a fresh ``mmap`` and returns it with ``munmap`` on free, and trims the top of its heap whenever
more than 128 KiB is free there. The next step then touches brand-new pages: the kernel zeroes and maps each 4 KiB
page on first touch, which on a 2-core machine cost as much as the arithmetic itself (``hybridmat bench alignn``
measures it: ALIGNN training 2.4x faster with the heap retained, ~13,000 page faults per trained structure down to
~650). :func:`retained_heap` sets ``M_MMAP_MAX = 0`` (no mmap: big blocks come from the heap and are reused) and a 2
GiB trim threshold for the run, and restores glibc's defaults afterwards. The price is peak resident memory (freed
blocks stay mapped; +35 % for ALIGNN at hidden 64). Elsewhere than glibc on Linux it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

# mallopt(3) parameters and glibc's defaults for them.
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
DEFAULT_TRIM_THRESHOLD, DEFAULT_MMAP_MAX = 128 * 1024, 65536
RETAINED_TRIM_THRESHOLD = 2**31 - 1

_depth = 0


@cache
def _mallopt() -> ctypes._CFuncPtr | None:
    """glibc's ``mallopt``, or None (not Linux, or another C library such as musl)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 - present only in glibc
    except (OSError, AttributeError):
        return None
    function = libc.mallopt
    function.argtypes, function.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return function


def heap_retention_available() -> bool:
    """Whether :func:`retained_heap` can change anything in this process (glibc on Linux)."""
    return _mallopt() is not None


def _set(trim_threshold: int, mmap_max: int) -> None:
    mallopt = _mallopt()
    if mallopt is not None:
        mallopt(M_TRIM_THRESHOLD, trim_threshold)
        mallopt(M_MMAP_MAX, mmap_max)


@contextmanager
def retained_heap(enabled: bool = True) -> Iterator[None]:
    """Retain freed memory for the ``with`` block (nested blocks keep it until the outermost ends)."""
    global _depth
    if not enabled:
        yield
        return
    if _depth == 0:
        _set(RETAINED_TRIM_THRESHOLD, 0)
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0:
            _set(DEFAULT_TRIM_THRESHOLD, DEFAULT_MMAP_MAX)
