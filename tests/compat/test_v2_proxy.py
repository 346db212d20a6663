"""etcd's v2 proxy (--proxy on|readonly): kvcore and etcd 3.5.1 run as proxies in
front of the same etcd 3.5.1 member and answer the same requests alike (status,
content type, JSON field names): passed through, /v2/config/local/proxy, 501 for
a write through a readonly proxy, 503 with no member reachable; a kvcore proxy
in front of a kvcore cluster learns it from the kvcore peers."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

from tests import servers
from tests.httpraw import call

ETCD351 = "/opt/etcd351/bin/etcd"


def _proxy(kind: str, data_dir: str, initial_cluster: str, *extra) -> servers.Server:
    port = servers.free_port()
    argv = ([sys.executable, "-m", "kvcore"] if kind == "kvcore" else [ETCD351]) + [
        "--data-dir", data_dir, "--listen-client-urls", f"http://127.0.0.1:{port}",
        "--advertise-client-urls", f"http://127.0.0.1:{port}",
        "--initial-cluster", initial_cluster, *extra]
    log_path = data_dir + ".log"
    with open(log_path, "a") as logf:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD_")}
        proc = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT, env=env,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    srv = servers.Server(kind, proc, port, 0, data_dir, argv, log_path, env)
    try:
        servers.wait_port(port, proc)
    except Exception:
        srv.stop()
        raise
    return srv


def _until_endpoints(port: int, want: int) -> list:
    deadline = time.monotonic() + 30
    eps = []
    while time.monotonic() < deadline:
        st, _, body = call(port, "/v2/config/local/proxy", method="GET")
        eps = json.loads(body)["endpoints"] if st == 200 else []
        if len(eps) >= want:
            break
        time.sleep(0.2)
    return eps


def _ask(port: int, reqs) -> list:
    out = []
    for method, path, body, ctype in reqs:
        st, hs, raw = call(port, path, raw=body, method=method,
                           headers={"Content-Type": ctype} if ctype else None)
        doc = raw
        if "json" in hs.get("content-type", "") and raw.strip():
            d = json.loads(raw)
            doc = sorted(d) if isinstance(d, dict) else d
        out.append((method, path, st, hs.get("content-type"), doc))
    return out


REQUESTS = [
    ("GET", "/version", b"", None),
    ("PUT", "/v2/keys/via-proxy", b"value=1", "application/x-www-form-urlencoded"),
    ("GET", "/v2/keys/via-proxy", b"", None),
    ("POST", "/v3/kv/range", b'{"key":"YQ=="}', "application/json"),
    ("GET", "/health", b"", None),
    ("POST", "/v2/config/local/proxy", b"", None),
    ("DELETE", "/v2/keys/via-proxy", b"", None),
]


def test_v2_proxy_matches_etcd(tmp_path):
    member = servers.start_etcd(str(tmp_path / "member.etcd"), binary=ETCD351,
                                extra=("--enable-v2",))
    cluster = f"default=http://127.0.0.1:{member.peer_port}"
    got = {}
    try:
        for kind in ("etcd", "kvcore"):
            for mode in ("on", "readonly"):
                px = _proxy(kind, str(tmp_path / f"{kind}-{mode}.proxy"), cluster,
                            "--proxy", mode)
                try:
                    eps = _until_endpoints(px.port, 1)
                    got[kind, mode] = (eps, _ask(px.port, REQUESTS))
                finally:
                    px.stop()
        dead = {}
        for kind in ("etcd", "kvcore"):
            px = _proxy(kind, str(tmp_path / f"{kind}-dead.proxy"),
                        f"x=http://127.0.0.1:{servers.free_port()}", "--proxy", "on")
            try:
                dead[kind] = _ask(px.port, REQUESTS[:1])
            finally:
                px.stop()
    finally:
        member.stop()
    for mode in ("on", "readonly"):
        kv, et = got["kvcore", mode], got["etcd", mode]
        assert kv[0] == et[0] == [f"http://127.0.0.1:{member.port}"]
        for g, w in zip(kv[1], et[1]):
            assert g == w, f"\nkvcore {g}\netcd   {w}"
    assert [a[2] for a in got["kvcore", "on"][1]] == [200, 201, 200, 200, 200, 405, 200]
    assert [a[2] for a in got["kvcore", "readonly"][1]] == [200, 501, 404, 501, 200, 501, 501]
    assert dead["kvcore"] == dead["etcd"]
    assert dead["kvcore"][0][2] == 503
    # The proxy keeps the peer URLs it learned (etcd's <data-dir>/proxy/cluster).
    with open(tmp_path / "kvcore-on.proxy" / "proxy" / "cluster") as f:
        assert json.load(f) == {"PeerURLs": [f"http://127.0.0.1:{member.peer_port}"]}


def test_v2_proxy_in_front_of_kvcore(tmp_path):
    ms = servers.start_cluster(str(tmp_path / "kv"), n=1, extra=("--enable-v2",))
    try:
        px = _proxy("kvcore", str(tmp_path / "px.proxy"),
                    f"m0=http://127.0.0.1:{ms[0].peer_port}", "--proxy", "on")
        try:
            eps = _until_endpoints(px.port, 1)
            st, _, body = call(px.port, "/v2/keys/k", raw=b"value=v", method="PUT",
                               headers={"Content-Type": "application/x-www-form-urlencoded"})
            # The member's Date is passed on, and none added (Go's proxy: one Date).
            with socket.create_connection(("127.0.0.1", px.port), timeout=10) as c:
                c.sendall(b"GET /v2/keys/k HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = c.recv(65536)
                    if not chunk:
                        break
                    head += chunk
        finally:
            px.stop()
        direct = call(ms[0].port, "/v2/keys/k", method="GET")
    finally:
        ms[0].stop()
    assert eps == [f"http://127.0.0.1:{ms[0].port}"]
    assert st == 201 and json.loads(body)["node"]["value"] == "v"
    assert head.startswith(b"HTTP/1.1 200 ") and head.lower().count(b"\r\ndate: ") == 1
    assert direct[0] == 200 and json.loads(direct[2])["node"]["value"] == "v"
