"""kvcore/health.py on a stand-in member: each reason etcd 3.5.1's /health gives, in
etcd's order (alarms, then the leader, then a linearizable read), and 3.6's
/livez and /readyz bodies. The real-process comparison with etcd is in
tests/compat/test_health.py; this covers the read that times out, which a live
cluster only shows in a short window."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

from kvcore import health
from kvcore.api import rpc_pb2
from kvcore.api.errors import EtcdError, etcd_error


class FakeMember:
    def __init__(self, alarms=(), lead=1, read_error=None, learner=False):
        self.alarms = SimpleNamespace(active=set(alarms))
        self.raft = SimpleNamespace(lead=lead)
        self.read_error = read_error
        self.member_id = 7
        self.membership = SimpleNamespace(members={7: SimpleNamespace(is_learner=learner)})
        self.metrics = SimpleNamespace(health_success=0, health_failures=0)

    def read_index_for_worker(self):
        fut = asyncio.get_event_loop().create_future()
        if self.read_error is None:
            fut.set_result(b"\0" * 8)
        else:
            fut.set_exception(self.read_error)
        return fut


def ask(member, method, target):
    path, _, query = target.partition("?")
    return asyncio.run(health.answer(member, method, path, query))


def test_healthy():
    m = FakeMember()
    assert ask(m, "GET", "/health") == (200, [("Content-Type", "text/plain; charset=utf-8")],
                                        b'{"health":"true","reason":""}')
    assert m.metrics.health_success == 1


def test_reasons_in_etcds_order():
    nospace, corrupt = (1, rpc_pb2.NOSPACE), (1, rpc_pb2.CORRUPT)
    timeout = etcd_error(EtcdError.TIMEOUT)
    cases = [
        (FakeMember(alarms=[nospace], lead=0), "/health", "ALARM NOSPACE"),
        (FakeMember(alarms=[corrupt]), "/health", "ALARM CORRUPT"),
        (FakeMember(alarms=[nospace], lead=0), "/health?exclude=NOSPACE", "RAFT NO LEADER"),
        (FakeMember(lead=0), "/health?serializable=true", "RAFT NO LEADER"),   # 3.5.1 ignores it
        (FakeMember(read_error=timeout), "/health", "RANGE ERROR:etcdserver: request timed out"),
    ]
    for m, target, reason in cases:
        status, headers, body = ask(m, "GET", target)
        assert status == 503, target
        assert ("X-Content-Type-Options", "nosniff") in headers
        assert body == b'{"health":"false","reason":"%s"}\n' % reason.encode(), target
        assert m.metrics.health_failures == 1


def test_only_get():
    status, headers, body = ask(FakeMember(), "POST", "/health")
    assert (status, body) == (405, b"Method Not Allowed\n") and ("Allow", "GET") in headers


def test_livez_and_readyz():
    timeout = etcd_error(EtcdError.TIMEOUT)
    assert ask(FakeMember(lead=0, read_error=timeout), "GET", "/livez")[::2] == (200, b"ok\n")
    status, _, body = ask(FakeMember(read_error=timeout), "GET", "/readyz")
    assert status == 503
    assert body == (b"[+]data_corruption ok\n[+]serializable_read ok\n"
                    b"[-]linearizable_read failed: etcdserver: request timed out\n"
                    b"[+]non_learner ok\n\n")
    status, _, body = ask(FakeMember(alarms=[(1, rpc_pb2.CORRUPT)]), "GET",
                          "/readyz?exclude=linearizable_read&exclude=non_learner")
    assert status == 503 and body.startswith(b"[-]data_corruption failed: alarm activated: CORRUPT\n")
    assert ask(FakeMember(learner=True), "GET", "/readyz/non_learner")[::2] == \
        (503, b"[-]non_learner failed: not supported for learner\n\n")
    assert ask(FakeMember(), "GET", "/readyz?verbose")[::2] == \
        (200, b"[+]data_corruption ok\n[+]serializable_read ok\n[+]linearizable_read ok\n"
              b"[+]non_learner ok\nok\n")
    assert ask(FakeMember(), "GET", "/readyz/nope")[0] == 404
