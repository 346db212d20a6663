"""kvcore._ext.load: the one compiled-or-twin selector.

Outside pure-Python mode every compiled extension must load (a missing native build
fails here, in CI, instead of turning tests into skips); KVCORE_PURE_PYTHON=1 gives
each module's twin, and no native gRPC engine (it has none)."""
import importlib

import pytest

from kvcore import _ext


@pytest.mark.parametrize("name", sorted(_ext.TWINS))
def test_every_compiled_extension_is_built(name):
    mod = _ext.compiled(name)
    assert mod.__name__ == f"kvcore._ext.{name}"
    assert mod.__file__.endswith(".so")


@pytest.mark.parametrize("name", sorted(_ext.TWINS))
def test_load_follows_the_mode(name, monkeypatch):
    monkeypatch.delenv(_ext.PURE_ENV, raising=False)
    assert _ext.load(name) is _ext.compiled(name)
    monkeypatch.setenv(_ext.PURE_ENV, "1")
    want = importlib.import_module(_ext.TWINS[name]) if _ext.TWINS[name] else None
    assert _ext.load(name) is want


def test_twins_export_what_the_compiled_modules_export():
    for name, twin in _ext.TWINS.items():
        if twin is None:
            continue
        public = {n for n in dir(_ext.compiled(name)) if not n.startswith("_")}
        used = public & {"crc32c", "encode_record", "encode_entries", "decode_entry",
                         "decode_records", "REC_ENTRY", "WalWriter", "TreeIndex",
                         "Proposer", "decode_entry_data", "key_value"}
        assert used, name
        missing = {n for n in used if not hasattr(_ext.twin(name), n)}
        assert not missing, (name, missing)


def test_a_missing_build_is_an_error_not_an_import_error(monkeypatch):
    monkeypatch.delenv(_ext.PURE_ENV, raising=False)
    monkeypatch.setitem(_ext.TWINS, "nosuchmodule", None)
    with pytest.raises(_ext.NativeBuildMissing, match="KVCORE_PURE_PYTHON=1") as e:
        _ext.load("nosuchmodule")
    assert not isinstance(e.value, ImportError)   # nobody may catch it as "optional"
    monkeypatch.setenv(_ext.PURE_ENV, "1")
    assert _ext.load("nosuchmodule") is None


def test_unknown_name_is_refused():
    with pytest.raises(KeyError):
        _ext.compiled("walcodecs")
