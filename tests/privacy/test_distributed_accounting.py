"""Institution-level accounting: Skellam and DDGauss RDP against brute force, the Gaussian and
dp-accounting; the Zhu-Wang subsampling bound; calibration; the colluders' shares counted out;
events as recomputable JSON."""

from __future__ import annotations

import dataclasses
import math

import dp_accounting as dpa
import numpy as np
import pytest
from dp_accounting.rdp.rdp_privacy_accountant import (
    _compute_rdp_poisson_subsampled_gaussian,
    compute_epsilon,
)
from scipy import special, stats

from securefed.errors import RunFolderError
from securefed.privacy.distributed.accounting import (
    RDP_ORDERS,
    ddgauss_rdp,
    ddgauss_tau,
    institution_epsilon,
    poisson_subsampled_rdp,
    rounded_l2_bound,
    skellam_rdp,
)
from securefed.privacy.distributed.events import (
    DistributedNoiseEvent,
    event_from_json,
    event_to_json,
    protecting_shares,
)
from securefed.privacy.distributed.parameters import (
    heuristic_scale,
    institution_delta,
    modclip_stddevs,
    plan_distributed_dp,
)


def _gaussian_epsilon(z: float, q: float, rounds: int, delta: float) -> float:
    acc = dpa.rdp.RdpAccountant(list(RDP_ORDERS))
    inner = dpa.GaussianDpEvent(z)
    acc.compose(inner if q == 1.0 else dpa.PoissonSampledDpEvent(q, inner), rounds)
    return acc.get_epsilon(delta)


def _skellam_event(z: float, q: float, l2: float = 1000.0) -> DistributedNoiseEvent:
    """10 shares reach the sum, 1 of them a colluder's; the 8 besides it and the protected
    institution's own carry z * l2."""
    central = (z * l2) ** 2
    return DistributedNoiseEvent("skellam", 0, q, 10, central / 8, l2, l2 * 100, 10_000, 1)


@pytest.mark.parametrize(("variance", "shift"), [(4.0, 1), (30.0, 2), (400.0, 3)])
def test_skellam_rdp_bounds_the_exact_renyi_divergence(variance, shift):
    """1-D brute force: D_a(Sk(shift, mu) || Sk(0, mu)) from scipy's pmf, summed directly."""
    lam = variance / 2
    support = np.arange(-int(20 * math.sqrt(variance)) - 40, int(20 * math.sqrt(variance)) + 40)
    log_p = stats.skellam.logpmf(support - shift, lam, lam)
    log_r = stats.skellam.logpmf(support, lam, lam)
    assert np.all(np.isfinite(log_p)) and np.all(np.isfinite(log_r))
    for alpha in (2, 4, 8, 16):
        exact = special.logsumexp(alpha * log_p + (1 - alpha) * log_r) / (alpha - 1)
        bound = skellam_rdp(np.array([alpha]), shift, shift, variance)[0]
        gaussian = alpha * shift**2 / (2 * variance)
        assert exact <= bound * (1 + 1e-9)
        assert gaussian * 0.5 < exact  # the bound is not vacuous: same order as the Gaussian


@pytest.mark.parametrize(("z", "rounds"), [(0.8, 10), (1.0, 100), (3.0, 1000)])
def test_skellam_at_large_variance_is_the_gaussian(z, rounds):
    ours = institution_epsilon([_skellam_event(z, 1.0)] * rounds, 1e-5)
    assert ours == pytest.approx(_gaussian_epsilon(z, 1.0, rounds, 1e-5), rel=1e-3)


@pytest.mark.parametrize(
    ("z", "q", "rounds"), [(1.0, 0.2, 100), (1.1, 0.01, 1000), (2.0, 0.25, 200)]
)
def test_subsampled_skellam_is_within_the_generic_bound_of_the_exact_gaussian(z, q, rounds):
    ours = institution_epsilon([_skellam_event(z, q)] * rounds, 1e-5)
    exact_gaussian = _gaussian_epsilon(z, q, rounds, 1e-5)
    assert exact_gaussian <= ours * (1 + 1e-6)
    assert ours < 1.35 * exact_gaussian  # the Zhu-Wang bound costs ~0-32% here (measured)


@pytest.mark.parametrize(("z", "q"), [(0.7, 0.05), (1.0, 0.3), (4.0, 0.5)])
def test_zhu_wang_bound_is_at_least_the_exact_subsampled_gaussian(z, q):
    orders = np.array(RDP_ORDERS[:40])
    bound = poisson_subsampled_rdp(orders, q, lambda a: a / (2 * z * z))
    exact = np.array([_compute_rdp_poisson_subsampled_gaussian(q, z, [a])[0] for a in orders])
    assert np.all(exact <= bound * (1 + 1e-9))
    assert np.all(bound <= orders / (2 * z * z) + 1e-12)  # never above the unsampled RDP
    assert bound[0] < 0.5 * orders[0] / (2 * z * z)  # and the amplification is real
    full = poisson_subsampled_rdp(orders, 1.0, lambda a: a / (2 * z * z))
    np.testing.assert_allclose(full, orders / (2 * z * z))


