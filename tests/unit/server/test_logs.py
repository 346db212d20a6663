"""kvcore/logs.py: zap's JSON fields, and --enable-log-rotation's file rotation."""
import gzip
import json
import logging
import os
import re

from kvcore import logs


def _record(msg, **fields):
    r = logging.LogRecord("kvcore.test", logging.WARNING, "/x/kvcore/server/core.py", 42,
                          msg, (), None)
    r.fields = {k.replace("_", "-"): v for k, v in fields.items()}
    return r


def test_zap_line_has_etcds_keys_in_order_then_the_fields():
    out = json.loads(logs.ZapFormatter().format(_record("slow apply", took="2ms")))
    assert list(out) == ["level", "ts", "caller", "msg", "took"]
    assert (out["level"], out["caller"], out["msg"]) == ("warn", "server/core.py:42",
                                                          "slow apply")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}(Z|[+-]\d{4})", out["ts"])


def _rotating(tmp_path, **conf):
    h = logs.RotatingLineHandler(str(tmp_path / "kvcore.log"), conf, max_bytes=400)
    h.setFormatter(logs.ZapFormatter())
    return h


def _backups(tmp_path):
    return sorted(n for n in os.listdir(tmp_path) if n.startswith("kvcore-"))


def test_rotation_keeps_maxbackups_files_named_like_lumberjack(tmp_path):
    h = _rotating(tmp_path, maxbackups=2)
    for i in range(60):
        h.emit(_record(f"line {i}"))
    h.close()
    names = _backups(tmp_path)
    assert len(names) == 2
    assert all(re.fullmatch(r"kvcore-\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d\.\d{3}\.log", n)
               for n in names)
    assert os.path.getsize(tmp_path / "kvcore.log") <= 400 + 200
    last = (tmp_path / "kvcore.log").read_text().splitlines()[-1]
    assert json.loads(last)["msg"] == "line 59"


def test_rotation_compresses_old_files(tmp_path):
    h = _rotating(tmp_path, compress=True)
    for i in range(30):
        h.emit(_record(f"line {i}"))
    h.close()
    names = _backups(tmp_path)
    assert names and all(n.endswith(".log.gz") for n in names)
    with gzip.open(tmp_path / names[0], "rt") as f:
        assert json.loads(f.readline())["msg"] == "line 0"


def test_a_second_process_handle_follows_the_rotation(tmp_path):
    a, b = _rotating(tmp_path, maxbackups=0), _rotating(tmp_path, maxbackups=0)
    for i in range(20):
        (a if i % 2 else b).emit(_record(f"line {i}"))
    a.close()
    b.close()
    lines = []
    for n in _backups(tmp_path) + ["kvcore.log"]:
        lines += (tmp_path / n).read_text().splitlines()
    assert sorted(json.loads(l)["msg"] for l in lines) == sorted(f"line {i}" for i in range(20))
