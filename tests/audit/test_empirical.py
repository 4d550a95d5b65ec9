"""The empirical-audit statistics against exact arithmetic, reference values and simulation."""

from __future__ import annotations

import math
from fractions import Fraction

import dp_accounting
import numpy as np
import pytest
import scipy.integrate
import scipy.optimize
import scipy.special
import scipy.stats

from securefed.audit.empirical import (
    epsilon_two_gaussians,
    guess_plans,
    one_run_ceiling,
    one_run_epsilon,
    one_run_lower_bound,
    one_run_p_value,
    one_shot_estimate,
    two_gaussian_delta,
)

DELTA = 1e-5


def _exact_p_value(m: int, r: int, v: int, q: Fraction, delta: Fraction) -> Fraction:
    """Steinke et al. Theorem 3.3 in rationals: the binomial tail and the delta term by loops."""
    pmf = [math.comb(r, w) * q**w * (1 - q) ** (r - w) for w in range(r + 1)]
    tail = sum(pmf[v:], Fraction(0))
    alpha = max((sum(pmf[v - i : v], Fraction(0)) / i for i in range(1, v + 1)), default=0)
    return min(tail + 2 * m * delta * alpha, Fraction(1))


@pytest.mark.parametrize(
    ("m", "r", "v", "eps", "delta"),
    [
        (50, 40, 36, 1.0, 0.0),
        (50, 40, 36, 1.0, 1e-3),
        (80, 60, 60, 3.0, 1e-5),
        (30, 30, 20, 0.5, 1e-2),
    ],
)
def test_p_value_equals_exact_rational_arithmetic(m, r, v, eps, delta):
    q = float(scipy.special.expit(eps))
    exact = _exact_p_value(m, r, v, Fraction(q), Fraction(delta))
    assert one_run_p_value(m, r, v, eps, delta) == pytest.approx(float(exact), rel=1e-9)


# jax_privacy auditing._epsilon_one_run(0, m, guesses, correct, significance, delta) at commit
# 8967688c26d46f3b74bfdfe61ef1f984b887abab (google-deepmind/jax_privacy), run once here.
JAX_PRIVACY_ONE_RUN = [
    ((1000, 1000, 1000, 1e-5, 0.05), 5.782283131572193),
    ((1000, 100, 90, 1e-5, 0.05), 1.6261436787042223),
    ((1000, 900, 900, 1e-5, 0.0025), 4.816694573859846),
    ((100, 10, 10, 0.0, 0.05), 1.0518732154273494),
    ((200, 50, 40, 1e-3, 0.01), 0.0),
]


@pytest.mark.parametrize(("args", "expected"), JAX_PRIVACY_ONE_RUN)
def test_one_run_epsilon_matches_jax_privacy(args, expected):
    m, r, v, delta, significance = args
    eps = one_run_epsilon(m, r, v, delta, significance)
    assert eps == pytest.approx(expected, abs=1e-6)
    if eps > 0:  # the bound is where the claim stops being rejected
        assert one_run_p_value(m, r, v, eps, delta) == pytest.approx(significance, rel=1e-6)


@pytest.mark.parametrize(("eps_true", "delta"), [(0.5, 0.0), (1.0, 0.0), (1.0, 1e-3)])
def test_one_run_bound_exceeds_the_truth_with_at_most_the_significance(eps_true, delta):
    """Randomized response at eps_true is (eps_true, 0)-DP; W ~ Bin(r, q) exactly. Enumerate W."""
    m = r = 60
    significance = 0.05
    q = scipy.special.expit(eps_true)
    false_alarm = sum(
        scipy.stats.binom.pmf(w, r, q)
        for w in range(r + 1)
        if one_run_epsilon(m, r, w, delta, significance) > eps_true
    )
    assert 0 < false_alarm <= significance  # > 0: the test is not vacuously conservative


def test_one_run_bound_is_monotone():
    by_correct = [one_run_epsilon(1000, 200, v, DELTA, 0.05) for v in range(100, 201, 10)]
    assert np.all(np.diff(by_correct) >= 0) and by_correct[-1] > by_correct[0]
    by_delta = [one_run_epsilon(1000, 200, 190, d, 0.05) for d in (0, 1e-6, 1e-5, 1e-4, 1e-3)]
    assert np.all(np.diff(by_delta) <= 0) and by_delta[0] > by_delta[-1]
    by_significance = [one_run_epsilon(1000, 200, 190, DELTA, a) for a in (1e-3, 1e-2, 0.05, 0.2)]
    assert np.all(np.diff(by_significance) > 0)


