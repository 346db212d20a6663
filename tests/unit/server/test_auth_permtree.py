"""kvcore/auth/permtree.py (etcd's interval tree, ported) checked against a plain model
where plain answers exist: for permissions whose range is well formed (a non-empty key
below its range_end, a key alone, from a key on), a key is allowed if some permission
holds it and a range if the permissions cover it without a gap, whatever the tree's
shape. The cases where only etcd's tree answers (the empty key, a range_end below its
key) are compared with etcd 3.5.1 itself in tests/compat/test_auth_regressions.py and
by the auth fuzzer."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from kvcore.api import auth_pb2
from kvcore.auth.permtree import READ, READWRITE, WRITE, IntervalTree, UserPerms

KEYS = [bytes([c]) for c in b"abcdefgh"] + [b"a\x00", b"b1", b"d\xff"]
keys = st.sampled_from(KEYS)


@st.composite
def well_formed(draw):
    key = draw(keys)
    end = draw(st.one_of(st.just(b""), st.just(b"\x00"),
                         keys.filter(lambda e: e > key)))
    return auth_pb2.Permission(key=key, range_end=end,
                               permType=draw(st.sampled_from([READ, WRITE, READWRITE])))


def _interval(key: bytes, end: bytes):
    """[lo, hi) with None for "to the end"."""
    if not end:
        return key, key + b"\x00"
    return key, None if end == b"\x00" else end


def model_allows(perms, key, end, want) -> bool:
    ivs = sorted((_interval(p.key, p.range_end) for p in perms
                  if p.permType in (want, READWRITE)), key=lambda iv: iv[0])
    lo, hi = _interval(key, end)
    if not end:      # a key alone: held by one permission
        return any(a <= key and (b is None or key < b) for a, b in ivs)
    reach = None     # how far from lo the permissions cover without a gap
    for a, b in ivs:
        if a > (lo if reach is None else reach):
            break
        if b is None or (b > lo and (reach is None or b > reach)):
            reach = b if b is not None else None
            if b is None:
                return True
    return reach is not None and hi is not None and reach >= hi


@settings(max_examples=400, deadline=None)
@given(perms=st.lists(well_formed(), max_size=14), key=keys,
       end=st.one_of(st.just(b""), st.just(b"\x00"), keys), want=st.sampled_from([READ, WRITE]))
def test_tree_matches_the_plain_model_for_well_formed_permissions(perms, key, end, want):
    if end and end != b"\x00" and end <= key:
        return   # an empty or inverted query: only the tree answers it
    role = auth_pb2.Role(name=b"r", keyPermission=perms)
    assert UserPerms([role]).allows(key, end, want) == model_allows(perms, key, end, want)


def test_the_empty_key_is_past_every_key():
    t = IntervalTree()
    t.insert(b"", b"")             # etcd's [k, "\0") from-key with k = "": [inf, inf)
    assert not t.contains(b"\x00", b"")
    assert not t.intersects(b"a", b"a\x00")
    t.insert(b"a", b"")            # from "a" on
    assert t.contains(b"a", b"") and t.contains(b"z", b"\xff") and not t.contains(b"\x00", b"b")
