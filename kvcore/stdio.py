"""Standard descriptors 0, 1 and 2 held open before anything else opens a file.

A supervisor may start the server with them closed (etcd's functional-test agent does
after it closed the member's log file). The kernel then hands the first files and
sockets the server opens those numbers: the log file became fd 1, a socket fd 2, and
uvloop's libuv, which asserts it never closes 0-2 (src/unix/core.c), aborted the member
when it closed that socket, its message lost on the closed stderr. etcd 3.5.1 never
writes to them.
"""
import os


def hold_open() -> None:
    """Opens /dev/null on each of 0, 1, 2 that is closed (stdin read-only)."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDONLY if fd == 0 else os.O_WRONLY)
            if null != fd:     # a lower one was free: put it where it belongs
                os.dup2(null, fd)
                os.close(null)
