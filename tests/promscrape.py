"""Scraping /metrics in tests: families as (type, help, label names) and sample values."""
from __future__ import annotations

import re
import ssl
import urllib.error
import urllib.request
from typing import Optional

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
_SUFFIXES = ("_bucket", "_sum", "_count")


def get(url: str, timeout: float = 15.0, context: Optional[ssl.SSLContext] = None):
    """-> (status, content type, body bytes), also for 4xx/5xx answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as r:
            return r.status, r.headers.get("Content-Type"), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read()


def families(text: str) -> dict:
    """name -> {"type", "help", "labels": set of label names over all samples}."""
    out: dict = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, _, doc = line[7:].partition(" ")
            out.setdefault(name, {"type": None, "help": None, "labels": set()})["help"] = doc
        elif line.startswith("# TYPE "):
            name, _, typ = line[7:].partition(" ")
            out.setdefault(name, {"type": None, "help": None, "labels": set()})["type"] = typ
        elif line and not line.startswith("#"):
            m = _SAMPLE.match(line)
            if not m:
                continue
            name = m.group(1)
            fam = out.get(name)
            if fam is None:
                for suf in _SUFFIXES:
                    if name.endswith(suf) and name[:-len(suf)] in out:
                        fam = out[name[:-len(suf)]]
                        break
            if fam is not None and m.group(3):
                fam["labels"] |= {k for k, _ in _LABEL.findall(m.group(3))} - {"le", "quantile"}
    return out


def samples(text: str) -> dict:
    """(sample name, frozenset of (label, value)) -> float."""
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        m = _SAMPLE.match(line)
        if m:
            labels = frozenset(_LABEL.findall(m.group(3) or ""))
            out[(m.group(1), labels)] = float(m.group(4))
    return out


def value(text: str, name: str, **labels) -> float:
    """The sample's value; 0 when absent (a counter not yet created)."""
    want = frozenset(labels.items())
    return samples(text).get((name, want), 0.0)


def total(text: str, name: str, **labels) -> float:
    """Sum over the samples of ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples(text).items() if n == name and want <= set(ls))


def scrape(base_url: str) -> str:
    status, _, body = get(base_url.rstrip("/") + "/metrics")
    assert status == 200, body
    return body.decode()
