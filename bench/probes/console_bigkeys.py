"""How fast the web console opens the key tree and answers a prefix search over a large
keyspace (issue 22, acceptance 4: reported, not asserted).

    python -m bench.probes.console_bigkeys --keys 1000000 [--rounds 3] [--server kvcore|etcd]
    python -m bench.probes.console_bigkeys --ui http://127.0.0.1:2379/ui/   # already loaded

Loads N keys (/big/dNNNN/kNNNN, 1,000 per folder, 32-byte values) into a fresh member
through gRPC txns of 128 puts, stopping at --max-load-seconds whatever the count; with
``--server etcd`` the member is etcd 3.5.1 behind ``kvcore-console``. Then, in headless
Chromium, each round times (wall clock, from the click or the navigation until the
page shows it):

* open: loading /ui/ until the root folder lists ``/`` (the page's own start reads);
* tree: clicking ``big/`` until its first page (100 folders of the 1,000) is shown;
* search: a prefix search in the flat list until its first key is shown, for three
  prefixes (100 keys in the middle, a whole folder at the end, one key).

Prints each round and the median of each figure; for the tree page also the range
calls the page made and the member's CPU time (core and workers, /proc: a figure the
host's other load moves less than wall time; with --ui, give the member's --pid).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import statistics
import tempfile
import time

from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.select import Select

from tests.console.harness import browser, start_target, wait

COUNT = "return document.querySelectorAll('#entries button').length"
CLICK = ("const b=[...document.querySelectorAll('#entries button')].find(b=>b.textContent===arguments[0]);"
         "if(b) b.click(); return !!b;")
HAS = "return [...document.querySelectorAll('#entries button')].some(b=>b.textContent===arguments[0])"
FIRST = ("const b = document.querySelector('#entries button');"
         "return !!b && b.textContent.startsWith(arguments[0]);")


# Counts the page's gateway range calls (the tree page's cost in round trips).
COUNT_CALLS = """window.__ranges = 0; if (!window.__wrapped) { window.__wrapped = true;
const f = window.fetch; window.fetch = (u, o) => { if (u === '/v3/kv/range') window.__ranges++; return f(u, o); }; }"""


def cpu_seconds(root: int | None) -> float:
    if not root:
        return 0.0
    pids = [root] + [int(p) for p in subprocess.run(
        ["pgrep", "-P", str(root)], capture_output=True, text=True).stdout.split()]
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


def load(t, keys: int, max_seconds: float) -> int:
    t0 = time.monotonic()
    loaded = 0
    while loaded < keys and time.monotonic() - t0 < max_seconds:
        n = min(128 * 100, keys - loaded)
        t.put_many([(f"/big/d{i // 1000:04d}/k{i % 1000:04d}".encode(), b"v" * 32)
                    for i in range(loaded, loaded + n)])
        loaded += n
    print(f"loaded {loaded} keys in {time.monotonic() - t0:.1f} s", flush=True)
    return loaded


def one_round(d, ui: str, folders: int, pid: int | None) -> dict:
    out = {}
    t0 = time.perf_counter()
    d.get(ui)
    wait(d, lambda d: d.execute_script(HAS, "/"), 60, "the root folder")
    out["open"] = time.perf_counter() - t0
    wait(d, lambda d: d.execute_script(CLICK, "/"), 30)
    wait(d, lambda d: d.execute_script(HAS, "big/"), 60, "big/")
    d.execute_script(COUNT_CALLS)
    c0 = cpu_seconds(pid)
    t0 = time.perf_counter()
    d.execute_script(CLICK, "big/")
    want = min(100, folders)
    wait(d, lambda d: d.execute_script(COUNT) == want and d.execute_script(HAS, "d0000/"), 60,
         "the first page of /big/")
    out["tree"] = time.perf_counter() - t0
    out["tree_cpu"] = cpu_seconds(pid) - c0
    out["tree_calls"] = d.execute_script("return window.__ranges")
    Select(d.find_element("id", "mode")).select_by_visible_text("List")
    last = folders - 1
    for i, p in enumerate((f"/big/d{last // 2:04d}/k07", f"/big/d{last:04d}/", "/big/d0001/k0999")):
        box = d.find_element("id", "prefix")
        box.clear()
        box.send_keys(p)
        t0 = time.perf_counter()
        box.send_keys(Keys.ENTER)
        wait(d, lambda d: d.execute_script(FIRST, p), 60, f"search {p}")
        out[f"search{i + 1}"] = time.perf_counter() - t0
    Select(d.find_element("id", "mode")).select_by_visible_text("Tree")
    return out


def show(got: dict) -> str:
    return "  ".join(f"{k} {v:.0f}" if k.endswith("calls") else f"{k} {v * 1000:.0f} ms"
                     for k, v in got.items())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keys", type=int, default=1_000_000)
    ap.add_argument("--max-load-seconds", type=float, default=600)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--server", choices=("kvcore", "etcd"), default="kvcore")
    ap.add_argument("--ui", help="a console already serving --keys keys (no load)")
    ap.add_argument("--pid", type=int, help="with --ui: the member's process, for its CPU time")
    a = ap.parse_args()
    t = None
    d = None
    try:
        if a.ui:
            ui, loaded, pid = a.ui, a.keys, a.pid
        else:
            t = start_target(a.server, tempfile.mkdtemp())
            ui, loaded, pid = t.ui, load(t, a.keys, a.max_load_seconds), t.member.proc.pid
        d = browser()
        rounds = []
        for r in range(a.rounds):
            got = one_round(d, ui, max(1, loaded // 1000), pid)
            rounds.append(got)
            print(f"round {r + 1}: " + show(got), flush=True)
        print("median: " + show({k: statistics.median(r[k] for r in rounds) for k in rounds[0]}))
    finally:
        if d is not None:
            d.quit()
        if t is not None:
            t.stop()


if __name__ == "__main__":
    main()
