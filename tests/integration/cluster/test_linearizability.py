"""Partitions of leader and followers, symmetric and one-way, injected by a proxy of
our own on loopback while clients run put/get/txn/delete against every member; the
recorded history must be linearizable (tests/linearizability.py).

CI runs KVCORE_LIN_ROUNDS fault rounds (default 20); the slow-marked test runs 200.
"""
import math
import os
import random
import threading
import time

import grpc
import pytest

from kvcore.api import rpc_pb2, rpc_pb2_grpc
from tests import servers
from tests.faultproxy import FaultProxy
from tests.linearizability import Op, check

# Enough keys that each key's history stays short: the checker's search grows fast
# with the writes of unknown outcome that overlap on one key.
KEYS = [f"k{i}" for i in range(30)]


def _client(cid, members, history, lock, stop, seed):
    rng = random.Random(seed)
    chans = [grpc.insecure_channel(m.endpoint) for m in members]
    kvs = [rpc_pb2_grpc.KVStub(c) for c in chans]
    n = 0
    while not stop.is_set():
        kv = rng.choice(kvs)
        key = rng.choice(KEYS)
        kind = rng.choice(["put", "put", "get", "get", "cas", "delete"])
        op = Op(cid, kind, key)
        n += 1
        try:
            op.call = time.monotonic()
            if kind == "put":
                op.arg = f"c{cid}-{n}"
                kv.Put(rpc_pb2.PutRequest(key=key.encode(), value=op.arg.encode()), timeout=1.5)
            elif kind == "delete":
                kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=key.encode()), timeout=1.5)
            elif kind == "get":
                r = kv.Range(rpc_pb2.RangeRequest(key=key.encode()), timeout=1.5)
                op.result = r.kvs[0].value.decode() if r.kvs else None
            else:
                with lock:
                    seen = [o.arg for o in history[-50:] if o.key == key and o.kind == "put"]
                expected = rng.choice(seen) if seen else "none"
                op.arg = (expected, f"c{cid}-{n}")
                r = kv.Txn(rpc_pb2.TxnRequest(
                    compare=[rpc_pb2.Compare(key=key.encode(), target=rpc_pb2.Compare.VALUE,
                                             result=rpc_pb2.Compare.EQUAL,
                                             value=expected.encode())],
                    success=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(
                        key=key.encode(), value=op.arg[1].encode()))]), timeout=1.5)
                op.result = r.succeeded
            op.ret = time.monotonic()
        except grpc.RpcError:
            if kind == "get":
                continue          # a failed read tells nothing
            op.ret = math.inf     # a failed write may or may not have happened
        with lock:
            history.append(op)
    for c in chans:
        c.close()


def _member_ids(members):
    import json
    ids = []
    for m in members:
        rc, out, _ = m.etcdctl("endpoint", "status", "-w", "json")
        ids.append(json.loads(out)[0]["Status"]["header"]["member_id"])
    return ids


def run_rounds(tmp_path, rounds, seed=1):
    rng = random.Random(seed)
    proxy = FaultProxy()
    members = servers.start_cluster_behind_proxy(
        str(tmp_path), proxy, 3, extra=("--heartbeat-interval", "50",
                                        "--election-timeout", "500"))
    history, lock, stop = [], threading.Lock(), threading.Event()
    clients = []
    faults = {}
    try:
        ids = _member_ids(members)
        clients = [threading.Thread(target=_client, args=(c, members, history, lock, stop,
                                                          seed * 100 + c))
                   for c in range(6)]
        for t in clients:
            t.start()
        for _ in range(rounds):
            try:
                leader = ids[members.index(servers.leader_of(members, timeout=5))]
            except TimeoutError:
                leader = rng.choice(ids)
            others = [i for i in ids if i != leader]
            victim = rng.choice(ids)
            fault = rng.choice(["isolate-leader", "isolate-follower", "leader-cannot-send",
                                "leader-cannot-hear", "isolate-random", "none"])
            faults[fault] = faults.get(fault, 0) + 1
            if fault == "isolate-leader":
                for o in others:
                    proxy.block(leader, o)
                    proxy.block(o, leader)
            elif fault == "isolate-follower":
                f = rng.choice(others)
                for o in ids:
                    if o != f:
                        proxy.block(f, o)
                        proxy.block(o, f)
            elif fault == "leader-cannot-send":
                for o in others:
                    proxy.block(leader, o)
            elif fault == "leader-cannot-hear":
                for o in others:
                    proxy.block(o, leader)
            elif fault == "isolate-random":
                for o in ids:
                    if o != victim:
                        proxy.block(victim, o)
                        proxy.block(o, victim)
            time.sleep(rng.uniform(0.2, 1.0))
            proxy.heal()
            time.sleep(rng.uniform(0.1, 0.4))
        time.sleep(1.0)
    finally:
        stop.set()
        for t in clients:
            t.join(30)
        proxy.close()
        for m in members:
            m.stop()
    return history, faults


@pytest.mark.parametrize("seed", [1])
def test_partitions_keep_history_linearizable(tmp_path, seed):
    rounds = int(os.environ.get("KVCORE_LIN_ROUNDS", "20"))
    history, faults = run_rounds(tmp_path, rounds, seed)
    done = [o for o in history if o.ret != math.inf]
    assert len(done) > 100, "too little traffic completed to mean anything"
    bad = check(history)
    print(f"rounds={rounds} faults={faults} ops={len(history)} completed={len(done)} "
          f"unknown={len(history) - len(done)} violations={len(bad)}")
    assert not bad, f"non-linearizable history on keys {bad}"


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_partitions_200_rounds(tmp_path):
    history, faults = run_rounds(tmp_path, 200, seed=7)
    bad = check(history)
    done = sum(1 for o in history if o.ret != math.inf)
    print(f"rounds=200 faults={faults} ops={len(history)} completed={done} "
          f"violations={len(bad)}")
    assert not bad
