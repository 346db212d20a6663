import pytest

from tests import servers


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
