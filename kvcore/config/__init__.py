"""Server configuration with etcd's flag names, defaults, sources and errors.

Sources, as etcd: command-line flags (``--name x``, ``--name=x``, Go-style ``-name x``;
a boolean flag takes ``--flag`` or ``--flag=false``, never the next argument),
``ETCD_<FLAG>`` environment variables for flags not given on the command line, or a
YAML ``--config-file`` (then flags and environment are ignored, as etcd does).

Errors come in etcd's three kinds (``ConfigError.kind``), which main.py reports the
way etcd does: "usage" (Go's flag package: one line + usage on stderr, exit 2),
"verify" (cross-flag checks: a "failed to verify flags" log line, exit 1), "start"
(found while starting: "failed to start", exit 1).

The parts: flags.py (the table), goflags.py (value parsing), yamlfile.py (the
config file layout), validate.py (cross-flag checks).
"""
from __future__ import annotations

import os
import sys
from typing import Any, Optional

from kvcore.config import goflags, validate, yamlfile
from kvcore.config.flags import FLAGS, Flag

DEFAULT_QUOTA = 2 * 1024 ** 3
DEFAULT_SNAPSHOT_COUNT = 100000


class ConfigError(Exception):
    def __init__(self, message: str, kind: str = "verify"):
        super().__init__(message)
        self.kind = kind


class Config:
    """One attribute per flag (``--data-dir`` -> ``data_dir``), parsed: integers,
    booleans, durations in seconds (float), URL and string lists."""

    def __init__(self, **overrides: Any):
        for f in FLAGS.values():
            setattr(self, f.attr, f.parse(f.default))
        self.data_dir = "default.etcd"
        self.initial_cluster = "default=http://localhost:2380"
        self.quota_backend_bytes = DEFAULT_QUOTA
        self.config_file = ""
        self.given: set = set()        # flag names set explicitly (any source)
        self.warnings: list = []       # said once the logger is up
        self.notices: list = []        # (level, message, fields) for the log at start
        # Set at start by kvcore.tls.client_info / peer_info (after auto TLS).
        self.client_tls: Any = None
        self.peer_tls: Any = None
        for k, v in overrides.items():
            setattr(self, k, v)

    def initial_cluster_map(self) -> dict[str, list[str]]:
        """name -> peer URLs, from --initial-cluster (etcd's types.NewURLsMap)."""
        out: dict[str, list[str]] = {}
        for item in self.initial_cluster.split(","):
            item = item.strip()
            if not item:
                continue
            name, _, url = item.partition("=")
            try:
                goflags.check_url(url)
            except goflags.FlagValueError as e:
                raise ConfigError(f"error setting up initial cluster: {e}", "start")
            out.setdefault(name, []).append(url)
        return out


def _normalise(arg: str) -> str:
    """Go flag syntax: -name and --name are the same flag."""
    return "-" + arg if arg.startswith("-") and not arg.startswith("--") and len(arg) > 1 else arg


def _set(raw: dict, f: Flag, value: Any, where: str) -> None:
    try:
        raw[f.name] = f.parse(value)
    except goflags.FlagValueError as e:
        if where == "flag" and e.bool_flag:
            raise ConfigError(f'invalid boolean value "{value}" for -{f.name}: {e}', "usage")
        if where == "flag":
            raise ConfigError(f'invalid value "{value}" for flag -{f.name}: {e}', "usage")
        if where == "file":
            raise ConfigError(f"invalid value {value!r} for {f.name} in the config file: {e}",
                              "verify")
        raise ConfigError(f'invalid value "{value}" for {where}: {e}', "verify")


