"""etcd's v2 errors (etcd/error): code, message, HTTP status, JSON body."""
from __future__ import annotations

KEY_NOT_FOUND, TEST_FAILED, NOT_FILE, NOT_DIR, NODE_EXIST = 100, 101, 102, 104, 105
ROOT_RONLY, DIR_NOT_EMPTY = 107, 108
UNAUTHORIZED = 110
VALUE_REQUIRED, PREV_VALUE_REQUIRED, TTL_NAN, INDEX_NAN = 200, 201, 202, 203
INVALID_FIELD, INVALID_FORM, REFRESH_VALUE, REFRESH_TTL_REQUIRED = 209, 210, 211, 212
EVENT_INDEX_CLEARED = 401
RAFT_INTERNAL = 300

MESSAGES = {
    KEY_NOT_FOUND: "Key not found", TEST_FAILED: "Compare failed", NOT_FILE: "Not a file",
    NOT_DIR: "Not a directory", NODE_EXIST: "Key already exists",
    ROOT_RONLY: "Root is read only", DIR_NOT_EMPTY: "Directory not empty",
    UNAUTHORIZED: "The request requires user authentication",
    VALUE_REQUIRED: "Value is Required in POST form",
    PREV_VALUE_REQUIRED: "PrevValue is Required in POST form",
    TTL_NAN: "The given TTL in POST form is not a number",
    INDEX_NAN: "The given index in POST form is not a number",
    INVALID_FIELD: "Invalid field", INVALID_FORM: "Invalid POST form",
    REFRESH_VALUE: "Value provided on refresh",
    REFRESH_TTL_REQUIRED: "A TTL must be provided on refresh",
    EVENT_INDEX_CLEARED: "The event in requested index is outdated and cleared",
    RAFT_INTERNAL: "Raft Internal Error",
}
_STATUS = {KEY_NOT_FOUND: 404, NOT_FILE: 403, DIR_NOT_EMPTY: 403, TEST_FAILED: 412,
           NODE_EXIST: 412, RAFT_INTERNAL: 500, 110: 401, 301: 500}


class V2Error(Exception):
    def __init__(self, code: int, cause: str = "", index: int = 0):
        super().__init__(f"{code}: {MESSAGES.get(code, '')} ({cause})")
        self.code = code
        self.cause = cause
        self.index = index

    @property
    def status(self) -> int:
        return _STATUS.get(self.code, 400)

    def body(self) -> bytes:
        d = {"errorCode": self.code, "message": MESSAGES.get(self.code, "")}
        if self.cause:
            d["cause"] = self.cause
        d["index"] = self.index
        from kvcore.gateway.codec import dumps   # Go's escaping
        return dumps(d) + b"\n"
