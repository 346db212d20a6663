"""The console by keyboard alone and in a narrow window, in headless Chromium against
a real kvcore: Tab reaches the key tree, Enter opens a folder and a key, and the
editor saves by keyboard; at 400 px wide no main control overflows sideways."""
from __future__ import annotations

import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from tests.console.harness import browser, start_target, wait


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    t = start_target("kvcore", str(tmp_path_factory.mktemp("access")))
    t.put_many([(b"/acc/one", b"first"), (b"/acc/two", b"second")])
    yield t
    t.stop()


def started(d, url):
    d.get(url)
    wait(d, lambda d: d.find_element(By.ID, "live").text.startswith("live:"), what="page started")


def active(d):
    return d.execute_script("const a = document.activeElement;"
                            "return [a.id, a.tagName, a.textContent, a.dataset.key || ''];")


def tab_to(d, pred, limit=60):
    """Presses Tab until the focused element satisfies pred; the Tab order is the test."""
    seen = []
    for _ in range(limit):
        ActionChains(d).send_keys(Keys.TAB).perform()
        a = active(d)
        seen.append(a[0] or a[2][:20])
        if pred(a):
            return a
    raise AssertionError(f"Tab never reached it; order was {seen}")


def test_keyboard_only_open_edit_save(target):
    d = browser()
    try:
        started(d, target.ui)
        wait(d, lambda d: d.find_elements(By.CSS_SELECTOR, "#entries button"), what="tree")
        tab_to(d, lambda a: a[3] == "/")                 # the root folder "/" in the tree
        ActionChains(d).send_keys(Keys.ENTER).perform()
        wait(d, lambda d: "acc/" in d.execute_script(
            "return [...document.querySelectorAll('#entries button')].map(b => b.textContent)"))
        tab_to(d, lambda a: a[3] == "/acc/")
        ActionChains(d).send_keys(Keys.ENTER).perform()
        wait(d, lambda d: "one" in d.execute_script(
            "return [...document.querySelectorAll('#entries button')].map(b => b.textContent)"))
        tab_to(d, lambda a: a[3] == "/acc/one")
        ActionChains(d).send_keys(Keys.ENTER).perform()
        wait(d, lambda d: d.find_element(By.ID, "key-name").text == "/acc/one")
        wait(d, lambda d: d.find_element(By.ID, "value").get_attribute("value") == "first")
        tab_to(d, lambda a: a[0] == "value")             # from the tree on to the editor
        ActionChains(d).key_down(Keys.CONTROL).send_keys("a").key_up(Keys.CONTROL) \
            .send_keys("typed by keyboard").perform()
        tab_to(d, lambda a: a[0] == "save")
        ActionChains(d).send_keys(Keys.ENTER).perform()
        wait(d, lambda d: "Saved at revision" in d.find_element(By.ID, "notice").text)
        assert target.ctl("get", "/acc/one", "--print-value-only").strip() == "typed by keyboard"
        # The focus is visible where it lands (an outline, not only the browser default).
        assert d.execute_script("return getComputedStyle(document.activeElement).outlineStyle") != "none"
    finally:
        d.quit()


OVERFLOW = """
const w = document.documentElement.clientWidth, out = [];
for (const e of document.querySelectorAll(arguments[0])) {
  const r = e.getBoundingClientRect();
  if (r.width && (r.left < 0 || r.right > w + 0.5)) out.push(`${e.id || e.tagName}: ${r.left}..${r.right} of ${w}`);
}
return [out, document.documentElement.scrollWidth, w];
"""
CONTROLS = ("header a, header button, #mode, #sep, #new-key, #prefix, #search, #delete-prefix, "
            "#entries button, #more, #detail, #value, #save, #reload, #delete-key, #show-history, "
            "#format, #lease")


def test_narrow_window_has_no_sideways_overflow(target):
    d = browser()
    try:
        # Chromium's windows are at least 500 px wide; the viewport is set as DevTools does.
        d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                          {"width": 400, "height": 800, "deviceScaleFactor": 1, "mobile": False})
        started(d, target.ui)
        inner = d.execute_script("return window.innerWidth")
        assert inner <= 420, inner                      # the window really is narrow
        wait(d, lambda d: d.execute_script(
            "return [...document.querySelectorAll('#entries button')].some(b => b.textContent === '/')"))
        d.execute_script("const b=[...document.querySelectorAll('#entries button')].find(b=>b.textContent==='/'); b.click()")
        wait(d, lambda d: d.execute_script(
            "return [...document.querySelectorAll('#entries button')].some(b => b.textContent === 'acc/')"))
        d.execute_script("[...document.querySelectorAll('#entries button')].find(b=>b.textContent==='acc/').click()")
        wait(d, lambda d: d.execute_script(
            "return [...document.querySelectorAll('#entries button')].some(b => b.textContent === 'two')"))
        d.execute_script("[...document.querySelectorAll('#entries button')].find(b=>b.textContent==='two').click()")
        wait(d, lambda d: d.find_element(By.ID, "key-name").text == "/acc/two")
        for view in ("#/keys", "#/leases", "#/members", "#/metrics"):
            d.execute_script("location.hash = arguments[0]", view)
            wait(d, lambda d: d.find_element(By.ID, "view-" + view[2:]).is_displayed())
            out, scroll, width = d.execute_script(OVERFLOW, CONTROLS + ", main table, canvas, h2")
            assert not out, f"{view}: {out}"
            assert scroll <= width, f"{view}: the page scrolls sideways ({scroll} > {width})"
    finally:
        d.quit()
