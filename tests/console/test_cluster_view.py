"""The members view follows a leader change: a 3-member cluster, the page on a
follower, the leader killed (kvcore serving /ui/; etcd 3.5.1 behind kvcore-console)."""
from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By

from tests import etcd351, servers
from tests.console.harness import browser, start_console_proxy, wait


def roles(d) -> dict[str, str]:
    return d.execute_script(
        "const o = {}; for (const tr of document.querySelectorAll('#member-rows tr'))"
        " if (tr.dataset.id) o[tr.dataset.id] = tr.dataset.role; return o;")


@pytest.mark.parametrize("kind", ["kvcore", "etcd"])
def test_members_view_shows_the_new_leader_after_the_leader_is_killed(kind, tmp_path):
    members = servers.start_cluster(str(tmp_path), 3,
                                    etcd_binary=etcd351.ETCD if kind == "etcd" else None)
    proxy = None
    d = None
    try:
        leader = servers.leader_of(members)
        follower = next(m for m in members if m is not leader)
        if kind == "kvcore":
            url = f"http://127.0.0.1:{follower.port}/ui/#/members"
        else:
            proxy, url = start_console_proxy(f"http://127.0.0.1:{follower.port}")
            url += "#/members"
        d = browser()
        d.get(url)
        wait(d, lambda d: len(roles(d)) == 3 and list(roles(d).values()).count("leader") == 1,
             30, "three members, one leader")
        old = next(i for i, r in roles(d).items() if r == "leader")
        status = d.find_element(By.ID, "status").text
        assert "healthy" in status and "unhealthy" not in status
        leader.kill9()
        wait(d, lambda d: [i for i, r in roles(d).items() if r == "leader" and i != old],
             60, "a new leader shown")
    finally:
        if d is not None:
            d.quit()
        if proxy is not None:
            proxy.terminate()
            proxy.wait(10)
        for m in members:
            m.stop()
