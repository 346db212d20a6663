"""Cross-flag checks with etcd's messages (embed.Config.Validate, setupLogging and
the checks etcd makes while starting), and the notices for accepted-but-inert flags."""
from __future__ import annotations

import ipaddress
import json
from urllib.parse import urlsplit

from kvcore.config import goflags
from kvcore.config.flags import FLAGS

MAX_ELECTION_MS = 50000
LOG_LEVELS = ("debug", "info", "warn", "error", "dpanic", "panic", "fatal")
STD_OUTPUTS = ("default", "stderr", "stdout")


class Invalid(Exception):
    def __init__(self, message: str, kind: str = "verify"):
        super().__init__(message)
        self.kind = kind


def check(cfg) -> None:
    _logging(cfg)
    for urls in (cfg.listen_peer_urls, cfg.listen_client_urls, cfg.listen_metrics_urls):
        _bind_urls(urls)
    explicit = [bool(cfg.discovery), "initial-cluster" in cfg.given, bool(cfg.discovery_srv)]
    if sum(explicit) > 1:
        raise Invalid('multiple discovery or bootstrap flags are set. Choose one of '
                      '"initial-cluster", "discovery" or "discovery-srv"')
    if cfg.heartbeat_interval == 0:
        raise Invalid(f"--heartbeat-interval must be >0 (set to {cfg.heartbeat_interval}ms)")
    if cfg.election_timeout == 0:
        raise Invalid(f"--election-timeout must be >0 (set to {cfg.election_timeout}ms)")
    if 5 * cfg.heartbeat_interval > cfg.election_timeout:
        raise Invalid(f"--election-timeout[{cfg.election_timeout}ms] should be at least as 5 "
                      f"times as --heartbeat-interval[{cfg.heartbeat_interval}ms]")
    if cfg.election_timeout > MAX_ELECTION_MS:
        raise Invalid(f"--election-timeout[{cfg.election_timeout}ms] is too long, and should "
                      f"be set less than {MAX_ELECTION_MS}ms")
    if cfg.listen_client_urls and not cfg.advertise_client_urls:
        raise Invalid("--advertise-client-urls is required when --listen-client-urls is set "
                      "explicitly")
    if cfg.auto_compaction_mode not in ("", "periodic", "revision"):
        raise Invalid(f'unknown auto-compaction-mode "{cfg.auto_compaction_mode}"')
    _unsupported(cfg)
    _security(cfg)
    # etcd finds these while starting ("failed to start etcd")
    _compaction_retention(cfg)
    if cfg.proxy != "off":     # a v2 proxy is no member: etcd checks no more
        return
    members = cfg.initial_cluster_map()
    if cfg.name not in members:
        raise Invalid(f'couldn\'t find local name "{cfg.name}" in the initial cluster '
                      "configuration", "start")
    if sorted(members[cfg.name]) != sorted(cfg.initial_advertise_peer_urls):
        raise Invalid(f"--initial-cluster has {cfg.name}={','.join(members[cfg.name])} but "
                      f"missing from --initial-advertise-peer-urls="
                      f"{','.join(cfg.initial_advertise_peer_urls)}", "start")


def _security(cfg) -> None:
    """TLS policy (kvcore/tls_policy.py) and --auth-token (kvcore/auth/tokens.py)."""
    from kvcore import tls_policy
    from kvcore.auth import tokens
    try:
        tls_policy.openssl_ciphers(cfg.cipher_suites)
    except tls_policy.PolicyError as e:
        raise Invalid(str(e), "start")
    try:
        tls_policy.validate(cfg.cipher_suites, cfg.tls_min_version, cfg.tls_max_version)
    except tls_policy.PolicyError as e:
        raise Invalid(str(e))
    if cfg.grpc_engine == "grpcio" and cfg.client_cert_auth and any(
            u.startswith("https://") for u in cfg.listen_client_urls):
        from kvcore.tls import TLSInfo   # grpcio ends TLS itself there (kvcore/tls.py)
        refused = tls_policy.grpcio_refusal(TLSInfo(
            cipher_suites=cfg.cipher_suites, min_version=cfg.tls_min_version,
            max_version=cfg.tls_max_version,
            allowed_hostname=cfg.client_cert_allowed_hostname))
        if refused:
            raise Invalid(refused, "start")
    if cfg.peer_cert_allowed_cn and cfg.peer_cert_allowed_hostname:
        raise Invalid(f'AllowedCN and AllowedHostname are mutually exclusive (cn='
                      f'"{cfg.peer_cert_allowed_cn}", hostname='
                      f'"{cfg.peer_cert_allowed_hostname}")', "start")
    try:
        tokens.provider(cfg.auth_token, float(cfg.auth_token_ttl))
    except tokens.TokenConfigError as e:
        raise Invalid(str(e), "start")


