"""etcd's v2 discovery protocol (etcd 3.4/3.5 server/etcdserver/api/v2discovery), as a
client of a discovery service that speaks the v2 keys API (etcd ``--enable-v2`` or
kvcore ``--enable-v2``).

The discovery URL is ``<endpoint><token path>``; the token path is used as a v2 key
as it stands (``/v2/keys/_etcd/registry/<token>``, etcd's client has an empty key
prefix). The steps, as etcd takes them:

1. read ``<token>/_config/size`` and the token's entries: already ``size`` others
   registered before this member -> "cluster is full" (nothing is registered);
2. create ``<token>/<member id hex>`` with ``prevExist=false`` holding this member's
   ``name=peerURL,...``; it exists already -> "found duplicate id";
3. read the entries again and watch the token (``wait=true&waitIndex=``) until
   ``size`` are there; the first ``size`` by creation index make the cluster.

A discovery service that cannot be reached is retried forever with etcd's backoff
(2s, 4s, ... 256s), logging each attempt, as etcd does; every other failure ends the
bootstrap with etcd's error text.
"""
from __future__ import annotations

import http.client
import json
import logging
import socket
import time
from typing import Callable, Optional
from urllib.parse import quote, urlsplit

from kvcore import logs

log = logging.getLogger("kvcore.discovery")

ERR_INVALID_URL = "discovery: invalid URL"
ERR_BAD_SIZE_KEY = "discovery: size key is bad"
ERR_SIZE_NOT_FOUND = "discovery: size key not found"
ERR_DUPLICATE_ID = "discovery: found duplicate id"
ERR_DUPLICATE_NAME = "discovery: found duplicate name"
ERR_FULL_CLUSTER = "discovery: cluster is full"
ERR_TOO_MANY_RETRIES = "discovery: too many retries"
ERR_BAD_ENDPOINT = "discovery: bad discovery endpoint"
# etcd's v2 client, on a body that is not a keys-API answer
ERR_INVALID_JSON = ("client: response is invalid json. The endpoint is probably not valid "
                    "etcd cluster endpoint.")

N_RETRIES = 2 ** 32 - 1      # etcd: math.MaxUint32, i.e. for ever
MAX_EXP_RETRIES = 8          # backoff 2^retries seconds, at most 256 s
REQUEST_TIMEOUT = 5.0        # etcd's client.DefaultRequestTimeout
DIAL_TIMEOUT = 30.0
NODE_EXIST = 105


class Failed(Exception):
    """A discovery failure that ends the bootstrap; str() is etcd's error text."""


class ClusterError(Exception):
    """etcd's client.ClusterError: no endpoint answered (retried with backoff)."""

    def __init__(self, detail: str):
        super().__init__(f"client: etcd cluster is unavailable or misconfigured; {detail}")
        self.detail = detail


class KeysError(Failed):
    """A v2 keys error answer (etcd's client.Error)."""

    def __init__(self, body: dict):
        self.code = body.get("errorCode", 0)
        super().__init__(f"{self.code}: {body.get('message', '')} ({body.get('cause', '')}) "
                         f"[{body.get('index', 0)}]")


class Node:
    def __init__(self, d: dict):
        self.key = d.get("key", "")
        self.value = d.get("value", "")
        self.created_index = int(d.get("createdIndex", 0))
        self.modified_index = int(d.get("modifiedIndex", 0))
        self.nodes = [Node(n) for n in d.get("nodes", []) or []]

    @property
    def base(self) -> str:
        return self.key.rstrip("/").rsplit("/", 1)[-1]


def _base(key: str) -> str:
    return key.rstrip("/").rsplit("/", 1)[-1]


def _go_dial_error(host: str, port: int, e: OSError) -> str:
    """Go's net error text for a failed dial (what etcd logs)."""
    if isinstance(e, socket.gaierror):
        return f"dial tcp: lookup {host}: no such host"
    if isinstance(e, ConnectionRefusedError):
        return f"dial tcp {host}:{port}: connect: connection refused"
    if isinstance(e, (socket.timeout, TimeoutError)):
        return f"dial tcp {host}:{port}: i/o timeout"
    return f"dial tcp {host}:{port}: {(e.strerror or str(e)).lower()}"


