"""Safety checkers for the cluster simulator.

Each hook is called by the simulator at the moment the corresponding event happens
(after every Ready is persisted, every entry applied, every read served), so a violation
is reported at the first step that exhibits it.  The properties (Raft paper Figure 3 and
§5.4, plus linearizable reads):

* Election safety: at most one leader per term.
* Log matching: entries with the same index and term are identical, and so are the logs
  before them (checked inductively: same (index, term) => same data and same previous
  term, on every entry any node persists).
* Leader completeness: a new leader's log holds the highest committed entry known.
* State machine safety: no two nodes apply different entries at the same index; a node
  restoring a snapshot gets the same state as the nodes that applied up to that index.
* Commitment rule (§5.4.2): a leader only moves its commit index to an entry of its
  own term.
* Durability of commits: no node replaces a committed entry it holds, and no node's
  commit index covers an entry other than the committed one.
* Linearizable reads: a ReadIndex read reflects every write acknowledged before it was
  issued.
"""
from __future__ import annotations

from kvcore.raft.errors import ErrCompacted, ErrUnavailable


class SafetyViolation(AssertionError):
    pass


class SafetyChecker:
    def __init__(self) -> None:
        self.leaders: dict[int, int] = {}          # term -> leader id
        self.seen: dict[tuple, tuple] = {}         # (index, term) -> (type, data, prev term)
        # Committed log known so far: ref_terms[i] = term of committed entry i (index 0
        # is a placeholder). Filled as nodes' commit indexes advance.
        self.ref_terms: list[int] = [0]
        # Applied reference: index -> (term, type, data) and state digest after index.
        self.ref_applied: dict[int, tuple] = {}
        self.ref_digest: dict[int, int] = {0: 0}
        self.max_acked_write = 0                   # highest index of an applied write
        self.leader_commit: dict[int, tuple] = {}  # leader id -> (term, commit) last seen
        self.violations = 0

    def fail(self, msg: str) -> None:
        self.violations += 1
        raise SafetyViolation(msg)

    # -- hooks -------------------------------------------------------------------------

    def on_state(self, nid: int, raft) -> None:
        """After every step of a node: election safety, leader completeness, and the
        leader's commitment rule."""
        if raft.state != 2:  # StateLeader
            return
        t = raft.term
        prev = self.leaders.get(t)
        if prev is None:
            self.leaders[t] = nid
            self._check_leader_complete(nid, raft)
        elif prev != nid:
            self.fail(f"election safety: two leaders in term {t}: {prev} and {nid}")
        # Figure 2 / §5.4.2: a leader advances its commit index only to an entry of its
        # own term (earlier entries are committed indirectly).
        c = raft.raft_log.committed
        last = self.leader_commit.get(nid)
        if last is not None and last[0] == t and c > last[1]:
            try:
                ct = raft.raft_log.term(c)
            except (ErrCompacted, ErrUnavailable):
                ct = t
            if ct != t:
                self.fail(f"commitment rule: leader {nid} (term {t}) advanced its commit "
                          f"index to {c}, an entry of term {ct}")
        self.leader_commit[nid] = (t, c)

    def _check_leader_complete(self, nid: int, raft) -> None:
        ci = len(self.ref_terms) - 1
        if ci == 0:
            return
        log = raft.raft_log
        want = self.ref_terms[ci]
        if ci < log.first_index() - 1:
            return  # compacted into the leader's snapshot, which only holds committed
        try:
            got = log.term(ci)
        except (ErrCompacted, ErrUnavailable):
            got = None
        if got != want:
            self.fail(f"leader completeness: new leader {nid} (term {raft.term}) has term "
                      f"{got} at committed index {ci}, committed term is {want}")

    def on_persist(self, nid: int, storage, entries: list) -> None:
        """Entries are being appended to node ``nid``'s durable storage (``storage``
        still holds what was there before)."""
        seen = self.seen
        ref = self.ref_terms
        nref = len(ref)
        prev_term = None
        for e in entries:
            i = e.index
            if prev_term is None:
                try:
                    prev_term = storage.term(i - 1)
                except (ErrCompacted, ErrUnavailable):
                    prev_term = -1
            key = (i, e.term)
            val = (e.type, e.data, prev_term)
            old = seen.get(key)
            if old is None:
                seen[key] = val
            elif prev_term == -1 or old[2] == -1:
                if old[:2] != val[:2]:
                    self.fail(f"log matching: node {nid} has a different entry at "
                              f"index {i} term {e.term}")
            elif old != val:
                self.fail(f"log matching: node {nid} entry at index {i} term {e.term} "
                          f"differs (or its predecessor term does: {old[2]} vs "
                          f"{prev_term})")
            if i < nref and ref[i] != e.term:
                # A stale leader may append at an index committed elsewhere; what must
                # never happen is a node replacing the committed entry it holds.
                try:
                    held = storage.term(i)
                except (ErrCompacted, ErrUnavailable):
                    held = None
                if held == ref[i]:
                    self.fail(f"committed entry lost: node {nid} replaced the committed "
                              f"entry at index {i} (term {ref[i]}) with term {e.term}")
            prev_term = e.term

    def on_commit(self, nid: int, raft, old_commit: int, new_commit: int) -> None:
        """Node ``nid``'s commit index moved (as persisted in its hard state)."""
        ref = self.ref_terms
        log = raft.raft_log
        lo = max(old_commit + 1, log.first_index())
        for i in range(lo, new_commit + 1):
            try:
                t = log.term(i)
            except (ErrCompacted, ErrUnavailable):
                continue
            if i < len(ref):
                if ref[i] != t:
                    self.fail(f"commit divergence: node {nid} committed term {t} at "
                              f"index {i}, committed term is {ref[i]}")
            elif i == len(ref):
                ref.append(t)
            else:
                # A gap: the node's commit jumped past what we know (e.g. after a
                # snapshot); fill from its log where possible.
                break

    def on_snapshot_commit(self, snap_index: int, snap_term: int) -> None:
        ref = self.ref_terms
        if snap_index < len(ref) and ref[snap_index] != snap_term:
            self.fail(f"snapshot at index {snap_index} has term {snap_term}, committed "
                      f"term is {ref[snap_index]}")

    def on_apply(self, nid: int, e, digest: int) -> None:
        i = e.index
        cur = (e.term, e.type, e.data)
        old = self.ref_applied.get(i)
        if old is None:
            self.ref_applied[i] = cur
            self.ref_digest[i] = digest
        elif old != cur:
            self.fail(f"state machine safety: node {nid} applied {cur} at index {i}, "
                      f"another node applied {old}")
        elif self.ref_digest.get(i) != digest:
            self.fail(f"state machine divergence: node {nid} digest at index {i}")
        if e.data and e.type == 0 and i > self.max_acked_write:
            self.max_acked_write = i

    def on_snapshot_restore(self, nid: int, index: int, digest: int) -> None:
        want = self.ref_digest.get(index)
        if want is not None and want != digest:
            self.fail(f"snapshot restore: node {nid} state at index {index} differs from "
                      "the state other nodes reached by applying entries")

    def on_read(self, nid: int, ctx: bytes, issued_acked: int, read_index: int,
                served_applied: int, served_write: int) -> None:
        """A read issued when the highest acknowledged write was ``issued_acked`` was
        served at ``served_applied``, returning the write at index ``served_write``."""
        if served_write < issued_acked:
            self.fail(f"stale read: node {nid} served a read ({ctx!r}, read index "
                      f"{read_index}) reflecting the write at {served_write}, but the "
                      f"write at index {issued_acked} was acknowledged before the read "
                      "was issued")
