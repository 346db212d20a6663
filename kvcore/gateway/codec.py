"""JSON <-> protobuf as etcd 3.5's grpc-gateway does it (golang/protobuf jsonpb).

Out: proto field names (OrigName), fields in declaration order, defaults omitted,
64-bit integers as strings, bytes as standard base64, enums by name, compact, with
Go's HTML-safe escaping. In: proto or camelCase names, unknown fields ignored,
64-bit integers as numbers or strings, bytes decoded as Go's encoding/json does
(so a bad one is ``illegal base64 data at input byte N``), invalid UTF-8 replaced
by U+FFFD; errors carry Go's messages, since clients show them to users.
"""
from __future__ import annotations

import base64
import binascii
import json
import json.scanner
import re

from google.protobuf.descriptor import FieldDescriptor as FD

from kvcore.gateway import goscan

_INT64 = {FD.TYPE_INT64, FD.TYPE_UINT64, FD.TYPE_SINT64, FD.TYPE_FIXED64, FD.TYPE_SFIXED64}
_INT32 = {FD.TYPE_INT32, FD.TYPE_SINT32, FD.TYPE_SFIXED32}
_UINT32 = {FD.TYPE_UINT32, FD.TYPE_FIXED32}
_GO_TYPE = {FD.TYPE_INT64: "int64", FD.TYPE_SINT64: "int64", FD.TYPE_SFIXED64: "int64",
            FD.TYPE_UINT64: "uint64", FD.TYPE_FIXED64: "uint64", FD.TYPE_INT32: "int32",
            FD.TYPE_SINT32: "int32", FD.TYPE_SFIXED32: "int32", FD.TYPE_UINT32: "uint32",
            FD.TYPE_FIXED32: "uint32", FD.TYPE_BOOL: "bool", FD.TYPE_STRING: "string",
            FD.TYPE_BYTES: "[]uint8", FD.TYPE_DOUBLE: "float64", FD.TYPE_FLOAT: "float32"}
_RANGE = {"int64": (-(1 << 63), (1 << 63) - 1), "uint64": (0, (1 << 64) - 1),
          "int32": (-(1 << 31), (1 << 31) - 1), "uint32": (0, (1 << 32) - 1)}


class DecodeError(ValueError):
    """A request body etcd's gateway refuses (400, code InvalidArgument)."""


# ---------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------

_K_MSG, _K_INT64, _K_BYTES, _K_ENUM, _K_PLAIN = range(5)
_PLAN: dict = {}   # field descriptor -> (name, repeated, kind, declaration index)


def _plan(fd) -> tuple:
    p = _PLAN.get(fd)
    if p is None:
        t = fd.type
        kind = (_K_MSG if t == FD.TYPE_MESSAGE else _K_INT64 if t in _INT64 else
                _K_BYTES if t == FD.TYPE_BYTES else _K_ENUM if t == FD.TYPE_ENUM else _K_PLAIN)
        p = _PLAN[fd] = (fd.name, fd.is_repeated, kind, fd.index)
    return p


def to_obj(msg) -> dict:
    """A message as the dict jsonpb would write (OrigName, EmitDefaults off)."""
    out = {}
    last = -1
    ordered = True
    for fd, value in msg.ListFields():
        name, repeated, kind, index = _plan(fd)
        if index < last:
            ordered = False
        last = index
        if repeated:
            out[name] = [_value(fd, kind, v) for v in value]
        else:
            out[name] = _value(fd, kind, value)
    if not ordered:   # declaration order, as Go's struct fields
        order = {_plan(fd)[0]: _plan(fd)[3] for fd in msg.DESCRIPTOR.fields}
        out = dict(sorted(out.items(), key=lambda kv: order[kv[0]]))
    return out