class KeysClient:
    """The few v2 keys calls discovery makes, over plain HTTP(S), optionally through
    an HTTP proxy (--discovery-proxy) as Go's http.ProxyURL does."""

    def __init__(self, endpoint: str, proxy: Optional[str] = None):
        self.endpoint = endpoint
        u = urlsplit(endpoint)
        self.scheme, self.host, self.port = u.scheme, u.hostname or "", u.port
        if self.port is None:
            self.port = 443 if self.scheme == "https" else 80
        self.proxy = urlsplit(proxy) if proxy else None

    def _conn(self, timeout: Optional[float]) -> http.client.HTTPConnection:
        if self.scheme not in ("http", "https"):
            raise ClusterError(f'error #0: unsupported protocol scheme "{self.scheme}"\n')
        cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        if self.proxy is None:
            return cls(self.host, self.port, timeout=timeout)
        p = self.proxy
        if self.scheme == "https":
            c = cls(p.hostname, p.port or 80, timeout=timeout)
            c.set_tunnel(self.host, self.port)
            return c
        return http.client.HTTPConnection(p.hostname, p.port or 80, timeout=timeout)

    def _do(self, method: str, key: str, query: str, body: Optional[str] = None,
            timeout: Optional[float] = REQUEST_TIMEOUT) -> tuple[dict, int]:
        """-> (JSON answer, X-Etcd-Index); raises ClusterError / KeysError / Failed."""
        path = quote(key, safe="/") + ("?" + query if query else "")
        url = path if self.proxy is None or self.scheme == "https" else \
            f"{self.scheme}://{self.host}:{self.port}{path}"
        conn = self._conn(DIAL_TIMEOUT)
        headers = {}
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            try:
                conn.connect()
            except OSError as e:
                where = (self.proxy.hostname, self.proxy.port or 80) if self.proxy else \
                    (self.host, self.port)
                text = _go_dial_error(where[0], where[1], e)
                if self.proxy:
                    text = "proxyconnect tcp: " + text
                raise ClusterError(f"error #0: {text}\n")
            if conn.sock is not None:
                conn.sock.settimeout(timeout)
            try:
                conn.request(method, url, body=body, headers=headers)
                resp = conn.getresponse()
                raw = resp.read()
            except OSError as e:
                raise ClusterError(f"error #0: {method} {self.endpoint}{path}: "
                                   f"{(getattr(e, 'strerror', None) or str(e)).lower()}\n")
            except http.client.HTTPException as e:
                raise ClusterError(f"error #0: {method} {self.endpoint}{path}: {e}\n")
        finally:
            conn.close()
        if resp.status // 100 == 5:
            what = "has no leader" if resp.status in (500, 503) else \
                f"returns server error [{resp.reason}]"
            raise ClusterError(f"error #0: client: etcd member {self.endpoint} {what}\n")
        try:
            doc = json.loads(raw)
            if not isinstance(doc, dict):
                raise ValueError
        except ValueError:
            raise Failed(ERR_INVALID_JSON)
        if resp.status not in (200, 201):
            raise KeysError(doc)
        if not raw:
            raise Failed("client: response body is empty")
        try:
            index = int(resp.getheader("X-Etcd-Index") or 0)
        except ValueError:
            index = 0
        return doc, index

    def get(self, key: str) -> tuple[Node, int]:
        doc, index = self._do("GET", key, "quorum=false&recursive=false&sorted=false")
        return Node(doc.get("node") or {}), index

    def create(self, key: str, value: str) -> Node:
        doc, _ = self._do("PUT", key, "prevExist=false", body="value=" + quote(value, safe=""))
        return Node(doc.get("node") or {})

    def watch_next(self, key: str, after_index: int, recursive: bool) -> Node:
        q = f"wait=true&waitIndex={after_index + 1}" + ("&recursive=true" if recursive else "")
        doc, _ = self._do("GET", key, q, timeout=None)
        return Node(doc.get("node") or {})


def parse_urls_map(s: str) -> dict[str, list[str]]:
    """etcd's types.NewURLsMap: name=url,name=url,... (raises ValueError)."""
    from kvcore.config import goflags
    out: dict[str, list[str]] = {}
    for item in s.split(","):
        name, eq, url = item.partition("=")
        if not eq:
            raise ValueError(f"invalid urls map entry {item!r}")
        goflags.check_url(url)
        out.setdefault(name, []).append(url)
    return out


