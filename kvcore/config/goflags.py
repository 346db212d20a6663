"""Flag values parsed as Go's flag package and etcd's flag types parse them.

Each parser takes the flag's text and returns the Python value, or raises
``FlagValueError`` with the reason Go gives (``parse error``, a URL complaint, ...);
the caller words it as Go's ``invalid value "x" for flag -name: <reason>``.
"""
from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit


class FlagValueError(ValueError):
    """A value Go's flag package would refuse; str() is Go's reason."""

    def __init__(self, reason: str, bool_flag: bool = False):
        super().__init__(reason)
        self.bool_flag = bool_flag


_GO_TRUE = ("1", "t", "T", "true", "TRUE", "True")
_GO_FALSE = ("0", "f", "F", "false", "FALSE", "False")


def parse_bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    s = str(v)
    if s in _GO_TRUE:
        return True
    if s in _GO_FALSE:
        return False
    raise FlagValueError("parse error", bool_flag=True)


def _go_int(v: Any) -> int:
    """strconv.ParseInt(s, 0, 64): decimal, 0x hex, 0o or leading-0 octal, 0b binary."""
    if isinstance(v, bool):
        raise FlagValueError("parse error")
    if isinstance(v, int):
        return v
    s = str(v).strip()
    sign, body = (s[0], s[1:]) if s[:1] in "+-" else ("", s)
    try:
        if re.fullmatch(r"0[0-7]+", body):
            n = int(body, 8)
        elif re.fullmatch(r"[0-9]+|0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+", body):
            n = int(body, 0)
        else:
            raise ValueError
    except ValueError:
        raise FlagValueError("parse error")
    return -n if sign == "-" else n


def parse_int(v: Any) -> int:
    n = _go_int(v)
    if not -(1 << 63) <= n < (1 << 63):
        raise FlagValueError("value out of range")
    return n


def parse_uint(v: Any) -> int:
    if str(v).startswith(("-", "+")):
        raise FlagValueError("parse error")
    n = _go_int(v)
    if n >= (1 << 64):
        raise FlagValueError("value out of range")
    return n


_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0,
          "m": 60.0, "h": 3600.0}


def go_duration(s: str) -> float:
    """time.ParseDuration -> seconds; raises ValueError with Go's message."""
    orig = s
    quoted = '"' + orig + '"'
    neg = False
    if s[:1] in "+-":
        neg = s[0] == "-"
        s = s[1:]
    if s == "0":
        return 0.0
    if not s:
        raise ValueError(f"time: invalid duration {quoted}")
    total = 0.0
    while s:
        m = re.match(r"(\d*)(?:\.(\d*))?", s)
        whole, frac = m.group(1), m.group(2)
        if not whole and not frac:
            raise ValueError(f"time: invalid duration {quoted}")
        s = s[m.end():]
        u = re.match(r"[^\d.]*", s).group(0)
        if not u:
            raise ValueError(f"time: missing unit in duration {quoted}")
        if u not in _UNITS:
            raise ValueError(f'time: unknown unit "{u}" in duration {quoted}')
        s = s[len(u):]
        total += float(f"{whole or 0}.{frac or 0}") * _UNITS[u]
    return -total if neg else total


def parse_duration(v: Any) -> float:
    try:
        return go_duration(str(v))
    except ValueError:
        raise FlagValueError("parse error")


def check_url(u: str) -> str:
    """types.NewURLs' checks for one URL."""
    u = u.strip()
    p = urlsplit(u)
    if p.scheme not in ("http", "https", "unix", "unixs"):
        raise FlagValueError(f"URL scheme must be http, https, unix, or unixs: {u}")
    host = p.netloc.rsplit("@", 1)[-1]
    hostpart, colon, port = host.rpartition(":")
    if not colon or (hostpart.count(":") and not hostpart.startswith("[")):
        raise FlagValueError(f'URL address does not have the form "host:port": {u}')
    if p.path:
        raise FlagValueError(f"URL must not contain a path: {u}")
    return u


def _items(v: Any) -> list:
    if isinstance(v, (list, tuple)):
        return [str(x).strip() for x in v]
    return [x.strip() for x in str(v).split(",")]


def parse_urls(v: Any) -> list:
    """flags.UniqueURLsWithExceptions with no exception (empty text = no URLs)."""
    if v is None or v == "" or v == []:
        return []
    out: list = []
    for u in _items(v):
        check_url(u)
        if u not in out:
            out.append(u)
    return out


def parse_cors(v: Any) -> list:
    """--cors: URLs, with "*" meaning every origin."""
    if v is None or v == "" or v == []:
        return ["*"]
    out: list = []
    for u in _items(v):
        if u != "*":
            check_url(u)
        if u not in out:
            out.append(u)
    return out


def parse_strings(v: Any) -> list:
    if v is None or v == "" or v == []:
        return []
    out: list = []
    for s in _items(v):
        if s and s not in out:
            out.append(s)
    return out


def parse_string(v: Any) -> str:
    return "" if v is None else str(v)


def selective(*valids: str, quote: bool = False):
    """flags.SelectiveStringValue: one of a fixed set ("invalid value")."""
    def parse(v: Any) -> str:
        s = "" if v is None else str(v)
        if s not in valids:
            raise FlagValueError(f'invalid value "{s}"' if quote else "invalid value")
        return s
    parse.valids = valids
    return parse


def set_flag(cfg: Any, arg: str, argv: list, i: int, flags: dict, bools: set,
             error: type) -> int:
    """pflag's reading of the flag ``arg`` (``--name=value``, ``--name value`` taking
    ``argv[i]``, or a bool ``--name``) onto ``cfg`` through ``flags[name] = (attribute,
    converter)``; -> the index after what it took. Errors are ``error(message)`` in
    cobra's words."""
    name, eq, value = arg.lstrip("-").partition("=")
    if name not in flags:
        raise error(f"unknown flag: --{name}")
    attr, conv = flags[name]
    if not eq:
        if name in bools:
            value = "true"
        elif i < len(argv):
            value = argv[i]
            i += 1
        else:
            raise error(f"flag needs an argument: --{name}")
    try:
        setattr(cfg, attr, conv(value))
    except FlagValueError as e:
        raise error(f'invalid argument "{value}" for "--{name}" flag: '
                    f'{_pflag_reason(conv, value, e)}') from None
    return i


def _pflag_reason(conv, value: str, e: FlagValueError) -> str:
    """pflag passes on strconv's and time's own errors, where Go's flag package says
    "parse error"."""
    syntax = "value out of range" if str(e) == "value out of range" else "invalid syntax"
    if conv is parse_int:
        return f'strconv.ParseInt: parsing "{value}": {syntax}'
    if conv is parse_uint:
        return f'strconv.ParseUint: parsing "{value}": {syntax}'
    if conv is parse_bool:
        return f'strconv.ParseBool: parsing "{value}": invalid syntax'
    if conv is parse_duration:
        try:
            go_duration(value)
        except ValueError as d:
            return str(d)
    return str(e)
