"""The proxy's unary calls to the cluster (kvcore.h2client): a request larger than
the upstream's flow-control window, and the member in use killed under load."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import grpc
import pytest

from kvcore.api import rpc_pb2

from tests import servers
from tests.proxy.proxyctl import WAIT, ctl, start_proxy
from tests.proxy.test_grpc_proxy import ELECTION_ERRORS, put_after_election


def get_value(endpoint: str, key: bytes) -> bytes:
    """The key's value read with grpcio, its BDP pings off: etcdctl's transport pings
    while it receives a large response and kvcore's engine answers that with GOAWAY
    too_many_pings, through a proxy or not (a separate matter)."""
    with grpc.insecure_channel(endpoint, options=[("grpc.http2.bdp_probe", 0),
                                                  ("grpc.max_receive_message_length",
                                                   8 << 20)]) as ch:
        rng = ch.unary_unary("/etcdserverpb.KV/Range",
                             request_serializer=rpc_pb2.RangeRequest.SerializeToString,
                             response_deserializer=rpc_pb2.RangeResponse.FromString)
        resp = rng(rpc_pb2.RangeRequest(key=key), timeout=WAIT)
    return resp.kvs[0].value


@pytest.mark.parametrize("kind", ["kvcore", "etcd"])
def test_request_larger_than_the_flow_control_window(stacks, kind):
    """A 1.4 MB put (HTTP/2's windows start at 64 KiB, frames at 16 KiB) and its get."""
    _, _, proxy = stacks[kind]
    value = "0123456789abcdef" * (1_400_000 // 16)
    assert ctl(proxy, "put", "big/k", input=value) == (0, "OK\n", "")
    assert get_value(proxy, b"big/k") == value.encode()


def bench(addr: str, *args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bench", f"--endpoints={addr}",
                             "--no-progress", "--json", "-", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def revision(endpoint: str) -> int:
    rc, out, _ = ctl(endpoint, "get", "none", "-w", "json")
    return json.loads(out)["header"]["revision"] if rc == 0 else 0


def test_member_in_use_killed_under_load(tmp_path):
    """20 clients putting through the proxy while the member it uses is killed: the
    puts in flight at the kill may fail (Unavailable: their outcome is unknown), and
    the cluster's own election errors may show; then clients' puts succeed again."""
    members = servers.start_cluster(str(tmp_path / "c"), 3)
    proxy = None
    try:
        servers.leader_of(members, timeout=90.0)
        proxy, addr = start_proxy("kvcore", str(tmp_path), members)
        direct = f"127.0.0.1:{members[2].port}"
        assert ctl(addr, "put", "k", "v")[0] == 0
        start = revision(direct)
        load = bench(addr, "--conns=5", "--clients=20", "--total=200000",
                     "--max-seconds=15", "put")
        deadline = time.monotonic() + WAIT
        while revision(direct) < start + 500:                 # the load flows
            assert time.monotonic() < deadline and load.poll() is None
            time.sleep(0.1)
        members[0].kill9()
        out, err = load.communicate(timeout=120)
        doc = json.loads(out)
        assert doc["ok"] > 500, err
        for msg in doc["errors"]:
            assert msg.startswith("Unavailable") or any(e in msg for e in ELECTION_ERRORS), msg
        put_after_election(addr, "after", "1")
        out, err = bench(addr, "--conns=2", "--clients=10", "--total=1000",
                         "--max-seconds=60", "put").communicate(timeout=120)
        doc = json.loads(out)
        assert (doc["ok"], doc["errors"]) == (1000, {}), err
    finally:
        if proxy is not None:
            proxy.terminate()
            proxy.wait(10)
        for m in members:
            m.stop()
