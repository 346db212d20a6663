"""LeaseRevoke and LeaseGrant through a member that has not applied the lease's grant
yet are decided where etcd 3.5.1 decides them: when the request is applied, in log
order, not by the receiving member's own (stale) lessor.

(Found by etcd's functional tester, tests/integration/functional: during
SIGQUIT_AND_REMOVE_LEADER_UNTIL_TRIGGER_SNAPSHOT its lease stresser revoked a lease
through the member that had just been re-added and was still catching up; kvcore
answered "requested lease not found", which the stresser takes for a revoked lease,
and the LEASE_EXPIRE checker then found the lease and its keys alive.)
"""
import re
import threading

import grpc
import pytest

from kvcore.api import rpc_pb2, rpc_pb2_grpc
from kvcore.robust.cluster import Cluster
from tests import etcd351, servers

# Long enough that the lagging member's second of silence starts no election.
TIMING = ("--heartbeat-interval", "100", "--election-timeout", "5000")


@pytest.fixture(params=["kvcore", "etcd"])
def cluster(request, tmp_path):
    c = Cluster("kvcore" if request.param == "kvcore" else etcd351.ETCD, 3, str(tmp_path))
    for m in c.members:
        m.argv += TIMING
    try:
        c.start()
        yield c
    finally:
        c.close()


def _lag(cluster, lagging, seconds=1.5):
    """What the others send the lagging member arrives ``seconds`` late; what it sends
    still arrives. A cut (``isolate``) would close its connection from the leader,
    after which kvcore's follower starts its election timer's randomized part at once
    and may drop its leader before the test's request reaches it."""
    for o in cluster.members:
        if o is not lagging:
            cluster.proxy.delay(o.member_id, lagging.member_id, seconds)


def _ctl(m, *args):
    rc, out, err = servers.etcdctl(m.endpoint, *args, "--command-timeout=20s", timeout=40)
    return rc, out, err


def test_revoke_through_a_member_behind_the_grant(cluster):
    lead = cluster.leader()
    lagging = next(m for m in cluster.members if m is not lead)
    _lag(cluster, lagging)
    rc, out, err = _ctl(lead, "lease", "grant", "60")
    assert rc == 0, err
    lease = re.search(r"lease ([0-9a-f]+) granted", out).group(1)
    assert _ctl(lead, "put", "held", "v", "--lease", lease)[0] == 0
    # The revoke reaches the lagging member before the grant does; the delay ends a
    # second later and the member catches up.
    heal = threading.Timer(1.0, cluster.proxy.heal)
    heal.start()
    try:
        rc, out, err = _ctl(lagging, "lease", "revoke", lease)
    finally:
        heal.join()
    assert rc == 0, f"revoke through {lagging.name}: {err or out}"
    for m in cluster.members:
        rc, out, err = _ctl(m, "lease", "timetolive", lease)
        assert rc == 0 and "already expired" in out, (m.name, out, err)
        rc, out, err = _ctl(m, "get", "held")
        assert (rc, out) == (0, ""), (m.name, out, err)


def test_grant_of_an_id_through_a_member_behind_its_revoke(cluster):
    lead = cluster.leader()
    lagging = next(m for m in cluster.members if m is not lead)
    lease_id = 0x4242
    with grpc.insecure_channel(lead.endpoint) as ch:
        rpc_pb2_grpc.LeaseStub(ch).LeaseGrant(rpc_pb2.LeaseGrantRequest(ID=lease_id, TTL=60),
                                              timeout=10)
    assert _ctl(lagging, "lease", "timetolive", f"{lease_id:x}")[0] == 0   # seen there
    _lag(cluster, lagging)
    rc, out, err = _ctl(lead, "lease", "revoke", f"{lease_id:x}")
    assert rc == 0, err
    heal = threading.Timer(1.0, cluster.proxy.heal)
    heal.start()
    try:
        with grpc.insecure_channel(lagging.endpoint) as ch:
            resp = rpc_pb2_grpc.LeaseStub(ch).LeaseGrant(
                rpc_pb2.LeaseGrantRequest(ID=lease_id, TTL=60), timeout=20)
    finally:
        heal.join()
    assert (resp.ID, resp.TTL) == (lease_id, 60)
    for m in cluster.members:
        rc, out, err = _ctl(m, "lease", "timetolive", f"{lease_id:x}")
        assert rc == 0 and "granted with TTL(60s)" in out, (m.name, out, err)
