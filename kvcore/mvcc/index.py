"""The revision index: compiled B-tree, or its plain-Python twin.

``TreeIndex`` is ``kvcore._ext.revindex.TreeIndex``, or ``kvcore.mvcc.index_py.TreeIndex``
under ``KVCORE_PURE_PYTHON=1`` (chosen by ``kvcore._ext.load``). Both follow the
contract written at the top of ``kvcore/mvcc/index_py.py``; ``IMPLEMENTATION`` names
the one in use.
"""
from __future__ import annotations

from kvcore import _ext

TreeIndex = _ext.load("revindex").TreeIndex
IMPLEMENTATION = "python" if _ext.pure() else "compiled"

__all__ = ["TreeIndex", "IMPLEMENTATION"]
