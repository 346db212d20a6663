import os

import pytest

from kvcore import _ext
from tests import servers


def pytest_configure(config):
    """Under pytest-xdist each worker takes its ports from a slice of its own, so two
    workers never pick the same port between picking and listening (free_port)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if not worker:
        return
    lo, hi = map(int, os.environ.get("KVCORE_PORT_RANGE", "10000-19999").split("-"))
    span = (hi - lo + 1) // count
    index = int(worker.removeprefix("gw"))
    os.environ["KVCORE_PORT_RANGE"] = f"{lo + index * span}-{lo + (index + 1) * span - 1}"


def pytest_report_header(config):
    mode = "pure-Python twins" if _ext.pure() else "compiled extensions"
    return f"kvcore native modules: {mode} ({_ext.PURE_ENV}={'1' if _ext.pure() else 'unset'})"


def pytest_collection_modifyitems(config, items):
    """Pure-Python mode has no native gRPC engine (it has no twin; the server serves
    with grpcio): the tests of that engine itself are deselected, visibly."""
    if not _ext.pure():
        return
    native = [i for i in items if i.get_closest_marker("native_engine")]
    if native:
        config.hook.pytest_deselected(items=native)
        items[:] = [i for i in items if not i.get_closest_marker("native_engine")]


@pytest.fixture(scope="session", autouse=True)
def _basetemp_made_once(tmp_path_factory):
    """The session's tmp base made before any test runs: pytest makes it on first use,
    removing what is there, and a fixture whose threads ask for tmp dirs at once (the
    first file an xdist worker runs) could remove a dir another thread had just made."""
    tmp_path_factory.getbasetemp()


@pytest.fixture
def kvcore(tmp_path):
    srv = servers.start_kvcore(str(tmp_path / "kv.etcd"))
    yield srv
    srv.stop()


@pytest.fixture
def etcd(tmp_path):
    srv = servers.start_etcd(str(tmp_path / "etcd.etcd"))
    yield srv
    srv.stop()
