"""Two tiny real runs and their audits, built once per session.

``plain_run`` (DP, secure aggregation and baselines off) and ``private_run`` (DP-SGD and
secure aggregation on, with a dropout, both baselines) take about 15 s and 30 s on a quiet
2-core machine.
"""

from __future__ import annotations

import pytest
from audit_runs import CANARY, PLAIN, PRIVATE, TINY


def _simulate(tmp_path_factory, name: str, overrides: list[str]):
    from securefed.config import load_config
    from securefed.run.simulate import simulate

    out = tmp_path_factory.mktemp("runs") / name
    run_dir, _ = simulate(load_config(overrides=[f"name={name}", *TINY, *overrides]), out=str(out))
    return run_dir


@pytest.fixture(scope="session")
def private_run(tmp_path_factory):
    """DP-SGD and secure aggregation on; institution 1 drops before masked input in round 1."""
    return _simulate(tmp_path_factory, "private", PRIVATE)


@pytest.fixture(scope="session")
def plain_run(tmp_path_factory):
    """DP-SGD, secure aggregation and baselines off: quick to verify (no accounting)."""
    return _simulate(tmp_path_factory, "plain", PLAIN)


@pytest.fixture(scope="session")
def private_audit_dir(private_run, tmp_path_factory):
    from securefed.audit import write_audit

    return write_audit(private_run, tmp_path_factory.mktemp("audits") / "private")


@pytest.fixture(scope="session")
def plain_audit_dir(plain_run, tmp_path_factory):
    from securefed.audit import write_audit

    return write_audit(plain_run, tmp_path_factory.mktemp("audits") / "plain")


@pytest.fixture(scope="session")
def canary_run(tmp_path_factory):
    """DP off, 200 gradient canaries in institutions 0 and 2 (about 10 s)."""
    return _simulate(tmp_path_factory, "canaries", [*PLAIN, *CANARY])


@pytest.fixture(scope="session")
def canary_audit(canary_run, tmp_path_factory):
    from securefed.audit import write_audit

    return write_audit(canary_run, tmp_path_factory.mktemp("audits") / "canaries")
