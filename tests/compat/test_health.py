"""/health against the official etcd 3.5.1 in the same scenario, on the client URL
and on --listen-metrics-urls: a healthy cluster, a member left without quorum
(2 of 3 stopped), and the NOSPACE alarm. Status code, content type and body must
be etcd's. /livez and /readyz (etcd 3.6's, absent from 3.5.1) are checked on
their own."""
from __future__ import annotations

import os
import ssl
import time
import urllib.error
import urllib.request

import pytest

from tests import promscrape, servers
from bench.servers import free_port

PATHS = ("/health", "/health?serializable=true")


def _answers(client_port: int, metrics_port: int, path: str) -> list:
    out = []
    for port in (client_port, metrics_port):
        status, ctype, body = promscrape.get(f"http://127.0.0.1:{port}{path}", timeout=20)
        out.append((status, ctype, body.decode()))
    return out


def _metrics_flags(n: int) -> tuple[list[int], dict]:
    ports = [free_port() for _ in range(n)]
    return ports, {i: ("--listen-metrics-urls", f"http://127.0.0.1:{p}") for i, p in enumerate(ports)}


def _until(fn, want, timeout: float = 45.0):
    """Polls fn() until want(result); -> the last result (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        got = fn()
        if want(got) or time.monotonic() > deadline:
            return got
        time.sleep(0.3)


def test_health_without_quorum_matches_etcd_351(tmp_path):
    kv_mports, kv_extra = _metrics_flags(3)
    et_mports, et_extra = _metrics_flags(3)
    kvs = servers.start_cluster(os.path.join(str(tmp_path), "kv"), n=3, member_extra=kv_extra)
    try:
        ets = servers.start_etcd_cluster(os.path.join(str(tmp_path), "etcd"), n=3, member_extra=et_extra)
        try:
            for path in PATHS:
                want = _answers(ets[0].port, et_mports[0], path)
                assert want[0][0] == 200, want
                assert _answers(kvs[0].port, kv_mports[0], path) == want
            for s in kvs[1:] + ets[1:]:
                s.stop()
            # etcd's answer once its member has noticed it lost quorum...
            etcd_down = _until(lambda: _answers(ets[0].port, et_mports[0], "/health"),
                               lambda a: "RAFT NO LEADER" in a[0][2])
            assert etcd_down[0][0] == 503, etcd_down
            # ...is kvcore's, on both URLs and with ?serializable=true (ignored by 3.5.1).
            got = _until(lambda: _answers(kvs[0].port, kv_mports[0], "/health"),
                         lambda a: a == etcd_down)
            assert got == etcd_down
            assert _answers(kvs[0].port, kv_mports[0], PATHS[1]) == \
                _answers(ets[0].port, et_mports[0], PATHS[1])
            # etcd 3.6's probes: alive (a local read works), not ready (no linearizable read).
            status, _, body = promscrape.get(f"http://127.0.0.1:{kv_mports[0]}/livez")
            assert (status, body) == (200, b"ok\n")
            status, _, body = promscrape.get(f"http://127.0.0.1:{kvs[0].port}/readyz", timeout=30)
            assert status == 503 and b"[-]linearizable_read failed: " in body, body
            assert b"[+]serializable_read ok\n" in body and body.endswith(b"\n\n"), body
            status, _, body = promscrape.get(
                f"http://127.0.0.1:{kvs[0].port}/readyz?exclude=linearizable_read&verbose")
            assert status == 200 and body.endswith(b"[+]non_learner ok\nok\n"), body
            text = promscrape.scrape(f"http://127.0.0.1:{kv_mports[0]}")
            assert promscrape.value(text, "etcd_server_health_failures") >= 1
            assert promscrape.value(text, "etcd_server_has_leader") == 0
        finally:
            for s in ets:
                s.stop()
    finally:
        for s in kvs:
            s.stop()


def _post(url: str):
    req = urllib.request.Request(url, data=b"", method="POST")
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            return r.status, r.headers.get("Allow"), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Allow"), e.read()


def _fill_until_nospace(srv) -> str:
    blob = "x" * 100_000
    for i in range(200):
        rc, _, err = srv.etcdctl("put", f"big{i}", input=blob)
        if rc != 0:
            return err
    return "never refused"


def test_health_with_nospace_matches_etcd_351(tmp_path):
    quota = ("--quota-backend-bytes", str(2 * 1024 * 1024))
    kv_m, et_m = free_port(), free_port()
    kv = servers.start_kvcore(os.path.join(str(tmp_path), "kv.etcd"), workers=2,
                              extra=quota + ("--listen-metrics-urls", f"http://127.0.0.1:{kv_m}"))
    try:
        et = servers.start_etcd(os.path.join(str(tmp_path), "etcd.etcd"), binary=servers.ETCD351,
                                extra=quota + ("--listen-metrics-urls", f"http://127.0.0.1:{et_m}"))
        try:
            assert "database space exceeded" in _fill_until_nospace(et)
            assert "database space exceeded" in _fill_until_nospace(kv)
            for path in PATHS + ("/health?exclude=NOSPACE", "/health?exclude=CORRUPT"):
                want = _answers(et.port, et_m, path)
                assert _answers(kv.port, kv_m, path) == want, path
            assert want[0][:2] == (503, "text/plain; charset=utf-8")
            assert want[0][2] == '{"health":"false","reason":"ALARM NOSPACE"}\n'
            # A POST is refused as etcd refuses it.
            posts = [_post(f"http://127.0.0.1:{p}/health") for p in (et.port, kv.port, kv_m)]
            assert posts[0][0] == 405 and posts[1:] == [posts[0]] * 2, posts
            status, _, body = promscrape.get(f"http://127.0.0.1:{kv_m}/readyz?verbose")
            assert status == 200, body   # NOSPACE is not data corruption
        finally:
            et.stop()
    finally:
        kv.stop()


def test_https_metrics_url_serves_health_and_metrics_with_client_tls(tmp_path):
    """An https metrics URL uses the client TLS files (etcd's serveMetrics); a
    plain one next to it stays plain."""
    from tests.tlscerts import make_pki
    pki = make_pki(str(tmp_path / "pki"))
    secure, plain = free_port(), free_port()
    kv = servers.start_kvcore(
        os.path.join(str(tmp_path), "kv.etcd"), scheme="https", ctl_args=("--cacert", pki.ca),
        extra=("--cert-file", pki.server_cert, "--key-file", pki.server_key,
               "--listen-metrics-urls", f"https://127.0.0.1:{secure},http://127.0.0.1:{plain}"))
    try:
        ctx = ssl.create_default_context(cafile=pki.ca)
        status, _, body = promscrape.get(f"https://127.0.0.1:{secure}/health", context=ctx)
        assert (status, body) == (200, b'{"health":"true","reason":""}')
        status, ctype, body = promscrape.get(f"https://127.0.0.1:{secure}/metrics", context=ctx)
        assert status == 200 and b"etcd_server_has_leader 1.0" in body, body[:200]
        assert ctype == "text/plain; version=0.0.4; charset=utf-8"
        assert promscrape.get(f"http://127.0.0.1:{plain}/health")[0] == 200
        with pytest.raises(Exception):   # no TLS on the https URL: refused
            promscrape.get(f"http://127.0.0.1:{secure}/health", timeout=5)
    finally:
        kv.stop()
