"""etcd's range-permission check, with etcd's interval tree (pkg/adt/interval_tree.go
and server/auth/range_perm_cache.go in etcd 3.5.1), ported rule for rule.

Why a port and not a list of merged intervals: etcd compares keys as
``BytesAffineComparable``, where the empty key sorts after every other key, and it
takes permissions as granted, unchecked. A permission on the empty key, or one whose
range_end is below its key, is then an interval whose begin is past its end, and what
such an interval allows depends on where the red-black tree put it (the ``max`` that
prunes a visit is not a bound for it). Only the same tree, built by the same inserts
in the same order, answers as etcd answers.

``UserPerms(roles)`` holds one tree for READ and one for WRITE, filled as etcd's
getMergedPerms fills them (each role in the user's order, each permission in the
role's order); ``allows(key, range_end, want)`` is isRangeOpPermitted.
"""
from __future__ import annotations

READ, WRITE, READWRITE = 0, 1, 2   # authpb.Permission.Type
_BLACK, _RED = 0, 1


def compare(a: bytes, b: bytes) -> int:
    """BytesAffineComparable.Compare: the empty key is above every other key."""
    if not a:
        return 0 if not b else 1
    if not b:
        return -1
    return (a > b) - (a < b)


def _ivl_compare(ab: bytes, ae: bytes, bb: bytes, be: bytes) -> int:
    """Interval.Compare of [ab, ae) with [bb, be): -1 left of, 1 right of, 0 overlap."""
    if compare(ab, bb) < 0 and compare(ae, bb) <= 0:
        return -1
    if compare(ab, be) >= 0:
        return 1
    return 0


class _Node:
    __slots__ = ("begin", "end", "max", "left", "right", "parent", "c")

    def __init__(self, begin, end, sentinel):
        self.begin, self.end, self.max = begin, end, end
        self.left = self.right = self.parent = sentinel
        self.c = _RED


class IntervalTree:
    def __init__(self):
        self.nil = _Node(b"", b"", None)
        self.nil.c = _BLACK
        self.root = self.nil

    def _update_max(self, x: _Node) -> None:
        nil = self.nil
        while x is not nil:
            old, m = x.max, x.end
            if x.left is not nil and compare(x.left.max, m) > 0:
                m = x.left.max
            if x.right is not nil and compare(x.right.max, m) > 0:
                m = x.right.max
            if compare(old, m) == 0:
                break
            x.max = m
            x = x.parent

    def insert(self, begin: bytes, end: bytes) -> None:
        nil = self.nil
        z = _Node(begin, end, nil)
        y, x = nil, self.root
        while x is not nil:
            y = x
            x = x.left if compare(begin, x.begin) < 0 else x.right
        z.parent = y
        if y is nil:
            self.root = z
        else:
            if compare(begin, y.begin) < 0:
                y.left = z
            else:
                y.right = z
            self._update_max(y)
        self._insert_fixup(z)

    def _insert_fixup(self, z: _Node) -> None:
        while z.parent.c == _RED:
            gp = z.parent.parent
            if z.parent is gp.left:
                y = gp.right
                if y.c == _RED:
                    y.c = z.parent.c = _BLACK
                    gp.c = _RED
                    z = gp
                else:
                    if z is z.parent.right:
                        z = z.parent
                        self._rotate_left(z)
                    z.parent.c = _BLACK
                    z.parent.parent.c = _RED
                    self._rotate_right(z.parent.parent)
            else:
                y = gp.left
                if y.c == _RED:
                    y.c = z.parent.c = _BLACK
                    gp.c = _RED
                    z = gp
                else:
                    if z is z.parent.left:
                        z = z.parent
                        self._rotate_right(z)
                    z.parent.c = _BLACK
                    z.parent.parent.c = _RED
                    self._rotate_left(z.parent.parent)
        self.root.c = _BLACK

    def _rotate_left(self, x: _Node) -> None:
        nil = self.nil
        if x.right is nil:
            return
        y = x.right
        x.right = y.left
        if y.left is not nil:
            y.left.parent = x
        self._update_max(x)
        self._replace_parent(x, y)
        y.left = x
        self._update_max(y)

    def _rotate_right(self, x: _Node) -> None:
        nil = self.nil
        if x.left is nil:
            return
        y = x.left
        x.left = y.right
        if y.right is not nil:
            y.right.parent = x
        self._update_max(x)
        self._replace_parent(x, y)
        y.right = x
        self._update_max(y)

    def _replace_parent(self, x: _Node, y: _Node) -> None:
        y.parent = x.parent
        if x.parent is self.nil:
            self.root = y
        else:
            if x is x.parent.left:
                x.parent.left = y
            else:
                x.parent.right = y
            self._update_max(x.parent)
        x.parent = y

    def _visit(self, x: _Node, b: bytes, e: bytes, fn) -> bool:
        if x is self.nil:
            return True
        v = _ivl_compare(b, e, x.begin, x.end)
        if v < 0:
            return self._visit(x.left, b, e, fn)
        if v > 0:
            if _ivl_compare(x.begin, x.max, b, e) == 0:
                return self._visit(x.left, b, e, fn) and self._visit(x.right, b, e, fn)
            return True
        return self._visit(x.left, b, e, fn) and fn(x) and self._visit(x.right, b, e, fn)

    def contains(self, b: bytes, e: bytes) -> bool:
        """intervalTree.Contains: the intervals meeting [b, e) cover it without a gap."""
        st = {"min": None, "max": None, "contiguous": True}

        def visit(n: _Node) -> bool:
            if st["min"] is None:
                st["min"], st["max"] = n.begin, n.end
                return True
            if compare(st["max"], n.begin) < 0:
                st["contiguous"] = False
                return False
            if compare(n.end, st["max"]) > 0:
                st["max"] = n.end
            return True
        self._visit(self.root, b, e, visit)
        return (st["contiguous"] and st["min"] is not None
                and compare(st["max"], e) >= 0 and compare(st["min"], b) <= 0)

    def intersects(self, b: bytes, e: bytes) -> bool:
        nil, x = self.nil, self.root
        while x is not nil and _ivl_compare(b, e, x.begin, x.end) != 0:
            if x.left is not nil and compare(x.left.max, b) > 0:
                x = x.left
            else:
                x = x.right
        return x is not nil


def _point(key: bytes) -> tuple:
    return key, key + b"\x00"


class UserPerms:
    """A user's merged permissions (etcd's unifiedRangePermissions)."""

    def __init__(self, roles):
        """``roles``: the user's authpb.Role records, in the user's role order."""
        self.trees = {READ: IntervalTree(), WRITE: IntervalTree()}
        for role in roles:
            for p in role.keyPermission:
                end = b"" if p.range_end == b"\x00" else p.range_end
                ivl = (p.key, end) if p.range_end else _point(p.key)
                if p.permType in (READ, READWRITE):
                    self.trees[READ].insert(*ivl)
                if p.permType in (WRITE, READWRITE):
                    self.trees[WRITE].insert(*ivl)

    def allows(self, key: bytes, range_end: bytes, want: int) -> bool:
        """isRangeOpPermitted: a key alone must meet a permission; a range must be
        covered ("\\0" as range_end: to the end)."""
        tree = self.trees[want]
        if not range_end:
            return tree.intersects(*_point(key))
        return tree.contains(key, b"" if range_end == b"\x00" else range_end)
