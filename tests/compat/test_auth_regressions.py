"""Differences the auth fuzzer (tests/fuzz/test_auth_diff.py) found between kvcore and
etcd 3.5.1, kept as plain tests: each step goes to both through the fuzzer's driver,
which asserts the same answer, and each test also pins etcd's answer (each failed
before its fix)."""
from __future__ import annotations

import pytest

from kvcore.api import auth_pb2, rpc_pb2 as A
from tests.fuzz import authdiff, authgen, authrun
from tests.fuzz.authgen import Step

DENIED = ("error", "PERMISSION_DENIED", "etcdserver: permission denied")
AUTH_FAILED = ("error", "INVALID_ARGUMENT",
               "etcdserver: authentication failed, invalid user ID or password")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    with authrun.pair(tmp_path_factory.mktemp("authregress")) as r:
        for step in authgen.bootstrap().example():
            assert authrun.run_step(r, step)[0] == "ok"
        yield r


def root(run, method, req):
    return authrun.run_step(run, Step("root", method, req))


def user_with(run, user, role, *perms):
    """``user`` (password "pw") holding only ``role`` with ``perms`` (key, range_end)."""
    root(run, "RoleAdd", A.AuthRoleAddRequest(name=role))
    for key, end in perms:
        assert root(run, "RoleGrantPermission", A.AuthRoleGrantPermissionRequest(
            name=role, perm=auth_pb2.Permission(key=key, range_end=end,
                                                permType=auth_pb2.Permission.READWRITE)))[0] == "ok"
    root(run, "UserAdd", A.AuthUserAddRequest(name=user, password="pw"))
    root(run, "UserGrantRole", A.AuthUserGrantRoleRequest(user=user, role=role))


def test_maintenance_refuses_an_unknown_token_with_the_auth_package_error(run):
    """etcd's authMaintenanceServer returns AuthInfoFromCtx's own error: code Unknown,
    "auth: invalid auth token"; kvcore answered Unauthenticated, "etcdserver: ..."."""
    for method, req in (("Hash", A.HashRequest()), ("HashKV", A.HashKVRequest()),
                        ("Defragment", A.DefragmentRequest())):
        a = authdiff.call(run.ks, "nosuchtoken", method, req)[0]
        b = authdiff.call(run.es, "nosuchtoken", method, req)[0]
        assert a == b == ("error", "UNKNOWN", "auth: invalid auth token"), (method, a, b)


def test_grant_permission_without_a_permission(run):
    """etcd refuses a grant with no perm ("permission not given") before it looks the
    role up; kvcore granted an empty permission, or said the role was not found."""
    for role in ("nosuch", "root"):
        a = root(run, "RoleGrantPermission", A.AuthRoleGrantPermissionRequest(name=role))
        assert a == ("error", "INVALID_ARGUMENT", "etcdserver: permission not given")


def test_grant_permission_keeps_etcds_order_and_duplicates(run):
    """etcd compares a grant only with the first permission of its key (sort.Search):
    the same key and range_end behind another range_end of that key is appended again,
    and a new permission goes after those of the same key (sort.Sort). kvcore matched
    any permission and inserted before equal keys."""
    root(run, "RoleAdd", A.AuthRoleAddRequest(name="order"))
    for end, kind in ((b"c", 0), (b"b", 1), (b"b", 2), (b"", 0), (b"c", 2)):
        root(run, "RoleGrantPermission", A.AuthRoleGrantPermissionRequest(
            name="order", perm=auth_pb2.Permission(key=b"a", range_end=end, permType=kind)))
    a = root(run, "RoleGet", A.AuthRoleGetRequest(role="order"))
    assert a[1].count("perm {") == 4, a      # (a,c) READWRITE, (a,b) WRITE, (a,b), (a,)
    assert root(run, "RoleRevokePermission", A.AuthRoleRevokePermissionRequest(
        role="order", key=b"a", range_end=b"b"))[0] == "ok"
    assert root(run, "RoleGet", A.AuthRoleGetRequest(role="order"))[1].count("perm {") == 2


