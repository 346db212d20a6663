"""kvcore/gateway/goscan.py against the messages etcd 3.5.1's gateway gave for the same
input (tests/fuzz/test_gateway_diff.py compares them live): json.Unmarshal's for a
quoted integer's text, json.Decoder's for a request body."""
import pytest

from kvcore.gateway import goscan

UNMARSHAL = [
    (b"", "unexpected end of JSON input"),
    (b"-", "invalid character ' ' in numeric literal"),   # scanner.eof steps a space
    (b"1.", "invalid character ' ' after decimal point in numeric literal"),
    (b"1e+", "invalid character ' ' in exponent of numeric literal"),
    (b"tr", "invalid character ' ' in literal true (expecting 'u')"),
    (b"nul", "invalid character ' ' in literal null (expecting 'l')"),
    (b"\"abc", "unexpected end of JSON input"),
    (b"01", "invalid character '1' after top-level value"),
    (b"\\udb70", "invalid character '\\\\' looking for beginning of value"),
    (b"\x7f", "invalid character '\\u007f' looking for beginning of value"),
    (b"\x01", "invalid character '\\x01' looking for beginning of value"),
    (b"\xc3\xa9", "invalid character '\xc3' looking for beginning of value"),
    (b"[1,]", "invalid character ']' looking for beginning of value"),
    (b'{"a" 1}', "invalid character '1' after object key"),
    (b'"\\u12g"', "invalid character 'g' in \\u hexadecimal character escape"),
    (b" 5 ", None), (b"1.5e-3", None), (b"null", None), (b'{"a":[1,{}]}', None),
]


@pytest.mark.parametrize("raw,message", UNMARSHAL)
def test_unmarshal_messages(raw, message):
    assert goscan.check_valid(raw) == message


DECODER = [
    (b"", "EOF"), (b"  ", "EOF"),
    (b"-", "unexpected EOF"), (b'{"key": "YQ=="', "unexpected EOF"),
    (b"-}", "invalid character '}' in numeric literal"),
    (b"9.\xd6", "invalid character '\xd6' after decimal point in numeric literal"),
    (b'{"key": tu}', "invalid character 'u' in literal true (expecting 'r')"),
    (b"1x", None),                    # the first value is read; the rest is not
    (b'{"a":1} garbage', None),
]


@pytest.mark.parametrize("raw,message", DECODER)
def test_decoder_messages(raw, message):
    assert goscan.decoder_error(raw) == message


def test_nesting_limit():
    assert goscan.check_valid(b"[" * 10001) == "exceeded max depth"
    assert goscan.check_valid(b"[" * 100 + b"]" * 100) is None
