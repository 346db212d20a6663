"""Standard descriptors 0, 1 and 2 held open before anything else opens a file.

A supervisor may start the server with them closed (etcd's functional-test agent does
after it closed the member's log file). The kernel then hands the first files and
sockets the server opens those numbers: a worker's IPC socket or the data file would
become "stderr", and the first message written there corrupts it (the worker's
handshake broke and the member exited without a word). Go's runtime does the same
since 1.22; etcd 3.5.1 only never writes to them.
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
