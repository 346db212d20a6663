"""Every kvcore process runs its asyncio code on uvloop."""
import asyncio

from kvcore.heap import TRIM_THRESHOLD, keep_freed_buffers


def run_loop(coro, trim: int = TRIM_THRESHOLD):
    keep_freed_buffers(trim)  # before the first large buffer (kvcore/heap.py says why)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency
        return asyncio.run(coro)
    return uvloop.run(coro)
