"""The embedded default's numbers, as the README states them (slow: the whole default run).

With DP off the default is deterministic (secure aggregation's masks cancel exactly and its
stochastic rounding is seeded), so on the reference machine these are exact; elsewhere
floating-point kernels may differ in the last bits, hence the tolerance of 0.02 (3 of the
160 pooled test examples).
"""

from __future__ import annotations

import pytest

from securefed.config import load_config
from securefed.simulate import simulate

TOLERANCE = 0.02
EXPECTED = {"federated": None, "centralized": None, "isolated": None}  # seed 0, pooled accuracy


@pytest.mark.slow
def test_default_run_ends_at_the_stated_accuracies(tmp_path):
    _, results = simulate(load_config(), out=str(tmp_path / "default"))
    for name, expected in EXPECTED.items():
        assert results[name]["pooled"]["accuracy"] == pytest.approx(expected, abs=TOLERANCE)
    assert results["federated"]["pooled"]["accuracy"] >= 0.75