class Discovery:
    """One member's run of the protocol (etcd's discovery struct)."""

    def __init__(self, durl: str, proxy: str, member_id: int,
                 sleep: Callable[[float], None] = time.sleep):
        u = urlsplit(durl)
        self.durl = durl
        self.token = u.path
        self.url = f"{u.scheme}://{u.netloc}" if u.scheme or u.netloc else ""
        self.id = member_id
        self.retries = 0
        self.sleep = sleep
        proxy_url = _proxy_url(proxy)
        if proxy_url:
            log.info("running proxy with discovery", extra=logs.fields(proxy_url=proxy_url))
        self.client = KeysClient(self.url, proxy_url)

    @property
    def self_key(self) -> str:
        return _join(self.token, f"{self.id:x}")

    def join_cluster(self, config: str) -> str:
        self.check_cluster()                    # fast path: a full cluster, nothing written
        self.create_self(config)
        nodes, size, index = self.check_cluster()
        return nodes_to_cluster(self.wait_nodes(nodes, size, index), size)

    def create_self(self, contents: str) -> None:
        try:
            node = self.client.create(self.self_key, contents)
        except KeysError as e:
            if e.code == NODE_EXIST:
                raise Failed(ERR_DUPLICATE_ID)
            raise
        except ClusterError as e:
            raise Failed(str(e))
        # ensure self appears on the server we talked to
        try:
            self.client.watch_next(self.self_key, node.created_index - 1, False)
        except ClusterError as e:
            raise Failed(str(e))

    def check_cluster(self) -> tuple[list, int, int]:
        config_key = _join(self.token, "_config")
        size_key = _join(config_key, "size")
        try:
            size_node, _ = self.client.get(size_key)
        except ClusterError as e:
            self._warn_get(size_key, e)
            return self._check_retry()
        except Failed as e:
            # etcd 3.5 maps an invalid body to ErrBadDiscoveryEndpoint; its test for a
            # missing key never matches (a type slip), so the raw "100: Key not found"
            # error is what etcd reports: so does kvcore.
            if str(e) == ERR_INVALID_JSON:
                raise Failed(ERR_BAD_ENDPOINT)
            raise
        try:
            text = size_node.value
            if not text.isdigit():
                raise ValueError
            size = int(text, 10)
        except ValueError:
            raise Failed(ERR_BAD_SIZE_KEY)
        try:
            token_node, index = self.client.get(self.token)
        except ClusterError as e:
            self._warn_get(self.token, e)
            return self._check_retry()
        nodes = sorted((n for n in token_node.nodes if n.base != _base(config_key)),
                       key=lambda n: n.created_index)
        limit = size - 1 if size > 0 else 2 ** 64 - 1    # uint64 arithmetic, as etcd
        me = _base(self.self_key)
        for i, n in enumerate(nodes):
            if n.base == me:
                break
            if i >= limit:
                self.full = (nodes[:size], size)
                raise Failed(ERR_FULL_CLUSTER)
        return nodes, size, index

    def _warn_get(self, path: str, e: ClusterError) -> None:
        log.warning("failed to get from discovery server", extra=logs.fields(
            discovery_url=self.url, path=path, error=str(e), err_detail=e.detail))

    def _backoff(self, step: str) -> None:
        self.retries += 1
        secs = 1 << min(self.retries, MAX_EXP_RETRIES)
        log.info("retry connecting to discovery service", extra=logs.fields(
            url=self.url, reason=step, backoff=f"{secs}s"))
        self.sleep(secs)

    def _check_retry(self) -> tuple[list, int, int]:
        if self.retries < N_RETRIES:
            self._backoff("cluster status check")
            return self.check_cluster()
        raise Failed(ERR_TOO_MANY_RETRIES)

    def wait_nodes(self, nodes: list, size: int, index: int) -> list:
        nodes = nodes[:size]
        found = list(nodes)
        me = _base(self.self_key)
        for n in found:
            if n.base == me:
                log.info("found self from discovery server",
                         extra=logs.fields(discovery_url=self.url, self=me))
            else:
                log.info("found peer from discovery server",
                         extra=logs.fields(discovery_url=self.url, peer=n.base))
        after = index
        while len(found) < size:
            log.info("found peers from discovery server; waiting for more", extra=logs.fields(
                discovery_url=self.url, found_peers=len(found), needed_peers=size - len(found)))
            try:
                node = self.client.watch_next(self.token, after, True)
            except ClusterError as e:
                log.warning("error while waiting for peers", extra=logs.fields(
                    discovery_url=self.url, error=str(e), err_detail=e.detail))
                if self.retries >= N_RETRIES:
                    raise Failed(ERR_TOO_MANY_RETRIES)
                self._backoff("waiting for other nodes")
                nodes, size, index = self.check_cluster()
                return self.wait_nodes(nodes, size, index)
            after = node.modified_index
            log.info("found peer from discovery server",
                     extra=logs.fields(discovery_url=self.url, peer=node.base))
            found.append(node)
        log.info("found all needed peers from discovery server",
                 extra=logs.fields(discovery_url=self.url, found_peers=len(found)))
        return found


def get_cluster(durl: str, proxy: str) -> str:
    """etcd's GetCluster (a v2 proxy's start): the cluster of a token, full or not,
    without registering."""
    d = Discovery(durl, proxy, 0)
    try:
        nodes, size, index = d.check_cluster()
    except Failed as e:
        if str(e) == ERR_FULL_CLUSTER:
            return nodes_to_cluster(*d.full)
        raise
    return nodes_to_cluster(d.wait_nodes(nodes, size, index), size)


def nodes_to_cluster(nodes: list, size: int) -> str:
    s = ",".join(n.value for n in nodes)
    try:
        m = parse_urls_map(s)
    except ValueError:
        raise Failed(ERR_INVALID_URL)
    if len(m) != size:
        raise Failed(ERR_DUPLICATE_NAME)
    return s


def _join(*parts: str) -> str:
    """Go's path.Join("/", ...): cleaned, rooted."""
    import posixpath
    return posixpath.normpath("/" + "/".join(p for p in parts if p)).replace("//", "/")


def _proxy_url(proxy: str) -> str:
    """etcd's newProxyFunc: a proxy without an http(s) scheme gets "http://"."""
    if not proxy:
        return ""
    u = urlsplit(proxy)
    if not u.scheme.startswith("http"):
        return "http://" + proxy
    return proxy
