"""Distributed DP encoding: the unmasked, descaled sum carries exactly the target noise, wraps
stay within the stated modular-clipping probability, and each check fails on a wrong setting."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from securefed.privacy.distributed.accounting import rounded_l1_bound, rounded_l2_bound
from securefed.privacy.distributed.encoding import (
    centred_sum,
    decode_noisy_sum,
    discretize,
    encode_client,
    modular_clip,
    noise_share,
)
from securefed.privacy.distributed.parameters import (
    DEFAULT_BETA,
    DistributedDpPlan,
    central_noise_std,
    heuristic_scale,
    modclip_stddevs,
    plan_distributed_dp,
)
from securefed.privacy.distributed.rotation import padded_dimension
from securefed.privacy.secure_noise import AesCtrRandom
from securefed.secagg.quantize import QuantizationParams

SEED = b"round-3-public-rotation-seed"
EXTRAS = QuantizationParams(clip_norm=1.0, bits=20)


def _plan(mechanism: str, dimension: int, **overrides) -> DistributedDpPlan:
    kwargs = {
        "mechanism": mechanism,
        "target_epsilon": 6.0,
        "delta": 1e-4,
        "clip_norm": 1.0,
        "bits": 20,
        "dimension": dimension,
        "cohort_size": 12,
        "min_survivors": 8,
        "colluders": 0,
        "sample_rate": 0.25,
        "rounds": 40,
    }
    return plan_distributed_dp(**{**kwargs, **overrides})


def _updates(n: int, d: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)) * rng.uniform(0.02, 0.2, size=(n, 1))  # norms ~1-6: clipped


def _clipped(x: np.ndarray, c: float) -> np.ndarray:
    return x * np.minimum(1.0, c / np.linalg.norm(x, axis=1, keepdims=True))


def _secure_sum(vectors: list[np.ndarray]) -> np.ndarray:
    """What unmasking yields: the sum mod 2^32 (masks cancel; tested in tests/secagg)."""
    return np.sum(np.stack(vectors), axis=0, dtype=np.uint32)


def noise_variance_matches(residual: np.ndarray, target_variance: float, z: float = 5.0) -> bool:
    """The residual's sample variance is within z standard errors of ``target_variance``.

    For m near-Gaussian coordinates the relative standard error of the sample variance is
    sqrt(2/m): at m = 2^15 it is 0.78%, so a 10% error is ~13 standard errors away.
    """
    m = residual.size
    ratio = float(np.mean(residual**2)) / target_variance
    return abs(ratio - 1.0) < z * np.sqrt(2.0 / m)


@pytest.mark.parametrize("mechanism", ["skellam", "dgauss"])
def test_descaled_sum_carries_the_target_noise_and_a_10_percent_wrong_share_fails(mechanism):
    d, n = 1 << 15, 8
    plan = _plan(mechanism, d)
    updates = _updates(n, d)
    truth = _clipped(updates, plan.clip_norm).sum(axis=0)
    target = central_noise_std(plan, n) ** 2

    def residual(client_plan: DistributedDpPlan, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        noise = AesCtrRandom.seeded_for_tests(seed)
        inputs = [
            encode_client(u, np.zeros(0), client_plan, EXTRAS, SEED, rng, noise) for u in updates
        ]
        decoded = decode_noisy_sum(_secure_sum(inputs), plan, EXTRAS, SEED, n)
        return decoded.delta_sum - truth

    assert noise_variance_matches(residual(plan, 1), target)
    for wrong in (0.9, 1.1):  # clients adding a share off by 10% are caught
        bad = dataclasses.replace(plan, local_variance=plan.local_variance * wrong)
        assert not noise_variance_matches(residual(bad, 2), target)


def test_dropouts_leave_exactly_the_survivors_noise():
    d, n = 1 << 15, 12
    plan = _plan("skellam", d)
    updates = _updates(n, d, seed=4)
    survivors = [0, 2, 3, 5, 6, 8, 9, 11]  # the smallest set the plan allows
    rng = np.random.default_rng(9)
    noise = AesCtrRandom.seeded_for_tests(9)
    inputs = [
        encode_client(updates[u], np.zeros(0), plan, EXTRAS, SEED, rng, noise) for u in survivors
    ]
    decoded = decode_noisy_sum(_secure_sum(inputs), plan, EXTRAS, SEED, len(survivors))
    truth = _clipped(updates[survivors], plan.clip_norm).sum(axis=0)
    residual = decoded.delta_sum - truth
    assert noise_variance_matches(residual, central_noise_std(plan, len(survivors)) ** 2)
    assert not noise_variance_matches(residual, central_noise_std(plan, n) ** 2)
    # the calibration's own central noise is what min_survivors shares give
    assert central_noise_std(plan, plan.min_survivors) == pytest.approx(
        np.sqrt(plan.min_survivors * plan.local_variance) / plan.scale
    )


def _wrap_rate(plan: DistributedDpPlan, updates: np.ndarray, seed: int) -> float:
    """Fraction of coordinates whose decoded sum differs from the exact integer sum."""
    rng = np.random.default_rng(seed)
    noise = AesCtrRandom.seeded_for_tests(seed)
    exact = np.zeros(plan.padded_dimension, dtype=np.int64)
    clipped = []
    for u in updates:
        v = discretize(u, plan, SEED, rng) + noise_share(plan, noise)
        exact += v
        clipped.append(modular_clip(v, plan.bits))
    return float(np.mean(centred_sum(_secure_sum(clipped), plan.bits) != exact))


def test_no_more_wraps_than_the_stated_modular_clipping_probability():
    """Every client sends the same full-norm update, so the aggregate's signal is n * c, the
    worst case the scale heuristic assumes. At p = 5% the rate is measurable."""
    d, n, p = 1 << 15, 12, 0.05
    plan = _plan("skellam", d, modclip_probability=p, bits=14)
    same = np.tile(_updates(1, d, seed=7), (n, 1))
    stderr = np.sqrt(p * (1 - p) / plan.padded_dimension)
    assert _wrap_rate(plan, same, 3) <= p + 4 * stderr
    # the check has power: noise with twice the planned std (half the headroom in std units)
    # wraps about a third of the coordinates
    louder = dataclasses.replace(plan, local_variance=4 * plan.local_variance)
    assert _wrap_rate(louder, same, 3) > p + 4 * stderr


def test_default_modclip_probability_holds_for_the_discrete_gaussian():
    d, n = 1 << 16, 12
    plan = _plan("dgauss", d)
    expected = plan.modclip_probability * d  # 6.6 coordinates at p = 1e-4
    assert _wrap_rate(plan, _updates(n, d, seed=1), 5) * d <= expected + 4 * np.sqrt(expected)


def test_conditional_rounding_stays_within_the_accounted_sensitivity():
    d = 3000
    plan = _plan("skellam", d, bits=12, target_epsilon=20.0)  # coarse: rounding matters
    x = np.full(d, 10.0)  # clipped to norm c
    rng = np.random.default_rng(0)
    # unconditional rounding exceeds the bound in ~2.5% of draws here: 300 draws catch it
    norms = [np.linalg.norm(discretize(x, plan, SEED, rng)) for _ in range(300)]
    assert max(norms) <= plan.l2_sensitivity
    assert max(norms) > plan.scale * plan.clip_norm  # rounding does inflate the norm


def test_extras_and_update_share_one_uint32_vector():
    d, n = 100, 5
    plan = _plan("skellam", d, cohort_size=5, min_survivors=4)
    rng = np.random.default_rng(0)
    noise = AesCtrRandom.seeded_for_tests(0)
    updates = _updates(n, d)
    extras = [np.array([1.0, 0.25 * i]) for i in range(n)]
    inputs = [
        encode_client(u, e, plan, EXTRAS, SEED, rng, noise)
        for u, e in zip(updates, extras, strict=True)
    ]
    assert {v.shape for v in inputs} == {(plan.padded_dimension + 4,)}
    assert {v.dtype for v in inputs} == {np.dtype(np.uint32)}
    decoded = decode_noisy_sum(_secure_sum(inputs), plan, EXTRAS, SEED, n)
    np.testing.assert_allclose(decoded.extras_sum, [5.0, 2.5], atol=1e-6)
    assert decoded.wrap_count == 0
    assert decoded.delta_sum.shape == (d,)
    # headroom used: the largest |coordinate| of the sum mod 2^bits, centred, over 2^(bits-1)
    half = 1 << (plan.bits - 1)
    low = _secure_sum(inputs)[: plan.padded_dimension].astype(np.int64) % (2 * half)
    centred = np.where(low >= half, low - 2 * half, low)
    assert 0.0 < decoded.headroom_used < 1.0
    assert decoded.headroom_used == pytest.approx(np.abs(centred).max() / half, rel=1e-12)


def test_encoder_refuses_a_wrong_dimension():
    plan = _plan("skellam", 64)
    with pytest.raises(ValueError, match="65 coordinates"):
        discretize(np.zeros(65), plan, SEED, np.random.default_rng(0))


@settings(max_examples=30, deadline=None)
@given(
    d=st.integers(1, 3000),
    n=st.integers(2, 20),
    bits=st.integers(12, 26),
    seed=st.integers(0, 2**32 - 1),
)
def test_without_noise_the_pipeline_returns_the_clipped_sum_up_to_rounding(d, n, bits, seed):
    """Modular clipping, centring, descaling and the inverse rotation lose nothing but the
    stochastic rounding (< 1 per coordinate per client in the integer domain)."""
    m = padded_dimension(d)
    scale = heuristic_scale(0.3, 1.0, bits, n, m, modclip_stddevs(1e-4))
    l2 = rounded_l2_bound(scale, DEFAULT_BETA, m)
    plan = DistributedDpPlan(  # scale for sigma 0.3, then silenced: Skellam(5e-10) is 0 w.h.p.
        "skellam", d, m, 1.0, bits, scale, 1e-9, DEFAULT_BETA, l2, rounded_l1_bound(l2, m),
        n, n, 0, 1.0, 1, 1e-4, 1.0, 1e-5,
    )  # fmt: skip
    rng = np.random.default_rng(seed)
    noise = AesCtrRandom.seeded_for_tests(seed)
    updates = rng.normal(size=(n, d)) * rng.uniform(0.001, 1.0, size=(n, 1))
    inputs = [encode_client(u, np.zeros(0), plan, EXTRAS, SEED, rng, noise) for u in updates]
    decoded = decode_noisy_sum(_secure_sum(inputs), plan, EXTRAS, SEED, n)
    error = np.linalg.norm(decoded.delta_sum - _clipped(updates, plan.clip_norm).sum(axis=0))
    assert error <= n * np.sqrt(plan.padded_dimension) / plan.scale
