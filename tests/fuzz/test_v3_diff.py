"""Differential fuzzing of the v3 API: hypothesis draws sequences of valid-in-form,
hostile-in-content gRPC requests (tests/fuzz/gen.py); each goes to a fresh kvcore and
a fresh official etcd 3.5.1, and the answers must match after every request (the same
error code and message, or the same response up to the member-specific header fields).
After each sequence: the whole keyspace at the current and at past revisions matches,
and the kvcore member is alive and serving. One pair of servers per module; the
sequences run one after another on the same keyspace, so later ones meet the
compactions, leases and long keys of earlier ones.

The regressions found by the fuzzer are plain tests at the end (docs/decisions.md,
"Differential fuzzing of the v3 API")."""
from __future__ import annotations


import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from kvcore.api import rpc_pb2
from tests import etcd351, servers
from tests.fuzz import diff, gen


class Pair(tuple):
    """(kvcore Server, kvcore Side, etcd Side, Ctx), shown short in hypothesis' reports."""

    def __new__(cls, *parts):
        return super().__new__(cls, parts)

    def __repr__(self):
        return "pair"


def side_pair(tmp_path_factory, name, side, close):
    """A fresh kvcore and etcd 3.5.1 for a module, each behind ``side`` (its client);
    after the module, kvcore must still run with no "fatal" in its log."""
    with servers.kvcore_and_etcd(tmp_path_factory.mktemp(name),
                                 etcd_binary=etcd351.ETCD) as (kv, et):
        ks, es = side(kv.endpoint), side(et.endpoint)
        try:
            yield Pair(kv, ks, es, gen.Ctx())
            assert kv.proc.poll() is None, kv.log()[-3000:]
            assert "fatal" not in kv.log().lower(), kv.log()[-3000:]
        finally:
            close(ks)
            close(es)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    yield from side_pair(tmp_path_factory, "difffuzz", diff.Side, lambda s: s.channel.close())


def _alive(kv):
    assert kv.proc.poll() is None, "kvcore exited:\n" + kv.log()[-3000:]


def run_step(pair, method, req):
    """Send one request to both; assert the same answer; track the oracle's revision."""
    kv, ks, es, ctx = pair
    if method not in ("LeaseCycle", "BigPut"):
        req = gen.resolve(req, ctx)
    if method == "BigPut":       # a value of req bytes, deleted again at once
        return [run_step(pair, "Put", rpc_pb2.PutRequest(key=b"big", value=b"B" * req)),
                run_step(pair, "DeleteRange", rpc_pb2.DeleteRangeRequest(key=b"big"))]
    if method == "LeaseCycle":
        a, b = diff.lease_cycle(ks, req), diff.lease_cycle(es, req)
    elif method == "Watch":
        a, b = diff.watch(ks, es, req, 0 < req.start_revision <= ctx.rev)
    else:
        (a, _), (b, resp) = diff.call(ks, method, req), diff.call(es, method, req)
        if resp is not None and method == "Compact":
            ctx.compact = max(ctx.compact, req.revision)
    _alive(kv)
    assert a == b, f"{method} {str(req)[:3000]}\nkvcore: {a}\netcd:   {b}"
    ctx.rev = int(_revision(es))
    return a


def _revision(side) -> int:
    r = side.kv.Range(rpc_pb2.RangeRequest(key=b"\x00", count_only=True), timeout=diff.TIMEOUT)
    return r.header.revision


