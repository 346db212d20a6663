"""ext/walcodec.pyx against its twin kvcore/storage/walcodec_py.py: the same CRCs, the
same record bytes, the same decoder results on valid, truncated and corrupted logs."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvcore import _ext

C = _ext.compiled("walcodec")
P = _ext.twin("walcodec")

u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)
entries = st.lists(st.tuples(u64, u64, st.integers(0, 255), st.binary(max_size=64)),
                   max_size=8)


@given(st.binary(max_size=300), u32)
def test_crc32c(data, crc):
    assert C.crc32c(data, crc) == P.crc32c(data, crc)


@given(st.binary(max_size=300), u32)
def test_crc32c_instruction_matches_table(data, crc):
    # walcodec uses the CPU's crc32 instruction where it has one; the table is the
    # fallback. Both must agree (this host has SSE4.2: the instruction is in use).
    assert C.HARDWARE_CRC
    assert C.crc32c(data, crc) == C.crc32c_by_table(data, crc)


def test_crc32c_instruction_matches_table_on_1mib():
    data = bytes(range(256)) * 4096 + b"tail"
    assert C.crc32c(data[1:], 7) == C.crc32c_by_table(data[1:], 7) == P.crc32c(data[1:], 7)


def test_crc32c_known_vector():
    # RFC 3720 B.4: CRC-32C of 32 zero bytes
    assert C.crc32c(bytes(32)) == P.crc32c(bytes(32)) == 0x8A9136AA


@given(st.integers(0, 255), st.binary(max_size=200), u32)
def test_encode_record(rtype, payload, prev):
    assert C.encode_record(rtype, payload, prev) == P.encode_record(rtype, payload, prev)


@given(entries, u32, st.none() | st.tuples(st.integers(0, 255), st.binary(max_size=40)))
def test_encode_entries_with_a_tail_record(ents, prev, tail):
    # The tail is framed as encode_record would, chained after the entries.
    blob, crc = C.encode_entries(ents, prev, tail)
    assert (blob, crc) == P.encode_entries(ents, prev, tail)
    head, crc_head = C.encode_entries(ents, prev)
    if tail is None:
        assert (blob, crc) == (head, crc_head)
    else:
        rec, crc_tail = C.encode_record(tail[0], tail[1], crc_head)
        assert (blob, crc) == (head + rec, crc_tail)


@given(entries, u32)
def test_encode_entries_and_decode_entry(ents, prev):
    blob, crc = C.encode_entries(ents, prev)
    assert (blob, crc) == P.encode_entries(ents, prev)
    recs, end, crc_c, stop = C.decode_records(blob, 0, prev)
    assert (recs, end, crc_c, stop) == P.decode_records(blob, 0, prev)
    assert stop == "eof" and crc_c == crc and end == len(blob)
    assert [C.decode_entry(p) for _, p in recs] == [P.decode_entry(p) for _, p in recs] \
        == [tuple(e) for e in ents]


@given(st.binary(max_size=16))
def test_decode_entry_rejects_short_payloads_alike(payload):
    for mod in (C, P):
        if len(payload) < 17:
            with pytest.raises(ValueError):
                mod.decode_entry(payload)
        else:
            mod.decode_entry(payload)


@settings(max_examples=300)
@given(entries, u32, st.data())
def test_decode_records_on_damaged_logs(ents, prev, data):
    """Truncate, zero-pad, flip a byte, or append garbage: both stop at the same
    offset with the same reason, records and CRC."""
    blob, _ = C.encode_entries(ents, prev)
    buf = bytearray(blob)
    damage = data.draw(st.sampled_from(["none", "cut", "zeros", "flip", "garbage"]))
    if damage == "cut" and buf:
        del buf[data.draw(st.integers(0, len(buf) - 1)):]
    elif damage == "zeros":
        buf += bytes(data.draw(st.integers(1, 40)))
    elif damage == "flip" and buf:
        i = data.draw(st.integers(0, len(buf) - 1))
        buf[i] ^= data.draw(st.integers(1, 255))
    elif damage == "garbage":
        buf += data.draw(st.binary(min_size=1, max_size=40))
    offset = data.draw(st.integers(0, len(buf)))
    crc = data.draw(st.one_of(st.just(prev), u32))
    got_c = C.decode_records(bytes(buf), offset, crc)
    assert got_c == P.decode_records(bytes(buf), offset, crc)
    assert got_c == C.decode_records(buf, offset, crc)   # bytearray like bytes
