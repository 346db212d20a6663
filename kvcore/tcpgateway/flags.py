"""``etcd gateway start`` flags (etcdmain/gateway.go), parsed as pflag does."""
from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from kvcore.config import goflags


class GatewayFlagError(Exception):
    """A flag error; cobra prints ``Error: <msg>`` and exits 1."""


@dataclass
class GatewayConfig:
    listen_addr: str = "127.0.0.1:23790"
    endpoints: list = field(default_factory=lambda: ["127.0.0.1:2379"])
    discovery_srv: str = ""
    discovery_srv_name: str = ""
    insecure_discovery: bool = False
    trusted_ca_file: str = ""
    retry_delay: float = 60.0        # seconds an endpoint that refused stays out


def _strings(v: str) -> list:
    return [s for s in v.split(",") if s]


_FLAGS = {
    "listen-addr": ("listen_addr", str),
    "endpoints": ("endpoints", _strings),
    "discovery-srv": ("discovery_srv", str),
    "discovery-srv-name": ("discovery_srv_name", str),
    "insecure-discovery": ("insecure_discovery", goflags.parse_bool),
    "trusted-ca-file": ("trusted_ca_file", str),
    "retry-delay": ("retry_delay", goflags.parse_duration),
}
_BOOL = {"insecure-discovery"}


def parse(argv: list) -> GatewayConfig:
    """``gateway``'s arguments: ``start`` and the flags, in any order."""
    cfg = GatewayConfig()
    started = False
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "start" and not started:   # cobra: the subcommand among the flags
            started = True
            continue
        if not arg.startswith("-") or arg in ("-", "--"):
            raise GatewayFlagError(f'unknown command "{arg}" for "kvcore gateway start"')
        i = goflags.set_flag(cfg, arg, argv, i, _FLAGS, _BOOL, GatewayFlagError)
    if not started:
        raise GatewayFlagError('unknown command for "kvcore gateway" (use "start")')
    return cfg


def strip_scheme(endpoints: list) -> list:
    """etcd's stripSchema: a URL gives its host:port, anything else is kept."""
    out = []
    for ep in endpoints:
        p = urlsplit(ep)
        out.append(p.netloc if p.scheme and p.netloc else ep)
    return out


def split_host_port(addr: str) -> tuple:
    """Go's net.SplitHostPort for the forms etcd's flags take; ValueError otherwise."""
    host, colon, port = addr.rpartition(":")
    if not colon or (":" in host and not host.startswith("[")):
        raise ValueError(addr)
    return host.strip("[]"), port
