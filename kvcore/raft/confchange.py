"""Membership changes (Raft §6): simple one-at-a-time changes and joint consensus.

``Changer`` computes a new (Config, progress map) from the tracker's current one without
mutating it; Raft switches to the result when the change entry is *applied*.

* ``simple``: at most one voter may change; otherwise use joint consensus.
* ``enter_joint``: C_old becomes the outgoing half, the changes build C_new; decisions
  need majorities of both.  With auto_leave the leader proposes the leave itself.
* ``leave_joint``: drop the outgoing half; outgoing voters demoted to learners
  (learners_next) become learners now.

``restore`` rebuilds a configuration from a snapshot's ConfState.
"""
from __future__ import annotations

from .errors import ConfChangeError
from .progress import Inflights, Progress
from .quorum import MajorityConfig
from .tracker import Config, ProgressTracker
from .types import ConfChangeSingle, ConfChangeType, ConfState

AddNode = ConfChangeType.AddNode
RemoveNode = ConfChangeType.RemoveNode
UpdateNode = ConfChangeType.UpdateNode
AddLearnerNode = ConfChangeType.AddLearnerNode


class Changer:
    def __init__(self, tracker: ProgressTracker, last_index: int) -> None:
        self.tracker = tracker
        self.last_index = last_index

    def enter_joint(self, auto_leave: bool, ccs) -> tuple[Config, dict]:
        cfg, prs = self._check_and_copy()
        if cfg.voters.is_joint():
            raise ConfChangeError("config is already joint")
        if not cfg.voters.incoming:
            raise ConfChangeError("can't make a zero-voter config joint")
        cfg.voters.outgoing = MajorityConfig(cfg.voters.incoming)
        self._apply(cfg, prs, ccs)
        cfg.auto_leave = auto_leave
        return self._check_and_return(cfg, prs)

    def leave_joint(self) -> tuple[Config, dict]:
        cfg, prs = self._check_and_copy()
        if not cfg.voters.is_joint():
            raise ConfChangeError("can't leave a non-joint config")
        for nid in cfg.learners_next:
            cfg.learners.add(nid)
            prs[nid].is_learner = True
        cfg.learners_next = set()
        for nid in cfg.voters.outgoing:
            if nid not in cfg.voters.incoming and nid not in cfg.learners:
                del prs[nid]
        cfg.voters.outgoing = MajorityConfig()
        cfg.auto_leave = False
        return self._check_and_return(cfg, prs)

    def simple(self, ccs) -> tuple[Config, dict]:
        cfg, prs = self._check_and_copy()
        if cfg.voters.is_joint():
            raise ConfChangeError("can't apply simple config change in joint config")
        self._apply(cfg, prs, ccs)
        old = self.tracker.config.voters.incoming
        if len(old ^ cfg.voters.incoming) > 1:
            raise ConfChangeError("more than one voter changed without entering joint "
                                  "config")
        return self._check_and_return(cfg, prs)

    # -- internals ---------------------------------------------------------------------

    def _apply(self, cfg: Config, prs: dict, ccs) -> None:
        for cc in ccs:
            if cc.node_id == 0:
                continue  # etcd replaces the node id of a rejected change with 0
            t = cc.type
            if t == AddNode:
                self._make_voter(cfg, prs, cc.node_id)
            elif t == AddLearnerNode:
                self._make_learner(cfg, prs, cc.node_id)
            elif t == RemoveNode:
                self._remove(cfg, prs, cc.node_id)
            elif t == UpdateNode:
                pass
            else:
                raise ConfChangeError(f"unexpected conf type {t}")
        if not cfg.voters.incoming:
            raise ConfChangeError("removed all voters")

    def _make_voter(self, cfg: Config, prs: dict, nid: int) -> None:
        pr = prs.get(nid)
        if pr is None:
            self._init_progress(cfg, prs, nid, False)
            return
        pr.is_learner = False
        cfg.learners.discard(nid)
        cfg.learners_next.discard(nid)
        cfg.voters.incoming.add(nid)

    def _make_learner(self, cfg: Config, prs: dict, nid: int) -> None:
        pr = prs.get(nid)
        if pr is None:
            self._init_progress(cfg, prs, nid, True)
            return
        if pr.is_learner:
            return
        # Remove any existing voter in the incoming config...
        self._remove(cfg, prs, nid)
        # ...but save the Progress.
        prs[nid] = pr
        # A voter of the outgoing config cannot become a learner until the joint config
        # is left (it still votes there); stage it in learners_next.
        if nid in cfg.voters.outgoing:
            cfg.learners_next.add(nid)
        else:
            pr.is_learner = True
            cfg.learners.add(nid)

    def _remove(self, cfg: Config, prs: dict, nid: int) -> None:
        if nid not in prs:
            return
        cfg.voters.incoming.discard(nid)
        cfg.learners.discard(nid)
        cfg.learners_next.discard(nid)
        if nid not in cfg.voters.outgoing:
            del prs[nid]

    def _init_progress(self, cfg: Config, prs: dict, nid: int, is_learner: bool) -> None:
        if not is_learner:
            cfg.voters.incoming.add(nid)
        else:
            cfg.learners.add(nid)
        # Probe from the last index (the new node most likely needs a snapshot, which the
        # back-off will find).  Mark it active so check-quorum does not step down before
        # it had a chance to answer.
        prs[nid] = Progress(0, max(self.last_index, 1),
                            Inflights(self.tracker.max_inflight), is_learner, True)

    def _check_and_copy(self) -> tuple[Config, dict]:
        cfg = self.tracker.config.clone()
        prs = {nid: pr.clone() for nid, pr in self.tracker.progress.items()}
        return self._check_and_return(cfg, prs)

    @staticmethod
    def _check_and_return(cfg: Config, prs: dict) -> tuple[Config, dict]:
        check_invariants(cfg, prs)
        return cfg, prs


