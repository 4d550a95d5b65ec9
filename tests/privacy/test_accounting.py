"""Accounting: golden epsilons, events as data, calibration that never overshoots."""

from __future__ import annotations

import json
import math

import dp_accounting
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from securefed.errors import RunFolderError
from securefed.privacy.accounting import (
    ACCOUNTANTS,
    accountant_label,
    calibrate_noise_multiplier,
    default_delta,
    make_accountant,
    recompute_epsilon,
    to_dp_event,
)
from securefed.privacy.events import (
    NonPrivateEvent,
    PoissonGaussianEvent,
    event_from_json,
    event_to_json,
)

# Research note secagg-dp.md §4.4: sigma 1.5, q 0.04, 2250 steps, delta 1e-5.
GOLDEN = [PoissonGaussianEvent(1.5, 0.04, 2250, round_index=0)]
OPACUS_RDP_PINNED = 7.32911117  # opacus accountants_test.py
DP_ACCOUNTING_RDP = 7.32933
PLD_GOLDEN = 6.7688
PRV_BULK_GOLDEN = 6.7791


def test_golden_pld_is_the_figure_of_record():
    assert recompute_epsilon(GOLDEN, 1e-5, "pld") == pytest.approx(PLD_GOLDEN, abs=1e-3)


def test_golden_rdp_reproduces_opacus_and_dp_accounting():
    eps = recompute_epsilon(GOLDEN, 1e-5, "rdp")
    assert eps == pytest.approx(DP_ACCOUNTING_RDP, abs=1e-4)
    assert eps == pytest.approx(OPACUS_RDP_PINNED, abs=5e-4)
    assert round(eps, 3) == 7.329


def test_golden_prv_cross_check_agrees_with_pld():
    eps = recompute_epsilon(GOLDEN, 1e-5, "prv")
    assert eps == pytest.approx(PRV_BULK_GOLDEN, abs=1e-3)
    assert eps == pytest.approx(recompute_epsilon(GOLDEN, 1e-5, "pld"), rel=0.01)


def test_grouping_rounds_is_exact_composition():
    """Ten rounds of 225 steps are the golden run; the grouped event equals ungrouped PLD."""
    rounds = [PoissonGaussianEvent(1.5, 0.04, 225, round_index=r) for r in range(10)]
    grouped = recompute_epsilon(rounds, 1e-5, "pld")
    assert grouped == recompute_epsilon(GOLDEN, 1e-5, "pld")
    step = dp_accounting.PoissonSampledDpEvent(0.04, dp_accounting.GaussianDpEvent(1.5))
    halves = dp_accounting.ComposedDpEvent([dp_accounting.SelfComposedDpEvent(step, 1125)] * 2)
    ungrouped = make_accountant("pld").compose(halves).get_epsilon(1e-5)
    assert grouped == pytest.approx(ungrouped, rel=1e-6)


@pytest.mark.parametrize("accountant", ACCOUNTANTS)
def test_non_private_round_is_infinite_never_nothing(accountant):
    events = [PoissonGaussianEvent(2.0, 0.01, 10, 0), NonPrivateEvent(steps=5, round_index=1)]
    assert recompute_epsilon(events, 1e-5, accountant) == math.inf
    composed = make_accountant(accountant).compose(to_dp_event(events))
    assert composed.get_epsilon(1e-5) == math.inf
    assert recompute_epsilon([], 1e-5, accountant) == 0.0


def test_epsilon_is_recomputable_from_json_alone():
    events = [
        PoissonGaussianEvent(1.2, 0.02, 50, 0),
        NonPrivateEvent(3, 1),
        PoissonGaussianEvent(2.0, 0.03, 40, 2),
    ]
    text = json.dumps([event_to_json(e) for e in events])
    assert [event_from_json(o) for o in json.loads(text)] == events
    private = [o for o in json.loads(text) if o["kind"] == "poisson_gaussian"]
    assert recompute_epsilon(private, 1e-5) == recompute_epsilon(events[::2], 1e-5)
    assert 0 < recompute_epsilon(private, 1e-5) < math.inf


@pytest.mark.parametrize(
    "obj",
    [
        {"kind": "gdp", "mu": 1.0, "steps": 1, "round_index": 0},
        {"kind": "poisson_gaussian", "noise_multiplier": 1.0, "sample_rate": 0.1, "steps": 3},
        {
            "kind": "poisson_gaussian",
            "noise_multiplier": 0.0,
            "sample_rate": 0.1,
            "steps": 3,
            "round_index": 0,
        },
        {"kind": "non_private", "steps": 3, "round_index": 0, "epsilon": 0.0},
    ],
)
def test_malformed_events_are_refused(obj):
    with pytest.raises(RunFolderError):
        recompute_epsilon([obj], 1e-5)


def test_default_delta_is_far_below_one_over_n():
    assert default_delta(10**6) == pytest.approx(1e6**-1.1)
    assert default_delta(1000) == 1e-5
    assert all(default_delta(n) < 1 / n for n in (2, 50, 10**3, 10**6))
    with pytest.raises(ValueError):
        default_delta(0)


def test_accountant_label_names_library_and_version():
    assert accountant_label("pld").startswith("pld (dp-accounting 0.")
    assert accountant_label("prv").startswith("prv (opacus 1.")
    with pytest.raises(ValueError, match="gdp"):
        accountant_label("gdp")  # type: ignore[arg-type]


@settings(max_examples=4, deadline=None)
@given(
    target=st.floats(0.5, 10.0),
    sample_rate=st.floats(0.005, 0.3),
    steps=st.integers(5, 100),
    accountant=st.sampled_from(["pld", "rdp"]),
)
def test_calibration_never_overshoots(target, sample_rate, steps, accountant):
    sigma = calibrate_noise_multiplier(target, 1e-5, sample_rate, steps, accountant)
    run = [PoissonGaussianEvent(sigma, sample_rate, steps, 0)]
    assert recompute_epsilon(run, 1e-5, accountant) <= target
    # and it is tight: 1% less noise would overshoot (unless already at the search floor)
    less = [PoissonGaussianEvent(sigma * 0.99, sample_rate, steps, 0)]
    assert sigma == 0.05 or recompute_epsilon(less, 1e-5, accountant) > target


def test_calibration_with_prv_never_overshoots():
    sigma = calibrate_noise_multiplier(3.0, 1e-5, 0.05, 200, "prv")
    assert recompute_epsilon([PoissonGaussianEvent(sigma, 0.05, 200, 0)], 1e-5, "prv") <= 3.0