def test_ceiling_of_a_thousand_canaries_and_perfect_guesses_reach_it():
    ceiling = one_run_ceiling(1000, DELTA)
    assert 4.0 < ceiling < 6.0  # Steinke et al.: m = 1000 caps the 95% bound near 5
    assert one_run_ceiling(100, DELTA) < ceiling - 1  # fewer canaries, less evidence
    coins = np.arange(1000) % 2 == 0  # balanced: "in" = top half is exactly right
    rng = np.random.default_rng(1)
    perfect = one_run_lower_bound(coins + 1e-3 * rng.random(1000), coins, DELTA)
    assert perfect.epsilon == pytest.approx(ceiling)
    assert perfect.correct == perfect.guesses_in + perfect.guesses_out == 1000
    assert perfect.hypotheses == len(guess_plans(1000))


def test_lower_bound_uses_scores_only_to_guess():
    rng = np.random.default_rng(2)
    coins = rng.random(400) < 0.5
    scores = coins * 1.5 + rng.normal(size=400)
    bound = one_run_lower_bound(scores, coins, DELTA)
    perm = rng.permutation(400)
    assert one_run_lower_bound(scores[perm], coins[perm], DELTA) == bound
    assert one_run_lower_bound(np.exp(scores), coins, DELTA) == bound  # any increasing map
    assert one_run_lower_bound(scores, coins, DELTA, confidence=0.99).epsilon < bound.epsilon
    assert one_run_lower_bound(-scores, coins, DELTA).epsilon == 0.0  # reversed: no evidence


def _gaussian_mechanism_scores(rng, m: int, eps: float, noise_scale: float = 1.0):
    """Canary sums of a Gaussian mechanism calibrated to (eps, DELTA) at sensitivity 1."""
    coins = rng.random(m) < 0.5
    sigma = dp_accounting.get_sigma_gaussian(eps, DELTA)
    return coins + rng.normal(0, noise_scale * sigma, m), coins


def test_honest_noise_stays_below_the_claim_and_a_tenth_of_it_breaks_it():
    rng = np.random.default_rng(3)
    for _ in range(5):
        scores, coins = _gaussian_mechanism_scores(rng, 1000, eps=2.0)
        assert one_run_lower_bound(scores, coins, DELTA).epsilon < 2.0
    scores, coins = _gaussian_mechanism_scores(rng, 1000, eps=2.0, noise_scale=0.1)
    assert one_run_lower_bound(scores, coins, DELTA).epsilon > 2.0


@pytest.mark.parametrize(("eps", "delta"), [(0.5, 1e-3), (1.0, 1e-5), (2.0, 1e-5), (8.0, 1e-5)])
def test_two_gaussians_equal_stds_is_the_gaussian_mechanism(eps, delta):
    sigma = dp_accounting.get_sigma_gaussian(eps, delta)  # Balle-Wang analytic calibration
    assert epsilon_two_gaussians(0.0, sigma, 1.0, sigma, delta) == pytest.approx(eps, rel=1e-6)
    assert epsilon_two_gaussians(3.0, 2 * sigma, 5.0, 2 * sigma, delta) == pytest.approx(eps)


def test_two_gaussians_published_value():
    # google-research/federated one_shot_epe test_closed_form_null_gaussian_alt (dim 2000).
    s = 2000**-0.5
    assert epsilon_two_gaussians(0.0, s, s, s, 1e-2) == pytest.approx(2.317789, abs=1e-6)


def _hockey_by_quadrature(p, q, eps: float) -> float:
    """integral of max(0, p - e^eps q): crossings found on a grid, then quad piecewise."""
    y = np.linspace(-40, 40, 80_001)

    def gap(t):
        return p(t) - math.exp(eps) * q(t)

    signs = np.sign(gap(y))
    cuts = [scipy.optimize.brentq(gap, y[i], y[i + 1]) for i in np.flatnonzero(np.diff(signs))]
    edges = [-40.0, *cuts, 40.0]
    pieces = (
        scipy.integrate.quad(gap, lo, hi, epsabs=1e-13)[0]
        for lo, hi in zip(edges[:-1], edges[1:], strict=True)
    )
    return sum(max(0.0, piece) for piece in pieces)


