"""Keep-alives answered by the worker from the leader's shared lease clock
(kvcore/lease/lessor.py, ext/leaseclock.pyx): a keep-alive no longer crosses the
core, yet the core still decides what it must (expiry, revocation), and the renewals
are counted as etcd counts them (etcd 3.5.1 runs the same scenario for the metric)."""
import os
import queue
import signal
import threading
import time
import urllib.request

import grpc

from kvcore.api import rpc_pb2, rpc_pb2_grpc
from tests import servers


def _channel(srv):
    return grpc.insecure_channel(srv.endpoint.replace("http://", ""))


class _Stream:
    """One LeaseKeepAlive stream, a request at a time; answers read by a thread so a
    wait can be bounded."""

    def __init__(self, ch):
        self._q = queue.Queue()
        self._answers = queue.Queue()
        self._call = rpc_pb2_grpc.LeaseStub(ch).LeaseKeepAlive(iter(self._q.get, None),
                                                               timeout=30)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        try:
            for r in self._call:
                self._answers.put(r)
        except grpc.RpcError as e:
            self._answers.put(e)

    def send(self, lease_id: int):
        self._q.put(rpc_pb2.LeaseKeepAliveRequest(ID=lease_id))

    def answer(self, timeout: float = 20):
        """The next answer, or None if none came within ``timeout``."""
        try:
            r = self._answers.get(timeout=timeout)
        except queue.Empty:
            return None
        if isinstance(r, Exception):
            raise r
        return r

    def ask(self, lease_id: int):
        self.send(lease_id)
        return self.answer()

    def close(self):
        self._q.put(None)
        self._call.cancel()


def _renewed(srv) -> float:
    body = urllib.request.urlopen(f"http://{srv.endpoint}/metrics", timeout=10).read().decode()
    for line in body.splitlines():
        if line.startswith("etcd_debugging_lease_renewed_total "):
            return float(line.split()[1])
    raise AssertionError("no etcd_debugging_lease_renewed_total")


def test_a_stopped_core_stops_its_workers_renewals(tmp_path):
    """The worker answers from the shared clock only while the leader's core keeps
    ticking: a core that stalls (here SIGSTOP of the core alone) could have lost its
    leadership to another member, which keeps the lease's time from then on; a
    renewal answered here after that would tell the client its lease lives when the
    new leader may revoke it. Within half an election timeout of the core's last
    tick the worker stops answering; the keep-alive waits for the core, which
    answers it once it runs again."""
    srv = servers.start_kvcore(str(tmp_path / "kv.etcd"), workers=1)
    ch = _channel(srv)
    stopped = False
    try:
        lease = rpc_pb2_grpc.LeaseStub(ch)
        lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(ID=0x77, TTL=60), timeout=10)
        rev = rpc_pb2_grpc.KVStub(ch).Put(rpc_pb2.PutRequest(key=b"k", value=b"v"),
                                          timeout=10).header.revision
        st = _Stream(ch)
        renewed = _renewed(srv)
        first = st.ask(0x77)
        assert (first.ID, first.TTL, first.header.revision) == (0x77, 60, rev)
        assert _renewed(srv) == renewed + 1          # the worker answered it
        os.kill(srv.proc.pid, signal.SIGSTOP)        # the core: only the worker runs
        stopped = True
        time.sleep(1.0)                              # > half the 1 s election timeout
        st.send(0x77)
        assert st.answer(timeout=3) is None, "renewed by a worker of a stalled core"
        os.kill(srv.proc.pid, signal.SIGCONT)
        stopped = False
        late = st.answer()                           # the core's answer, now
        assert (late.ID, late.TTL) == (0x77, 60)
        # what the core decides is still the core's: an unknown lease, a revoked one
        assert st.ask(0x99).TTL == 0
        lease.LeaseRevoke(rpc_pb2.LeaseRevokeRequest(ID=0x77), timeout=10)
        assert st.ask(0x77).TTL == 0
        st.close()
    finally:
        if stopped:
            os.kill(srv.proc.pid, signal.SIGCONT)
        ch.close()
        srv.stop()


