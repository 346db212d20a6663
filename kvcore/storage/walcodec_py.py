"""Plain-Python twin of ext/walcodec.pyx: same record bytes, same decoder results.

Used when the extension is unavailable (KVCORE_PURE_PYTHON=1) and by tests that
pin the compiled codec's behaviour.
"""
import struct

REC_ENTRY = 1
_HDR = struct.Struct("<IBI")
_ENTRY = struct.Struct("<QQB")


def _table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t.append(c)
    return t


_T = _table()


def crc32c(data, crc=0):
    crc = ~crc & 0xFFFFFFFF
    for b in bytes(data):
        crc = _T[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return ~crc & 0xFFFFFFFF


def encode_record(rtype, payload, prev_crc):
    crc = crc32c(payload, crc32c(bytes([rtype]), prev_crc))
    return _HDR.pack(len(payload), rtype, crc) + payload, crc


def encode_entries(entries, prev_crc, tail=None):
    out = []
    crc = prev_crc
    for index, term, etype, data in entries:
        rec, crc = encode_record(REC_ENTRY, _ENTRY.pack(index, term, etype) + data, crc)
        out.append(rec)
    if tail is not None:
        rec, crc = encode_record(tail[0], tail[1], crc)
        out.append(rec)
    return b"".join(out), crc


def decode_entry(payload):
    if len(payload) < _ENTRY.size:
        raise ValueError("short entry record")
    index, term, etype = _ENTRY.unpack_from(payload)
    return index, term, etype, payload[_ENTRY.size:]


def decode_records(buf, offset, crc):
    buf = memoryview(buf)
    size = len(buf)
    records = []
    while True:
        if offset == size:
            return records, offset, crc, "eof"
        if offset + _HDR.size > size:
            return records, offset, crc, "short"
        n, t, want = _HDR.unpack_from(buf, offset)
        if n == 0:
            return records, offset, crc, "zero"
        if offset + _HDR.size + n > size:
            return records, offset, crc, "short"
        payload = bytes(buf[offset + _HDR.size:offset + _HDR.size + n])
        got = crc32c(payload, crc32c(bytes([t]), crc))
        if got != want:
            return records, offset, crc, "crc"
        records.append((t, payload))
        crc = got
        offset += _HDR.size + n