def test_ddgauss_rdp_reduces_to_the_gaussian_when_tau_vanishes():
    assert ddgauss_tau(400.0, 20) < 1e-300
    rdp = ddgauss_rdp(np.array([2.0, 10.0]), 50.0, 10.0, 400.0, 20, 1000)
    np.testing.assert_allclose(rdp, np.array([2.0, 10.0]) * 100.0 / (2 * 20 * 400.0))
    # small local sigma: tau is large and the bound is much worse than the Gaussian
    assert ddgauss_rdp(np.array([2.0]), 50.0, 10.0, 0.04, 20, 1000)[0] > 10 * 2 * 100 / (2 * 0.8)


def test_ddgauss_tau_matches_the_papers_sum():
    s2, n = 0.09, 5
    expected = 10 * sum(math.exp(-2 * math.pi**2 * s2 * k / (k + 1)) for k in range(1, n))
    assert ddgauss_tau(s2, n) == pytest.approx(expected, rel=1e-12)


def test_rounding_bounds():
    assert rounded_l2_bound(100.0, 0.0, 400) == pytest.approx(120.0)
    beta = math.exp(-0.5)
    assert rounded_l2_bound(100.0, beta, 400) == pytest.approx(math.sqrt(1e4 + 100 + 110))


def test_modclip_and_scale_heuristic():
    assert modclip_stddevs(1e-4) == pytest.approx(3.8906, abs=1e-4)
    s = heuristic_scale(0.5, 1.0, 16, 10, 1024, 3.89)
    spread = 2 * 3.89 * math.sqrt(1 / 1024 * 100 + (1 / (4 * s * s) + 0.25) * 10) * s
    assert spread == pytest.approx(2**16, rel=1e-9)
    with pytest.raises(ValueError, match="bits=2"):
        heuristic_scale(0.5, 1.0, 2, 10, 1024, 3.89)


@pytest.mark.parametrize("colluders", [0, 2])
@pytest.mark.parametrize("mechanism", ["skellam", "dgauss"])
def test_calibration_meets_the_target_and_dropouts_beyond_it_exceed_it(mechanism, colluders):
    plan = plan_distributed_dp(
        mechanism=mechanism,
        target_epsilon=4.0,
        delta=1e-3,
        clip_norm=0.5,
        bits=18,
        dimension=5000,
        cohort_size=15,
        min_survivors=10,
        colluders=colluders,
        sample_rate=0.3,
        rounds=20,
    )
    assert plan.colluders == colluders
    assert all(plan.event(0, n).colluders == colluders for n in (9, 10, 15))
    planned = institution_epsilon([plan.event(r, 10) for r in range(20)], 1e-3)
    assert 4.0 * 0.999 <= planned <= 4.0
    everyone = institution_epsilon([plan.event(r, 15) for r in range(20)], 1e-3)
    assert everyone < planned  # more survivors, more noise
    too_few = institution_epsilon([plan.event(r, 9) for r in range(20)], 1e-3)
    assert too_few > 4.0  # the ledger reports what the survivors' noise gives


def _skellam_rounds(event: DistributedNoiseEvent, rounds: int, shares: int) -> float:
    """Epsilon of ``rounds`` unsampled Skellam rounds protected by ``shares`` shares: Agarwal,
    Kairouz and Liu's Theorem 3.5 written out per order, dp-accounting's RDP to epsilon."""
    mu, d1, d2 = shares * event.local_variance, event.l1_sensitivity, event.l2_sensitivity
    rdp = [
        rounds
        * (a * d2**2 / (2 * mu) + min(((2 * a - 1) * d2**2 + 6 * d1) / (4 * mu**2), 1.5 * d1 / mu))
        for a in RDP_ORDERS
    ]
    return float(compute_epsilon(list(RDP_ORDERS), rdp, 1e-5)[0])


