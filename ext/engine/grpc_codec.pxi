# gRPC over HTTP/2 header rules (included by grpc_engine.pyx).
#
# Contract: the response header names and values nghttp2 may send without copying
# (static C strings); which request headers the engine consumes itself (everything
# else becomes the call's metadata, "-bin" keys base64-decoded); grpc-timeout parsing
# (``parse_timeout``: 1-8 digits and a unit, else None = no deadline) and the
# grpc-message percent-encoding (``percent_encode``), both pinned by tests against
# plain-Python versions (tests/unit/engine/test_grpc_codec.py).


# Static header strings (NO_COPY for nghttp2).
cdef char* S_STATUS = b":status"
cdef char* S_200 = b"200"
cdef char* S_CT = b"content-type"
cdef char* S_GRPC = b"application/grpc"
cdef char* S_GSTATUS = b"grpc-status"
cdef char* S_GMESSAGE = b"grpc-message"
cdef char* S_0 = b"0"

cdef uint8_t NOCOPY = NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE

# Headers the engine consumes itself; everything else is metadata.
cdef frozenset _RESERVED = frozenset([
    b"content-type", b"te", b"grpc-timeout", b"grpc-encoding",
    b"grpc-accept-encoding", b"content-length"])

_TIMEOUT_UNITS = {ord("H"): 3600.0, ord("M"): 60.0, ord("S"): 1.0,
                  ord("m"): 1e-3, ord("u"): 1e-6, ord("n"): 1e-9}


cdef inline void _nv(nghttp2_nv* nv, char* name, size_t nl, char* value, size_t vl,
                     uint8_t flags) noexcept:
    nv.name = <uint8_t*>name
    nv.namelen = nl
    nv.value = <uint8_t*>value
    nv.valuelen = vl
    nv.flags = flags


def percent_encode(str message) -> bytes:
    """grpc-message encoding: printable ASCII except '%' as is, the rest %XX of UTF-8."""
    raw = message.encode("utf-8", "replace")
    out = bytearray()
    for b in raw:
        if 0x20 <= b <= 0x7E and b != 0x25:
            out.append(b)
        else:
            out += b"%%%02X" % b
    return bytes(out)


def parse_timeout(bytes value):
    """grpc-timeout ("100m", "5S", ...) in seconds, or None if malformed."""
    if not 2 <= len(value) <= 9:
        return None
    cdef Py_ssize_t last = len(value) - 1
    unit = _TIMEOUT_UNITS.get(value[last])
    digits = value[:last]
    if unit is None or not digits.isdigit():
        return None
    return int(digits) * unit
