"""Every kvcore process runs its asyncio code on uvloop."""
import asyncio


def run_loop(coro):
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency
        return asyncio.run(coro)
    return uvloop.run(coro)
