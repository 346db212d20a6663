"""ext/proposer.pyx against its twin kvcore/server/proposer_py.py: one random sequence
of proposals, loop turns, takes, waiter look-ups and failures gives both the same
entry bytes, the same batches and the same futures."""
import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvcore import _ext

C = _ext.compiled("proposer")
P = _ext.twin("proposer")

ops = st.lists(st.one_of(
    st.tuples(st.just("propose"), st.integers(0, 255), st.binary(max_size=24)),
    st.tuples(st.just("propose"), st.integers(0, 255), st.binary(max_size=24)),
    st.tuples(st.just("turn")),
    st.tuples(st.just("take")),
    st.tuples(st.just("has_pending")),
    st.tuples(st.just("waiter"), st.integers(0, 40)),
    st.tuples(st.just("fail_all")),
    st.tuples(st.just("len")),
), max_size=40)


def run(mod, member_id, now_ms, script):
    """Plays ``script`` on a fresh proposer; -> the observable transcript."""
    loop = asyncio.new_event_loop()
    try:
        batches = []
        prop = mod.Proposer(loop, member_id, now_ms, lambda: batches.append(len(batches)))
        futs, out, ids = [], [], []
        for op, *args in script:
            if op == "propose":
                futs.append(prop.propose(args[0], args[1]))
            elif op == "turn":
                loop.run_until_complete(asyncio.sleep(0))
                out.append(("batches", len(batches)))
            elif op == "take":
                datas = prop.take()
                out.append(("take", datas))
                ids += [mod.decode_entry_data(d) for d in datas]
            elif op == "has_pending":
                out.append(("pending", prop.has_pending()))
            elif op == "waiter":
                rid = ids[args[0] % len(ids)][0] if ids else args[0]
                fut = prop.waiter(rid)
                out.append(("waiter", None if fut is None else futs.index(fut)))
            elif op == "fail_all":
                prop.fail_all(RuntimeError("lost leadership"))
            elif op == "len":
                out.append(("len", len(prop)))
        states = [("failed" if f.done() and f.exception() else "done" if f.done() else "open")
                  for f in futs]
        return out, ids, states, len(batches)
    finally:
        loop.close()


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1), ops)
def test_same_transcript(member_id, now_ms, script):
    assert run(C, member_id, now_ms, script) == run(P, member_id, now_ms, script)


@given(st.binary(max_size=30))
def test_decode_entry_data(data):
    if len(data) < 9:
        for mod in (C, P):
            with pytest.raises(ValueError):
                mod.decode_entry_data(data)
    else:
        assert C.decode_entry_data(data) == P.decode_entry_data(data)


def test_request_ids_wrap_alike():
    """The id counter sits in the low byte-and-a-bit; 2**64 - 1 wraps to 0 in both."""
    assert run(C, 2**64 - 1, 2**64 - 1, [("propose", 1, b"")] * 300 + [("take",)]) == \
        run(P, 2**64 - 1, 2**64 - 1, [("propose", 1, b"")] * 300 + [("take",)])
