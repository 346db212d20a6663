"""Go's url.Parse as etcd 3.4's types.NewURLs meets it (the peer URLs of a v2 member
change): the error text of a URL Go refuses (``parse "x": invalid port ":b" after
host``) and the String() form of one it takes (scheme lower-cased; escapes are kept
as they came, where Go would re-escape a host's upper-case), which is what etcd
stores, compares and hashes into a member ID. Zones in IPv6 literals are
unescaped as plain host text (Go's encodeZone rules are left out)."""
from __future__ import annotations

from dataclasses import dataclass

_HEX = "0123456789abcdefABCDEF"
_DIGITS = "0123456789"
_ALNUM = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
# bytes a host may hold unescaped (url.shouldEscape in encodeHost mode)
_HOST_OK = _ALNUM | set("-_.~!$&'()*+,;=:[]<>\"")
_USERINFO_OK = _ALNUM | set("-._:~!$&'()*+,;=%@")
_GO_ESC = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t",
           "\v": "\\v", "\\": "\\\\", '"': '\\"'}


class URLError(ValueError):
    """url.Parse's error, its text as Go prints it."""


def go_quote(s: str) -> str:
    """strconv.Quote (%q) of a string."""
    out = []
    for c in s:
        if 0xDC80 <= ord(c) <= 0xDCFF:      # a lone byte (surrogateescape): not UTF-8
            out.append("\\x%02x" % (ord(c) - 0xDC00))
        elif c in _GO_ESC:
            out.append(_GO_ESC[c])
        elif c.isprintable() or c == " ":
            out.append(c)
        elif ord(c) < 0x80:
            out.append("\\x%02x" % ord(c))
        elif ord(c) <= 0xFFFF:
            out.append("\\u%04x" % ord(c))
        else:
            out.append("\\U%08x" % ord(c))
    return '"' + "".join(out) + '"'


@dataclass
class URL:
    scheme: str = ""
    opaque: str = ""
    userinfo: "str | None" = None
    host: str = ""
    path: str = ""
    raw_query: str = ""
    force_query: bool = False
    fragment: str = ""

    def string(self) -> str:
        """URL.String() for what url.Parse gave (escapes kept as they came)."""
        out = self.scheme + ":" if self.scheme else ""
        if self.opaque:
            out += self.opaque
        elif self.scheme or self.host or self.userinfo is not None:
            if self.host or self.path or self.userinfo is not None:
                out += "//"
            if self.userinfo is not None:
                out += self.userinfo + "@"
            out += self.host
            out += self.path
        if self.force_query or self.raw_query:
            out += "?" + self.raw_query
        if self.fragment:
            out += "#" + self.fragment
        return out


def _escape_error(s: str, i: int) -> ValueError:
    """EscapeError of the three bytes from s[i] (Go slices bytes: a rune may be cut)."""
    b = s.encode("utf-8", "surrogatepass")[len(s[:i].encode("utf-8", "surrogatepass")):][:3]
    return ValueError("invalid URL escape " + go_quote(b.decode("utf-8", "surrogateescape")))


def _unescape(s: str, host: bool) -> str:
    """url.unescape's checks (escapes are left as they are: String() gives them back)."""
    i = 0
    while i < len(s):
        c = s[i]
        if c == "%":
            if i + 2 >= len(s) or s[i + 1] not in _HEX or s[i + 2] not in _HEX:
                raise _escape_error(s, i)
            if host and int(s[i + 1], 16) < 8 and s[i:i + 3] != "%25":
                raise _escape_error(s, i)
            i += 3
            continue
        if host and ord(c) < 0x80 and c not in _HOST_OK:
            raise ValueError("invalid character " + go_quote(c) + " in host name")
        i += 1
    return s


def _valid_port(p: str) -> bool:
    return p == "" or (p[0] == ":" and all("0" <= c <= "9" for c in p[1:]))


def _parse_host(host: str) -> str:
    if host.startswith("["):
        i = host.rfind("]")
        if i < 0:
            raise ValueError("missing ']' in host")
        if not _valid_port(host[i + 1:]):
            raise ValueError(f"invalid port {go_quote(host[i + 1:])} after host")
    else:
        i = host.rfind(":")
        if i >= 0 and not _valid_port(host[i:]):
            raise ValueError(f"invalid port {go_quote(host[i:])} after host")
    return _unescape(host, True)


def _scheme(raw: str) -> tuple:
    for i, c in enumerate(raw):
        if c in _ALNUM and c not in _DIGITS:
            continue
        if c in _DIGITS or c in "+-.":
            if i == 0:
                return "", raw
            continue
        if c == ":":
            if i == 0:
                raise ValueError("missing protocol scheme")
            return raw[:i], raw[i + 1:]
        return "", raw
    return "", raw


def _parse(raw: str) -> URL:
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in raw):
        raise ValueError("net/url: invalid control character in URL")
    u = URL()
    if raw == "*":
        u.path = "*"
        return u
    scheme, rest = _scheme(raw)
    u.scheme = scheme.lower()
    if rest.endswith("?") and rest.count("?") == 1:
        u.force_query, rest = True, rest[:-1]
    else:
        rest, _, u.raw_query = rest.partition("?")
    if not rest.startswith("/"):
        if u.scheme:
            u.opaque = rest
            return u
        if ":" in rest.partition("/")[0]:
            raise ValueError("first path segment in URL cannot contain colon")
    if (u.scheme or not rest.startswith("///")) and rest.startswith("//"):
        authority, slash, tail = rest[2:].partition("/")
        rest = slash + tail
        at = authority.rfind("@")
        u.host = _parse_host(authority[at + 1:])
        if at >= 0:
            info = authority[:at]
            if any(c not in _USERINFO_OK for c in info):
                raise ValueError("net/url: invalid userinfo")
            _unescape(info, False)
            u.userinfo = info
    u.path = _unescape(rest, False)
    return u


def parse(raw: str) -> URL:
    """url.Parse; URLError with Go's text when it refuses."""
    before, hashed, frag = raw.partition("#")
    try:
        u = _parse(before)
    except ValueError as e:
        raise URLError(f"parse {go_quote(before)}: {e}") from None
    if hashed and frag:
        try:
            u.fragment = _unescape(frag, False)
        except ValueError as e:
            raise URLError(f"parse {go_quote(raw)}: {e}") from None
    return u


def split_host_port_ok(hostport: str) -> bool:
    """net.SplitHostPort succeeds."""
    i = hostport.rfind(":")
    if i < 0:
        return False
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0 or end + 1 != i:
            return False
        host = hostport[1:end]
        if "[" in host or "]" in host:
            return False
    else:
        host = hostport[:i]
        if ":" in host or "[" in host or "]" in host:
            return False
    port = hostport[i + 1:]
    return "[" not in port and "]" not in port
