"""Go's net/http request form and path rules as etcd 3.4's v2 handlers meet them:
Request.ParseForm (url.ParseQuery on the body and the query, mime.ParseMediaType on
the Content-Type) and ServeMux's path cleaning (a 301 to the clean path)."""
from __future__ import annotations

import codecs
import posixpath
from typing import Optional
from urllib.parse import quote, unquote_to_bytes

_HEX = set("0123456789abcdefABCDEF")
# RFC 1521 tspecials: not in a MIME token (mime.isTokenChar)
_TSPECIALS = set('()<>@,;:\\"/[]?=')


def _go_replace(err: UnicodeDecodeError):
    """Go writes U+FFFD for each byte of an invalid UTF-8 sequence (json.Marshal,
    utf8.DecodeRune): one per byte, where Python's "replace" may give one per run."""
    return "\ufffd" * (err.end - err.start), err.end


codecs.register_error("go_replace", _go_replace)


def go_string(raw: bytes) -> str:
    return raw.decode("utf-8", errors="go_replace")


class FormError(ValueError):
    """ParseForm's error, with Go's message."""


def _go_quote(s: str) -> str:
    """strconv.Quote of a byte string (here as latin-1 text)."""
    out = []
    for c in s:
        if c in '"\\':
            out.append("\\" + c)
        elif " " <= c <= "~":
            out.append(c)
        else:
            out.append("\\x%02x" % ord(c))
    return '"' + "".join(out) + '"'


def _unescape(s: str, plus: bool) -> bytes:
    """url.QueryUnescape (plus: "+" is a space) or url.PathUnescape; FormError on a
    bad escape, with Go's message."""
    i = s.find("%")
    while i >= 0:
        if i + 2 >= len(s) or s[i + 1] not in _HEX or s[i + 2] not in _HEX:
            raise FormError("invalid URL escape " + _go_quote(s[i:i + 3]))
        i = s.find("%", i + 3)
    if plus:
        s = s.replace("+", " ")
    # the text is the request's bytes as latin-1 (the wire's bytes, one per char)
    return unquote_to_bytes(s.encode("latin-1", errors="surrogateescape"))


def parse_query(query: str, form: dict) -> Optional[str]:
    """url.ParseQuery into ``form`` (name -> values, in order); Go's first error
    message or None. Like Go, it goes on past a bad pair."""
    err = None
    for pair in query.split("&"):
        if ";" in pair:
            err = err or "invalid semicolon separator in query"
            continue
        if pair == "":
            continue
        key, _, value = pair.partition("=")
        try:
            k = go_string(_unescape(key, True))
            v = go_string(_unescape(value, True))
        except FormError as e:
            err = err or str(e)
            continue
        form.setdefault(k, []).append(v)
    return err


def _token(s: str) -> tuple:
    i = 0
    while i < len(s) and 0x20 < ord(s[i]) < 0x7F and s[i] not in _TSPECIALS:
        i += 1
    return s[:i], s[i:]


def media_type(v: str) -> tuple:
    """mime.ParseMediaType's media type (lower case) and error message (or None), as
    far as ParseForm uses them: the type, and whether the parameters parse."""
    base = v.split(";", 1)[0]
    mt = base.strip().lower()
    typ, rest = _token(mt)
    if typ == "":
        return "", "mime: no media type"
    if rest:
        if not rest.startswith("/"):
            return "", "mime: expected slash after first token"
        sub, rest = _token(rest[1:])
        if sub == "":
            return "", "mime: expected token after slash"
        if rest:
            return "", "mime: unexpected content after media subtype"
    v = v[len(base):]
    while v:
        v = v.lstrip()
        if not v:
            break
        key, v2 = _param(v)
        if key == "":
            if v.strip() == ";":
                break
            return mt, "mime: invalid media parameter"
        v = v2
    return mt, None


def _param(v: str) -> tuple:
    """consumeMediaParam: ("", v) when it does not parse."""
    rest = v.lstrip()
    if not rest.startswith(";"):
        return "", v
    rest = rest[1:].lstrip()
    name, rest = _token(rest)
    if name == "":
        return "", v
    rest = rest.lstrip()
    if not rest.startswith("="):
        return "", v
    rest = rest[1:].lstrip()
    if rest.startswith('"'):
        i, buf = 1, []
        while i < len(rest):
            c = rest[i]
            if c == '"':
                return name, rest[i + 1:]
            if c == "\\" and i + 1 < len(rest):
                i += 1
            buf.append(rest[i])
            i += 1
        return "", v
    value, rest = _token(rest)
    if value == "":
        return "", v
    return name, rest


def parse_form(method: str, query: str, body: bytes, content_type: str) -> tuple:
    """Request.ParseForm -> (form, error message or None): the body's pairs first
    (POST, PUT and PATCH with a form Content-Type), then the query's."""
    form: dict = {}
    err = None
    if method in ("POST", "PUT", "PATCH"):
        ct, err = media_type(content_type or "application/octet-stream")
        if ct == "application/x-www-form-urlencoded":
            e = parse_query(body.decode("latin-1"), form)
            err = err or e
    e = parse_query(query, form)
    return form, err or e


def clean_path(p: str) -> str:
    """ServeMux's cleanPath: path.Clean, keeping a trailing slash."""
    if p == "":
        return "/"
    if not p.startswith("/"):
        p = "/" + p
    np = posixpath.normpath(p)
    if np.startswith("//"):
        np = "/" + np.lstrip("/")
    if p.endswith("/") and np != "/":
        np += "/"
    return np


def unescape_path(raw_path: str) -> str:
    """Request.URL.Path: the path with its escapes decoded ("+" stays)."""
    try:
        return go_string(_unescape(raw_path, False))
    except FormError:       # Go's server refuses such a request line before any handler
        return go_string(raw_path.encode("latin-1", errors="surrogateescape"))


def path_redirect(method: str, raw_path: str, query: str) -> Optional[tuple]:
    """ServeMux's 301 to the clean path (status, headers, body), or None when the
    path is clean (or the method CONNECT, whose path ServeMux leaves as it is)."""
    if method == "CONNECT":
        return None
    path = unescape_path(raw_path)
    clean = clean_path(path)
    if clean == path:
        return None
    url = quote(clean.encode("utf-8", errors="surrogateescape"), safe="/$&+,:;=@")
    if query:
        url += "?" + query
    headers = [("Location", url)]
    body = b""
    if method in ("GET", "HEAD"):
        headers.append(("Content-Type", "text/html; charset=utf-8"))
    if method == "GET":
        body = b'<a href="' + _html_escape(url).encode() + b'">Moved Permanently</a>.\n\n'
    return 301, headers, body


def _html_escape(s: str) -> str:
    return (s.replace("&", "&amp;").replace("'", "&#39;").replace("<", "&lt;")
            .replace(">", "&gt;").replace('"', "&#34;"))
