"""--config-file: etcd's YAML layout mapped onto flag names.

Top-level keys are flag names. etcd's nested blocks carry the TLS settings:
``client-transport-security: {cert-file, key-file, client-cert-file, client-key-file,
client-cert-auth, trusted-ca-file, auto-tls}`` set the client flags of the same names,
``peer-transport-security`` the ``peer-`` ones. A null value (``data-dir:``) leaves the
default, as Go's YAML decoding does. Keys etcd does not know are reported, not fatal.
"""
from __future__ import annotations

from typing import Any

SECURITY_KEYS = ("cert-file", "key-file", "client-cert-file", "client-key-file",
                 "client-cert-auth", "trusted-ca-file", "auto-tls",
                 # etcd 3.5.1 ignores these inside the blocks; later releases read them
                 "crl-file", "allowed-cn", "allowed-hostname")

# key in the block -> flag name, per block
_CLIENT = {k: ("client-" + k if k in ("crl-file", "allowed-hostname") else k)
           for k in SECURITY_KEYS if k != "allowed-cn"}
_CLIENT["allowed-hostname"] = "client-cert-allowed-hostname"
_PEER = {k: "peer-" + k for k in SECURITY_KEYS}
_PEER["client-cert-file"] = "peer-client-cert-file"
_PEER["client-key-file"] = "peer-client-key-file"
_PEER["allowed-cn"] = "peer-cert-allowed-cn"
_PEER["allowed-hostname"] = "peer-cert-allowed-hostname"
BLOCKS = {"client-transport-security": _CLIENT, "peer-transport-security": _PEER}


class YamlError(Exception):
    pass


def load(path: str, flags: dict) -> tuple[dict[str, Any], list[str]]:
    """-> ({flag name: value}, warnings)."""
    import yaml
    try:
        with open(path) as f:
            doc = yaml.safe_load(f) or {}
    except OSError as e:
        raise YamlError(f"open {path}: {(e.strerror or str(e)).lower()}")
    except yaml.YAMLError as e:
        raise YamlError(f"error converting YAML to JSON: {e}")
    if not isinstance(doc, dict):
        raise YamlError("error unmarshaling JSON: json: cannot unmarshal the document into "
                        "Go value of type embed.configYAML")
    raw: dict[str, Any] = {}
    warnings: list[str] = []
    for key, value in doc.items():
        key = str(key)
        if key in BLOCKS:
            if value is None:
                continue
            if not isinstance(value, dict):
                raise YamlError(f"error unmarshaling JSON: json: cannot unmarshal into Go "
                                f"struct field configYAML.{key} of type embed.securityConfig")
            for k, v in value.items():
                name = BLOCKS[key].get(str(k))
                if name is None:
                    warnings.append(f"config file key {key}.{k} is not recognised and was "
                                    "ignored")
                elif v is not None:
                    raw[name] = v
            continue
        if key not in flags:
            warnings.append(f"config file key {key!r} is not recognised and was ignored")
            continue
        if value is not None:
            raw[key] = value
    return raw, warnings
