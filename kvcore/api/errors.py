"""etcd's client-visible errors: gRPC status code and the exact message text.

Messages match etcd's rpctypes so clients that compare error strings (etcdctl,
clientv3, python-etcd3) recognise them.
"""
from kvcore.engine.base import GrpcError, StatusCode as C


class EtcdError:
    """(code, message) pairs; raise ``etcd_error(EtcdError.X)`` for a fresh exception."""

    EMPTY_KEY = (C.INVALID_ARGUMENT, "etcdserver: key is not provided")
    KEY_NOT_FOUND = (C.INVALID_ARGUMENT, "etcdserver: key not found")
    VALUE_PROVIDED = (C.INVALID_ARGUMENT, "etcdserver: value is provided")
    LEASE_PROVIDED = (C.INVALID_ARGUMENT, "etcdserver: lease is provided")
    TOO_MANY_OPS = (C.INVALID_ARGUMENT, "etcdserver: too many operations in txn request")
    DUPLICATE_KEY = (C.INVALID_ARGUMENT, "etcdserver: duplicate key given in txn request")
    INVALID_SORT = (C.INVALID_ARGUMENT, "etcdserver: invalid sort option")
    COMPACTED = (C.OUT_OF_RANGE, "etcdserver: mvcc: required revision has been compacted")
    FUTURE_REV = (C.OUT_OF_RANGE, "etcdserver: mvcc: required revision is a future revision")
    NO_SPACE = (C.RESOURCE_EXHAUSTED, "etcdserver: mvcc: database space exceeded")
    LEASE_NOT_FOUND = (C.NOT_FOUND, "etcdserver: requested lease not found")
    LEASE_EXIST = (C.FAILED_PRECONDITION, "etcdserver: lease already exists")
    LEASE_TTL_TOO_LARGE = (C.OUT_OF_RANGE, "etcdserver: too large lease TTL")
    REQUEST_TOO_LARGE = (C.INVALID_ARGUMENT, "etcdserver: request is too large")
    NO_LEADER = (C.UNAVAILABLE, "etcdserver: no leader")
    NOT_LEADER = (C.FAILED_PRECONDITION, "etcdserver: not leader")
    LEADER_CHANGED = (C.UNAVAILABLE, "etcdserver: leader changed")
    STOPPED = (C.UNAVAILABLE, "etcdserver: server stopped")
    TIMEOUT = (C.UNAVAILABLE, "etcdserver: request timed out")
    # A proposal still waiting for a leader at the request timeout (never proposed):
    # etcd 3.5 sends its context's error as it is (gRPC Unknown, HTTP 500 on the gateway).
    CONTEXT_DEADLINE = (C.UNKNOWN, "context deadline exceeded")
    TOO_MANY_REQUESTS = (C.RESOURCE_EXHAUSTED, "etcdserver: too many requests")
    UNHEALTHY = (C.UNAVAILABLE, "etcdserver: unhealthy cluster")
    CORRUPT = (C.DATA_LOSS, "etcdserver: corrupt cluster")
    NOT_CAPABLE = (C.UNAVAILABLE, "etcdserver: not capable")
    # raft.ErrProposalDropped, which etcd's server passes on as it is (gRPC Unknown).
    PROPOSAL_DROPPED = (C.UNKNOWN, "raft proposal dropped")
    MEMBER_NOT_FOUND = (C.NOT_FOUND, "etcdserver: member not found")
    MEMBER_EXIST = (C.FAILED_PRECONDITION, "etcdserver: member ID already exist")
    PEER_URL_EXIST = (C.FAILED_PRECONDITION, "etcdserver: Peer URLs already exists")
    MEMBER_BAD_URLS = (C.INVALID_ARGUMENT, "etcdserver: given member URLs are invalid")
    MEMBER_NOT_LEARNER = (C.FAILED_PRECONDITION, "etcdserver: can only promote a learner member")
    LEARNER_NOT_READY = (C.FAILED_PRECONDITION,
                         "etcdserver: can only promote a learner member which is in sync with leader")
    TOO_MANY_LEARNERS = (C.FAILED_PRECONDITION, "etcdserver: too many learner members in cluster")
    # etcd's toGRPCErrorMap maps ErrNotEnoughStartedMembers to rpctypes' client-side
    # error, not its gRPC status, so it goes out as Unknown (HTTP 500 on the gateway).
    NOT_ENOUGH_STARTED = (C.UNKNOWN,
                          "etcdserver: re-configuration failed due to not enough started members")
    NOT_SUPPORTED_FOR_LEARNER = (C.UNAVAILABLE, "etcdserver: rpc not supported for learner")
    PERMISSION_DENIED = (C.PERMISSION_DENIED, "etcdserver: permission denied")
    AUTH_NOT_ENABLED = (C.FAILED_PRECONDITION, "etcdserver: authentication is not enabled")
    INVALID_AUTH_TOKEN = (C.UNAUTHENTICATED, "etcdserver: invalid auth token")
    # etcd 3.5 has no rpctypes entry for ErrAuthOldRevision: it goes out as the auth
    # package's own error with code Unknown (3.6 adds "etcdserver: revision of auth
    # store is old").
    AUTH_OLD_REVISION = (C.UNKNOWN, "auth: revision in header is old")
    ROOT_USER_NOT_EXIST = (C.FAILED_PRECONDITION, "etcdserver: root user does not exist")
    ROOT_ROLE_NOT_EXIST = (C.FAILED_PRECONDITION, "etcdserver: root user does not have root role")
    USER_ALREADY_EXIST = (C.FAILED_PRECONDITION, "etcdserver: user name already exists")
    USER_EMPTY = (C.INVALID_ARGUMENT, "etcdserver: user name is empty")
    USER_NOT_FOUND = (C.FAILED_PRECONDITION, "etcdserver: user name not found")
    ROLE_ALREADY_EXIST = (C.FAILED_PRECONDITION, "etcdserver: role name already exists")
    ROLE_NOT_FOUND = (C.FAILED_PRECONDITION, "etcdserver: role name not found")
    ROLE_EMPTY = (C.INVALID_ARGUMENT, "etcdserver: role name is empty")
    AUTH_FAILED = (C.INVALID_ARGUMENT,
                   "etcdserver: authentication failed, invalid user ID or password")
    PERMISSION_NOT_GIVEN = (C.INVALID_ARGUMENT, "etcdserver: permission not given")
    ROLE_NOT_GRANTED = (C.FAILED_PRECONDITION, "etcdserver: role is not granted to the user")
    PERMISSION_NOT_GRANTED = (C.FAILED_PRECONDITION,
                              "etcdserver: permission is not granted to the role")
    INVALID_AUTH_MGMT = (C.INVALID_ARGUMENT, "etcdserver: invalid auth management")
    BAD_LEADER_TRANSFEREE = (C.FAILED_PRECONDITION, "etcdserver: bad leader transferee")


def etcd_error(kind: tuple) -> GrpcError:
    code, msg = kind
    return GrpcError(code, msg)
