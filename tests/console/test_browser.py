"""The console in headless Chromium against real processes: kvcore serving /ui/ itself,
and a real etcd 3.5.1 behind ``kvcore-console`` (the same tests, the same page)."""
from __future__ import annotations

import json
import re

import pytest
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.select import Select

from tests.console.harness import browser, deadline_poll, start_target, wait


@pytest.fixture(scope="module", params=["kvcore", "etcd"])
def target(request, tmp_path_factory):
    t = start_target(request.param, str(tmp_path_factory.mktemp(request.param)))
    yield t
    t.stop()


@pytest.fixture(scope="module")
def driver():
    d = browser()
    yield d
    d.quit()


@pytest.fixture
def page(target, driver):
    driver.get(target.ui)
    wait(driver, lambda d: d.find_element(By.ID, "live").text.startswith("live:"), what="page started")
    return driver


def by(d, id_):
    return d.find_element(By.ID, id_)


def entries(d) -> list[str]:
    # Read in one script call: the list re-renders under live updates.
    return d.execute_script(
        "return [...document.querySelectorAll('#entries button')].map(b => b.textContent)")


def click_entry(d, label: str) -> None:
    wait(d, lambda d: d.execute_script(
        "const b = [...document.querySelectorAll('#entries button')]"
        ".find(b => b.textContent === arguments[0]); if (b) b.click(); return !!b;", label),
        what=f"entry {label!r} in {entries(d)}")


def search(d, prefix: str, mode: str = "List") -> None:
    """A prefix search in the flat list (full keys shown), or a folder in the tree."""
    Select(by(d, "mode")).select_by_visible_text(mode)
    box = by(d, "prefix")
    box.clear()
    box.send_keys(prefix, Keys.ENTER)


def set_value(d, text: str) -> None:
    # Large values go in by script (typing 1.5 MiB is not the point); an input event
    # marks the editor dirty just as typing does.
    d.execute_script("const t = arguments[0]; t.value = arguments[1];"
                     "t.dispatchEvent(new Event('input'));", by(d, "value"), text)


def error_text(d) -> str:
    e = by(d, "error")
    return "" if not e.is_displayed() else e.text


def accept_confirm(d) -> str:
    wait(d, EC.alert_is_present(), 10, "confirmation dialog")
    a = d.switch_to.alert
    text = a.text
    a.accept()
    return text


def test_tree_of_10000_keys_open_and_edit(target, page):
    target.put_many([(f"/tree/d{i // 100:03d}/k{i % 100:03d}".encode(),
                      json.dumps({"i": i}).encode()) for i in range(10_000)])
    d = page
    click_entry(d, "/")
    click_entry(d, "tree/")
    wait(d, lambda d: len(entries(d)) == 100 and "10000 keys" in by(d, "count").text,
         60, "100 folders of the 10,000 keys")
    click_entry(d, "d042/")
    wait(d, lambda d: len(entries(d)) == 100 and entries(d)[0] == "k000")
    click_entry(d, "k007")
    wait(d, lambda d: by(d, "key-name").text == "/tree/d042/k007")
    assert json.loads(by(d, "value").get_attribute("value")) == {"i": 4207}
    by(d, "format").send_keys("JSON")   # pretty JSON view
    wait(d, lambda d: '"i": 4207' in by(d, "value").get_attribute("value"))
    set_value(d, '{"i": "edited"}')
    by(d, "save").click()
    wait(d, lambda d: "Saved at revision" in by(d, "notice").text)
    assert json.loads(target.ctl("get", "/tree/d042/k007", "--print-value-only")) == {"i": "edited"}