def _value(fd, kind, v):
    if kind == _K_PLAIN:
        return v
    if kind == _K_MSG:
        return to_obj(v)
    if kind == _K_INT64:
        return str(v)
    if kind == _K_BYTES:
        return base64.b64encode(v).decode()
    ev = fd.enum_type.values_by_number.get(v)
    return ev.name if ev is not None else v


_HTML = re.compile("[<>&\u2028\u2029]")
_HTML_ESC = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
             "\u2028": "\\u2028", "\u2029": "\\u2029"}


def dumps(obj) -> bytes:
    """Compact JSON with Go's escaping of <, >, & and the line separators."""
    s = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    if _HTML.search(s):
        s = _HTML.sub(lambda m: _HTML_ESC[m.group()], s)
    return s.encode()


def encode(msg) -> bytes:
    return dumps(to_obj(msg))


# ---------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------

def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")   # Python takes NaN and Infinity; Go does not


_DECODER = json.JSONDecoder(parse_constant=_no_constant)


def loads_stream(body: bytes) -> list:
    """Every JSON value of a request body (a streaming call's messages, in order).
    A value that does not parse ends the list there, as the gateway stops
    reading; ``DecodeError`` only when the first one is bad."""
    text = body.decode("utf-8", errors="replace")
    dec = _DECODER
    out, pos, n = [], 0, len(text)
    while True:
        while pos < n and text[pos] in " \t\r\n":
            pos += 1
        if pos >= n:
            return out
        try:
            obj, pos = dec.raw_decode(text, pos)
        except RecursionError:   # Go's decoder stops at 10000 levels
            if not out:
                raise DecodeError("exceeded max depth") from None
            return out
        except ValueError:   # JSONDecodeError, or a constant Go does not take
            if not out:
                raise DecodeError(_first_syntax_error(body)) from None
            return out
        out.append(obj)


def loads(body: bytes):
    """The first JSON value of a body (None when empty), as Go's json.Decoder."""
    if not body:
        return None
    try:   # the usual body: one value of valid UTF-8 (the same decoder, in one call)
        value = _DECODER.decode(body.decode("utf-8"))
    except (ValueError, RecursionError):
        values = loads_stream(body)   # several values, invalid UTF-8 or JSON
        value = values[0] if values else None
    if not isinstance(value, (dict, list)) and value is not None:
        # Python ends a number where Go's scanner finds an error ("9.x"): Go's word.
        bad = goscan.decoder_error(body)
        if bad and bad != "EOF":
            raise DecodeError(bad)
    return value


def _first_syntax_error(body: bytes) -> str:
    """Go's json.Decoder message for the first value of ``body``."""
    return goscan.decoder_error(body) or "unexpected EOF"


def go_b64decode(s: str) -> bytes:
    """Go's base64.StdEncoding.DecodeString, with its error offsets."""
    src = s.replace("\r", "").replace("\n", "")
    if len(src) % 4 == 0 and "=" not in src[:-2]:
        try:
            return base64.b64decode(src, validate=True)
        except (binascii.Error, ValueError):
            pass
    raise DecodeError(f"illegal base64 data at input byte {_b64_error_at(s)}")


_B64 = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")


def _b64_error_at(s: str) -> int:
    """The offset Go's decoder reports (a port of its decodeQuantum loop). Offsets
    are in UTF-8 bytes of the string, as Go counts them."""
    b = s.encode()
    n, si = len(b), 0
    while True:
        j = 0
        while j < 4:
            if si == n:
                if j == 0:
                    return -1      # no error (not reached: the fast path decoded it)
                return si - j
            ch = chr(b[si])
            si += 1
            if ch in _B64:
                j += 1
                continue
            if ch in "\r\n":
                continue
            if ch != "=":
                return si - 1
            # Padding: only after two or three characters of a quantum.
            if j in (0, 1):
                return si - 1
            if j == 2:
                while si < n and chr(b[si]) in "\r\n":
                    si += 1
                if si == n:
                    return n
                if chr(b[si]) != "=":
                    return si - 1
                si += 1
            while si < n and chr(b[si]) in "\r\n":
                si += 1
            if si < n:
                return si
            return -1
        # a full quantum; go on


