"""Lock and Election services on a three-member cluster: waiting happens on followers
(their watch hubs see what they apply), releases come through other members."""
import queue
import threading

import grpc
import pytest

from kvcore.api import v3election_pb2 as epb, v3lock_pb2 as lpb
from tests import servers
from tests.compat.test_lock_election import WAIT, Api


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    members = servers.start_cluster(str(tmp_path_factory.mktemp("c3-lock")), 3)
    leader = servers.leader_of(members)
    followers = [m for m in members if m is not leader]
    apis = [Api(m) for m in [leader] + followers]
    yield apis
    for a in apis:
        a.close()
    for m in members:
        m.stop()


def test_lock_taken_on_follower_waits_on_another_and_is_released_on_the_leader(cluster):
    leader, f1, f2 = cluster
    la, lb = f1.grant(), f2.grant()
    ra = f1.lock.Lock(lpb.LockRequest(name=b"cl", lease=la), timeout=WAIT)
    assert ra.key == b"cl/%x" % la
    fb = f2.lock.Lock.future(lpb.LockRequest(name=b"cl", lease=lb), timeout=WAIT * 2)
    assert sorted(f2.wait_keys("cl/", 2)) == sorted(["cl/%x" % la, "cl/%x" % lb])
    assert not fb.done()          # queued behind the holder
    leader.lock.Unlock(lpb.UnlockRequest(key=ra.key), timeout=WAIT)
    rb = fb.result(timeout=WAIT)
    assert rb.key == b"cl/%x" % lb
    assert rb.header.revision > ra.header.revision
    assert f1.keys("cl/") == ["cl/%x" % lb]
    f1.lock.Unlock(lpb.UnlockRequest(key=rb.key), timeout=WAIT)
    assert leader.keys("cl/") == [] and f2.keys("cl/") == []


def test_election_across_members_observed_on_a_follower(cluster):
    leader, f1, f2 = cluster
    seen: queue.Queue = queue.Queue()
    stream = f1.election.Observe(epb.LeaderRequest(name=b"ce"), timeout=WAIT * 4)

    def read():
        try:
            for r in stream:
                seen.put(r.kv.value)
        except grpc.RpcError as e:
            seen.put(e.code().name)

    t = threading.Thread(target=read, daemon=True)
    t.start()
    l1, l2 = f1.grant(), f2.grant()
    c1 = f1.election.Campaign(epb.CampaignRequest(name=b"ce", lease=l1, value=b"one"),
                              timeout=WAIT)
    assert seen.get(timeout=WAIT) == b"one"
    leader.election.Proclaim(epb.ProclaimRequest(leader=c1.leader, value=b"one'"),
                             timeout=WAIT)
    assert seen.get(timeout=WAIT) == b"one'"
    f2c = f2.election.Campaign.future(epb.CampaignRequest(name=b"ce", lease=l2, value=b"two"),
                                      timeout=WAIT * 2)
    f2.wait_keys("ce/", 2)
    assert not f2c.done()
    assert leader.election.Leader(epb.LeaderRequest(name=b"ce"), timeout=WAIT).kv.value == b"one'"
    leader.election.Resign(epb.ResignRequest(leader=c1.leader), timeout=WAIT)
    c2 = f2c.result(timeout=WAIT)
    assert c2.leader.key == b"ce/%x" % l2
    assert seen.get(timeout=WAIT) == b"two"
    assert f1.election.Leader(epb.LeaderRequest(name=b"ce"), timeout=WAIT).kv.value == b"two"
    stream.cancel()
    t.join(WAIT)
    assert seen.get(timeout=WAIT) == "CANCELLED"
