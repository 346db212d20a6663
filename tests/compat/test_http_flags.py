"""etcd 3.5.1's HTTP flags, kvcore next to the official build with the same flags:
--host-whitelist (plain HTTP with another Host gets etcd's 421 and its
DNS-rebinding text; gRPC is not concerned) and --enable-grpc-gateway=false (no
/v3/ routes: the "/" mux's 404, the rest still served)."""
from __future__ import annotations

import json

from tests import servers
from tests.httpraw import call

ETCD351 = "/opt/etcd351/bin/etcd"
_SEEN = ("content-type", "x-content-type-options")


def _both(tmp_path, *flags):
    kv = servers.start_kvcore(str(tmp_path / "kv.etcd"), workers=1, extra=flags)
    try:
        et = servers.start_etcd(str(tmp_path / "etcd.etcd"), binary=ETCD351, extra=flags)
    except Exception:
        kv.stop()
        raise
    return kv, et


def _ask(port, requests) -> list:
    out = []
    for method, path, host, body in requests:
        hdrs = {"Host": host.replace("PORT", str(port))} if host else {}
        st, hs, raw = call(port, path, raw=body, method=method, headers=hdrs)
        if "json" in hs.get("content-type", "") and raw.strip():
            raw = sorted(json.loads(raw))      # field names (values differ by server)
        out.append((method, path, host, st, {k: hs.get(k) for k in _SEEN}, raw))
    return out


def test_host_whitelist_matches_etcd(tmp_path):
    kv, et = _both(tmp_path, "--host-whitelist", "allowed.example,127.0.0.1")
    reqs = [("GET", "/health", "allowed.example:PORT", b""),
            ("GET", "/health", "allowed.example", b""),
            ("GET", "/health", "127.0.0.1:PORT", b""),
            ("GET", "/health", "evil.example:PORT", b""),
            ("GET", "/version", "evil.example", b""),
            ("POST", "/v3/kv/range", "evil.example:80", b'{"key":"YQ=="}'),
            ("POST", "/v3/kv/range", "allowed.example", b'{"key":"YQ=="}'),
            ("GET", "/metrics", "[::1]:PORT", b"")]
    try:
        got, want = _ask(kv.port, reqs), _ask(et.port, reqs)
        ctl = [srv.etcdctl("put", "k", "v")[0] for srv in (kv, et)]   # gRPC: any Host
    finally:
        kv.stop()
        et.stop()
    for g, w in zip(got, want):
        assert g == w, f"\nkvcore {g}\netcd   {w}"
    assert [g[3] for g in got] == [200, 200, 200, 421, 421, 421, 200, 421]
    assert b'--host-whitelist "evil.example"' in got[3][5]
    assert ctl == [0, 0]


def test_grpc_gateway_off_matches_etcd(tmp_path):
    kv, et = _both(tmp_path, "--enable-grpc-gateway=false")
    reqs = [("POST", "/v3/kv/range", None, b'{"key":"YQ=="}'),
            ("POST", "/v3beta/kv/range", None, b'{"key":"YQ=="}'),
            ("POST", "/v3/watch", None, b'{"create_request":{"key":"YQ=="}}'),
            ("GET", "/v3/", None, b""),
            ("GET", "/health", None, b""),
            ("GET", "/version", None, b"")]
    try:
        got, want = _ask(kv.port, reqs), _ask(et.port, reqs)
        ctl = [srv.etcdctl("put", "k", "v")[0] for srv in (kv, et)]
    finally:
        kv.stop()
        et.stop()
    for g, w in zip(got, want):
        assert g == w, f"\nkvcore {g}\netcd   {w}"
    assert [g[3] for g in got] == [404, 404, 404, 404, 200, 200]
    assert ctl == [0, 0]


def test_v2v3_flag_is_accepted_with_etcds_deprecation_warnings(tmp_path):
    """--experimental-enable-v2v3 starts both; v2 is served (kvcore from its v2
    store, which an error line says) and both log etcd's deprecation warnings."""
    kv, et = _both(tmp_path, "--enable-v2", "--experimental-enable-v2v3=/v2v3")
    try:
        puts = [call(srv.port, "/v2/keys/foo", raw=b"value=bar", method="PUT",
                     headers={"Content-Type": "application/x-www-form-urlencoded"})[0]
                for srv in (kv, et)]
        logs = [srv.log() for srv in (kv, et)]
    finally:
        kv.stop()
        et.stop()
    assert puts == [201, 201]
    for msg in ("Flag `enable-v2` is deprecated and will get removed in etcd 3.6.",
                "Flag `experimental-enable-v2v3` is deprecated and will get removed in "
                "etcd 3.6."):
        assert msg in logs[0] and msg in logs[1]
    assert "not under the given prefix" in logs[0]
