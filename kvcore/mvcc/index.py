"""The revision index: compiled B-tree, or its plain-Python twin.

``TreeIndex`` is ``kvcore._ext.revindex.TreeIndex`` when that extension is built, and
``kvcore.mvcc.index_py.TreeIndex`` when it is missing or when ``KVCORE_PURE_PYTHON=1``
(the py-lmdb pattern).  Both follow the contract written at the top of
``kvcore/mvcc/index_py.py``; ``IMPLEMENTATION`` names the one in use.
"""
from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)

if os.environ.get("KVCORE_PURE_PYTHON") == "1":
    from kvcore.mvcc.index_py import TreeIndex
    IMPLEMENTATION = "python"
    log.info("revision index: plain-Python twin (KVCORE_PURE_PYTHON=1)")
else:
    try:
        from kvcore._ext.revindex import TreeIndex
        IMPLEMENTATION = "compiled"
    except ImportError as exc:  # extension not built
        from kvcore.mvcc.index_py import TreeIndex
        IMPLEMENTATION = "python"
        log.warning("revision index: compiled extension unavailable (%s); "
                    "using the plain-Python twin", exc)

__all__ = ["TreeIndex", "IMPLEMENTATION"]
