"""glibc malloc settings for kvcore's processes: keep freed large buffers for reuse.

A 1 MiB put passes through a dozen short-lived 1 MiB buffers in the worker and the
core (engine message, IPC frame, Raft entry, WAL record, KeyValue, ...). With glibc's
defaults every one of them is a fresh mmap (or a heap top grown with brk and trimmed
again at free), so each copy first takes 256 page faults that zero-fill the pages: a
1 MiB copy costs ~0.7 ms instead of ~0.1 ms, and a put spends more time faulting
than copying. Serving large buffers from the heap and trimming the heap only when
much is free (Go's runtime, and so etcd, also keeps freed memory for a while) lets
the next put reuse the same pages. See docs/decisions.md ("The 1 MiB put").

Only glibc has mallopt; elsewhere (musl, macOS) this does nothing.
"""
from __future__ import annotations

import ctypes
import gc

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

# Buffers up to this size come from the heap, not mmap (glibc's own upper bound for
# its dynamic threshold on 64-bit; the default --max-request-bytes is 1.5 MiB).
MMAP_THRESHOLD = 32 << 20
# Free memory at the heap's top is given back to the system only beyond this: room
# for the dozen 1.5 MiB buffers of the largest default request, and at most 16 MiB
# more resident per process than glibc's default (4 MiB did as well for 1 MiB puts).
TRIM_THRESHOLD = 16 << 20
# Worker processes frame whole Range responses: a range of 10,000 x 1 KiB frees ~21 MiB
# at once (the values read and the response), which 16 MiB gave back to the system
# and the next range faulted in again, 4,680 faults per range (docs/decisions.md, "The
# 10,000-key range").
WORKER_TRIM_THRESHOLD = 64 << 20

_done = 0     # the trim threshold applied, 0: none yet


def keep_freed_buffers(trim: int = TRIM_THRESHOLD) -> bool:
    """Apply the settings to this process (again only for another ``trim``); True if
    glibc took them."""
    global _done
    if _done == trim:
        return True
    try:
        # The process's own symbols (the C library is loaded already); find_library
        # would run ldconfig at every start.
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    ok = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and \
        bool(mallopt(M_TRIM_THRESHOLD, trim))
    _done = trim if ok else 0
    return ok


def freeze_startup_objects() -> None:
    """Take what a started server keeps for good (modules, classes, protobuf
    descriptors, the configuration, the open services) out of the cyclic collector's
    scans: collected once here, then moved to its permanent generation (gc.freeze).

    The core allocates short-lived containers on every apply (a 16-put txn: changes,
    responses, request wrappers), so the collector runs often, and each oldest-
    generation pass walked all of the startup objects again: ~5 us per 16-put txn
    of the core's CPU (docs/decisions.md, "A 16-put txn"). What is allocated later
    is collected as before."""
    gc.collect()
    gc.freeze()
