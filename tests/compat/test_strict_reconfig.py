"""--strict-reconfig-check, against etcd 3.5.1: with it (the default) adding a voter
that would leave too few started voters for a quorum is refused; without it the
change is proposed (and, lacking a quorum, cannot commit)."""
from __future__ import annotations

import os

import pytest

from tests import servers

ETCD351 = os.environ.get("KVCORE_TEST_ETCD35", "/opt/etcd351/bin/etcd")
NOT_STARTED = "etcdserver: re-configuration failed due to not enough started members"


def _add_two_voters(kind: str, base: str, strict: str) -> tuple:
    flags = (f"--strict-reconfig-check={strict}",)
    data = os.path.join(base, f"{kind}-{strict}.etcd")
    srv = (servers.start_kvcore(data, workers=1, extra=flags) if kind == "kvcore"
           else servers.start_etcd(data, binary=ETCD351, extra=flags))
    try:
        out = []
        for name in ("a", "b"):
            rc, _, err = srv.etcdctl("--command-timeout=3s", "member", "add", name,
                                     f"--peer-urls=http://127.0.0.1:{servers.free_port()}")
            out.append((rc == 0, NOT_STARTED in err))
        return tuple(out)
    finally:
        srv.stop()


@pytest.mark.parametrize("strict", ["true", "false"])
def test_strict_reconfig_check_like_etcd(tmp_path, strict):
    etcd = _add_two_voters("etcd", str(tmp_path), strict)
    kv = _add_two_voters("kvcore", str(tmp_path), strict)
    # the first add is allowed (a one-member cluster may grow to two)
    assert etcd[0] == (True, False)
    # the second: refused by the check, or proposed and stuck without a quorum
    assert etcd[1] == ((False, True) if strict == "true" else (False, False))
    assert kv == etcd
