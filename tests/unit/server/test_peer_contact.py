"""PeerContact: when this member's unbroken contact with a peer began (etcd's
ActiveSince), from its connections either way and the prober's round trips."""
from kvcore.server.peer_contact import PeerContact


def _contact():
    now = [100.0]
    return PeerContact(clock=lambda: now[0]), now


def test_contact_begins_once_and_ends_with_the_last_connection():
    c, now = _contact()
    assert c.since(7) is None
    c.opened(7)                       # an outbound lane
    now[0] = 101.0
    c.opened(7)                       # and an inbound one: contact goes on
    c.answered(7)
    assert c.since(7) == 100.0
    c.closed(7)
    assert c.since(7) == 100.0        # one connection still open
    c.closed(7)
    assert c.since(7) is None
    now[0] = 105.0
    c.opened(7)
    assert c.since(7) == 105.0        # a new contact, not the old one resumed


def test_round_trips_alone_make_and_end_contact():
    """A follower has no connection with another follower: the prober's answers."""
    c, now = _contact()
    c.answered(3)
    now[0] = 103.0
    c.answered(3)
    assert c.since(3) == 100.0
    c.unanswered(3)
    assert c.since(3) is None
    assert c.since(4) is None         # other peers are their own
