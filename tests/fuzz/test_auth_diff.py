"""Differential fuzzing of auth: hypothesis draws sequences of auth changes (users,
roles, permissions, enable/disable, with their error paths) and of calls made as a
drawn user (tests/fuzz/authgen.py); each goes to a fresh kvcore and a fresh official
etcd 3.5.1 (tests/fuzz/authrun.py), and the answers must match after every step (the
same error code and message, or the same response up to what tests/fuzz/authdiff.py
normalises). Callers keep tokens as a client does (authrun). After each sequence the
whole auth state (status, every user and role) and the keyspace are compared, read
as root. One pair of servers per module; sequences run one after another on the same
state. The regressions it found are tests/compat/test_auth_regressions.py
(docs/decisions.md, "Differential fuzzing of auth")."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from tests.fuzz import authgen, authrun


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    with authrun.pair(tmp_path_factory.mktemp("authfuzz")) as r:
        yield r
        print("\nauth fuzz, answers seen:")
        for k, n in sorted(r.stats.items()):
            print(f"{n:7d}  {k}")


STEPS = authgen.steps()


def _fuzz(run, data, max_draws):
    for _ in range(data.draw(st.integers(1, max_draws), label="draws")):
        for step in data.draw(STEPS, label="steps"):
            authrun.run_step(run, step)
    authrun.check_state(run)


# No shrinking: the servers keep their state between examples (see test_v3_diff.py).
COMMON = dict(deadline=None, database=None, phases=(Phase.explicit, Phase.generate),
              report_multiple_bugs=False, suppress_health_check=list(HealthCheck))


@seed(20261207)
@settings(max_examples=100, **COMMON)
@given(data=st.data())
def test_auth_requests_match_etcd(run, data):
    _fuzz(run, data, 12)


@pytest.mark.slow
@pytest.mark.timeout(1800)
@settings(max_examples=1500, **COMMON)
@given(data=st.data())
def test_auth_requests_match_etcd_long(run, data):
    _fuzz(run, data, 25)
