"""systemd's sd_notify: tell a Type=notify unit that the member serves, as etcd does
once it is ready (``READY=1`` as one datagram to $NOTIFY_SOCKET; a leading ``@``
names an abstract socket). Without $NOTIFY_SOCKET nothing is sent."""
from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger("kvcore.sdnotify")


def notify(state: str = "READY=1", env: dict = None) -> bool:
    addr = (env if env is not None else os.environ).get("NOTIFY_SOCKET", "")
    if not addr:
        return False
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.sendto(state.encode(), addr)
    except OSError as e:
        log.warning("failed to notify systemd for readiness", extra={"fields": {
            "error": str(e)}})
        return False
    log.info("notified systemd for readiness", extra={"fields": {"state": state}})
    return True
