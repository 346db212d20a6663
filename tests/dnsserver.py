"""A small authoritative DNS server on loopback for --discovery-srv tests (dnslib).

It answers SRV and A records from a table and NXDOMAIN for anything else. It listens
on port 53 of a loopback address of its own (127.x.y.z), so that

- kvcore reaches it through KVCORE_DNS_RESOLVER=<addr>:53 (kvcore/discovery/srv.py);
- real etcd (Go's resolver reads /etc/resolv.conf, always port 53) reaches it when
  run by ``in_private_resolv`` in a private mount namespace whose /etc/resolv.conf is
  a bind mount naming this server; the machine's own resolv.conf is never touched.
"""
from __future__ import annotations

import os
import random
import shlex
import shutil
import tempfile

from dnslib import QTYPE, RCODE, RR, SRV, A
from dnslib.server import BaseResolver, DNSServer


class _Table(BaseResolver):
    def __init__(self, srv: dict, a: dict):
        self.srv = {k.rstrip(".").lower(): v for k, v in srv.items()}
        self.a = {k.rstrip(".").lower(): v for k, v in a.items()}

    def resolve(self, request, handler):
        reply = request.reply()
        qname = str(request.q.qname).rstrip(".").lower()
        qtype = QTYPE[request.q.qtype]
        if qtype == "SRV" and qname in self.srv:
            for prio, weight, port, target in self.srv[qname]:
                reply.add_answer(RR(request.q.qname, QTYPE.SRV, ttl=5,
                                    rdata=SRV(prio, weight, port, target)))
        elif qtype == "A" and qname in self.a:
            reply.add_answer(RR(request.q.qname, QTYPE.A, ttl=5, rdata=A(self.a[qname])))
        elif qname not in self.srv and qname not in self.a:
            reply.header.rcode = RCODE.NXDOMAIN
        return reply


class _Quiet:
    def __getattr__(self, name):
        return lambda *a, **k: None


class LoopbackDNS:
    """``srv``: {"_etcd-server._tcp.example.test": [(prio, weight, port, target)]};
    ``a``: {"host.example.test": "127.0.0.1"}."""

    def __init__(self, srv: dict, a: dict | None = None):
        table = _Table(srv, a or {})
        for _ in range(50):
            self.host = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}." \
                        f"{random.randint(1, 254)}"
            try:
                self.server = DNSServer(table, address=self.host, port=53, logger=_Quiet())
                break
            except OSError:
                continue
        else:
            raise RuntimeError("no free loopback address for the test DNS server")
        self.server.start_thread()
        self.tmp = tempfile.mkdtemp(prefix="kvcore-dns-")
        self.resolv_conf = os.path.join(self.tmp, "resolv.conf")
        with open(self.resolv_conf, "w") as f:
            f.write(f"nameserver {self.host}\noptions attempts:1 timeout:2\n")

    @property
    def address(self) -> str:
        return f"{self.host}:53"

    def in_private_resolv(self, argv: list) -> list:
        """argv run in its own mount namespace where /etc/resolv.conf names this server."""
        cmd = (f"mount --bind {shlex.quote(self.resolv_conf)} /etc/resolv.conf && exec "
               + " ".join(shlex.quote(a) for a in argv))
        return ["unshare", "-m", "--propagation", "private", "sh", "-c", cmd]

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None
            shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def query_srv(address: str, name: str) -> list:
    """The SRV targets the server gives for ``name`` (a self-check for the tests)."""
    import dns.resolver
    host, _, port = address.rpartition(":")
    r = dns.resolver.Resolver(configure=False)
    r.nameservers, r.port = [host], int(port)
    return [(rr.port, rr.target.to_text()) for rr in r.resolve(name, "SRV")]

