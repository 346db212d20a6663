"""kvcore.raftdriver: the node that drives kvcore.raft's RawNode (persist, send, apply,
advance), with its I/O injected. ``driver`` is the contract and the Ready cycle;
``walstore`` is the server's persistence (WAL, snapshot files, native writer thread).
The deterministic simulator (tests/sim/driversim.py) runs the same driver over a
simulated disk, network and state machine."""
from .driver import RaftDriver, bootstrap_entries

__all__ = ["RaftDriver", "bootstrap_entries"]