def fill(msg, obj) -> None:
    """Set ``msg``'s fields from a decoded JSON object (jsonpb's rules)."""
    if obj is None:
        return
    if not isinstance(obj, dict):
        raise DecodeError(f"json: cannot unmarshal {_json_kind(obj)} into Go value of "
                          f"type map[string]json.RawMessage")
    # In declaration order, as jsonpb walks the message's fields (so the first error
    # is that of the first field declared, whatever the body's order); the JSON name
    # wins over the proto name when a body has both. Unknown fields are ignored.
    plan = _FIELDS.get(msg.DESCRIPTOR.full_name) or _field_plan(msg.DESCRIPTOR)
    present = {}
    for key, value in obj.items():
        f = plan.get(key)
        if f is not None and (f[2] or f[0] not in present):
            present[f[0]] = (f[1], value)
    for _, (fd, value) in sorted(present.items()) if len(present) > 1 else present.items():
        if value is None:
            continue   # null: the default
        if fd.is_repeated:
            if not isinstance(value, list):
                raise DecodeError(f"json: cannot unmarshal {_json_kind(value)} into Go "
                                  f"value of type []json.RawMessage")
            target = getattr(msg, fd.name)
            for item in value:
                if fd.type == FD.TYPE_MESSAGE:
                    fill(target.add(), item)
                else:
                    target.append(_scalar(fd, item))
        elif fd.type == FD.TYPE_MESSAGE:
            sub = getattr(msg, fd.name)
            sub.SetInParent()
            fill(sub, value)
        else:
            setattr(msg, fd.name, _scalar(fd, value))


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _go_string(v: str) -> str:
    """Go's json replaces an invalid UTF-8 byte (kept here as a surrogate escape) and
    a lone surrogate escape (\\ud800) by U+FFFD; protobuf refuses both."""
    if v.isascii():
        return v
    return _LONE_SURROGATE.sub("\ufffd", v) if _LONE_SURROGATE.search(v) else v


def _byte_array(items: list) -> bytes:
    out = bytearray()
    for x in items:
        if x is None:
            out.append(0)
        elif isinstance(x, int) and not isinstance(x, bool) and 0 <= x <= 255:
            out.append(x)
        elif isinstance(x, (int, float)) and not isinstance(x, bool):
            raise DecodeError(f"json: cannot unmarshal number {json.dumps(x)} into Go "
                              "value of type uint8")
        else:
            raise DecodeError(f"json: cannot unmarshal {_json_kind(x)} into Go value of "
                              "type uint8")
    return bytes(out)


_PLAIN_INT = re.compile(r"-?(?:0|[1-9][0-9]{0,19})")
_FIELDS: dict = {}   # message full name -> {JSON or proto name: (index, fd, is JSON name)}


def _field_plan(desc) -> dict:
    plan = {}
    for i, fd in enumerate(desc.fields):
        plan[fd.name] = (i, fd, fd.json_name == fd.name)
        plan[fd.json_name] = (i, fd, True)
    _FIELDS[desc.full_name] = plan
    return plan


def _json_kind(v) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


