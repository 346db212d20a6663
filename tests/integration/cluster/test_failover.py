"""kill -9 of the leader under write load: a new leader serves writes and no
acknowledged write is lost (checked on every member, including the restarted one)."""
import threading
import time

import grpc

from kvcore.api import rpc_pb2, rpc_pb2_grpc
from tests import servers


def _writer(members, t, acked, lock, stop):
    chans = [grpc.insecure_channel(m.endpoint) for m in members]
    stubs = [rpc_pb2_grpc.KVStub(c) for c in chans]
    i, target = 0, t % len(stubs)
    deadline = time.monotonic() + 60
    while not stop.is_set() and time.monotonic() < deadline:
        key = f"w{t}/{i:06d}".encode()
        try:
            r = stubs[target].Put(rpc_pb2.PutRequest(key=key, value=key), timeout=3)
            with lock:
                acked[key] = r.header.revision
            i += 1
        except grpc.RpcError:
            target = (target + 1) % len(stubs)   # try another member; same key again
            time.sleep(0.05)
    for c in chans:
        c.close()


def test_kill9_leader_under_load(tmp_path):
    members = servers.start_cluster(str(tmp_path), 3)
    try:
        acked, lock, stop = {}, threading.Lock(), threading.Event()
        threads = [threading.Thread(target=_writer, args=(members, t, acked, lock, stop))
                   for t in range(6)]
        for th in threads:
            th.start()
        deadline = time.monotonic() + 30
        while len(acked) < 300 and time.monotonic() < deadline:
            time.sleep(0.02)
        leader = servers.leader_of(members)
        before = len(acked)
        leader.kill9()
        survivors = [m for m in members if m is not leader]
        # The survivors elect a new leader and writes are acknowledged again.
        deadline = time.monotonic() + 30
        while len(acked) < before + 300 and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        for th in threads:
            th.join(30)
        assert len(acked) >= before + 300, "writes did not resume after the leader died"
        new_leader = servers.leader_of(survivors)
        assert new_leader is not leader

        def check(member):
            with grpc.insecure_channel(member.endpoint) as ch:
                r = rpc_pb2_grpc.KVStub(ch).Range(
                    rpc_pb2.RangeRequest(key=b"w", range_end=b"x"), timeout=30)
            have = {kv.key: kv.mod_revision for kv in r.kvs}
            lost = [k for k in acked if k not in have]
            assert not lost, f"{len(lost)} acknowledged writes lost on {member.endpoint}"
            assert all(have[k] == rev for k, rev in acked.items())

        for m in survivors:
            check(m)
        idx = members.index(leader)
        members[idx] = leader.restart()
        time.sleep(1)
        check(members[idx])
    finally:
        for m in members:
            m.stop()
