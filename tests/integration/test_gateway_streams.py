"""The gateway's streaming routes under load: a lease kept alive through
POST /v3/lease/keepalive holds its key, and a POST /v3/watch stream delivers
every event of many puts, in order (short versions in CI, full ones marked slow)."""
from __future__ import annotations

import base64
import json
import threading
import time

import grpc
import pytest

from kvcore.api import rpc_pb2, rpc_pb2_grpc
from tests import servers
from tests.httpraw import call, request


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


@pytest.fixture(scope="module")
def kv(tmp_path_factory):
    srv = servers.start_kvcore(str(tmp_path_factory.mktemp("gws") / "kv.etcd"), workers=1)
    yield srv
    srv.stop()


def _keepalive_holds(kv, seconds: float, ttl: int) -> None:
    st, _, body = call(kv.port, "/v3/lease/grant", {"TTL": str(ttl)})
    lease = json.loads(body)["ID"]
    call(kv.port, "/v3/kv/put", {"key": _b64(b"held"), "value": _b64(b"x"), "lease": lease})
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        st, hdrs, body = call(kv.port, "/v3/lease/keepalive", raw=json.dumps({"ID": lease}).encode())
        assert st == 200 and hdrs.get("transfer-encoding") == "chunked"
        assert json.loads(body)["result"]["TTL"] == str(ttl)
        time.sleep(ttl / 3)
    st, _, body = call(kv.port, "/v3/kv/range", {"key": _b64(b"held")})
    assert json.loads(body).get("count") == "1", "the kept-alive lease let its key go"
    st, _, body = call(kv.port, "/v3/lease/timetolive", {"ID": lease})
    assert int(json.loads(body)["TTL"]) > 0


def test_keepalive_through_the_gateway_holds_the_key(kv):
    _keepalive_holds(kv, seconds=6, ttl=2)


@pytest.mark.slow
def test_keepalive_through_the_gateway_holds_the_key_60s(kv):
    _keepalive_holds(kv, seconds=60, ttl=5)


def _watch_sees_every_put(kv, n: int) -> None:
    key = f"w{n}".encode()
    r = request(kv.port, "POST", "/v3/watch",
                json.dumps({"create_request": {"key": _b64(key)}}).encode(), timeout=300)
    try:
        first = json.loads(r.chunk())
        assert first["result"]["created"] is True

        def put_all():
            with grpc.insecure_channel(f"127.0.0.1:{kv.port}") as ch:
                stub = rpc_pb2_grpc.KVStub(ch)
                futs = []
                for i in range(n):
                    futs.append(stub.Put.future(rpc_pb2.PutRequest(key=key, value=b"%d" % i),
                                                timeout=60))
                    if len(futs) >= 64:
                        futs.pop(0).result()
                for f in futs:
                    f.result()
        t = threading.Thread(target=put_all)
        t.start()
        seen, revs = [], []
        while len(seen) < n:
            c = r.chunk()
            assert c is not None, "the watch stream ended"
            for ev in json.loads(c)["result"].get("events", []):
                seen.append(int(base64.b64decode(ev["kv"]["value"])))
                revs.append(int(ev["kv"]["mod_revision"]))
        t.join(60)
        # Every put once, in revision order (puts overlap, so revisions order them).
        assert sorted(seen) == list(range(n))
        assert revs == sorted(set(revs))
    finally:
        r.close()


def test_watch_stream_delivers_every_put(kv):
    _watch_sees_every_put(kv, 1000)


@pytest.mark.slow
def test_watch_stream_delivers_every_put_10000(kv):
    _watch_sees_every_put(kv, 10000)
