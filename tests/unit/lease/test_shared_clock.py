"""The leader's lease clock shared with the workers (ext/leaseclock.pyx, kvcore/lease/
lessor.py): a worker answers a keep-alive of an open lease with the bytes the core
would write, its renewal is what the lessor sees, and every case the core must decide
(unknown, expired, revoked, being revoked, a pending checkpoint, a follower) gets None,
so the request goes to the core. Two LeaseClock objects on one memfd stand for the
core and a worker; the real monotonic clock, no sleeping past a TTL."""
import math
import os
import subprocess
import sys
import time

import pytest

from kvcore import _ext
from kvcore.api import rpc_pb2, wire
from kvcore.lease.lessor import Lessor
from kvcore.storage.backend import Backend

LeaseClock = _ext.compiled("leaseclock").LeaseClock
CID, MID = 0xC1D0000000000001, 0x8E3B000000000002


def _req(lease_id: int) -> bytes:
    return rpc_pb2.LeaseKeepAliveRequest(ID=lease_id).SerializeToString()


@pytest.fixture
def setup(tmp_path):
    table = LeaseClock(slots=64)
    worker = LeaseClock.attach(table.fd)
    lessor = Lessor(Backend(str(tmp_path / "db"), map_size=64 << 20), 1, clock_table=table)
    table.publish(CID, MID, 7, 3)
    table.hold(time.monotonic_ns() + 3600 * 10**9)   # the core ticking, as a leader's does
    return lessor, table, worker


def _grant(lessor, lease_id, ttl):
    with lessor.b.begin_write() as txn:
        return lessor.grant(txn, lease_id, ttl)


def test_a_worker_answers_an_open_lease_as_the_core_would(setup):
    lessor, table, worker = setup
    lessor.promote(1.0)
    lease = _grant(lessor, 0x1234, 60)
    table.open(lease.slot, time.monotonic_ns() + 5_000_000_000)   # 5 s left
    assert lessor.time_to_live(0x1234)[0] == 4
    answer = worker.keepalive(_req(0x1234))
    assert answer == wire.with_header(wire.header(CID, MID, 7, 3),
                                      wire.field_varint(2, 0x1234) + wire.field_varint(3, 60))
    assert lessor.time_to_live(0x1234)[0] == 59   # the worker's renewal, seen by the lessor
    assert table.renewed() == 1
    table.publish(CID, MID, 8, 3)
    assert rpc_pb2.LeaseKeepAliveResponse.FromString(
        worker.keepalive(_req(0x1234))).header.revision == 8


@pytest.mark.parametrize("request_bytes", [
    b"",                                           # ID 0
    rpc_pb2.LeaseKeepAliveRequest(ID=-5).SerializeToString(),
    _req(0x1234) + b"\x10\x01",                    # a field the fast path does not read
    b"\x08\xb4\xa4\x80\x00",                       # a varint with a padded tail
    b"\x08\xb4",                                   # cut short
])
def test_anything_but_a_plain_positive_id_goes_to_the_core(setup, request_bytes):
    lessor, table, worker = setup
    lessor.promote(1.0)
    _grant(lessor, 0x1234, 60)
    assert worker.keepalive(_req(0x1234)) is not None
    assert worker.keepalive(request_bytes) is None


def test_what_the_core_must_decide_goes_to_the_core(setup):
    lessor, table, worker = setup
    _grant(lessor, 1, 60)
    assert worker.keepalive(_req(1)) is None      # a follower's lessor: no slot open
    lessor.promote(1.0)
    assert worker.keepalive(_req(1)) is not None
    assert worker.keepalive(_req(2)) is None      # unknown
    with lessor.b.begin_write() as txn:           # a checkpoint: the next renewal is the
        lessor.checkpoint(txn, 1, 30)             # core's (it clears the checkpoint)
    assert worker.keepalive(_req(1)) is None
    assert lessor.renew(1) == 60
    lessor.clear_remaining(lessor.lookup(1))
    assert worker.keepalive(_req(1)) is not None
    with lessor.b.begin_write() as txn:
        lessor.revoke(txn, 1)
    assert worker.keepalive(_req(1)) is None      # revoked
    _grant(lessor, 3, 60)
    lessor.demote()
    assert worker.keepalive(_req(3)) is None      # no longer the leader
    assert lessor.lookup(3).expiry == math.inf and lessor.lookup(3).slot == -1