@pytest.mark.parametrize("key,end", [(b"", b"\x00"), (b"", b""), (b"", b"m")])
def test_a_permission_on_the_empty_key_grants_nothing(run, key, end):
    """etcd's interval tree takes the empty key as past every key: a permission from
    "" grants no key. kvcore took "" as the first key: "" to "\\0" granted everything."""
    user = "empty%d" % len(end)
    user_with(run, user, "role-" + user, (key, end))
    for method, req in (("Range", A.RangeRequest(key=b"\x00", range_end=b"\x00")),
                        ("Range", A.RangeRequest(key=b"a")),
                        ("Put", A.PutRequest(key=b"a", value=b"v")),
                        ("DeleteRange", A.DeleteRangeRequest(key=b"a", range_end=b"b"))):
        assert authrun.run_step(run, Step(user, method, req)) == DENIED, (method, req)


def test_permissions_whose_end_is_below_their_key(run):
    """A range_end below its key is granted unchecked; what it then allows depends on
    where etcd's red-black interval tree put it (kvcore/auth/permtree.py)."""
    user_with(run, "inv", "role-inv", (b"m", b"c"), (b"a", b"b"), (b"x", b"\x00"),
              (b"d", b"e"), (b"q", b"p"))
    keys = [b"a", b"b", b"c", b"d", b"m", b"p", b"q", b"x", b"\x00"]
    for key in keys:
        for end in [b"", b"\x00"] + keys:
            authrun.run_step(run, Step("inv", "Range", A.RangeRequest(key=key, range_end=end)))


def test_an_empty_new_password_locks_the_user_out(run):
    """etcd hashes a new password only when one is given: an empty one is stored empty
    and no password matches it. kvcore hashed "" and let "" in."""
    root(run, "UserAdd", A.AuthUserAddRequest(name="locked", password="pw"))
    assert root(run, "UserChangePassword",
                A.AuthUserChangePasswordRequest(name="locked"))[0] == "ok"
    for pw in ("", "pw"):
        assert authrun.authenticate(run, "locked", pw) == AUTH_FAILED


def test_authenticate_as_a_no_password_user(run):
    """etcd's CheckPassword answers ErrNoPasswordUser, which has no gRPC mapping (code
    Unknown); kvcore answered "authentication failed". A password change leaves such
    a user without a password in both."""
    opts = A.AuthUserAddRequest(name="nopw")
    opts.options.no_password = True
    root(run, "UserAdd", opts)
    want = ("error", "UNKNOWN",
            "auth: authentication failed, password was given for no password user")
    assert authrun.authenticate(run, "nopw", "x") == want
    assert root(run, "UserChangePassword",
                A.AuthUserChangePasswordRequest(name="nopw", password="new"))[0] == "ok"
    assert authrun.authenticate(run, "nopw", "new") == want


def test_a_user_may_not_change_its_own_password(run):
    """UserChangePassword needs root in etcd (needAdminPermission), even for the user's
    own password; kvcore let a user change its own."""
    user_with(run, "self", "role-self", (b"s", b""))
    a = authrun.run_step(run, Step("self", "UserChangePassword",
                                   A.AuthUserChangePasswordRequest(name="self", password="x")))
    assert a == DENIED


def test_user_get_of_the_empty_name_without_a_user(run):
    """etcd lets a caller see its own user (UserGet's name equal to the caller's); a
    call with no user asking about the empty name passes that test ("" == "") and
    gets "user name not found"; kvcore said "user name is empty"."""
    a = authrun.run_step(run, Step(None, "UserGet", A.AuthUserGetRequest(name="")))
    assert a == ("error", "FAILED_PRECONDITION", "etcdserver: user name not found")
    a = authrun.run_step(run, Step(None, "UserGet", A.AuthUserGetRequest(name="root")))
    assert a == ("error", "INVALID_ARGUMENT", "etcdserver: user name is empty")


def test_a_watch_on_the_empty_key_is_checked_as_etcd_checks_it(run):
    """etcd's watch server makes an empty key "\\0" before the permission check; kvcore
    checked the empty key itself (which etcd's interval tree sorts past every key)."""
    user_with(run, "zero", "role-zero", (b"\x00", b""))
    for end, created in ((b"", True), (b"\x01", False)):
        a = authrun.run_step(run, Step("zero", "Watch", A.WatchCreateRequest(range_end=end)))
        assert a[0][1].endswith("created: true\n") == created, a


def test_user_add_hashes_the_password_whatever_hash_is_sent(run):
    """etcd 3.5.1's UserAdd hashes the password given and replaces any hashedPassword
    the client sent; kvcore stored the client's hash, and the password did not work."""
    root(run, "UserAdd", A.AuthUserAddRequest(name="sent", password="pw", hashedPassword="x"))
    assert authrun.authenticate(run, "sent", "pw")[0] == "ok"
