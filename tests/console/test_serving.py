"""Serving the console: /ui/ on kvcore's client URLs (and --enable-ui=false), and
``kvcore-console`` in front of a real etcd 3.5.1. No browser needed."""
from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request

from kvcore.console import assets
from tests import servers
from tests.console.harness import start_console_proxy, start_target


def get(url: str, data: bytes | None = None):
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_static_files_load_nothing_from_elsewhere():
    names = sorted(os.listdir(assets.STATIC))
    assert "index.html" in names and "app.js" in names
    for n in names:
        text = open(os.path.join(assets.STATIC, n), encoding="utf-8").read()
        assert not re.search(r"https?://", text), f"{n} refers to another site"


def test_kvcore_serves_ui_and_flag_turns_it_off(tmp_path):
    kv = servers.start_kvcore(str(tmp_path / "on.etcd"))
    try:
        base = f"http://127.0.0.1:{kv.port}"
        status, h, body = get(base + "/ui/")
        assert status == 200 and h["Content-Type"].startswith("text/html")
        assert "default-src 'self'" in h["Content-Security-Policy"]
        assert b'src="app.js"' in body
        status, h, _ = get(base + "/ui/keys.js")
        assert status == 200 and h["Content-Type"].startswith("text/javascript")
        assert get(base + "/ui/nope.js")[0] == 404
        assert get(base + "/ui/%2e%2e/setup.py")[0] == 404
        assert get(base + "/ui/../__init__.py")[0] == 404
    finally:
        kv.stop()
    off = servers.start_kvcore(str(tmp_path / "off.etcd"), extra=("--enable-ui=false",))
    try:
        base = f"http://127.0.0.1:{off.port}"
        assert get(base + "/ui/")[0] == 404
        status, _, body = get(base + "/v3/kv/range", b'{"key":"AA=="}')   # gateway still on
        assert status == 200 and "header" in json.loads(body)
    finally:
        off.stop()


def test_console_proxy_in_front_of_etcd(tmp_path):
    t = start_target("etcd", str(tmp_path))
    try:
        base = t.ui[:-len("/ui/")]
        status, h, body = get(t.ui)
        assert status == 200 and b"kvcore console" in body
        t.ctl("put", "/p/k", "v")
        status, _, body = get(base + "/v3/kv/range", json.dumps({"key": "L3Avaw=="}).encode())
        assert status == 200 and json.loads(body)["kvs"][0]["value"] == "dg=="   # "v"
        status, _, body = get(base + "/metrics")
        assert status == 200 and b"etcd_server_has_leader" in body
        assert get(base + "/version")[0] == 404          # only /v3/, /metrics, /health
        assert get(base + "/v2/keys", b"{}")[0] == 404
    finally:
        t.stop()


def test_console_proxy_reports_unreachable_endpoints():
    from bench.servers import free_port
    proc, url = start_console_proxy(f"http://127.0.0.1:{free_port()}")
    try:
        status, _, body = get(url.replace("/ui/", "/v3/kv/range"), b'{"key":"AA=="}')
        assert status == 502 and "no endpoint answered" in json.loads(body)["message"]
    finally:
        proc.terminate()
        proc.wait(10)
