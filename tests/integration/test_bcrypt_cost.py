"""--bcrypt-cost: passwords are hashed with that cost; a cost outside bcrypt's 4..31
falls back to 10 with etcd's warning."""
from __future__ import annotations

import os

import lmdb
import pytest

from kvcore.api import auth_pb2
from tests import servers


def _stored_hash(data_dir: str, user: str) -> bytes:
    env = lmdb.open(os.path.join(data_dir, "member", "snap", "db"), subdir=True, max_dbs=16,
                    readonly=True, lock=False)
    try:
        with env.begin(db=env.open_db(b"auth", create=False)) as txn:
            return auth_pb2.User.FromString(txn.get(b"user/" + user.encode())).password
    finally:
        env.close()


@pytest.mark.parametrize("cost, used", [("4", b"04"), ("40", b"10")])
def test_passwords_are_hashed_with_the_given_cost(tmp_path, cost, used):
    srv = servers.start_kvcore(str(tmp_path / "b.etcd"), extra=("--bcrypt-cost", cost))
    try:
        rc, _, err = srv.etcdctl("user", "add", "u1:secret")
        assert rc == 0, err
    finally:
        srv.stop()
    assert _stored_hash(srv.data_dir, "u1").startswith(b"$2b$" + used + b"$")
    warned = "use default bcrypt cost instead of the invalid given cost" in srv.log()
    assert warned == (cost == "40")