@pytest.mark.parametrize("pair", [(0.0, 1.0, 1.0, 1.5), (0.2, 0.7, 2.0, 0.4), (0.0, 1.0, 0.0, 3.0)])
def test_two_gaussian_delta_equals_numerical_integration(pair):
    """sup_S P(S) - e^eps Q(S) = integral of max(0, p - e^eps q), worse of both directions."""
    ma, sa, mb, sb = pair
    pa, pb = scipy.stats.norm(ma, sa).pdf, scipy.stats.norm(mb, sb).pdf
    for eps in (0.0, 0.5, 2.0):
        brute = max(_hockey_by_quadrature(pa, pb, eps), _hockey_by_quadrature(pb, pa, eps))
        assert float(two_gaussian_delta(ma, sa, mb, sb, eps)) == pytest.approx(brute, abs=1e-10)
    eps = epsilon_two_gaussians(ma, sa, mb, sb, 1e-3)
    assert float(two_gaussian_delta(ma, sa, mb, sb, eps)) == pytest.approx(1e-3, rel=1e-6)


def test_two_gaussians_degenerate_cases():
    assert epsilon_two_gaussians(0.0, 1.0, 0.0, 1.0, DELTA) == 0.0
    assert epsilon_two_gaussians(0.0, 0.0, 1.0, 1.0, DELTA) == math.inf
    assert math.isinf(epsilon_two_gaussians(0.0, 1e-9, 1e3, 1e-9, DELTA))  # past the search
    near = epsilon_two_gaussians(0.0, 1.0, 1.0, 1.0 + 1e-12, DELTA)
    assert near == pytest.approx(epsilon_two_gaussians(0.0, 1.0, 1.0, 1.0, DELTA), rel=1e-6)


def test_one_shot_estimate_recovers_a_known_gaussian_epsilon():
    rng = np.random.default_rng(4)
    scores, coins = _gaussian_mechanism_scores(rng, 20_000, eps=2.0)
    est = one_shot_estimate(scores, coins, DELTA, seed=5)
    assert est.epsilon == pytest.approx(2.0, abs=0.15)
    assert est.interval[0] <= 2.0 <= est.interval[1]
    assert est == one_shot_estimate(scores, coins, DELTA, seed=5)  # the seed pins the interval


def test_one_shot_interval_covers_the_truth_at_a_thousand_canaries():
    rng = np.random.default_rng(6)
    covered = 0
    for trial in range(20):
        scores, coins = _gaussian_mechanism_scores(rng, 1000, eps=2.0)
        low, high = one_shot_estimate(scores, coins, DELTA, resamples=400, seed=trial).interval
        covered += low <= 2.0 <= high
    assert covered >= 17  # nominal 95%: 19 of 20 (a percentile interval covers 14-15)


def test_near_no_leak_the_interval_still_holds_the_estimate():
    """Two groups of equal mean and spread but a hair apart (true epsilon about 0): every
    bootstrap copy lies above the plug-in estimate, and the reflected interval alone would
    end below it (it did, before the interval was widened to hold the estimate)."""
    rng = np.random.default_rng(8)
    for trial in range(10):
        scores, coins = rng.normal(size=1000), rng.random(1000) < 0.5
        for group in (coins, ~coins):
            scores[group] = (scores[group] - scores[group].mean()) / scores[group].std(ddof=1)
        scores[coins] += 0.01
        est = one_shot_estimate(scores, coins, DELTA, resamples=200, seed=trial)
        assert 0 < est.epsilon < 0.1
        assert est.interval[0] <= est.epsilon <= est.interval[1]


def test_inputs_are_checked():
    with pytest.raises(ValueError, match="one length"):
        one_run_lower_bound(np.zeros(3), np.zeros(4, bool), DELTA)
    with pytest.raises(ValueError, match="finite"):
        one_shot_estimate(np.array([0.0, np.nan, 1.0, 2.0]), np.array([1, 1, 0, 0]), DELTA)
    with pytest.raises(ValueError, match="at least 2 included"):
        one_shot_estimate(np.arange(4.0), np.array([1, 0, 0, 0]), DELTA)
    with pytest.raises(ValueError, match="delta"):
        one_run_lower_bound(np.arange(4.0), np.array([1, 0, 1, 0]), 0.0)
    with pytest.raises(ValueError, match="correct <= guesses"):
        one_run_p_value(10, 5, 6, 1.0, DELTA)
