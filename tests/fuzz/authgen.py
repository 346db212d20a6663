"""Steps for the differential fuzzer of auth (tests/fuzz/test_auth_diff.py): hypothesis
strategies that draw one call and who makes it.

A step is ``Step(caller, method, request)``. ``caller`` names a user from a small pool
(the client authenticates with the password the run last set for it and sends the
token), or is None (no token). The pools are small on purpose: the same few users,
roles and keys meet again and again, so grants, revokes, deletes and re-adds land on
keys that later requests touch. Keys and permission ranges take every form etcd's
range-permission cache handles: a key alone, key+range_end, prefix ends, the from-key
end "\\0", the empty key (etcd compares it as past every key), binary keys.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from hypothesis import strategies as st

from kvcore.api import auth_pb2, rpc_pb2
from tests.fuzz.gen import prefix_end

USERS = ["root", "u1", "u2"]
ROLES = ["root", "r1", "r2"]
PASSWORDS = ["pw", "pw2", ""]
KEYS = [b"a", b"a/1", b"a/2", b"ab", b"b", b"b/x", b"c", b"\x00", b"\xff", b"\x01\xfe"]
LEASES = [1, 2]            # granted with a long TTL (none expires during a run)
NO_LEASE = 12345           # never granted


@dataclass
class Step:
    caller: Optional[str]      # a user of USERS (authenticates first), or None
    method: str
    req: object

    def __repr__(self):
        return f"Step({self.caller!r}, {self.method}, {str(self.req)[:300]!r})"


def as_step(caller, method):
    return lambda req: Step(caller, method, req)


keys = st.one_of(st.sampled_from(KEYS), st.binary(min_size=1, max_size=3))
names = st.sampled_from(USERS + ["", "nobody"])
roles = st.sampled_from(ROLES + ["", "none"])
# who sends a request: mostly a pool user, sometimes nobody
callers = st.one_of(st.sampled_from(USERS), st.none())
# who sends an admin change: mostly root
admins = st.one_of(st.just("root"), st.just("root"), callers)


def key_and_end(with_empty: bool = False):
    """(key, range_end): a key alone, from the key on ("\\0"), its prefix, up to
    another key (possibly before it), or to itself."""
    key = st.one_of(keys, st.just(b"")) if with_empty else keys

    @st.composite
    def pair(draw):
        k = draw(key)
        end = draw(st.one_of(st.just(b""), st.just(b"\x00"), st.just(prefix_end(k)), keys))
        return k, end
    return pair()


@st.composite
def permission(draw):
    key, end = draw(key_and_end(with_empty=True))
    return auth_pb2.Permission(key=key, range_end=end,
                               permType=draw(st.sampled_from([0, 1, 2])))


@st.composite
def user_add(draw):
    r = rpc_pb2.AuthUserAddRequest(name=draw(names), password=draw(st.sampled_from(PASSWORDS)))
    if not draw(st.integers(0, 7)):     # etcd 3.5.1 ignores a hash the client sends
        r.hashedPassword = draw(st.sampled_from(["x", "JDJhJDA0"]))
    opt = draw(st.sampled_from([None, False, True]))
    if opt is not None:
        r.options.no_password = opt
    return r


@st.composite
def grant_permission(draw):
    r = rpc_pb2.AuthRoleGrantPermissionRequest(name=draw(roles))
    if draw(st.integers(0, 9)):         # sometimes no perm at all: "permission not given"
        r.perm.CopyFrom(draw(permission()))
    return r


@st.composite
def revoke_permission(draw):
    key, end = draw(key_and_end(with_empty=True))
    return rpc_pb2.AuthRoleRevokePermissionRequest(role=draw(roles), key=key, range_end=end)


def admin_step():
    """An auth change or read, sent by ``admins``."""
    A = rpc_pb2
    reqs = st.one_of(
        user_add().map(lambda r: ("UserAdd", r)),
        st.builds(A.AuthUserDeleteRequest, name=names).map(lambda r: ("UserDelete", r)),
        st.builds(A.AuthUserChangePasswordRequest, name=names,
                  password=st.sampled_from(PASSWORDS)).map(lambda r: ("UserChangePassword", r)),
        st.builds(A.AuthUserGrantRoleRequest, user=names, role=roles).map(
            lambda r: ("UserGrantRole", r)),
        st.builds(A.AuthUserRevokeRoleRequest, name=names, role=roles).map(
            lambda r: ("UserRevokeRole", r)),
        st.builds(A.AuthRoleAddRequest, name=roles).map(lambda r: ("RoleAdd", r)),
        st.builds(A.AuthRoleDeleteRequest, role=roles).map(lambda r: ("RoleDelete", r)),
        grant_permission().map(lambda r: ("RoleGrantPermission", r)),
        grant_permission().map(lambda r: ("RoleGrantPermission", r)),
        revoke_permission().map(lambda r: ("RoleRevokePermission", r)),
        st.builds(A.AuthUserGetRequest, name=names).map(lambda r: ("UserGet", r)),
        st.builds(A.AuthRoleGetRequest, role=roles).map(lambda r: ("RoleGet", r)),
        st.just(("UserList", A.AuthUserListRequest())),
        st.just(("RoleList", A.AuthRoleListRequest())),
        st.just(("AuthStatus", A.AuthStatusRequest())),
        st.just(("AuthEnable", A.AuthEnableRequest())),
        st.just(("AuthDisable", A.AuthDisableRequest())),
    )
    return st.tuples(admins, reqs).map(lambda t: Step(t[0], *t[1]))


# ---- requests as a user ----

def lease_id():
    return st.sampled_from([0, 0] + LEASES + [NO_LEASE])


def put(nested=False):
    return st.builds(rpc_pb2.PutRequest, key=keys if nested else st.one_of(keys, st.just(b"")),
                     value=st.sampled_from([b"", b"v", b"w" * 20]), lease=lease_id(),
                     prev_kv=st.booleans())


@st.composite
def range_req(draw):
    key, end = draw(key_and_end(with_empty=True))
    return rpc_pb2.RangeRequest(key=key, range_end=end, keys_only=draw(st.booleans()),
                                count_only=draw(st.booleans()),
                                serializable=draw(st.booleans()),
                                limit=draw(st.sampled_from([0, 0, 1])))


@st.composite
def delete_req(draw):
    key, end = draw(key_and_end(with_empty=True))
    return rpc_pb2.DeleteRangeRequest(key=key, range_end=end, prev_kv=draw(st.booleans()))


@st.composite
def compare(draw):
    key, end = draw(st.one_of(keys.map(lambda k: (k, b"")), key_and_end()))
    return rpc_pb2.Compare(key=key, range_end=end, target=rpc_pb2.Compare.VERSION,
                           result=draw(st.sampled_from([0, 1, 2, 3])),
                           version=draw(st.sampled_from([0, 1])))


def request_op(depth: int):
    ops = [put(nested=True).map(lambda r: rpc_pb2.RequestOp(request_put=r)),
           range_req().filter(lambda r: r.key).map(lambda r: rpc_pb2.RequestOp(request_range=r)),
           delete_req().filter(lambda r: r.key).map(
               lambda r: rpc_pb2.RequestOp(request_delete_range=r))]
    if depth < 2:
        ops.append(txn(depth + 1).map(lambda r: rpc_pb2.RequestOp(request_txn=r)))
    return st.one_of(*ops)


@st.composite
def txn(draw, depth: int = 0):
    return rpc_pb2.TxnRequest(
        compare=draw(st.lists(compare(), max_size=2)),
        success=draw(st.lists(request_op(depth), max_size=3)),
        failure=draw(st.lists(request_op(depth), max_size=2)))


@st.composite
def watch_create(draw):
    key, end = draw(key_and_end(with_empty=True))
    return rpc_pb2.WatchCreateRequest(key=key, range_end=end, prev_kv=draw(st.booleans()))


def user_step():
    """A KV, lease, watch or maintenance call, sent by ``callers``."""
    A = rpc_pb2
    reqs = st.one_of(
        range_req().map(lambda r: ("Range", r)),
        range_req().map(lambda r: ("Range", r)),
        put().map(lambda r: ("Put", r)),
        put().map(lambda r: ("Put", r)),
        delete_req().map(lambda r: ("DeleteRange", r)),
        txn().map(lambda r: ("Txn", r)),
        txn().map(lambda r: ("Txn", r)),
        st.builds(A.LeaseGrantRequest, ID=st.sampled_from(LEASES),
                  TTL=st.just(86400)).map(lambda r: ("LeaseGrant", r)),
        st.builds(A.LeaseRevokeRequest, ID=lease_id()).map(lambda r: ("LeaseRevoke", r)),
        st.builds(A.LeaseTimeToLiveRequest, ID=lease_id(), keys=st.booleans()).map(
            lambda r: ("LeaseTimeToLive", r)),
        watch_create().map(lambda r: ("Watch", r)),
        st.builds(A.CompactionRequest, revision=st.sampled_from([1, 2])).map(
            lambda r: ("Compact", r)),
        st.just(("Hash", A.HashRequest())),
        st.just(("HashKV", A.HashKVRequest())),
        st.just(("Alarm", A.AlarmRequest())),
        st.just(("Defragment", A.DefragmentRequest())),
        st.just(("Snapshot", A.SnapshotRequest())),
        st.sampled_from(USERS + ["nobody"]).flatmap(lambda u: st.builds(
            A.AuthenticateRequest, name=st.just(u), password=st.sampled_from(PASSWORDS))).map(
            lambda r: ("Authenticate", r)),
    )
    return st.tuples(callers, reqs).map(lambda t: Step(t[0], *t[1]))


def bootstrap():
    """What it takes to turn auth on (root role, root user, grant, enable), sent
    as root: a run reaches the enabled state often, from whatever state it is in."""
    A = rpc_pb2
    return st.just([Step("root", "RoleAdd", A.AuthRoleAddRequest(name="root")),
                    Step("root", "UserAdd", A.AuthUserAddRequest(name="root", password="pw")),
                    Step("root", "UserGrantRole",
                         A.AuthUserGrantRoleRequest(user="root", role="root")),
                    Step("root", "AuthEnable", A.AuthEnableRequest())])


@st.composite
def user_kit(draw):
    """A user with a role and a permission (each step may meet an existing one and
    fail as etcd fails), sent as root: so that runs often hold users with narrow
    permissions to try; now and then the permission is revoked again."""
    A = rpc_pb2
    user, role = draw(st.sampled_from(USERS[1:])), draw(st.sampled_from(ROLES[1:]))
    perm = draw(permission())
    kit = [Step("root", "RoleAdd", A.AuthRoleAddRequest(name=role)),
           Step("root", "UserAdd", A.AuthUserAddRequest(name=user, password="pw")),
           Step("root", "UserGrantRole", A.AuthUserGrantRoleRequest(user=user, role=role)),
           Step("root", "RoleGrantPermission", A.AuthRoleGrantPermissionRequest(
               name=role, perm=perm))]
    if not draw(st.integers(0, 3)):     # and revoke it again (a revoke that matches)
        kit.append(Step("root", "RoleRevokePermission", A.AuthRoleRevokePermissionRequest(
            role=role, key=perm.key, range_end=perm.range_end)))
    return kit


def steps():
    """One draw: a list of steps (one, or a kit of four)."""
    one = st.one_of(*[admin_step()] * 3, *[user_step()] * 6).map(lambda s: [s])
    return st.one_of(*[one] * 8, user_kit(), user_kit(), bootstrap())
