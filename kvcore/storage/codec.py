"""The WAL record codec and writer thread: compiled, or their plain-Python twins
under KVCORE_PURE_PYTHON=1 (chosen by ``kvcore._ext.load``)."""
from kvcore import _ext

walcodec = _ext.load("walcodec")
walwriter = _ext.load("walwriter")

__all__ = ["walcodec", "walwriter"]