def check_invariants(cfg: Config, prs: dict) -> None:
    for ids in (cfg.voters.ids(), cfg.learners, cfg.learners_next):
        for nid in ids:
            if nid not in prs:
                raise ConfChangeError(f"no progress for {nid}")
    for nid in cfg.learners_next:
        if nid not in cfg.voters.outgoing:
            raise ConfChangeError(f"{nid} is in LearnersNext, but not Voters[1]")
        if prs[nid].is_learner:
            raise ConfChangeError(f"{nid} is in LearnersNext, but is already marked as "
                                  "learner")
    for nid in cfg.learners:
        if nid in cfg.voters.outgoing:
            raise ConfChangeError(f"{nid} is in Learners and Voters[1]")
        if nid in cfg.voters.incoming:
            raise ConfChangeError(f"{nid} is in Learners and Voters[0]")
        if not prs[nid].is_learner:
            raise ConfChangeError(f"{nid} is in Learners, but is not marked as learner")
    if not cfg.voters.is_joint():
        if cfg.learners_next:
            raise ConfChangeError("cfg.LearnersNext must be empty when not joint")
        if cfg.auto_leave:
            raise ConfChangeError("AutoLeave must be false when not joint")


def restore(changer: Changer, cs: ConfState) -> tuple[Config, dict]:
    """Rebuild the configuration a ConfState describes, starting from an empty one."""
    outgoing = [ConfChangeSingle(AddNode, i) for i in cs.voters_outgoing]
    incoming = [ConfChangeSingle(RemoveNode, i) for i in cs.voters_outgoing]
    incoming += [ConfChangeSingle(AddNode, i) for i in cs.voters]
    incoming += [ConfChangeSingle(AddLearnerNode, i) for i in cs.learners]
    incoming += [ConfChangeSingle(AddLearnerNode, i) for i in cs.learners_next]

    tr = changer.tracker
    cfg, prs = tr.config, tr.progress
    if not outgoing:
        ops = [(lambda c, cc=cc: c.simple([cc])) for cc in incoming]
    else:
        ops = [(lambda c, cc=cc: c.simple([cc])) for cc in outgoing]
        ops.append(lambda c: c.enter_joint(cs.auto_leave, incoming))
    for op in ops:
        cfg, prs = op(changer)
        tr.set(cfg, prs)
    return cfg, prs
