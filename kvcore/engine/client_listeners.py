"""The client listening sockets, bound once by the core and inherited by the workers.

Workers used to bind the client port each with SO_REUSEPORT; another process setting
SO_REUSEPORT (a second kvcore started on the same port, e.g. a killed member's
successor) could then bind it too, between the core's check and the workers' bind,
and take a share of the clients. Binding in the core, without SO_REUSEPORT unless
``--socket-reuse-port`` asks for it, makes a second server fail as etcd's does
("listen tcp 127.0.0.1:2379: bind: address already in use"); every worker accepts
on the one listening socket (the fd passed to it), restarted workers included.
"""
from __future__ import annotations

import errno
import os
import socket
from urllib.parse import urlparse

from kvcore.tls import listen_socket


def addresses(urls: list) -> dict:
    """(host, port) -> (serves http, serves https): as etcd, an http and an https URL
    on the same address share one listener."""
    out: dict = {}
    for url in urls:
        u = urlparse(url)
        plain, secure = out.get((u.hostname, u.port), (False, False))
        https = u.scheme in ("https", "unixs")
        out[(u.hostname, u.port)] = (plain or not https, secure or https)
    return out


def _go_error(host: str, port: int, e: OSError) -> str:
    """Go's net.Listen error text, as etcd prints it."""
    text = os.strerror(e.errno).lower() if e.errno else str(e)
    if e.errno == errno.EADDRNOTAVAIL:
        text = "cannot assign requested address"
    hp = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return f"listen tcp {hp}: bind: {text}"


def bind(urls: list, reuse_port: bool) -> dict:
    """Listening sockets for every client address: {(host, port): socket}. A failure
    closes what was bound and exits as etcd."""
    socks: dict = {}
    for host, port in addresses(urls):
        try:
            socks[(host, port)] = listen_socket(host, port, reuse_port=reuse_port)
        except OSError as e:
            for s in socks.values():
                s.close()
            raise SystemExit(f"kvcore: {_go_error(host, port, e)}")
    return socks


def to_args(socks: dict) -> list:
    """What a worker's arguments carry: [[host, port, fd], ...]."""
    return [[host, port, s.fileno()] for (host, port), s in socks.items()]


def from_args(items) -> dict:
    """The worker's side: {(host, port): socket} over the inherited fds."""
    return {(host, port): socket.socket(fileno=fd) for host, port, fd in items or ()}