def check_keyspace(pair):
    """The whole keyspace now and at a few past revisions (compacted ones included:
    the same error)."""
    kv, ks, es, ctx = pair
    for rev in sorted({0, ctx.rev - 1, ctx.compact, ctx.compact + 1,
                       (ctx.compact + ctx.rev) // 2}):
        if rev >= 0:
            assert diff.keyspace(ks, rev) == diff.keyspace(es, rev), rev
    _alive(kv)
    assert "fatal" not in kv.log().lower(), kv.log()[-3000:]


STEP = gen.step()


def _fuzz(pair, data, max_steps):
    for _ in range(data.draw(st.integers(1, max_steps), label="steps")):
        method, req = data.draw(STEP, label="step")
        run_step(pair, method, req)
    check_keyspace(pair)


# No shrinking: the servers keep their state between examples, so a shrunk sequence
# meets another keyspace; the failing request and both answers are in the message.
COMMON = dict(deadline=None, database=None, phases=(Phase.explicit, Phase.generate),
              report_multiple_bugs=False, suppress_health_check=list(HealthCheck))


@settings(max_examples=40, **COMMON)
@given(data=st.data())
def test_v3_requests_match_etcd(pair, data):
    _fuzz(pair, data, 8)


@pytest.mark.slow
@pytest.mark.timeout(1800)
@settings(max_examples=1000, **COMMON)
@given(data=st.data())
def test_v3_requests_match_etcd_long(pair, data):
    _fuzz(pair, data, 20)


# Differences the fuzzer found, kept as plain tests (each failed before its fix).

def test_watch_of_an_empty_range_is_refused(pair):
    """etcd refuses a watch whose range_end is not past its key (watchStream.Watch:
    ErrEmptyWatcherRange), with watch id -1; kvcore created a watcher that never fired."""
    for key, end in ((b"a", b"a"), (b"b", b"a"), (b"\xff", b"\x01")):
        a = run_step(pair, "Watch", rpc_pb2.WatchCreateRequest(key=key, range_end=end))
        assert "mvcc: watcher range is empty" in a[0][1] and "watch_id: -1" in a[0][1]
    # "\0" is from-key, an empty key is "\0": both are created
    for key, end in ((b"a", b"\x00"), (b"", b""), (b"", b"\x00")):
        a = run_step(pair, "Watch", rpc_pb2.WatchCreateRequest(key=key, range_end=end))
        assert a[0][1].endswith("created: true\n"), a


def test_watch_cancelled_by_compaction_has_no_header_revision(pair):
    """etcd's cancel of a watch that starts below the compaction has revision 0 in its
    header; kvcore sent the current revision."""
    for i in range(3):
        run_step(pair, "Put", rpc_pb2.PutRequest(key=b"c/%d" % i))
    ctx = pair[3]
    run_step(pair, "Compact", rpc_pb2.CompactionRequest(revision=ctx.rev))
    a = run_step(pair, "Watch", rpc_pb2.WatchCreateRequest(key=b"c/0",
                                                            start_revision=ctx.rev - 1))
    assert len(a) == 2 and "compact_revision: %d" % ctx.rev in a[1][1], a


def test_put_checks_its_lease_before_the_key_ignore_value_needs(pair):
    """A put of a missing key with ignore_value and an unknown lease: etcd's applier
    looks the lease up first (NotFound); kvcore said the key was not found. In a txn
    etcd's checkRequestPut looks at the key first: both orders kept."""
    put = rpc_pb2.PutRequest(key=b"nokey/1", lease=424242, ignore_value=True)
    a = run_step(pair, "Put", put)
    assert a == ("error", "NOT_FOUND", "etcdserver: requested lease not found")
    a = run_step(pair, "Txn", rpc_pb2.TxnRequest(success=[rpc_pb2.RequestOp(request_put=put)]))
    assert a == ("error", "INVALID_ARGUMENT", "etcdserver: key not found")


@pytest.mark.parametrize("n", [9, 30, 100])
def test_sorted_range_ties_in_etcds_order(pair, n):
    """etcd sorts a Range with Go's sort.Sort, not stable: keys that tie on the sort
    target come out in the quicksort's order, and a limit keeps that subset. kvcore
    sorted stably. ``n`` keys with few distinct versions, values and create/mod
    revisions (one txn writes several) reach the insertion sort, the partition with
    its duplicate guard, and the ninther pivot."""
    pre = b"s%d/" % n
    for start in range(0, n, 7):     # 7 keys per txn: create/mod revisions tie
        run_step(pair, "Txn", rpc_pb2.TxnRequest(success=[
            rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=pre + b"%03d" % i,
                                                             value=b"v%d" % (i % 3)))
            for i in range(start, min(start + 7, n))]))
    for i in range(0, n, 3):         # versions 1 and 2
        run_step(pair, "Put", rpc_pb2.PutRequest(key=pre + b"%03d" % i, value=b"v%d" % (i % 4)))
    from tests.fuzz.gen import prefix_end
    for target in (1, 2, 3, 4):
        for order in (0, 1, 2):
            for limit in (0, 3):
                run_step(pair, "Range", rpc_pb2.RangeRequest(
                    key=pre, range_end=prefix_end(pre), sort_target=target,
                    sort_order=order, limit=limit, keys_only=target != 4))


def test_txn_range_at_a_negative_revision(pair):
    """Inside a txn etcd's checkRequestRange calls any revision but 0 below the
    compaction (FirstRev) compacted, a negative one too (-1 passes only before any
    compaction); kvcore took a negative one as the current revision. A plain Range
    at -1 reads the current revision in both."""
    ctx = pair[3]
    run_step(pair, "Put", rpc_pb2.PutRequest(key=b"neg", value=b"1"))
    run_step(pair, "Compact", rpc_pb2.CompactionRequest(revision=ctx.rev))
    for rev in (-1, -2):
        a = run_step(pair, "Txn", rpc_pb2.TxnRequest(success=[rpc_pb2.RequestOp(
            request_range=rpc_pb2.RangeRequest(key=b"neg", revision=rev))]))
        assert a == ("error", "OUT_OF_RANGE",
                     "etcdserver: mvcc: required revision has been compacted"), a
        a = run_step(pair, "Range", rpc_pb2.RangeRequest(key=b"neg", revision=rev))
        assert a[0] == "ok" and 'value: "1"' in a[1], a