def test_tree_pages_list_every_child_once_in_key_order(target, page):
    """A folder walked page by page (More…) lists exactly its children in key order:
    sub-folders named so that blocks of names are empty, full or cut at a page's end,
    folders and keys of one name, and keys whose next byte sorts before the separator."""
    names = ([f"d{i:04d}/x" for i in range(0, 230, 1) if i % 7] + [f"d{i:04d}/y/z" for i in range(230, 260)]
             + ["a", "a/1", "a-b", "a0/k", "ab", "b.c/k", "k5", "zz/k"] + [f"k{i:03d}" for i in range(40)])
    target.put_many([(f"/pg/{n}".encode(), b"v") for n in names])
    want = sorted({n.split("/")[0] + "/" if "/" in n else n for n in names},
                  key=lambda c: (f"/pg/{c}").encode())
    d = page
    search(d, "/pg/", mode="Tree")
    counted = f"{len(names)} keys in this folder"
    got = []
    for k in range(1, 10):
        # Page k is in when the folder's count is shown and the list holds k pages
        # (or all of it, with no More left).
        n = min(100 * k, len(want))
        wait(d, lambda d: counted in by(d, "count").text and len(entries(d)) == n
             and by(d, "more").is_displayed() == (n < len(want)), 60, f"page {k}")
        got = entries(d)
        if n == len(want):
            break
        by(d, "more").click()
    assert got == want
    # A change seen live re-reads every page shown, not just the first.
    target.ctl("put", "/pg/k0395", "v")
    want2 = sorted(want + ["k0395"], key=lambda c: (f"/pg/{c}").encode())
    wait(d, lambda d: entries(d) == want2, 30, f"the live change in all {len(want2)} entries")


def test_conflicting_edit_is_refused_and_newer_value_shown(target, page):
    target.ctl("put", "/conflict/k", "first")
    d = page
    search(d, "/conflict/")
    click_entry(d, "/conflict/k")
    wait(d, lambda d: by(d, "value").get_attribute("value") == "first")
    set_value(d, "mine")
    target.ctl("put", "/conflict/k", "theirs")        # a concurrent writer
    by(d, "save").click()
    wait(d, lambda d: "Refused" in error_text(d), what="refusal shown")
    assert by(d, "value").get_attribute("value") == "theirs"
    assert target.ctl("get", "/conflict/k", "--print-value-only").strip() == "theirs"


def test_create_with_json_validation(target, page):
    d = page
    by(d, "new-key").click()
    name = by(d, "new-name")
    name.clear()
    name.send_keys("/created/conf.json")
    by(d, "format").send_keys("JSON")
    set_value(d, '{"a": 1,')
    by(d, "save").click()
    wait(d, lambda d: "Invalid JSON" in error_text(d) and "Nothing was saved" in error_text(d))
    assert target.ctl("get", "/created/conf.json") == ""
    set_value(d, '{"a": 1}')
    by(d, "save").click()
    wait(d, lambda d: "Saved at revision" in by(d, "notice").text)
    assert json.loads(target.ctl("get", "/created/conf.json", "--print-value-only")) == {"a": 1}


def test_delete_prefix_with_confirmation(target, page):
    target.put_many([(f"/del/{i}".encode(), b"v") for i in range(20)] + [(b"/delx", b"keep")])
    d = page
    search(d, "/del/", mode="Tree")
    wait(d, lambda d: "20 keys in this folder" in by(d, "count").text and "19" in entries(d))
    by(d, "delete-prefix").click()
    assert "20 keys" in accept_confirm(d)
    wait(d, lambda d: "Deleted 20 keys" in by(d, "notice").text)
    assert target.ctl("get", "/del/", "--prefix", "--keys-only") == ""
    assert target.ctl("get", "/delx", "--print-value-only").strip() == "keep"


def test_etcdctl_write_appears_live(target, page):
    target.ctl("put", "/live/a", "1")
    d = page
    search(d, "/live/")
    click_entry(d, "/live/a")
    target.ctl("put", "/live/b", "2")
    target.ctl("put", "/live/a", "changed")
    try:
        wait(d, lambda d: "/live/b" in entries(d), what="new key listed live")
    except TimeoutException:
        raise AssertionError(f"not listed live: {by(d, 'live').text!r}, {entries(d)}, "
                             f"{error_text(d)!r}") from None
    wait(d, lambda d: by(d, "value").get_attribute("value") == "changed", what="open key live")


