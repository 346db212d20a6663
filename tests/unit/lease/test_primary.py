"""Who keeps time for leases (kvcore/lease/lessor.py): only the primary (the leader's
lessor) expires and renews; a follower holds every lease for ever; promotion gives
each lease what was left of it (checkpoint, else TTL) plus the election timeout, as
etcd's Promote; demotion stops the clock. A fake clock, no sleeping."""
from kvcore.lease.lessor import Lessor
from kvcore.storage.backend import Backend


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def _lessor(tmp_path):
    clock = Clock()
    lessor = Lessor(Backend(str(tmp_path / "db"), map_size=64 << 20), 1, clock=clock)
    return lessor, clock


def _grant(lessor, lease_id, ttl):
    with lessor.b.begin_write() as txn:
        lessor.grant(txn, lease_id, ttl)


def test_a_follower_never_expires_a_lease(tmp_path):
    lessor, clock = _lessor(tmp_path)
    _grant(lessor, 1, 5)
    clock.now += 1000
    assert lessor.expired() == [] and lessor.checkpoints() == []
    assert lessor.time_to_live(1)[:2] == (5, 5)   # no clock: its whole TTL


def test_promotion_gives_what_was_left_plus_the_election_timeout(tmp_path):
    lessor, clock = _lessor(tmp_path)
    _grant(lessor, 1, 5)
    _grant(lessor, 2, 10)
    with lessor.b.begin_write() as txn:
        lessor.checkpoint(txn, 2, 3)      # 3 s were left at the last checkpoint
    clock.now += 50
    lessor.promote(1.0)
    assert lessor.primary
    clock.now += 4.5
    assert lessor.expired() == [2]        # 3 + 1 s: gone; lease 1 has 5 + 1 s
    clock.now += 1.5
    assert sorted(lessor.expired()) == [1, 2]


def test_the_primary_renews_and_a_demoted_lessor_stops_the_clock(tmp_path):
    lessor, clock = _lessor(tmp_path)
    lessor.promote(1.0)
    _grant(lessor, 1, 5)                   # granted while primary: 5 s from now
    clock.now += 4
    assert lessor.renew(1) == 5
    clock.now += 4
    assert lessor.expired() == []
    lessor.demote()
    clock.now += 100
    assert lessor.expired() == [] and not lessor.primary
