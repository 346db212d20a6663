"""Compiled Cython extensions built from ext/ (see setup.py), and the one place that
chooses between each of them and its plain-Python twin.

    from kvcore import _ext
    walcodec = _ext.load("walcodec")

``load(name)`` returns the compiled module ``kvcore._ext.<name>``, or, when the
environment says ``KVCORE_PURE_PYTHON=1``, its twin (the module named in ``TWINS``,
same names, same behaviour; tests/unit/twins compares each pair). Outside pure mode a
compiled module that cannot load is an error (``NativeBuildMissing``), never a silent
fallback: a broken native build must fail loudly, in CI first of all.

A module without a twin (``grpc_engine``) loads as ``None`` in pure mode; its user
picks the pure-Python alternative itself (the server serves gRPC with grpcio then,
behind kvcore/engine/py_front.py, the twin of the native engine's HTTP/1.x front).
"""
from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Optional

PURE_ENV = "KVCORE_PURE_PYTHON"

# compiled module (ext/<name>.pyx) -> its plain-Python twin, or None when it has none
TWINS: dict[str, Optional[str]] = {
    "walcodec": "kvcore.storage.walcodec_py",
    "walwriter": "kvcore.storage.walwriter_py",
    "revindex": "kvcore.mvcc.index_py",
    "proposer": "kvcore.server.proposer_py",
    "kvcodec": "kvcore.api.kvcodec_py",
    "grpc_engine": None,
    "leaseclock": None,
}


class NativeBuildMissing(RuntimeError):
    """A compiled extension is missing or cannot load outside pure-Python mode. Not an
    ImportError on purpose: no caller may catch it as "optional module absent"."""


def pure() -> bool:
    """True when KVCORE_PURE_PYTHON=1: every module loads as its twin."""
    return os.environ.get(PURE_ENV) == "1"


def compiled(name: str) -> ModuleType:
    """The compiled module itself, whatever the mode (comparison tests use it)."""
    if name not in TWINS:
        raise KeyError(f"unknown extension {name!r}")
    try:
        return importlib.import_module(f"kvcore._ext.{name}")
    except ImportError as exc:
        raise NativeBuildMissing(
            f"compiled extension kvcore._ext.{name} cannot load ({exc}); build it with "
            f"`python3 setup.py build_ext --inplace` (or `pip install .`), or run with "
            f"{PURE_ENV}=1 to use the plain-Python twins") from exc


def twin(name: str) -> Optional[ModuleType]:
    """The plain-Python twin of ``name``, or None when it has none."""
    mod = TWINS[name]
    return importlib.import_module(mod) if mod else None


def load(name: str) -> Optional[ModuleType]:
    """The module the process runs: the twin in pure mode, else the compiled one."""
    return twin(name) if pure() else compiled(name)
