"""--discovery-srv: the initial cluster from DNS SRV records, as etcd 3.5 builds it
(embed.Config.GetDNSClusterNames and client/pkg/srv.GetCluster).

``_etcd-server-ssl[-<srv-name>]._tcp.<domain>`` gives https peer URLs and
``_etcd-server[-<srv-name>]._tcp.<domain>`` http ones; both are looked up and the
results joined. Each record's target is resolved and compared with this member's
resolved --initial-advertise-peer-urls: the one that matches takes this member's
name, the others are named "0", "1", ... in record order. The URLs keep the record's
host name (without its trailing dot).

The resolver: the system's (/etc/resolv.conf), or the one named by the environment
variable ``KVCORE_DNS_RESOLVER`` (``host:port``, e.g. ``127.0.0.1:5353``) for the SRV
lookups and the A/AAAA lookups of the record targets. As Go's resolver, /etc/hosts
is read first (so localhost works without a DNS record).
"""
from __future__ import annotations

import logging
import os
import socket
from urllib.parse import urlsplit

import dns.exception
import dns.resolver

from kvcore import logs

log = logging.getLogger("kvcore.discovery")

RESOLVER_ENV = "KVCORE_DNS_RESOLVER"


class SrvError(Exception):
    pass


def _resolver() -> tuple[dns.resolver.Resolver, str]:
    """-> (resolver, "host:port" as Go names its server in errors)."""
    where = os.environ.get(RESOLVER_ENV, "")
    if where:
        host, _, port = where.rpartition(":")
        r = dns.resolver.Resolver(configure=False)
        r.nameservers = [host.strip("[]")]
        r.port = int(port)
    else:
        r = dns.resolver.Resolver()
        where = f"{r.nameservers[0]}:{r.port}" if r.nameservers else "127.0.0.1:53"
    r.lifetime = 5.0
    return r, where


def _lookup_srv(service: str, domain: str) -> list:
    """Go's net.LookupSRV(service, "tcp", domain): records by priority, then weight."""
    name = f"_{service}._tcp.{domain}"
    r, where = _resolver()
    try:
        ans = r.resolve(name, "SRV")
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        raise SrvError(f"lookup {name} on {where}: no such host")
    except dns.resolver.NoNameservers:
        raise SrvError(f"lookup {name} on {where}: server misbehaving")
    except dns.exception.Timeout:
        raise SrvError(f"lookup {name} on {where}: i/o timeout")
    return sorted(ans, key=lambda rr: (rr.priority, -rr.weight))


def _resolve_tcp(host: str, port: int) -> str:
    """Go's net.ResolveTCPAddr: "ip:port" of the first address."""
    shown, host = host, host.rstrip(".")
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
        return _join(host, port)
    except OSError:
        pass
    hosts = _hosts_file(host)
    if hosts:
        return _join(hosts, port)
    if os.environ.get(RESOLVER_ENV):
        r, where = _resolver()
        for rtype in ("A", "AAAA"):
            try:
                return _join(r.resolve(host + ".", rtype)[0].to_text(), port)
            except dns.exception.DNSException:
                continue
        raise SrvError(f"lookup {shown} on {where}: no such host")
    try:
        info = socket.getaddrinfo(host, port, socket.AF_UNSPEC, socket.SOCK_STREAM)
    except socket.gaierror:
        _, where = _resolver()
        raise SrvError(f"lookup {shown} on {where}: no such host")
    info.sort(key=lambda i: i[0] != socket.AF_INET)   # Go prefers IPv4
    return _join(info[0][4][0], port)


def _hosts_file(host: str, path: str = "/etc/hosts") -> str:
    """The first address /etc/hosts gives the name ("" if none), IPv4 first as Go."""
    found = []
    try:
        with open(path) as f:
            for line in f:
                fields = line.split("#", 1)[0].split()
                if len(fields) > 1 and host.lower() in (n.lower() for n in fields[1:]):
                    found.append(fields[0])
    except OSError:
        return ""
    found.sort(key=lambda a: ":" in a)
    return found[0] if found else ""