def _scalar(fd, v):
    t = fd.type
    go = _GO_TYPE.get(t, "")
    if t == FD.TYPE_BYTES:
        if isinstance(v, list):   # encoding/json fills a []byte from an array of numbers
            return _byte_array(v)
        if not isinstance(v, str):
            raise DecodeError(f"json: cannot unmarshal {_json_kind(v)} into Go value of type []uint8")
        return go_b64decode(_go_string(v))
    if t == FD.TYPE_STRING:
        if not isinstance(v, str):
            raise DecodeError(f"json: cannot unmarshal {_json_kind(v)} into Go value of type string")
        return _go_string(v)
    if t == FD.TYPE_BOOL:
        if not isinstance(v, bool):
            raise DecodeError(f"json: cannot unmarshal {_json_kind(v)} into Go value of type bool")
        return v
    if t == FD.TYPE_ENUM:
        if isinstance(v, str):
            ev = fd.enum_type.values_by_name.get(v)
            if ev is None:
                # Go's %q of the JSON text of the value.
                raise DecodeError(f"unknown value {json.dumps(json.dumps(v))} for enum "
                                  f"{fd.enum_type.full_name}")
            return ev.number
        if isinstance(v, int) and not isinstance(v, bool):
            if not -2 ** 31 <= v < 2 ** 31:   # an enum is an int32 (etcd 3.5.1's answer)
                raise DecodeError(f"json: cannot unmarshal number {v} into Go value of "
                                  "type protoreflect.EnumNumber")
            return v
        raise DecodeError(f"invalid value for enum type: {json.dumps(v)}")
    if t in (FD.TYPE_DOUBLE, FD.TYPE_FLOAT):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise DecodeError(f"json: cannot unmarshal {_json_kind(v)} into Go value of type {go}")
        return float(v)
    # Integers: jsonpb takes a number, or a quoted one whose text (quotes stripped,
    # escapes NOT decoded) it hands to json.Unmarshal.
    raw = v
    if isinstance(v, str) and _PLAIN_INT.fullmatch(v) and not hasattr(v, "raw"):
        raw = int(v)      # the usual case: digits, which are their own text
    elif isinstance(v, str):
        text = getattr(v, "raw", None)
        if text is None:    # decoded by the fast path: its text, as near as it can be told
            text = json.dumps(v, ensure_ascii=False)[1:-1]
        bad = goscan.check_valid(text.encode("utf-8", "surrogateescape"))
        if bad:
            raise DecodeError(bad)
        raw = json.loads(text)
        if raw is None:       # "null": json.Unmarshal leaves the zero value
            return 0
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        raise DecodeError(f"json: cannot unmarshal {_json_kind(raw)} into Go value of type {go}")
    lo, hi = _RANGE[go]
    if isinstance(raw, float) or not lo <= raw <= hi:
        text = v if isinstance(v, str) else json.dumps(v)
        raise DecodeError(f"json: cannot unmarshal number {text} into Go value of type {go}")
    return raw


def decode(body: bytes, cls):
    """A request message from a unary call's body (empty body: the empty message)."""
    msg = cls()
    try:
        obj = loads(body)
        # With escapes or invalid UTF-8 in the body, strings keep their text as sent,
        # which is what jsonpb hands json.Unmarshal for a quoted integer (_scalar).
        # A plain body's strings are their own text: the fast path.
        if b"\\" in body or (not body.isascii() and not _is_utf8(body)):
            obj = (_RawDecoder().decode_stream(body) or [obj])[0]
        fill(msg, obj)
    except RecursionError:
        raise DecodeError("exceeded max depth") from None
    return msg


def _is_utf8(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


class RawStr(str):
    """A decoded JSON string that keeps its text between the quotes (``raw``)."""
    raw: str


def _raw_scanstring(s: str, end: int, strict: bool = True):
    val, after = json.decoder.scanstring(s, end, strict)
    r = RawStr(val)
    r.raw = s[end:after - 1]
    return r, after


class _RawDecoder(json.JSONDecoder):
    """The pure-Python scanner with string values as RawStr (keys stay plain)."""

    def __init__(self):
        super().__init__(parse_constant=_no_constant)
        self.parse_string = _raw_scanstring
        self.scan_once = json.scanner.py_make_scanner(self)

    def decode_stream(self, body: bytes) -> list:
        text = body.decode("utf-8", errors="surrogateescape")
        pos = len(text) - len(text.lstrip(" \t\r\n"))
        try:
            return [self.raw_decode(text, pos)[0]] if pos < len(text) else []
        except (ValueError, RecursionError):
            return []
