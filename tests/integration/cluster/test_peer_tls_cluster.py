"""Three kvcore members with TLS on the peer URLs (and on the client URLs, with
client certificates), driven by the real etcdctl; a member whose peer certificates
come from another CA never joins, and each side logs why."""
import json
import os
import time

import pytest

from tests import servers
from tests.tlscerts import make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(str(tmp_path_factory.mktemp("pki")))


def client_flags(pki):
    return ("--cert-file", pki.server_cert, "--key-file", pki.server_key,
            "--client-cert-auth", "--trusted-ca-file", pki.ca)


def peer_flags(pki, cert=None, key=None, ca=None):
    return ("--peer-cert-file", cert or pki.server_cert,
            "--peer-key-file", key or pki.server_key,
            "--peer-client-cert-auth", "--peer-trusted-ca-file", ca or pki.ca)


def ctl(pki):
    return ("--cacert", pki.ca, "--cert", pki.client_cert, "--key", pki.client_key)


def _eventually(fn, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if fn():
            return True
        time.sleep(0.1)
    return fn()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, pki):
    base = str(tmp_path_factory.mktemp("tls3"))
    members = servers.start_cluster(base, 3, scheme="https", peer_scheme="https",
                                    extra=(*client_flags(pki), *peer_flags(pki)),
                                    ctl_args=ctl(pki))
    yield base, members
    for m in members:
        m.stop()


def test_tls_cluster_elects_one_leader_and_replicates(cluster, pki):
    _, members = cluster
    eps = ",".join(m.endpoint for m in members)
    rc, out, err = servers.etcdctl(eps, *ctl(pki), "endpoint", "status", "-w", "json")
    assert rc == 0, err
    st = [s["Status"] for s in json.loads(out)]
    assert len({s["leader"] for s in st}) == 1 and 0 not in {s["leader"] for s in st}
    rc, out, _ = members[0].etcdctl("member", "list", "-w", "json")
    assert all(u.startswith("https://") for m in json.loads(out)["members"]
               for u in m["peerURLs"] + m["clientURLs"])
    for i, writer in enumerate(members):
        assert writer.etcdctl("put", f"k{i}", f"v{i}")[:2] == (0, "OK\n")
        for reader in members:   # linearizable: visible at once everywhere
            assert reader.etcdctl("get", f"k{i}", "--print-value-only")[1] == f"v{i}\n"
    # Replicated, not only forwarded: each member's own (serializable) copy has them.
    for m in members:
        assert _eventually(lambda: m.etcdctl("get", "k", "--prefix", "--keys-only",
                                             "--consistency=s")[1].split() ==
                           ["k0", "k1", "k2"])


def test_member_joins_over_tls(cluster, pki):
    base, members = cluster
    port, peer = servers.free_port(), servers.free_port()
    url = f"https://127.0.0.1:{peer}"
    rc, out, err = servers.member_change(members[0], "add", "m3", f"--peer-urls={url}")
    assert rc == 0, err
    initial = [l for l in out.splitlines() if l.startswith("ETCD_INITIAL_CLUSTER=")][0]
    initial = initial.split("=", 1)[1].strip('"')
    new = servers.start_joining_member(base, "m3", initial, "kvcore-test", port, peer,
                                       scheme="https", peer_scheme="https",
                                       extra=(*client_flags(pki), *peer_flags(pki)),
                                       ctl_args=ctl(pki))
    try:
        assert new.etcdctl("get", "k0", "--print-value-only")[1] == "v0\n"
        assert new.etcdctl("put", "from-m3", "yes")[0] == 0
        assert members[1].etcdctl("get", "from-m3", "--print-value-only")[1] == "yes\n"
    finally:
        rc, out, _ = members[0].etcdctl("member", "list", "-w", "json")
        mid = [m["ID"] for m in json.loads(out)["members"] if m["name"] == "m3"][0]
        servers.member_change(members[0], "remove", f"{mid:x}")
        new.stop()