def _join(host: str, port) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def get_cluster(scheme: str, service: str, name: str, domain: str, apurls: list) -> list:
    """etcd's srv.GetCluster -> ["name=scheme://host:port", ...]; raises SrvError."""
    tcp2ap = {}
    for u in apurls:
        p = urlsplit(u)
        tcp2ap[_resolve_tcp(p.hostname or "", p.port or 0)] = u
    parts: list = []
    temp_name = 0
    err = None
    try:
        records = _lookup_srv(service, domain)
    except SrvError as e:
        raise SrvError(f"error querying DNS SRV records for _{service} {e}")
    for rr in records:
        target = rr.target.to_text()
        try:
            addr = _resolve_tcp(target, rr.port)
        except SrvError as e:
            err = e
            continue
        url = tcp2ap.get(addr)
        n = name if url else ""
        if not n:
            n = str(temp_name)
            temp_name += 1
        url_host = _join(target.rstrip("."), rr.port)
        if url and urlsplit(url).scheme != scheme:
            err = SrvError(f"bootstrap at {scheme}://{url_host} from DNS for {service} has "
                               f"scheme mismatch with expected peer {url}")
        else:
            parts.append(f"{n}={scheme}://{url_host}")
    if not parts and err is not None:
        raise SrvError(f"error querying DNS SRV records for _{service} {err}")
    return parts


def cluster_names(cfg) -> tuple[list, str]:
    """etcd's GetDNSClusterNames -> (entries, [error texts of the failed lookups])."""
    suffix = "-" + cfg.discovery_srv_name if cfg.discovery_srv_name else ""
    errors = []
    found: list = []
    for scheme, service in (("https", "etcd-server-ssl" + suffix),
                            ("http", "etcd-server" + suffix)):
        err = ""
        try:
            found = found + get_cluster(scheme, service, cfg.name, cfg.discovery_srv,
                                        cfg.initial_advertise_peer_urls)
        except SrvError as e:
            err = str(e)
            errors.append(err)
        base = "etcd-server-ssl" if scheme == "https" else "etcd-server"
        log.info(f"get cluster for {base} SRV",
                 extra=logs.fields(service_scheme=scheme, service_name=service,
                                   server_name=cfg.name, discovery_srv=cfg.discovery_srv,
                                   advertise_peer_urls=cfg.initial_advertise_peer_urls,
                                   found_cluster=found, **({"error": err} if err else {})))
    return found, errors


def _resolve_url(u: str) -> str:
    """etcd's netutil.resolveURL: a host name (not localhost, not an IP) -> ip:port."""
    p = urlsplit(u)
    host = p.hostname or ""
    if host == "localhost":
        return u
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
        return u
    except OSError:
        pass
    try:
        return p._replace(netloc=_resolve_tcp(host, p.port or 0)).geturl()
    except SrvError as e:
        raise SrvError(f'failed to resolve "{u}" ({e.args[0].split(": ", 1)[-1]})')


def _go_q(items: list) -> str:
    return "[" + " ".join(f'"{s}"' for s in items) + "]"


def advertise_mismatch(name: str, apurls: list, cluster_urls: list) -> str:
    """etcd's ServerConfig.advertiseMatchesCluster: "" when this member's URLs in the
    cluster resolve to its --initial-advertise-peer-urls, else etcd's error."""
    a, b = sorted(apurls), sorted(cluster_urls)
    err = ""
    if len(a) != len(b):
        err = f"len({_go_q(a)}) != len({_go_q(b)})"
    else:
        try:
            ra, rb = sorted(_resolve_url(u) for u in a), sorted(_resolve_url(u) for u in b)
            for i in range(len(ra)):
                if ra[i] != rb[i]:
                    err = (f'"{ra[i]}"(resolved from "{a[i]}") != '
                           f'"{rb[i]}"(resolved from "{b[i]}")')
                    break
        except SrvError as e:
            err = str(e)
    if not err:
        return ""
    missing = [f"{name}={u}" for u in cluster_urls if u not in apurls]
    if missing:
        return (f"--initial-cluster has {','.join(missing)} but missing from "
                f"--initial-advertise-peer-urls={','.join(a)} ({err})")
    own = ",".join(f"{name}={u}" for u in sorted(apurls))
    extra = [u for u in apurls if u not in cluster_urls]
    if extra:
        return (f"--initial-advertise-peer-urls has {','.join(extra)} but missing from "
                f"--initial-cluster={own}")
    return f"failed to resolve {','.join(a)} to match --initial-cluster={own} ({err})"
