"""Picks the compiled WAL codec, or its plain-Python twin.

KVCORE_PURE_PYTHON=1 forces the twin (tests use it to pin both to one behaviour).
"""
import logging
import os

log = logging.getLogger("kvcore.storage")

if os.environ.get("KVCORE_PURE_PYTHON") == "1":
    from kvcore.storage import walcodec_py as walcodec
else:
    try:
        from kvcore._ext import walcodec
    except ImportError:  # pragma: no cover - only on a broken build
        log.warning("compiled WAL codec unavailable; using the pure-Python codec")
        from kvcore.storage import walcodec_py as walcodec

__all__ = ["walcodec"]
