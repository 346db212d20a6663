"""Server configuration with etcd's flag names, defaults and sources.

Sources, as etcd: command-line flags (``--name x``, ``--name=x``, Go-style ``-name
x``), ``ETCD_<FLAG>`` environment variables (``ETCD_DATA_DIR``) for flags not given
on the command line, or a YAML ``--config-file`` whose keys are the flag names (when
given, flags and environment are ignored, as etcd does). Unknown flags and bad
values stop the start with a clear message.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Optional
from urllib.parse import urlparse


class ConfigError(Exception):
    pass


def _int(name: str, lo: int = 0) -> Callable[[Any], int]:
    def conv(v):
        try:
            n = int(v)
        except (TypeError, ValueError):
            raise ConfigError(f"invalid value {v!r} for flag --{name}: not an integer")
        if n < lo:
            raise ConfigError(f"invalid value {v!r} for flag --{name}: must be >= {lo}")
        return n
    return conv


def _bool(name: str) -> Callable[[Any], bool]:
    def conv(v):
        if isinstance(v, bool):
            return v
        s = str(v).lower()
        if s in ("1", "t", "true", "yes", ""):
            return True
        if s in ("0", "f", "false", "no"):
            return False
        raise ConfigError(f"invalid value {v!r} for flag --{name}: not a boolean")
    return conv


def _urls(name: str) -> Callable[[Any], list]:
    def conv(v):
        items = v if isinstance(v, list) else [s for s in str(v).split(",") if s.strip()]
        out = []
        for u in items:
            u = u.strip()
            p = urlparse(u)
            if p.scheme not in ("http", "https", "unix", "unixs") or not p.hostname:
                raise ConfigError(f"invalid value {u!r} for flag --{name}: "
                                  "expected a URL such as http://127.0.0.1:2379")
            try:
                p.port
            except ValueError:
                raise ConfigError(f"invalid value {u!r} for flag --{name}: bad port")
            if p.scheme in ("http", "https") and p.port is None:
                raise ConfigError(f"invalid value {u!r} for flag --{name}: URL must include a port")
            out.append(u)
        return out
    return conv


_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def _duration(name: str) -> Callable[[Any], float]:
    """Go duration strings ("10m", "1m30s", "500ms") -> seconds."""
    import re

    def conv(v):
        s = str(v).strip()
        parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", s)
        if not s or "".join(a + b for a, b in parts) != s:
            raise ConfigError(f"invalid value {v!r} for flag --{name}: expected a duration "
                              "such as 10m, 30s or 500ms")
        return sum(float(a) * _UNITS[b] for a, b in parts)
    return conv


def _choice(name: str, choices: tuple) -> Callable[[Any], str]:
    def conv(v):
        if str(v) not in choices:
            raise ConfigError(f"invalid value {v!r} for flag --{name}: "
                              f"must be one of {', '.join(choices)}")
        return str(v)
    return conv


def _str(name: str) -> Callable[[Any], str]:
    return lambda v: "" if v is None else str(v)


# flag name -> (default, converter, help). A default of None is derived later.
FLAGS: dict[str, tuple] = {
    "config-file": ("", _str, "path to a YAML configuration file (flags and env are then ignored)"),
    "name": ("default", _str, "human-readable name for this member"),
    "data-dir": (None, _str, "path to the data directory (default ${name}.etcd)"),
    "wal-dir": ("", _str, "path to a dedicated WAL directory"),
    "listen-client-urls": ("http://localhost:2379", _urls, "URLs to listen on for client traffic"),
    "advertise-client-urls": ("http://localhost:2379", _urls, "client URLs to advertise"),
    "listen-peer-urls": ("http://localhost:2380", _urls, "URLs to listen on for peer traffic"),
    "initial-advertise-peer-urls": ("http://localhost:2380", _urls, "peer URLs to advertise"),
    "initial-cluster": (None, _str, "initial cluster configuration (name=peerURL,...)"),
    "initial-cluster-state": ("new", lambda n: _choice(n, ("new", "existing")), "new or existing"),
    "initial-cluster-token": ("etcd-cluster", _str, "initial cluster token"),
    "heartbeat-interval": (100, lambda n: _int(n, 1), "heartbeat interval in ms"),
    "election-timeout": (1000, lambda n: _int(n, 1), "election timeout in ms"),
    "snapshot-count": (100000, lambda n: _int(n, 1), "committed entries between snapshots"),
    "experimental-snapshot-catchup-entries": (5000, lambda n: _int(n, 1),
                                              "entries kept after a snapshot for slow followers"),
    "quota-backend-bytes": (0, lambda n: _int(n, 0), "backend size limit (0 = 2 GiB default)"),
    "max-request-bytes": (1572864, lambda n: _int(n, 1), "maximum client request size in bytes"),
    "max-txn-ops": (128, lambda n: _int(n, 1), "maximum operations in one txn"),
    "log-level": ("info", lambda n: _choice(n, ("debug", "info", "warn", "error", "panic", "fatal")),
                  "log level"),
    "auto-compaction-retention": ("0", _str, "auto compaction retention (not yet applied)"),
    "auto-compaction-mode": ("periodic", lambda n: _choice(n, ("periodic", "revision")),
                             "auto compaction mode"),
    "experimental-watch-progress-notify-interval": ("10m", _duration,
                                                    "interval of watch progress notifications"),
    "experimental-enable-lease-checkpoint": (True, _bool,
                                             "persist leases' remaining TTL through the log"),
    "experimental-lease-checkpoint-interval": ("5m", _duration,
                                               "how often leases' remaining TTL is checkpointed"),
    "listen-metrics-urls": ("", _str, "additional URLs serving /metrics and /health"),
    "enable-grpc-gateway": (True, _bool, "serve the JSON gateway under /v3/"),
    "auth-token-ttl": (300, lambda n: _int(n, 1), "The lifetime in seconds of the auth token."),
    "workers": (0, lambda n: _int(n, 0), "worker processes terminating client connections "
                                         "(0 = one per CPU)"),
    "grpc-engine": ("native", lambda n: _choice(n, ("native", "grpcio")),
                    "gRPC server engine (native: libnghttp2 + Cython; grpcio: reference)"),
    # Security (etcd's names and help; see kvcore/tls.py)
    "cert-file": ("", _str, "Path to the client server TLS cert file."),
    "key-file": ("", _str, "Path to the client server TLS key file."),
    "client-cert-auth": (False, _bool, "Enable client cert authentication."),
    "client-crl-file": ("", _str, "Path to the client certificate revocation list file."),
    "trusted-ca-file": ("", _str, "Path to the client server TLS trusted CA cert file."),
    "auto-tls": (False, _bool, "Client TLS using generated certificates."),
    "peer-cert-file": ("", _str, "Path to the peer server TLS cert file."),
    "peer-key-file": ("", _str, "Path to the peer server TLS key file."),
    "peer-client-cert-auth": (False, _bool, "Enable peer client cert authentication."),
    "peer-trusted-ca-file": ("", _str, "Path to the peer server TLS trusted CA file."),
    "peer-auto-tls": (False, _bool, "Peer TLS using self-generated certificates if "
                                    "--peer-key-file and --peer-cert-file are not provided."),
    "peer-crl-file": ("", _str, "Path to the peer certificate revocation list file."),
    "self-signed-cert-validity": (1, lambda n: _int(n, 0),
                                  "The validity period of the client and peer certificates "
                                  "that are automatically generated, in years."),
    "experimental-peer-skip-client-san-verification": (
        False, _bool, "Skip verification of SAN field in client certificate for peer "
                      "connections."),
}

DEFAULT_QUOTA = 2 * 1024 ** 3


@dataclass
class Config:
    name: str = "default"
    data_dir: str = "default.etcd"
    wal_dir: str = ""
    listen_client_urls: list = field(default_factory=lambda: ["http://localhost:2379"])
    advertise_client_urls: list = field(default_factory=lambda: ["http://localhost:2379"])
    listen_peer_urls: list = field(default_factory=lambda: ["http://localhost:2380"])
    initial_advertise_peer_urls: list = field(default_factory=lambda: ["http://localhost:2380"])
    initial_cluster: str = ""
    initial_cluster_state: str = "new"
    initial_cluster_token: str = "etcd-cluster"
    heartbeat_interval: int = 100
    election_timeout: int = 1000
    snapshot_count: int = 100000
    experimental_snapshot_catchup_entries: int = 5000
    quota_backend_bytes: int = DEFAULT_QUOTA
    max_request_bytes: int = 1572864
    max_txn_ops: int = 128
    log_level: str = "info"
    auto_compaction_retention: str = "0"
    auto_compaction_mode: str = "periodic"
    experimental_watch_progress_notify_interval: float = 600.0
    experimental_enable_lease_checkpoint: bool = True
    experimental_lease_checkpoint_interval: float = 300.0
    listen_metrics_urls: str = ""
    enable_grpc_gateway: bool = True
    auth_token_ttl: int = 300
    workers: int = 0
    grpc_engine: str = "native"
    cert_file: str = ""
    key_file: str = ""
    client_cert_auth: bool = False
    client_crl_file: str = ""
    trusted_ca_file: str = ""
    auto_tls: bool = False
    peer_cert_file: str = ""
    peer_key_file: str = ""
    peer_client_cert_auth: bool = False
    peer_trusted_ca_file: str = ""
    peer_auto_tls: bool = False
    peer_crl_file: str = ""
    self_signed_cert_validity: int = 1
    experimental_peer_skip_client_san_verification: bool = False
    # Set at start by kvcore.tls.client_info / peer_info (after auto TLS).
    client_tls: Any = None
    peer_tls: Any = None
    config_file: str = ""
    warnings: list = field(default_factory=list)

    def initial_cluster_map(self) -> dict[str, list[str]]:
        """name -> peer URLs, from --initial-cluster."""
        out: dict[str, list[str]] = {}
        for item in self.initial_cluster.split(","):
            item = item.strip()
            if not item:
                continue
            if "=" not in item:
                raise ConfigError(f"invalid value {item!r} in --initial-cluster: expected name=URL")
            name, url = item.split("=", 1)
            _urls("initial-cluster")(url)
            out.setdefault(name, []).append(url)
        return out


def _normalise_argv(argv: list[str]) -> list[str]:
    """Accept Go flag syntax: -name x and -name=x mean --name."""
    out = []
    for a in argv:
        if a.startswith("-") and not a.startswith("--") and len(a) > 2:
            a = "-" + a
        out.append(a)
    return out


def parse(argv: Optional[list[str]] = None, env: Optional[dict] = None) -> Config:
    argv = _normalise_argv(list(sys.argv[1:] if argv is None else argv))
    env = dict(os.environ if env is None else env)
    raw: dict[str, Any] = {}
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("-h", "--help"):
            raise SystemExit(usage())
        if a in ("--version", "-version"):
            from kvcore import __version__
            print(f"kvcore Version: {__version__}\nAPI Version: 3.5")
            raise SystemExit(0)
        if not a.startswith("--"):
            raise ConfigError(f"'{a}' is not a valid flag")
        name, eq, value = a[2:].partition("=")
        if name not in FLAGS:
            raise ConfigError(f"unknown flag: --{name}")
        if not eq:
            conv_default = FLAGS[name][0]
            if isinstance(conv_default, bool) and (i + 1 >= len(argv) or argv[i + 1].startswith("-")):
                value = "true"
            else:
                if i + 1 >= len(argv):
                    raise ConfigError(f"flag needs an argument: --{name}")
                i += 1
                value = argv[i]
        raw[name] = value
        i += 1

    warnings = []
    config_file = raw.get("config-file") or env.get("ETCD_CONFIG_FILE", "")
    if config_file:
        import yaml
        try:
            with open(config_file) as f:
                doc = yaml.safe_load(f) or {}
        except OSError as e:
            raise ConfigError(f"cannot read --config-file {config_file}: {e.strerror}")
        except yaml.YAMLError as e:
            raise ConfigError(f"invalid YAML in --config-file {config_file}: {e}")
        if not isinstance(doc, dict):
            raise ConfigError(f"--config-file {config_file}: expected a mapping of flag names")
        raw = {}
        for k, v in doc.items():
            if k not in FLAGS:
                warnings.append(f"config file key {k!r} is not recognised and was ignored")
                continue
            raw[k] = v
        raw["config-file"] = config_file
    else:
        for k, v in env.items():
            if not k.startswith("ETCD_"):
                continue
            name = k[5:].lower().replace("_", "-")
            if name not in FLAGS:
                warnings.append(f"unrecognized environment variable {k}={v}")
                continue
            if name in raw:
                warnings.append(f"flag --{name} shadows environment variable {k}")
                continue
            raw[name] = v

    cfg = Config()
    for name, (default, conv, _help) in FLAGS.items():
        attr = name.replace("-", "_")
        if name in raw:
            setattr(cfg, attr, conv(name)(raw[name]))
        elif default is not None:
            setattr(cfg, attr, conv(name)(default))
    if "data-dir" not in raw or not cfg.data_dir:
        cfg.data_dir = f"{cfg.name}.etcd"
    if "initial-cluster" not in raw or not cfg.initial_cluster:
        cfg.initial_cluster = ",".join(f"{cfg.name}={u}" for u in cfg.initial_advertise_peer_urls)
    if cfg.quota_backend_bytes == 0:
        cfg.quota_backend_bytes = DEFAULT_QUOTA
    if cfg.election_timeout < 5 * cfg.heartbeat_interval:
        raise ConfigError(f"--election-timeout[{cfg.election_timeout}ms] should be at least as "
                          f"5 times as --heartbeat-interval[{cfg.heartbeat_interval}ms]")
    if cfg.election_timeout > 50000:
        raise ConfigError(f"--election-timeout[{cfg.election_timeout}ms] is too long, "
                          "and should be set less than 50 seconds")
    members = cfg.initial_cluster_map()
    if cfg.name not in members:
        raise ConfigError(f"couldn't find local name {cfg.name!r} in the initial cluster "
                          f"configuration")
    if sorted(members[cfg.name]) != sorted(cfg.initial_advertise_peer_urls):
        raise ConfigError(f"--initial-cluster has {cfg.name}={','.join(members[cfg.name])} but "
                          f"missing from --initial-advertise-peer-urls="
                          f"{','.join(cfg.initial_advertise_peer_urls)}")
    cfg.warnings = warnings
    return cfg


def usage() -> str:
    lines = ["usage: kvcore [flags]", "", "An etcd-compatible key-value store. Flags (also "
             "ETCD_<FLAG> environment variables):", ""]
    for name, (default, _conv, help_) in FLAGS.items():
        d = "" if default in (None, "") else f" (default {default})"
        lines.append(f"  --{name}\n        {help_}{d}")
    return "\n".join(lines)
