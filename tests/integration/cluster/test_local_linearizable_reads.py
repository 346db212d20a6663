"""A one-voter member serves linearizable reads in its workers without a ReadIndex
round trip (kvcore/ipc/readstate.py), and stops doing so the moment the
configuration gains a second voter."""
from __future__ import annotations

import os
import time

from kvcore.ipc.readstate import ReadState
from tests import servers


def _wait(pred, timeout=30.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return False


def _read_state_of(pid: int) -> ReadState:
    """The core's shared read state, found among its open files."""
    fd_dir = f"/proc/{pid}/fd"
    for name in os.listdir(fd_dir):
        try:
            target = os.readlink(os.path.join(fd_dir, name))
        except OSError:
            continue
        if target.startswith("/memfd:kvcore-read-state"):
            fd = os.open(os.path.join(fd_dir, name), os.O_RDONLY)
            try:
                return ReadState.attach(fd)
            finally:
                os.close(fd)
    raise AssertionError("the core has no shared read state")


def test_local_reads_only_while_the_only_voter(tmp_path):
    base = str(tmp_path)
    port, peer = servers.free_port(), servers.free_port()
    first = servers.start_kvcore(os.path.join(base, "m0.etcd"), workers=2, name="m0",
                                 port=port, extra=("--initial-cluster-token", "tok"))
    new = None
    try:
        state = _read_state_of(first.proc.pid)
        assert _wait(state.local)
        assert first.etcdctl("put", "k", "1")[0] == 0
        assert first.etcdctl("get", "k", "--print-value-only")[1].strip() == "1"

        # A learner does not vote, but it answers the writes it forwards once it has
        # applied them, possibly before the leader has: reads take the ReadIndex path.
        new_port, new_peer = servers.free_port(), servers.free_port()
        rc, out, err = first.etcdctl("member", "add", "m1",
                                     f"--peer-urls=http://127.0.0.1:{new_peer}", "--learner")
        assert rc == 0, err
        assert _wait(lambda: not state.local())
        initial = next(line.split("=", 1)[1].strip('"') for line in out.splitlines()
                       if line.startswith("ETCD_INITIAL_CLUSTER="))
        new = servers.start_joining_member(base, "m1", initial, "tok", new_port, new_peer)
        assert _wait(lambda: new.etcdctl("get", "k", "--consistency", "s",
                                         "--print-value-only")[1].strip() == "1")
        rc, out, _ = first.etcdctl("member", "list")
        lid = next(line.split(",")[0] for line in out.splitlines() if "m1" in line)
        assert _wait(lambda: first.etcdctl("member", "promote", lid)[0] == 0)
        # Two voters: a linearizable read now needs a quorum round.
        assert not state.local()
        # (the promoted member refuses writes as a learner until it applies its promotion)
        assert _wait(lambda: new.etcdctl("put", "k", "2")[0] == 0)
        assert first.etcdctl("get", "k", "--print-value-only")[1].strip() == "2"
        assert not state.local()
    finally:
        if new is not None:
            new.stop()
        first.stop()