@pytest.mark.parametrize("colluders", [0, 1, 3])
@pytest.mark.parametrize("arriving", [6, 9, 12])
def test_the_colluders_shares_protect_nobody(arriving, colluders):
    """n shares reach the sum, c of them the colluders': n - 1 - c protect, and counting one
    of the colluders' (or the own) share would report less than that."""
    event = DistributedNoiseEvent("skellam", 0, 1.0, arriving, 2.5e5, 1000.0, 4e4, 4096, colluders)
    assert (
        event.protecting_shares
        == protecting_shares(arriving, colluders)
        == arriving - 1 - colluders
    )
    reported = institution_epsilon([event] * 5, 1e-5)
    assert reported == pytest.approx(_skellam_rounds(event, 5, arriving - 1 - colluders), rel=1e-9)
    assert _skellam_rounds(event, 5, arriving - colluders) < 0.98 * reported  # one share too many
    # the same sum with c = 0 and the colluders' shares taken out accounts the same
    honest = dataclasses.replace(event, noise_contributors=arriving - colluders, colluders=0)
    assert institution_epsilon([honest] * 5, 1e-5) == reported


@pytest.mark.parametrize("mechanism", ["skellam", "dgauss"])
def test_nothing_honest_protects_when_only_the_own_and_the_colluders_shares_arrive(mechanism):
    event = DistributedNoiseEvent(mechanism, 0, 0.5, 3, 1e6, 10.0, 100.0, 64, 2)
    assert event.protecting_shares == 0
    assert institution_epsilon([event], 1e-5) == math.inf
    assert math.isfinite(institution_epsilon([dataclasses.replace(event, colluders=1)], 1e-5))


def test_calibration_refuses_a_survivor_set_the_colluders_leave_unprotected():
    shape = {
        "mechanism": "skellam",
        "target_epsilon": 4.0,
        "delta": 1e-5,
        "clip_norm": 1.0,
        "bits": 20,
        "dimension": 100,
        "cohort_size": 10,
        "sample_rate": 1.0,
        "rounds": 1,
    }
    for survivors, colluders in ((2, 1), (4, 3), (1, 0)):
        with pytest.raises(ValueError, match=f"min_survivors must be in \\[{colluders + 2}, 10\\]"):
            plan_distributed_dp(**shape, min_survivors=survivors, colluders=colluders)
    with pytest.raises(ValueError, match="colluders must be an integer >= 0"):
        plan_distributed_dp(**shape, min_survivors=5, colluders=-1)
    assert plan_distributed_dp(**shape, min_survivors=5, colluders=3).colluders == 3


def test_calibration_refuses_a_bit_width_the_rounding_cannot_fit():
    with pytest.raises(ValueError, match="no noise level"):
        plan_distributed_dp(
            mechanism="skellam",
            target_epsilon=1.0,
            delta=1e-5,
            clip_norm=1.0,
            bits=10,
            dimension=10**6,
            cohort_size=15,
            min_survivors=10,
            colluders=0,
            sample_rate=0.3,
            rounds=30,
        )


def test_events_round_trip_as_json_and_bad_ones_are_refused():
    event = _skellam_event(1.0, 0.2)
    assert event_from_json(event_to_json(event)) == event
    assert event_to_json(event)["kind"] == "distributed_noise"
    with pytest.raises(RunFolderError, match="kind"):
        event_from_json({**event_to_json(event), "kind": "poisson_gaussian"})
    with pytest.raises(RunFolderError, match="keys"):
        event_from_json({**event_to_json(event), "extra": 1})
    with pytest.raises(RunFolderError, match="noise_contributors"):
        event_from_json({**event_to_json(event), "noise_contributors": 0})
    with pytest.raises(RunFolderError, match="keys"):  # an event without its colluders
        event_from_json({k: v for k, v in event_to_json(event).items() if k != "colluders"})
    with pytest.raises(RunFolderError, match="colluders"):
        event_from_json({**event_to_json(event), "colluders": -1})
    with pytest.raises(ValueError, match="mechanism"):
        DistributedNoiseEvent("laplace", 0, 1.0, 1, 1.0, 1.0, 1.0, 1, 0)


def test_auto_delta_is_below_one_over_the_federation():
    assert institution_delta(50) == 1e-5
    assert institution_delta(10**6) == pytest.approx(1e-6**1.1)


def test_plan_bytes_bind_every_parameter():
    plan = plan_distributed_dp(
        mechanism="dgauss",
        target_epsilon=4.0,
        delta=1e-5,
        clip_norm=1.0,
        bits=20,
        dimension=1000,
        cohort_size=10,
        min_survivors=7,
        colluders=1,
        sample_rate=0.2,
        rounds=5,
    )
    assert plan.to_bytes() == dataclasses.replace(plan).to_bytes()
    changes = (
        {"bits": 19},
        {"scale": plan.scale * (1 + 1e-12)},
        {"mechanism": "skellam"},
        {"colluders": 0},
    )
    for change in changes:
        assert dataclasses.replace(plan, **change).to_bytes() != plan.to_bytes()
