"""Members bootstrapped by discovery, for the discovery tests: kvcore or real etcd
started with --discovery / --discovery-srv instead of --initial-cluster (so they
are started together and waited for afterwards: each blocks in discovery until the
others have registered), and the zap JSON lines of their logs."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from typing import Optional

from tests import servers
from tests.etcd351 import ETCD as ETCD351
from tests.servers import Server, free_port

ETCD34 = "/usr/bin/etcd"


def member_argv(kind: str, base: str, name: str, client: int, peer: int,
                advertise_host: str = "127.0.0.1", extra: tuple = ()) -> list:
    data_dir = os.path.join(base, f"{name}.etcd")
    head = [sys.executable, "-m", "kvcore"] if kind == "kvcore" else [ETCD351]
    own = ["--workers", "1"] if kind == "kvcore" else []
    return [*head, "--name", name, "--data-dir", data_dir,
            "--listen-client-urls", f"http://127.0.0.1:{client}",
            "--advertise-client-urls", f"http://127.0.0.1:{client}",
            "--listen-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-advertise-peer-urls", f"http://{advertise_host}:{peer}",
            *own, *extra]


def spawn(kind: str, base: str, name: str, extra: tuple, client: Optional[int] = None,
          peer: Optional[int] = None, advertise_host: str = "127.0.0.1",
          wrap=None, env_extra: Optional[dict] = None) -> Server:
    """Start a member without waiting for it (``wrap(argv)`` may wrap the command,
    e.g. into a private mount namespace)."""
    os.makedirs(base, exist_ok=True)
    client, peer = client or free_port(), peer or free_port()
    argv = member_argv(kind, base, name, client, peer, advertise_host, extra)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD_")}
    env.update(env_extra or {})
    log_path = os.path.join(base, f"{name}.log")
    with open(log_path, "a") as logf:
        proc = subprocess.Popen(wrap(argv) if wrap else argv, stdout=logf,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True)
    return Server(kind, proc, client, peer, os.path.join(base, f"{name}.etcd"), argv,
                  log_path, env)


def wait_serving(members: list, timeout: float = 90.0) -> None:
    """Every member answers `endpoint health` (bounded; the log on failure)."""
    deadline = time.monotonic() + timeout
    pending = list(members)
    while pending and time.monotonic() < deadline:
        for m in list(pending):
            if m.proc.poll() is not None:
                raise AssertionError(f"{m.kind} exited with {m.proc.returncode}:\n"
                                     f"{m.log()[-3000:]}")
            rc, _, _ = servers.etcdctl(m.endpoint, "endpoint", "health", timeout=20)
            if rc == 0:
                pending.remove(m)
        time.sleep(0.2)
    if pending:
        raise AssertionError("not serving: " + "\n".join(m.log()[-2000:] for m in pending))


def wait_exit(m: Server, timeout: float = 60.0) -> int:
    try:
        return m.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        m.stop()
        raise AssertionError(f"{m.kind} still running:\n{m.log()[-2000:]}")


def events(m: Server) -> list:
    out = []
    for line in m.log().splitlines():
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if isinstance(ev, dict) and "msg" in ev:
            out.append(ev)
    return out


def wait_event(m: Server, msg: str, count: int = 1, timeout: float = 30.0) -> list:
    """Wait until the log has ``count`` lines with this msg; -> those lines."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [e for e in events(m) if e["msg"] == msg]
        if len(found) >= count:
            return found
        if m.proc.poll() is not None:
            break
        time.sleep(0.1)
    raise AssertionError(f"no {count} x {msg!r} in {m.kind}'s log:\n{m.log()[-3000:]}")


def member_names(endpoint: str) -> list:
    rc, out, err = servers.etcdctl(endpoint, "member", "list", "-w", "json")
    assert rc == 0, err
    return sorted(m.get("name", "") for m in json.loads(out)["members"])


def v2_put(endpoint: str, key: str, value: str) -> None:
    req = urllib.request.Request(f"{endpoint}/v2/keys/{key.lstrip('/')}",
                                 data=f"value={value}".encode(), method="PUT")
    req.add_header("Content-Type", "application/x-www-form-urlencoded")
    with urllib.request.urlopen(req, timeout=10) as r:
        r.read()


def new_token(service: Server, token: str, size: int) -> str:
    """A discovery token of ``size`` on a v2 keys service -> the discovery URL."""
    base = f"http://127.0.0.1:{service.port}"
    v2_put(base, f"_etcd/registry/{token}/_config/size", str(size))
    return f"{base}/v2/keys/_etcd/registry/{token}"


def stop_all(members) -> None:
    for m in members:
        m.stop()


class ForwardProxy:
    """A plain HTTP forward proxy on loopback (absolute-URI requests, one thread per
    connection, long polls included) that counts what it forwarded: the
    --discovery-proxy of the tests."""

    def __init__(self):
        import http.client
        import http.server
        import threading
        from urllib.parse import urlsplit
        outer = self
        self.forwarded: list = []

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self):
                u = urlsplit(self.path)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("proxy-connection", "connection", "host")}
                conn.request(self.command, u.path + (f"?{u.query}" if u.query else ""),
                             body=body or None, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                outer.forwarded.append((self.command, u.path))
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

            do_GET = do_PUT = do_POST = do_DELETE = _forward

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