def _expiry_scenario(srv) -> tuple:
    """A short lease kept alive past its TTL, then left to expire: -> (TTLs seen
    while kept alive, the TTL answered after expiry, renewals counted)."""
    ch = _channel(srv)
    try:
        lease = rpc_pb2_grpc.LeaseStub(ch)
        ttl = lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(ID=0x55, TTL=2), timeout=10).TTL
        st = _Stream(ch)
        seen = set()
        for _ in range(8):               # 8 x 0.5 s: twice its TTL, kept alive
            seen.add(st.ask(0x55).TTL)
            time.sleep(0.5)
        alive = lease.LeaseTimeToLive(rpc_pb2.LeaseTimeToLiveRequest(ID=0x55),
                                      timeout=10).TTL
        deadline = time.monotonic() + 30
        while lease.LeaseTimeToLive(rpc_pb2.LeaseTimeToLiveRequest(ID=0x55),
                                    timeout=10).TTL != -1:
            assert time.monotonic() < deadline, "the lease never expired"
            time.sleep(0.2)
        after = st.ask(0x55).TTL
        st.close()
        return seen == {ttl}, alive > 0, after, _renewed(srv)
    finally:
        ch.close()


def test_expiry_and_renewal_count_match_etcd(tmp_path):
    with servers.kvcore_and_etcd(tmp_path, workers=1) as (kv, et):
        got, want = _expiry_scenario(kv), _expiry_scenario(et)
    assert got == want == (True, True, 0, 8.0)


def _auth_scenario(srv) -> list:
    """Auth on: a keep-alive stream without a token, with a token no one issued,
    with root's token."""
    ch = _channel(srv)
    try:
        auth, lease = rpc_pb2_grpc.AuthStub(ch), rpc_pb2_grpc.LeaseStub(ch)
        lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(ID=0x42, TTL=60), timeout=10)
        auth.UserAdd(rpc_pb2.AuthUserAddRequest(name="root", password="pw"), timeout=10)
        auth.UserGrantRole(rpc_pb2.AuthUserGrantRoleRequest(user="root", role="root"),
                           timeout=10)
        auth.AuthEnable(rpc_pb2.AuthEnableRequest(), timeout=10)
        token = auth.Authenticate(rpc_pb2.AuthenticateRequest(name="root", password="pw"),
                                  timeout=10).token
        out = []
        for md in ((), (("token", "bogus"),), (("token", token),)):
            try:
                call = lease.LeaseKeepAlive(iter([rpc_pb2.LeaseKeepAliveRequest(ID=0x42)]),
                                            timeout=10, metadata=md)
                r = next(call)
                out.append((r.ID, r.TTL))
            except grpc.RpcError as e:
                out.append((e.code().name, e.details()))
        return out
    finally:
        ch.close()


def test_keepalives_with_auth_on_match_etcd(tmp_path):
    """etcd's LeaseRenew reads no token: a stream with an unknown one renews too
    (kvcore refused it with "invalid auth token" before)."""
    with servers.kvcore_and_etcd(tmp_path, workers=1) as (kv, et):
        got, want = _auth_scenario(kv), _auth_scenario(et)
    assert got == want == [(0x42, 60)] * 3


def _member_id(srv) -> int:
    import json
    rc, out, err = srv.etcdctl("endpoint", "status", "-w", "json")
    assert rc == 0, err
    return json.loads(out)[0]["Status"]["header"]["member_id"]


def test_a_leader_that_steps_down_stops_answering_keepalives(tmp_path):
    """After move-leader the old leader's workers must hand keep-alives to the new
    leader: a lease kept alive only through the old leader for twice its TTL is still
    alive at the new one (answered from a stale clock, it would expire there)."""
    members = servers.start_cluster(str(tmp_path), 3, workers=1)
    try:
        old = servers.leader_of(members)
        new = next(m for m in members if m is not old)
        ch = _channel(old)
        try:
            lease = rpc_pb2_grpc.LeaseStub(ch)
            lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(ID=0x31, TTL=3), timeout=10)
            st = _Stream(ch)
            assert st.ask(0x31).TTL == 3            # answered by the leader's worker
            rc, _, err = old.etcdctl("move-leader", f"{_member_id(new):x}")
            assert rc == 0, err
            assert servers.leader_of(members) is new
            seen = set()
            for _ in range(12):                     # 6 s: twice the TTL
                seen.add(st.ask(0x31).TTL)
                time.sleep(0.5)
            assert seen == {3}
            nch = _channel(new)
            try:
                left = rpc_pb2_grpc.LeaseStub(nch).LeaseTimeToLive(
                    rpc_pb2.LeaseTimeToLiveRequest(ID=0x31), timeout=10).TTL
            finally:
                nch.close()
            assert left > 0
            st.close()
        finally:
            ch.close()
    finally:
        for m in members:
            m.stop()
