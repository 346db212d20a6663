"""etcd's ``etcd grpc-proxy start`` flags (etcdmain/grpc_proxy.go), parsed as pflag does.

Only what the proxy uses is here; a flag etcd has but kvcore's proxy does not
implement yet is refused with a clear message rather than silently ignored.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from kvcore.config import goflags


class ProxyFlagError(Exception):
    """A flag error; cobra prints ``Error: <msg>`` and exits 1."""


class ProxyArgsError(Exception):
    """etcd's checkArgs refusal: the message alone on stderr, exit 1."""


@dataclass
class ProxyConfig:
    endpoints: list = field(default_factory=lambda: ["127.0.0.1:2379"])
    listen_addr: str = "127.0.0.1:23790"
    advertise_client_url: str = "127.0.0.1:23790"
    resolver_prefix: str = ""
    resolver_ttl: int = 0
    namespace: str = ""
    metrics_addr: str = ""
    # To the cluster (etcdctl's names).
    cert: str = ""
    key: str = ""
    cacert: str = ""
    insecure_skip_tls_verify: bool = False
    # For clients of the proxy (a member's names).
    cert_file: str = ""
    key_file: str = ""
    trusted_ca_file: str = ""
    client_crl_file: str = ""
    auto_tls: bool = False
    max_send_bytes: int = 1536 * 1024          # defaultGRPCMaxCallSendMsgSize
    max_recv_bytes: int = 2 ** 31 - 1          # math.MaxInt32
    log_level: str = "info"
    logger: str = "zap"
    debug: bool = False
    grpc_engine: str = "native"


def _strings(v: str) -> list:
    return [s for s in v.split(",") if s]


# flag -> (attribute, parser)
_FLAGS = {
    "endpoints": ("endpoints", _strings),
    "listen-addr": ("listen_addr", str),
    "advertise-client-url": ("advertise_client_url", str),
    "resolver-prefix": ("resolver_prefix", str),
    "resolver-ttl": ("resolver_ttl", goflags.parse_int),
    "namespace": ("namespace", str),
    "metrics-addr": ("metrics_addr", str),
    "cert": ("cert", str),
    "key": ("key", str),
    "cacert": ("cacert", str),
    "insecure-skip-tls-verify": ("insecure_skip_tls_verify", goflags.parse_bool),
    "cert-file": ("cert_file", str),
    "key-file": ("key_file", str),
    "trusted-ca-file": ("trusted_ca_file", str),
    "client-crl-file": ("client_crl_file", str),
    "auto-tls": ("auto_tls", goflags.parse_bool),
    "max-send-bytes": ("max_send_bytes", goflags.parse_int),
    "max-recv-bytes": ("max_recv_bytes", goflags.parse_int),
    "log-level": ("log_level", str),
    "logger": ("logger", str),
    "debug": ("debug", goflags.parse_bool),
    "grpc-engine": ("grpc_engine", str),
}
_BOOL = {"insecure-skip-tls-verify", "auto-tls", "debug"}
# etcd flags accepted for compatibility whose behaviour kvcore's proxy does not have.
_UNSUPPORTED = {"enable-pprof", "experimental-serializable-ordering", "data-dir",
                "experimental-leasing-prefix", "enable-request-forwarding"}


def parse(argv: list) -> ProxyConfig:
    cfg = ProxyConfig()
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if not arg.startswith("-") or arg in ("-", "--"):
            raise ProxyFlagError(f'unknown command "{arg}" for "kvcore grpc-proxy start"')
        name = arg.lstrip("-").partition("=")[0]
        if name in _UNSUPPORTED:
            raise ProxyFlagError(f"flag --{name} is not supported by kvcore grpc-proxy")
        i = goflags.set_flag(cfg, arg, argv, i, _FLAGS, _BOOL, ProxyFlagError)
    if not cfg.endpoints:
        raise ProxyFlagError("no endpoints")
    return cfg


def host_port(addr: str) -> tuple:
    """"host:port" or a URL -> (host, port)."""
    if "://" in addr:
        addr = addr.split("://", 1)[1]
    addr = addr.rstrip("/")
    host, _, port = addr.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)


def check_args(cfg: ProxyConfig) -> None:
    """etcdmain/grpc_proxy.go checkArgs (the resolver flags go together), and the
    message limits the proxy's client takes."""
    if cfg.resolver_prefix and cfg.resolver_ttl < 1:
        raise ProxyArgsError(f"invalid resolver-ttl {cfg.resolver_ttl}")
    if not cfg.resolver_prefix and cfg.resolver_ttl > 0:
        raise ProxyArgsError('invalid resolver-prefix ""')
    if cfg.resolver_prefix and cfg.resolver_ttl > 0 and not cfg.advertise_client_url:
        raise ProxyArgsError('invalid advertise-client-url ""')
    # clientv3.New's refusal, which etcd's proxy prints alone and exits 1 on.
    if 0 < cfg.max_recv_bytes < cfg.max_send_bytes:
        raise ProxyArgsError(f"gRPC message recv limit ({cfg.max_recv_bytes} bytes) must be "
                             f"greater than send limit ({cfg.max_send_bytes} bytes)")