def _from_argv(argv: list) -> tuple[dict, list]:
    """Go's flag.Parse: -> ({name: parsed value}, positional arguments left)."""
    raw: dict[str, Any] = {}
    i = 0
    while i < len(argv):
        a = _normalise(argv[i])
        if a == "--":
            return raw, argv[i + 1:]
        if not a.startswith("--") or a == "-":
            return raw, argv[i:]
        name, eq, value = a[2:].partition("=")
        if name in ("h", "help"):
            raise SystemExit(usage())
        if name == "version":
            from kvcore import ETCD_VERSION, __version__
            print(f"kvcore Version: {__version__}\netcd API Version: {ETCD_VERSION}")
            raise SystemExit(0)
        f = FLAGS.get(name) if name != "config-file" else None
        if name == "config-file":
            if not eq:
                if i + 1 >= len(argv):
                    raise ConfigError("flag needs an argument: -config-file", "usage")
                i += 1
                value = argv[i]
            raw["config-file"] = value
            i += 1
            continue
        if f is None:
            raise ConfigError(f"flag provided but not defined: -{name}", "usage")
        if not eq:
            if f.is_bool:
                value = "true"
            else:
                if i + 1 >= len(argv):
                    raise ConfigError(f"flag needs an argument: -{name}", "usage")
                i += 1
                value = argv[i]
        _set(raw, f, value, "flag")
        i += 1
    return raw, []


def parse(argv: Optional[list] = None, env: Optional[dict] = None) -> Config:
    argv = list(sys.argv[1:] if argv is None else argv)
    env = dict(os.environ if env is None else env)
    raw, rest = _from_argv(argv)
    if rest:
        raise ConfigError(f"'{rest[0]}' is not a valid flag")
    warnings: list = []
    config_file = raw.pop("config-file", "") or env.get("ETCD_CONFIG_FILE", "")
    if config_file:
        try:
            values, warnings = yamlfile.load(config_file, FLAGS)
        except yamlfile.YamlError as e:
            raise ConfigError(str(e))
        raw = {}
        for name, value in values.items():
            _set(raw, FLAGS[name], value, "file")
    else:
        for k, v in sorted(env.items()):
            if not k.startswith("ETCD_") or k == "ETCD_CONFIG_FILE" or v == "":
                continue
            name = k[5:].lower().replace("_", "-")
            if name not in FLAGS:
                warnings.append(f"unrecognized environment variable {k}={v}")
                continue
            if name in raw:
                warnings.append(f"flag --{name} shadows environment variable {k}")
                continue
            _set(raw, FLAGS[name], v, k)

    cfg = Config()
    cfg.config_file = config_file
    cfg.given = set(raw)
    for name, value in raw.items():
        setattr(cfg, FLAGS[name].attr, value)
    if "data-dir" not in raw or not cfg.data_dir:
        cfg.data_dir = f"{cfg.name}.etcd"
    if "initial-cluster" not in raw or not cfg.initial_cluster:
        cfg.initial_cluster = ",".join(f"{cfg.name}={u}" for u in cfg.initial_advertise_peer_urls)
    if cfg.quota_backend_bytes <= 0:
        cfg.quota_backend_bytes = DEFAULT_QUOTA
    if cfg.snapshot_count == 0:
        cfg.snapshot_count = DEFAULT_SNAPSHOT_COUNT
    # etcd: an explicit --listen-client-urls needs explicit --advertise-client-urls
    if "listen-client-urls" in raw and "advertise-client-urls" not in raw and not config_file:
        cfg.advertise_client_urls = []
    cfg.warnings = warnings
    try:
        validate.check(cfg)
    except validate.Invalid as e:
        raise ConfigError(str(e), e.kind)
    return cfg


def usage() -> str:
    lines = ["Usage:", "", "  kvcore [flags]", "    Start a kvcore (etcd-compatible) member.",
             "", "  kvcore --version", "    Show the version.", "",
             "  kvcore --config-file", "    Path to the server configuration file. Note that "
             "if a configuration file is provided, other command line flags and environment "
             "variables will be ignored."]
    group = None
    for f in FLAGS.values():
        if f.hidden:
            continue
        if f.group != group:
            group = f.group
            lines += ["", f"{group}:"]
        lines += [f"  --{f.name} '{f.default}'", f"    {f.help}"]
    return "\n".join(lines)
