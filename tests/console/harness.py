"""What the console tests drive: a member (kvcore serving /ui/ itself, or a real etcd
3.5.1 behind ``kvcore-console``), the real etcdctl 3.5.1, gRPC for bulk loads, and a
headless Chromium through Selenium."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass

import grpc
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait

from bench.servers import free_port
from kvcore.api import rpc_pb2, rpc_pb2_grpc
from tests import etcd351, servers

CHROMIUM = os.environ.get("KVCORE_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("KVCORE_TEST_CHROMEDRIVER", "/usr/bin/chromedriver")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@dataclass
class Target:
    name: str             # "kvcore" or "etcd"
    member: servers.Server
    ui: str               # the console page's URL
    proxy: subprocess.Popen | None = None

    @property
    def grpc_addr(self) -> str:
        return f"127.0.0.1:{self.member.port}"

    def ctl(self, *args, user: str | None = None, input: str | None = None) -> str:
        """Real etcdctl 3.5.1 against the member; fails the test on a non-zero exit."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL_")}
        argv = [etcd351.ETCDCTL, "--endpoints", self.grpc_addr, "--command-timeout=10s"]
        if user:
            argv.append(f"--user={user}")
        p = subprocess.run([*argv, *args], capture_output=True, text=True, timeout=30,
                           env=env, input=input)
        assert p.returncode == 0, f"etcdctl {args}: {p.stderr}"
        return p.stdout

    def put_many(self, pairs, token: str | None = None) -> None:
        """Bulk puts through gRPC, 128 per txn (etcd's default --max-txn-ops)."""
        md = (("token", token),) if token else None
        with grpc.insecure_channel(self.grpc_addr) as ch:
            kv = rpc_pb2_grpc.KVStub(ch)
            for i in range(0, len(pairs), 128):
                ops = [rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=k, value=v))
                       for k, v in pairs[i:i + 128]]
                kv.Txn(rpc_pb2.TxnRequest(success=ops), timeout=30, metadata=md)

    def stop(self) -> None:
        if self.proxy is not None:
            self.proxy.terminate()
            self.proxy.wait(10)
        self.member.stop()


def start_console_proxy(endpoint: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "kvcore.console.proxy", "--endpoints", endpoint,
                             "--listen", f"127.0.0.1:{port}"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    servers.wait_port(port, proc)
    return proc, f"http://127.0.0.1:{port}/ui/"


def start_target(kind: str, base: str) -> Target:
    if kind == "kvcore":
        m = servers.start_kvcore(os.path.join(base, "kv.etcd"))
        return Target(kind, m, f"http://127.0.0.1:{m.port}/ui/")
    m = servers.start_etcd(os.path.join(base, "etcd.etcd"), binary=etcd351.ETCD)
    try:
        proxy, url = start_console_proxy(f"http://127.0.0.1:{m.port}")
    except BaseException:
        m.stop()
        raise
    return Target(kind, m, url, proxy)


def browser(width: int = 1200, height: int = 900) -> webdriver.Chrome:
    os.environ.setdefault("SE_AVOID_STATS", "true")
    o = Options()
    o.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              f"--window-size={width},{height}"):
        o.add_argument(a)
    return webdriver.Chrome(options=o, service=Service(executable_path=CHROMEDRIVER))


def wait(driver, cond, timeout: float = 20.0, what: str = ""):
    """Polls ``cond(driver)`` until it is truthy; a generous deadline for a shared CPU."""
    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(cond, message=what)


def deadline_poll(cond, timeout: float = 20.0, what: str = ""):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError(f"timed out: {what}")
