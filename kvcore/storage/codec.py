"""Picks the compiled WAL codec and writer thread, or their plain-Python twins.

KVCORE_PURE_PYTHON=1 forces the twin (tests use it to pin both to one behaviour).
"""
import logging
import os

log = logging.getLogger("kvcore.storage")

if os.environ.get("KVCORE_PURE_PYTHON") == "1":
    from kvcore.storage import walcodec_py as walcodec
    from kvcore.storage import walwriter_py as walwriter
else:
    try:
        from kvcore._ext import walcodec, walwriter
    except ImportError:  # pragma: no cover - only on a broken build
        log.warning("compiled WAL codec unavailable; using the pure-Python codec")
        from kvcore.storage import walcodec_py as walcodec
        from kvcore.storage import walwriter_py as walwriter

__all__ = ["walcodec", "walwriter"]
