"""Both stacks (a 3-member cluster and its proxy, kvcore's and etcd 3.5.1's) are
started once for every test module of the folder."""
import pytest

from tests.proxy.proxyctl import stack


@pytest.fixture(scope="package")
def stacks(tmp_path_factory):
    base = str(tmp_path_factory.mktemp("grpc-proxy"))
    with stack("kvcore", base) as kv, stack("etcd", base) as et:
        yield {"kvcore": kv, "etcd": et}