def test_joining_with_a_wrong_ca_fails_with_the_tls_error(cluster, pki):
    base, members = cluster
    port, peer = servers.free_port(), servers.free_port()
    initial = ",".join(f"m{i}=https://127.0.0.1:{m.peer_port}" for i, m in enumerate(members))
    initial += f",m4=https://127.0.0.1:{peer}"
    with pytest.raises(RuntimeError) as e:
        servers.start_joining_member(base, "m4", initial, "kvcore-test", port, peer,
                                     scheme="https", peer_scheme="https",
                                     extra=(*client_flags(pki),
                                            *peer_flags(pki, ca=pki.other_ca)))
    assert "cannot reach any member of the existing cluster" in str(e.value)
    assert "certificate verify failed" in str(e.value)


def test_member_with_certificates_of_another_ca_never_joins(tmp_path, pki):
    """m2's peer certificate and trusted CA are another CA's: m0 and m1 form the
    cluster and serve writes; m2 never hears from them, never becomes healthy, and
    both sides log the TLS failure."""
    bad = peer_flags(pki, cert=pki.other_server_cert, key=pki.other_server_key,
                     ca=pki.other_ca)
    members = servers.start_cluster(str(tmp_path), 3, peer_scheme="https",
                                     extra=peer_flags(pki), member_extra={2: bad})
    try:
        good, m2 = members[:2], members[2]
        assert _eventually(lambda: "cannot connect to peer" in m2.log() and
                           "certificate verify failed" in m2.log())
        assert _eventually(lambda: any("rejected a peer connection from 127.0.0.1: TLS "
                                       "handshake failed" in m.log() for m in good))
        assert good[0].etcdctl("put", "only-good", "1")[0] == 0
        assert good[1].etcdctl("get", "only-good", "--print-value-only")[1] == "1\n"
        assert _eventually(lambda: good[1].etcdctl(
            "get", "only-good", "--consistency=s", "--print-value-only")[1] == "1\n")
        # m2: no leader, so unhealthy; and it never received the write.
        rc, out, err = m2.etcdctl("endpoint", "health", "--command-timeout=5s")
        assert rc != 0 and "is unhealthy" in out + err
        assert m2.etcdctl("get", "only-good", "--consistency=s")[1] == ""
        rc, out, _ = m2.etcdctl("endpoint", "status", "-w", "json")
        assert rc == 0 and json.loads(out)[0]["Status"].get("leader", 0) == 0
    finally:
        for m in members:
            m.stop()


def test_peer_auto_tls_cluster(tmp_path):
    members = servers.start_cluster(str(tmp_path), 3, peer_scheme="https",
                                    extra=("--peer-auto-tls",))
    try:
        assert members[0].etcdctl("put", "auto", "peer")[0] == 0
        for m in members:
            assert m.etcdctl("get", "auto", "--print-value-only")[1] == "peer\n"
            assert os.path.exists(os.path.join(m.data_dir, "fixtures", "peer", "cert.pem"))
    finally:
        for m in members:
            m.stop()


def test_snapshot_reaches_a_lagging_member_over_peer_tls(tmp_path, pki):
    """The snapshot lane (MsgSnap plus the backend copy) runs over TLS too."""
    import grpc
    from kvcore.api import rpc_pb2, rpc_pb2_grpc

    members = servers.start_cluster(
        str(tmp_path), 3, peer_scheme="https",
        extra=(*peer_flags(pki), "--snapshot-count", "20",
               "--experimental-snapshot-catchup-entries", "5"))
    try:
        leader = servers.leader_of(members)
        idx = next(i for i, m in enumerate(members) if m is not leader)
        members[idx].stop()
        with grpc.insecure_channel(f"127.0.0.1:{leader.port}") as ch:
            kv = rpc_pb2_grpc.KVStub(ch)
            for i in range(100):
                kv.Put(rpc_pb2.PutRequest(key=f"s{i % 10}".encode(), value=f"{i}".encode()),
                       timeout=10)
        members[idx] = lagging = members[idx].restart()
        assert _eventually(lambda: "installed snapshot" in lagging.log())
        assert "sent snapshot" in leader.log()
        assert lagging.etcdctl("get", "s9", "--print-value-only")[1] == "99\n"
    finally:
        for m in members:
            m.stop()