def test_an_expired_lease_is_closed_by_the_expiry_decision(setup):
    lessor, table, worker = setup
    lessor.promote(1.0)
    lease = _grant(lessor, 1, 60)
    _grant(lessor, 2, 60)
    table.open(lease.slot, time.monotonic_ns() - 1)    # its time ran out
    assert worker.keepalive(_req(1)) is None            # the core answers (TTL 0)
    assert lessor.expired() == [1]
    assert table.word(lease.slot) == 0                  # closed: no worker renews it now
    assert lease.expiry <= time.monotonic() and lessor.renew(1) == 0
    assert worker.keepalive(_req(2)) is not None        # the other lease is untouched


def test_expire_and_renew_are_one_compare_and_swap(setup):
    """The expiry decision and a renewal race on one word: whichever swaps first wins,
    the other sees the changed word."""
    lessor, table, worker = setup
    lessor.promote(1.0)
    lease = _grant(lessor, 1, 60)
    now = time.monotonic_ns()
    table.open(lease.slot, now + 50_000_000)
    assert table.expire(lease.slot, now) > 0            # alive at ``now``: stays open
    assert worker.keepalive(_req(1)) is not None        # renewed: 60 s from now
    assert table.expire(lease.slot, now + 1_000_000_000) > 0   # so alive 1 s later
    taken = table.expire(lease.slot, now + 61_000_000_000)
    assert taken < 0 and table.word(lease.slot) == 0    # expired: closed for good
    assert worker.keepalive(_req(1)) is None


def test_a_replaced_lessor_leaves_no_slot(setup, tmp_path):
    lessor, table, worker = setup
    lessor.promote(1.0)
    for i in range(1, 40):
        _grant(lessor, i, 60)
    assert all(worker.keepalive(_req(i)) is not None for i in range(1, 40))
    lessor.detach()
    assert all(worker.keepalive(_req(i)) is None for i in range(1, 40))
    # a full table: a lease without a slot is renewed by the core alone
    for i in range(100, 200):
        _grant(lessor, i, 60)
    slots = [lessor.lookup(i).slot for i in range(100, 200)]
    assert -1 in slots and len({s for s in slots if s >= 0}) == sum(s >= 0 for s in slots)
    assert lessor.renew(slots.index(-1) + 100) == 60


def test_no_renewal_past_the_cores_hold(setup):
    """The core pushes its hold forward every tick while it leads; past it (a core
    that stopped ticking) or at 0 (not the leader), the keep-alive goes to the core."""
    lessor, table, worker = setup
    lessor.promote(1.0)
    lease = _grant(lessor, 0x4321, 60)
    assert worker.keepalive(_req(0x4321)) is not None
    table.hold(time.monotonic_ns() - 1)
    assert worker.keepalive(_req(0x4321)) is None
    table.hold(0)
    assert worker.keepalive(_req(0x4321)) is None
    table.hold(time.monotonic_ns() + 10**9)
    assert worker.keepalive(_req(0x4321)) is not None
    assert lease.slot >= 0


_RENEWER = """
import os, sys, time
from kvcore import _ext
clock = _ext.compiled("leaseclock").LeaseClock.attach(int(sys.argv[1]))
reqs = [bytes.fromhex(h) for h in sys.argv[2:]]
ok, end = 0, time.monotonic() + 20
while time.monotonic() < end:
    got = [clock.keepalive(r) for r in reqs]
    ok += sum(g is not None for g in got)
    if not any(got) and os.path.exists(sys.argv[0] + ".stop"):
        break
print(ok)
"""


def test_a_slot_closed_by_the_expiry_decision_is_never_renewed_again(setup, tmp_path):
    """Workers are other processes: one renews 32 leases as fast as it can while this
    one takes them back by compare-and-swap, as the expiry decision does; no slot is
    renewed after that, and every renewal the worker got is counted."""
    lessor, table, _ = setup
    lessor.promote(1.0)
    leases = [_grant(lessor, i, 60) for i in range(1, 33)]
    script = tmp_path / "renewer.py"
    script.write_text(_RENEWER)
    child = subprocess.Popen(
        [sys.executable, str(script), str(table.fd), *(_req(l.id).hex() for l in leases)],
        pass_fds=(table.fd,), stdout=subprocess.PIPE, text=True,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    try:
        deadline = time.monotonic() + 15
        while table.renewed() < 20_000:
            assert time.monotonic() < deadline and child.poll() is None
            time.sleep(0.01)
        far = time.monotonic_ns() + 10 ** 12     # past every expiry the worker can set
        assert all(table.expire(l.slot, far) < 0 for l in leases)
        (tmp_path / "renewer.py.stop").write_text("")
        out, _ = child.communicate(timeout=30)
    finally:
        child.kill()
    assert all(table.word(l.slot) == 0 for l in leases)
    assert int(out) == table.renewed()
