"""Logging as etcd 3.5 logs: ``--logger zap`` writes one JSON object per line with
zap's production fields (level, ts, caller, msg, then the event's own fields);
``--logger console`` (kvcore's) writes human-readable lines. ``--log-outputs``:
``default``/``stderr``, ``stdout`` or file paths (appended to; every process of the
member writes whole lines with one write each, so their lines do not interleave).

Fields: ``log.info("msg", extra=fields(local_member_id="8e9e05c52164694d"))``; the
keyword names turn into etcd's dashed keys.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from typing import Any, Optional

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
          "error": logging.ERROR, "dpanic": logging.CRITICAL, "panic": logging.CRITICAL,
          "fatal": logging.CRITICAL}
_ZAP_LEVEL = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warn",
              logging.ERROR: "error", logging.CRITICAL: "fatal"}


def fields(**kw: Any) -> dict:
    """extra= for a log call: event fields in etcd's key style (dashes)."""
    return {"fields": {k.replace("_", "-"): v for k, v in kw.items()}}


def zap_ts(t: float) -> str:
    """zap's ISO8601TimeEncoder: 2006-01-02T15:04:05.000Z0700."""
    lt = time.localtime(t)
    off = time.strftime("%z", lt)
    off = "Z" if off in ("+0000", "-0000") else off
    return time.strftime("%Y-%m-%dT%H:%M:%S", lt) + f".{int(t * 1000) % 1000:03d}" + off


def _caller(record: logging.LogRecord) -> str:
    path = record.pathname.replace(os.sep, "/")
    short = "/".join(path.split("/")[-2:])
    return f"{short}:{record.lineno}"


class ZapFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {"level": _ZAP_LEVEL.get(record.levelno, "info"), "ts": zap_ts(record.created),
               "caller": _caller(record), "msg": record.getMessage()}
        extra = getattr(record, "fields", None)
        if extra:
            for k, v in extra.items():
                out.setdefault(k, v)
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info).splitlines()[-1]
            out["stacktrace"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str, separators=(",", ":"))


class ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.created))
        line = (f"{ts}.{int(record.msecs):03d} {_ZAP_LEVEL.get(record.levelno, 'info').upper()} "
                f"{record.name}[{record.process}]: {record.getMessage()}")
        extra = getattr(record, "fields", None)
        if extra:
            line += " " + " ".join(f"{k}={v}" for k, v in extra.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class LineHandler(logging.Handler):
    """Writes each formatted record with a single os.write (O_APPEND for files)."""

    def __init__(self, fd: int, close: bool):
        super().__init__()
        self.fd = fd
        self._close = close

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = (self.format(record) + "\n").encode("utf-8", "replace")
            while data:
                n = os.write(self.fd, data)
                data = data[n:]
        except Exception:  # pragma: no cover - never let logging kill the server
            self.handleError(record)

    def close(self) -> None:
        if self._close:
            os.close(self.fd)
        super().close()


class RotatingLineHandler(LineHandler):
    """--enable-log-rotation for one file target, as etcd's lumberjack: past
    ``maxsize`` MB the file is renamed to ``<name>-<time><ext>`` and a new one
    started; ``maxbackups`` (0 = all) and ``maxage`` days (0 = forever) bound the old
    ones; ``compress`` gzips them. Every process of the member may rotate: the one
    holding the file lock renames, the others notice the new file and reopen it."""

    def __init__(self, path: str, conf: dict, max_bytes: int = 0):
        self.path = path
        self.max_bytes = max_bytes or int(conf.get("maxsize", 100)) * 1024 * 1024
        self.max_backups = int(conf.get("maxbackups", 0))
        self.max_age = float(conf.get("maxage", 0)) * 86400
        self.localtime = bool(conf.get("localtime", False))
        self.compress = bool(conf.get("compress", False))
        super().__init__(*_open(path))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._maybe_rotate()
        except OSError:  # pragma: no cover - keep logging to the old file
            pass
        super().emit(record)

    def _maybe_rotate(self) -> None:
        import fcntl
        try:
            on_disk = os.stat(self.path)
        except FileNotFoundError:
            on_disk = None
        mine = os.fstat(self.fd)
        if on_disk is None or on_disk.st_ino != mine.st_ino:
            self._reopen()          # another process rotated
            return
        if mine.st_size < self.max_bytes:
            return
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        try:
            on_disk = os.stat(self.path)
            if on_disk.st_ino == mine.st_ino and on_disk.st_size >= self.max_bytes:
                os.rename(self.path, self._backup_name())
                self._cleanup()
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        self._reopen()

    def _reopen(self) -> None:
        old, self.fd = self.fd, _open(self.path)[0]
        os.close(old)

    def _backup_name(self) -> str:
        stem, ext = os.path.splitext(self.path)
        while True:   # two rotations within a millisecond must not share a name
            t = time.time()
            tm = time.localtime(t) if self.localtime else time.gmtime(t)
            name = (f"{stem}-{time.strftime('%Y-%m-%dT%H-%M-%S', tm)}."
                    f"{int(t * 1000) % 1000:03d}{ext}")
            if not os.path.exists(name) and not os.path.exists(name + ".gz"):
                return name
            time.sleep(0.001)

    def _backups(self) -> list:
        stem, ext = os.path.splitext(os.path.basename(self.path))
        d = os.path.dirname(self.path) or "."
        names = [n for n in os.listdir(d) if n.startswith(stem + "-")
                 and (n.endswith(ext) or n.endswith(ext + ".gz"))]
        return sorted(os.path.join(d, n) for n in names)

    def _cleanup(self) -> None:
        import gzip
        import shutil
        backups = self._backups()
        if self.compress:
            for b in backups:
                if not b.endswith(".gz"):
                    with open(b, "rb") as src, gzip.open(b + ".gz", "wb") as dst:
                        shutil.copyfileobj(src, dst)
                    os.unlink(b)
            backups = self._backups()
        doomed = set()
        if self.max_backups > 0:
            doomed.update(backups[:-self.max_backups])
        if self.max_age > 0:
            cutoff = time.time() - self.max_age
            doomed.update(b for b in backups if os.stat(b).st_mtime < cutoff)
        for b in doomed:
            with contextlib.suppress(OSError):
                os.unlink(b)


def _open(output: str) -> tuple[int, bool]:
    if output in ("default", "stderr"):
        return sys.stderr.fileno(), False
    if output == "stdout":
        return sys.stdout.fileno(), False
    return os.open(output, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644), True


def setup(logger: str = "zap", outputs=("default",), level: str = "info",
          rotation: Optional[dict] = None) -> None:
    """Replace the root logger's handlers with ones for these flags (``rotation``:
    --log-rotation-config-json when --enable-log-rotation, for the file output)."""
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
        h.close()
    formatter = ZapFormatter() if logger == "zap" else ConsoleFormatter()
    for out in dict.fromkeys(outputs or ("default",)):
        if out == "/dev/null":
            continue
        std = out in ("default", "stderr", "stdout")
        h = RotatingLineHandler(out, rotation) if rotation is not None and not std \
            else LineHandler(*_open(out))
        h.setFormatter(formatter)
        root.addHandler(h)
    root.setLevel(LEVELS.get(level, logging.INFO))


def options(cfg) -> dict:
    """What a worker process needs to log like its core."""
    rotation = json.loads(cfg.log_rotation_config_json) if cfg.enable_log_rotation else None
    return {"logger": cfg.logger, "outputs": list(cfg.log_outputs), "level": cfg.log_level,
            "rotation": rotation}


def emit_now(level: str, msg: str, logger: str = "zap", stream=None, **kw: Any) -> None:
    """One line before logging is set up (flag errors), in the chosen format."""
    stream = stream or sys.stderr
    if logger == "console":
        extra = " ".join(f"{k.replace('_', '-')}={v}" for k, v in kw.items())
        print(f"{level.upper()} {msg} {extra}".rstrip(), file=stream)
        return
    out = {"level": level, "ts": zap_ts(time.time()), "caller": "kvcore/main.py:0", "msg": msg}
    out.update({k.replace("_", "-"): v for k, v in kw.items()})
    print(json.dumps(out, separators=(",", ":")), file=stream)


def go_duration(sec: float) -> str:
    """Go's time.Duration String for a positive duration (e.g. 11m20.1765367s)."""
    if sec < 1e-3:
        return f"{sec * 1e6:.3f}".rstrip("0").rstrip(".") + "µs"
    if sec < 1:
        return f"{sec * 1e3:.6f}".rstrip("0").rstrip(".") + "ms"
    h, rem = divmod(sec, 3600)
    m, s = divmod(rem, 60)
    out = f"{s:.9f}".rstrip("0").rstrip(".") + "s"
    if m or h:
        out = f"{int(m)}m" + out
    if h:
        out = f"{int(h)}h" + out
    return out