def _logging(cfg) -> None:
    if cfg.log_level not in LOG_LEVELS:
        raise Invalid(f'unrecognized level: "{cfg.log_level}"', "panic")
    if cfg.logger == "capnslog":
        raise Invalid("--logger=capnslog is removed in v3.5")
    if cfg.logger not in ("zap", "console"):
        raise Invalid(f'unknown logger option "{cfg.logger}"')
    outs = cfg.log_outputs or ["default"]
    cfg.log_outputs = outs
    if len(outs) > 1 and "default" in outs:
        raise Invalid('multi logoutput for "default" is not supported yet')
    for out in outs:
        if out in STD_OUTPUTS or out == "/dev/null":
            continue
        try:
            with open(out, "a"):
                pass
        except OSError as e:
            raise Invalid(f'couldn\'t open sink "{out}": open {out}: '
                          f"{(e.strerror or str(e)).lower()}")
    if cfg.enable_log_rotation:
        files = [o for o in outs if o not in STD_OUTPUTS]
        if len(files) != 1 or len(outs) != 1:
            raise Invalid("--log-outputs requires a single file path when "
                          "--log-rotate-config-json is defined")
        try:
            json.loads(cfg.log_rotation_config_json)
        except ValueError as e:
            raise Invalid(f"improperly formatted log rotation config: {e}")


def _bind_urls(urls) -> None:
    for u in urls:
        p = urlsplit(u)
        if p.scheme in ("unix", "unixs"):
            continue
        host = p.hostname or ""
        if host == "localhost":
            continue
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise Invalid(f"expected IP in URL for binding ({u})")


def _compaction_retention(cfg) -> None:
    """etcd's rule: a plain non-negative integer is hours (periodic) or revisions
    (revision); anything else must be a Go duration (in revision mode its nanoseconds
    count as revisions, as etcd does)."""
    text = cfg.auto_compaction_retention or "0"
    mode = cfg.auto_compaction_mode or "periodic"
    cfg.auto_compaction_mode = mode
    try:
        n = int(text, 10)
    except ValueError:
        n = -1
    if n >= 0 and text.lstrip("+").isdigit():
        seconds = n * 3600.0 if mode == "periodic" else float(n)
        revisions = n
    else:
        try:
            seconds = goflags.go_duration(text)
        except ValueError as e:
            raise Invalid(f"error parsing CompactionRetention: {e}", "start")
        revisions = int(round(seconds * 1e9))
    cfg.auto_compaction_period = seconds if mode == "periodic" else 0.0
    cfg.auto_compaction_revisions = revisions if mode == "revision" else 0


def _unsupported(cfg) -> None:
    notices = []
    for f in FLAGS.values():
        value = getattr(cfg, f.attr)
        if not f.support or f.name not in cfg.given or value == f.parse(f.default):
            continue
        if f.support == "refuse":
            raise Invalid(f"--{f.name} is not supported by kvcore yet (given "
                          f"{_show(value)}); remove it or leave it at its default "
                          f"{f.default!r}")
        if f.support == "absent":
            notices.append(("error", f"--{f.name} is not supported by kvcore yet: accepted "
                                     "without effect", {"flag": f.name}))
        elif f.support == "go":
            notices.append(("info", f"--{f.name} only applies to Go programs; accepted and "
                                    "ignored", {"flag": f.name}))
        else:
            notices.append(("info", f"--{f.name} tunes an etcd internal kvcore does not "
                                    "have; accepted with no effect", {"flag": f.name}))
    cfg.notices = notices + list(getattr(cfg, "notices", []) or [])
    if not 4 <= cfg.bcrypt_cost <= 31:   # etcd's NewAuthStore falls back, with a warning
        cfg.notices.append(("warn", "use default bcrypt cost instead of the invalid given cost",
                            {"min-cost": 4, "max-cost": 31, "default-cost": 10,
                             "given-cost": cfg.bcrypt_cost}))
        cfg.bcrypt_cost = 10
    if cfg.enable_v2:   # etcd's embed warnings, at the same step
        cfg.notices.append(("warn", "Flag `enable-v2` is deprecated and will get removed in "
                                    "etcd 3.6.", {}))
        if cfg.experimental_enable_v2v3:
            cfg.notices.append(("warn", "Flag `experimental-enable-v2v3` is deprecated and "
                                        "will get removed in etcd 3.6.", {}))
            cfg.notices.append(("error", "--experimental-enable-v2v3 is accepted, but kvcore "
                                         "serves the v2 API from its replicated v2 store, not "
                                         "under the given prefix of the v3 keyspace",
                                {"prefix": cfg.experimental_enable_v2v3}))
    if cfg.client_cert_file:
        cfg.notices.append(("info", "--client-cert-file is checked, but kvcore's gateway "
                                    "calls the server in-process and never presents it",
                            {"client-cert-file": cfg.client_cert_file}))
    if cfg.unsafe_no_fsync:
        cfg.notices.append(("warn", "--unsafe-no-fsync is set: writes are not fsynced, a "
                                    "crash may lose acknowledged data", {}))


def _show(value) -> str:
    return ",".join(value) if isinstance(value, list) else str(value)