def test_lease_counts_down_and_key_vanishes(target, page):
    out = target.ctl("lease", "grant", "6")            # "lease 694d... granted with TTL(6s)"
    lease = out.split()[1]
    target.ctl("put", "/leased/k", "v", f"--lease={lease}")
    d = page
    search(d, "/leased/")
    click_entry(d, "/leased/k")
    wait(d, lambda d: by(d, "lease").get_attribute("value") == lease)
    seen = set()

    def ttl_seen(d):
        t = d.find_elements(By.ID, "lease-ttl")
        if t and t[0].text.endswith(" s"):
            seen.add(int(t[0].text[:-2]))
        return len(seen) >= 2
    wait(d, ttl_seen, what="TTL counting down")
    assert max(seen) <= 6
    wait(d, lambda d: "does not exist" in by(d, "key-state").text, 30, "key gone with its lease")
    wait(d, lambda d: "/leased/k" not in entries(d), what="key gone from the list")


def test_bad_input_non_utf8_key_and_too_large_value(target, page):
    target.put_many([(b"/bad/\xff\xfe", b"\xc3\x28binary"), (b"/bad/big", b"small")])
    d = page
    search(d, "/bad/")
    click_entry(d, "/bad/\\xff\\xfe")
    wait(d, lambda d: "not UTF-8" in by(d, "key-state").text)
    wait(d, lambda d: by(d, "format").get_attribute("value") == "hex")
    click_entry(d, "/bad/big")
    wait(d, lambda d: by(d, "value").get_attribute("value") == "small")
    set_value(d, "x" * (1536 * 1024))
    by(d, "save").click()
    wait(d, lambda d: "request is too large" in error_text(d), what="too-large refusal")
    assert "nothing was written" in error_text(d)
    assert target.ctl("get", "/bad/big", "--print-value-only").strip() == "small"


def test_metrics_charts_db_size_requests_and_fsync(target, page):
    d = page
    d.get(target.ui + "#/metrics")
    # Two scrapes of /metrics (one at load, then every 5 s) make the first points.
    label = wait(d, lambda d: re.match(r"now ([0-9.]+) MiB", by(d, "v-db").text), 30, "db chart")
    assert float(label.group(1)) > 0
    wait(d, lambda d: int(by(d, "chart-db").get_attribute("data-points") or 0) >= 2, 30,
         "two points on the db chart")
    drawn = d.execute_script(
        "const c = document.getElementById('chart-db');"
        "const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        "let n = 0; for (let i = 2; i < px.length; i += 4) if (px[i] > 150 && px[i - 2] < 60) n++;"
        "return n;")                                    # blue line pixels
    assert drawn > 20
    # Writes between two scrapes show as gRPC requests/s and a WAL fsync mean.
    target.put_many([(f"/charts/{i}".encode(), b"v") for i in range(50)])

    def now(id_):
        m = re.match(r"now ([0-9.]+)", by(d, id_).text)
        return float(m.group(1)) if m else 0.0
    wait(d, lambda d: now("v-rps") > 0 and now("v-fsync") > 0, 30,
         "requests/s and fsync mean after the writes")


def test_login_with_auth_and_expired_session(target, driver):
    # Last in the module: auth stays on for this member afterwards.
    target.ctl("user", "add", "root:rootpw")
    target.ctl("auth", "enable")
    target.ctl("put", "/secure/k", "v0", user="root:rootpw")
    d = driver
    d.get(target.ui)
    wait(d, lambda d: by(d, "login").is_displayed(), what="login form")
    by(d, "login-user").send_keys("root")
    by(d, "login-pass").send_keys("wrong", Keys.ENTER)
    wait(d, lambda d: "Login failed" in error_text(d))
    by(d, "login-pass").send_keys("rootpw", Keys.ENTER)
    wait(d, lambda d: not by(d, "login").is_displayed() and "user: root" in by(d, "user").text)
    search(d, "/secure/")
    click_entry(d, "/secure/k")
    wait(d, lambda d: by(d, "value").get_attribute("value") == "v0")
    # The session goes stale (a token the server no longer knows), then a save.
    d.execute_script("sessionStorage.setItem('kvcore-token', 'stale.token.1')")
    set_value(d, "v1")
    by(d, "save").click()
    wait(d, lambda d: by(d, "login").is_displayed() and "session expired" in by(d, "login-why").text)
    assert target.ctl("get", "/secure/k", "--print-value-only", user="root:rootpw").strip() == "v0"

