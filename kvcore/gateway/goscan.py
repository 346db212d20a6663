"""Go's encoding/json validity scanner (scanner.go's checkValid), for the error text
json.Unmarshal gives on bad input: jsonpb unmarshals a quoted 64-bit integer by
stripping the quotes and handing the raw text to json.Unmarshal, so a bad one is
reported as Go's scanner sees it (``invalid character 'x' in numeric literal``,
``unexpected end of JSON input``). Works on bytes, as Go's scanner does."""
from __future__ import annotations

from typing import Optional

_SPACE = b" \t\r\n"
_DIGITS = b"0123456789"
_HEX = b"0123456789abcdefABCDEF"
_ESC = b'bfnrt\\/"'
MAX_DEPTH = 10000
_GO_ESCAPES = {7: "\\a", 8: "\\b", 12: "\\f", 10: "\\n", 13: "\\r", 9: "\\t", 11: "\\v",
               0x5C: "\\\\"}


def quote_byte(b: int) -> str:
    """Go's quoteChar: one byte shown as the rune of that value, as strconv.Quote
    would print it, in single quotes."""
    if b == 0x27:
        return "'\\''"
    if b == 0x22:
        return "'\"'"
    if b in _GO_ESCAPES:
        return "'" + _GO_ESCAPES[b] + "'"
    if b < 0x20:
        return "'\\x%02x'" % b
    if b >= 0x7F and (b < 0xA1 or b == 0xAD):   # not strconv.IsPrint (DEL: \u007f)
        return "'\\u%04x'" % b
    return "'" + chr(b) + "'"


class _Invalid(Exception):
    pass


def _err(c: int, context: str):
    raise _Invalid(f"invalid character {quote_byte(c)} {context}")


def check_valid(data: bytes) -> Optional[str]:
    """None if ``data`` is one valid JSON value (with surrounding space), else the
    message Go's json.Unmarshal gives."""
    stack = []   # "k" object key expected, "v" object value, "a" array value
    state = "begin"
    try:
        for c in data:
            state = _step(state, c, stack)
        state = _step(state, 0x20, stack)   # scanner.eof: one more space
    except _Invalid as e:
        return str(e)
    if stack or state != "top":
        return "unexpected end of JSON input"
    return None


def decoder_error(data: bytes) -> Optional[str]:
    """The error a json.Decoder gives reading the first value of ``data`` (what
    follows a complete first value is not read): None if it reads one, "EOF" for
    nothing but space."""
    stack: list = []
    state = "begin"
    started = False
    try:
        for c in data:
            if state == "top":
                return None
            state = _step(state, c, stack)
            started = started or state != "begin"
    except _Invalid as e:
        if state in ("num1", "num0", "dot0", "e0") and not stack:
            return None    # a number ended by what follows it: the value is read
        return str(e)
    if state == "top" or (not stack and state in ("num1", "num0", "dot0", "e0")):
        return None
    return "unexpected EOF" if started else "EOF"


def _end_value(c: int, stack: list) -> str:
    if not stack:
        return _end_top(c)
    if c in _SPACE:
        return "end"
    top = stack[-1]
    if top == "k":
        if c == 0x3A:
            stack[-1] = "v"
            return "begin"
        _err(c, "after object key")
    if top == "v":
        if c == 0x2C:
            stack[-1] = "k"
            return "begin_string"
        if c == 0x7D:
            stack.pop()
            return "end" if stack else "top"
        _err(c, "after object key:value pair")
    if c == 0x2C:
        return "begin"
    if c == 0x5D:
        stack.pop()
        return "end" if stack else "top"
    _err(c, "after array element")


def _end_top(c: int) -> str:
    if c not in _SPACE:
        _err(c, "after top-level value")
    return "top"


def _push(stack: list, kind: str) -> None:
    stack.append(kind)
    if len(stack) > MAX_DEPTH:
        raise _Invalid("exceeded max depth")


def _begin_value(c: int, stack: list) -> str:
    if c in _SPACE:
        return "begin"
    if c == 0x7B:
        _push(stack, "k")
        return "begin_string_or_empty"
    if c == 0x5B:
        _push(stack, "a")
        return "begin_value_or_empty"
    if c == 0x22:
        return "str"
    if c == 0x2D:
        return "neg"
    if c == 0x30:
        return "num0"
    if 0x31 <= c <= 0x39:
        return "num1"
    if c in b"tfn":
        return chr(c)
    _err(c, "looking for beginning of value")


_LITERALS = {"t": ("r", "tr", "true"), "tr": ("u", "tru", "true"), "tru": ("e", None, "true"),
             "f": ("a", "fa", "false"), "fa": ("l", "fal", "false"),
             "fal": ("s", "fals", "false"), "fals": ("e", None, "false"),
             "n": ("u", "nu", "null"), "nu": ("l", "nul", "null"), "nul": ("l", None, "null")}


def _step(state: str, c: int, stack: list) -> str:
    if state == "begin":
        return _begin_value(c, stack)
    if state == "begin_value_or_empty":
        if c in _SPACE:
            return state
        if c == 0x5D:
            return _end_value(c, stack)
        return _begin_value(c, stack)
    if state == "begin_string_or_empty":
        if c in _SPACE:
            return state
        if c == 0x7D:
            stack[-1] = "v"
            return _end_value(c, stack)
        state = "begin_string"
    if state == "begin_string":
        if c in _SPACE:
            return state
        if c == 0x22:
            return "str"
        _err(c, "looking for beginning of object key string")
    if state in ("end", "top"):
        return _end_value(c, stack) if stack else _end_top(c)
    if state == "str":
        if c == 0x22:
            return "end" if stack else "top"
        if c == 0x5C:
            return "esc"
        if c < 0x20:
            _err(c, "in string literal")
        return "str"
    if state == "esc":
        if c in _ESC:
            return "str"
        if c == 0x75:
            return "u0"
        _err(c, "in string escape code")
    if state in ("u0", "u1", "u2", "u3"):
        if c in _HEX:
            return "str" if state == "u3" else "u" + str(int(state[1]) + 1)
        _err(c, "in \\u hexadecimal character escape")
    if state == "neg":
        if c == 0x30:
            return "num0"
        if 0x31 <= c <= 0x39:
            return "num1"
        _err(c, "in numeric literal")
    if state == "num1" and c in _DIGITS:
        return "num1"
    if state in ("num1", "num0"):
        if c == 0x2E:
            return "dot"
        if c in b"eE":
            return "e"
        return _end_value(c, stack)
    if state == "dot":
        if c in _DIGITS:
            return "dot0"
        _err(c, "after decimal point in numeric literal")
    if state == "dot0":
        if c in _DIGITS:
            return "dot0"
        if c in b"eE":
            return "e"
        return _end_value(c, stack)
    if state == "e" and c in b"+-":
        return "esign"
    if state in ("e", "esign"):
        if c in _DIGITS:
            return "e0"
        _err(c, "in exponent of numeric literal")
    if state == "e0":
        if c in _DIGITS:
            return "e0"
        return _end_value(c, stack)
    want, nxt, word = _LITERALS[state]
    if c != ord(want):
        _err(c, f"in literal {word} (expecting {quote_byte(ord(want))})")
    return nxt if nxt else ("end" if stack else "top")
