"""Regenerates docs/console/*.png: the console's main views against a fresh kvcore
with a little sample data. Run from the checkout: python3 tools/console_screenshots.py"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from selenium.webdriver.support.select import Select  # noqa: E402

from tests.console.harness import browser, start_target, wait  # noqa: E402

OUT = os.path.join(ROOT, "docs", "console")


def shot(d, name: str) -> None:
    d.execute_script("window.scrollTo(0, 0)")
    time.sleep(0.5)      # let the last render land
    d.save_screenshot(os.path.join(OUT, name))


def main() -> None:
    t = start_target("kvcore", tempfile.mkdtemp())
    d = browser(1100, 1000)
    try:
        t.put_many([(f"/services/{s}/instances/{i}".encode(),
                     json.dumps({"host": f"10.0.{i}.{n}", "port": 8080 + i}).encode())
                    for n, s in enumerate(["api", "billing", "search"]) for i in range(4)]
                   + [(f"/config/app/{k}".encode(), v.encode()) for k, v in
                      [("log_level", "info"), ("features", '{"beta": true, "limit": 50}')]])
        t.ctl("put", "/config/app/features", '{"beta": false, "limit": 100}')
        lease = t.ctl("lease", "grant", "600").split()[1]
        t.ctl("put", "/locks/job-42", "owner=worker-3", f"--lease={lease}")
        d.get(t.ui)
        wait(d, lambda d: d.execute_script("return document.querySelectorAll('#entries button').length") > 0)
        for label in ("/", "config/", "app/", "features"):
            wait(d, lambda d: d.execute_script(
                "const b=[...document.querySelectorAll('#entries button')].find(b=>b.textContent===arguments[0]);"
                "if(b) b.click(); return !!b;", label))
            time.sleep(0.3)
        Select(d.find_element("id", "format")).select_by_visible_text("JSON")
        d.find_element("id", "show-history").click()
        wait(d, lambda d: d.execute_script("return document.querySelectorAll('#history-rows tr').length") >= 2)
        d.find_element("id", "diff").click()
        shot(d, "keys.png")
        d.get(t.ui + "#/leases")
        wait(d, lambda d: "job-42" in d.find_element("id", "lease-rows").text)
        shot(d, "leases.png")
        d.get(t.ui + "#/members")
        wait(d, lambda d: "leader" in d.find_element("id", "member-rows").text)
        shot(d, "members.png")
        d.set_window_size(420, 800)
        d.get(t.ui)
        wait(d, lambda d: d.execute_script("return document.querySelectorAll('#entries button').length") > 0)
        shot(d, "narrow.png")
    finally:
        d.quit()
        t.stop()


if __name__ == "__main__":
    main()
