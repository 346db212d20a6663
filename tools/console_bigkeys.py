"""Reports (does not assert) how fast the console opens the tree and answers a prefix
search over a large keyspace: loads N keys into a fresh kvcore through gRPC (bounded
txns of 128 puts), then times clicks in headless Chromium.

    python3 tools/console_bigkeys.py --keys 1000000
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.select import Select  # noqa: E402

from tests.console.harness import browser, start_target, wait  # noqa: E402

COUNT = "return document.querySelectorAll('#entries button').length"
CLICK = ("const b=[...document.querySelectorAll('#entries button')].find(b=>b.textContent===arguments[0]);"
         "if(b) b.click(); return !!b;")


def timed(d, action, done) -> float:
    t0 = time.perf_counter()
    action()
    wait(d, done, 60)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keys", type=int, default=1_000_000)
    ap.add_argument("--max-load-seconds", type=float, default=600)
    a = ap.parse_args()
    t = start_target("kvcore", tempfile.mkdtemp())
    d = None
    try:
        t0 = time.monotonic()
        step = 128 * 100
        loaded = 0
        while loaded < a.keys and time.monotonic() - t0 < a.max_load_seconds:
            n = min(step, a.keys - loaded)
            t.put_many([(f"/big/d{i // 1000:04d}/k{i % 1000:04d}".encode(), b"v" * 32)
                        for i in range(loaded, loaded + n)])
            loaded += n
        print(f"loaded {loaded} keys in {time.monotonic() - t0:.1f} s")
        d = browser()
        d.get(t.ui)
        wait(d, lambda d: d.execute_script(CLICK, "/"), 30)
        wait(d, lambda d: d.execute_script(CLICK, "big/"), 30)
        wait(d, lambda d: d.execute_script(COUNT) == 100, 60)
        for _ in range(3):
            d.execute_script("document.querySelector('#crumbs button:nth-child(2)').click()")
            wait(d, lambda d: d.execute_script(COUNT) == 1)
            t0 = time.perf_counter()
            d.execute_script(CLICK, "big/")
            wait(d, lambda d: d.execute_script(COUNT) > 1 or "d0000/" in d.execute_script(
                "return document.getElementById('entries').textContent"), 60)
            first = time.perf_counter() - t0
            wait(d, lambda d: d.execute_script(COUNT) == 100, 60)
            tree = time.perf_counter() - t0
            print(f"tree: open /big/: first folders shown {first * 1000:.0f} ms, "
                  f"page of 100 (of {loaded // 1000}) folders {tree * 1000:.0f} ms")
        Select(d.find_element("id", "mode")).select_by_visible_text("List")
        last = (loaded - 1) // 1000
        for p in (f"/big/d{last // 2:04d}/k07", f"/big/d{last:04d}/", "/big/d0001/k0999"):
            box = d.find_element("id", "prefix")
            box.clear()
            box.send_keys(p)
            s = timed(d, lambda: box.send_keys(Keys.ENTER), lambda d: d.execute_script(
                "const b = document.querySelector('#entries button');"
                "return !!b && b.textContent.startsWith(arguments[0]);", p))
            print(f"prefix search {p!r} -> {d.execute_script(COUNT)} shown: {s * 1000:.0f} ms")
    finally:
        if d is not None:
            d.quit()
        t.stop()


if __name__ == "__main__":
    main()