def test_watch_catch_up_batches_1000_revisions(pair):
    """A watch from a past revision gets the history in responses of up to 1,000
    revisions (etcd's watchBatchMaxRevs), however many events those hold; kvcore cut
    them at 1,000 events. Ten txns of 128 puts: one response of 1,280 events."""
    ctx = pair[3]
    start = ctx.rev + 1
    for t in range(10):
        run_step(pair, "Txn", rpc_pb2.TxnRequest(success=[
            rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"w/%03d" % i, value=b"%d" % t))
            for i in range(128)]))
    a = run_step(pair, "Watch", rpc_pb2.WatchCreateRequest(
        key=b"w/", range_end=gen.prefix_end(b"w/"), start_revision=start))
    assert len(a) == 2 and a[1][1].count("events {") == 1280, [x[1][:200] for x in a]


def test_watch_fragments_as_etcd_cuts_them(pair):
    """A watch with fragment=true whose response reaches the watch server's limit
    (--max-request-bytes + 512 KiB in etcd) is cut where etcd's sendFragments cuts:
    while the encoded response stays below that limit. kvcore cut at
    --max-request-bytes, counting event bytes only."""
    ctx = pair[3]
    start = ctx.rev + 1
    for i, n in enumerate((1_000_000, 500_000, 400_000, 300_000, 10, 1_200_000)):
        run_step(pair, "Put", rpc_pb2.PutRequest(key=b"f/%d" % i, value=b"F" * n))
    a = run_step(pair, "Watch", rpc_pb2.WatchCreateRequest(
        key=b"f/", range_end=gen.prefix_end(b"f/"), start_revision=start, fragment=True))
    assert "fragment: true" in a[1][1] and len(a) == 3, [x[1][:200] for x in a]
    run_step(pair, "DeleteRange", rpc_pb2.DeleteRangeRequest(key=b"f/", range_end=b"f0"))


def test_duplicate_watch_id_refused_with_id_minus_one(pair):
    """A second create with a watch_id already in use on the stream: etcd answers
    created+canceled with "mvcc: duplicate watch ID provided on the WatchStream" and
    watch_id -1 (watchStream.Watch returns -1 with the error); kvcore gave the ID."""
    _, ks, es, _ = pair
    create = rpc_pb2.WatchCreateRequest(key=b"dup", watch_id=7)
    got = []
    for side in (ks, es):
        s = diff._Stream(side, create)
        try:
            s.requests.put(rpc_pb2.WatchRequest(create_request=create))
            got.append([s.next(diff.TIMEOUT), s.next(diff.TIMEOUT)])
        finally:
            s.close()
    assert got[0] == got[1], got
    assert "watch_id: -1" in got[1][1][1] and "duplicate watch ID" in got[1][1][1], got


def test_watch_history_of_a_key_put_and_deleted_in_one_txn(pair):
    """A txn that puts a key and then deletes it (a delete from the key on, range_end
    "\\0", which etcd's duplicate check lets through): etcd's history has both events
    at that revision; kvcore's catch-up lost the put."""
    ctx = pair[3]
    put = rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"pd/k", value=b"1"))
    dele = rpc_pb2.RequestOp(request_delete_range=rpc_pb2.DeleteRangeRequest(
        key=b"pd/k", range_end=b"\x00"))
    nested = rpc_pb2.RequestOp(request_txn=rpc_pb2.TxnRequest(success=[dele]))
    for ops in ([put, dele], [put, nested]):
        a = run_step(pair, "Txn", rpc_pb2.TxnRequest(success=ops))
        assert a[0] == "ok", a
        a = run_step(pair, "Watch", rpc_pb2.WatchCreateRequest(
            key=b"pd/", range_end=gen.prefix_end(b"pd/"), start_revision=ctx.rev))
        assert len(a) == 2 and a[1][1].count("events {") == 2, a


def test_txn_checks_every_put_before_any_range(pair):
    """etcd checks the puts of a txn's path (checkPut), then its ranges (checkRange):
    a compacted range ahead of a put of a missing key with ignore_value answers "key
    not found"; kvcore answered with the first failing op in walk order."""
    ctx = pair[3]
    run_step(pair, "Put", rpc_pb2.PutRequest(key=b"order/x"))
    run_step(pair, "Compact", rpc_pb2.CompactionRequest(revision=ctx.rev))
    old = rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=b"order/x", revision=1))
    future = rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=b"order/x",
                                                                  revision=ctx.rev + 5))
    put = rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"order/none", ignore_value=True))
    nested = rpc_pb2.RequestOp(request_txn=rpc_pb2.TxnRequest(success=[put]))
    for ops, want in (([old, nested], "etcdserver: key not found"),
                      ([future, put], "etcdserver: key not found"),
                      ([old, future], "etcdserver: mvcc: required revision has been compacted")):
        a = run_step(pair, "Txn", rpc_pb2.TxnRequest(success=ops))
        assert a[0] == "error" and a[2] == want, a
