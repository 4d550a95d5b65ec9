"""Distributed DP primitives: the rotation is orthogonal and invertible, the samplers draw the
distributions they name (moments and chi-square against the exact pmf) from the AES-CTR
keystream DP-SGD's noise comes from, and the scale check that catches DP-SGD noise at 0.9x
catches a share at 0.9x its variance."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
from hypothesis import given, settings
from hypothesis import strategies as st
from noise_checks import ALPHA, gaussian_p_values
from scipy import stats

from securefed.privacy.distributed.encoding import DistributedDpCodec, noise_share
from securefed.privacy.distributed.noise import (
    discrete_gaussian_noise,
    discrete_gaussian_pmf,
    discrete_gaussian_variance,
    poisson,
    share_random,
    skellam_noise,
)
from securefed.privacy.distributed.parameters import plan_distributed_dp
from securefed.privacy.distributed.rotation import (
    padded_dimension,
    rotate,
    rotation_signs,
    unrotate,
    walsh_hadamard,
)
from securefed.privacy.secure_noise import NOISE_SOURCE_OS, AesCtrRandom
from securefed.secagg.quantize import QuantizationParams

N = 200_000


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 7, 9, 10])
def test_walsh_hadamard_matches_the_dense_matrix(k):
    x = np.random.default_rng(k).normal(size=1 << k)
    dense = scipy.linalg.hadamard(1 << k) / np.sqrt(1 << k)
    np.testing.assert_allclose(walsh_hadamard(x), dense @ x, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(d=st.integers(1, 3000), seed=st.binary(min_size=0, max_size=16), scale=st.floats(1e-3, 1e3))
def test_rotation_round_trips_and_preserves_the_l2_norm(d, seed, scale):
    x = np.random.default_rng(d).normal(size=d) * scale
    y = rotate(x, seed)
    assert y.shape == (padded_dimension(d),)
    assert np.linalg.norm(y) == pytest.approx(np.linalg.norm(x), rel=1e-12)
    np.testing.assert_allclose(unrotate(y, d, seed), x, atol=1e-12 * scale * np.sqrt(d))


def test_rotation_flattens_a_spike_and_depends_on_the_seed():
    x = np.zeros(4096)
    x[7] = 1.0
    y = rotate(x, b"round-1")
    np.testing.assert_allclose(np.abs(y), 1 / 64)  # all mass spread evenly
    assert not np.array_equal(rotation_signs(b"round-1", 64), rotation_signs(b"round-2", 64))
    np.testing.assert_array_equal(rotation_signs(b"round-1", 64), rotation_signs(b"round-1", 64))


def test_padded_dimension():
    assert [padded_dimension(d) for d in (1, 2, 3, 1024, 1025)] == [2, 2, 4, 1024, 2048]


def _chi_square_pvalue(samples: np.ndarray, pmf) -> float:
    """Pearson chi-square of integer samples against ``pmf``, tail bins pooled to >= 5."""
    values, counts = np.unique(samples, return_counts=True)
    support = np.arange(values.min(), values.max() + 1)
    observed = np.zeros(support.shape)
    observed[values - values.min()] = counts
    expected = pmf(support) * samples.size
    inner = expected >= 5
    obs = np.append(observed[inner], samples.size - observed[inner].sum())
    exp = np.append(expected[inner], samples.size - expected[inner].sum())
    return float(stats.chisquare(obs, exp, ddof=0).pvalue)


@pytest.mark.parametrize("variance", [0.5, 6.0, 200.0, 1e6])
def test_skellam_moments_and_pmf(variance):
    n = N
    x = skellam_noise(variance, n, AesCtrRandom.seeded_for_tests(11))
    assert x.dtype == np.int64
    assert abs(x.mean()) < 5 * np.sqrt(variance / n)
    # var of the sample variance ~ (mu4 - var^2)/n; Skellam's excess kurtosis is 1/variance.
    se = variance * np.sqrt((2 + 1 / variance) / n)
    assert abs(x.var() - variance) < 5 * se
    if variance <= 200:
        lam = variance / 2
        assert _chi_square_pvalue(x, lambda k: stats.skellam.pmf(k, lam, lam)) > 1e-4


def test_skellam_chi_square_detects_a_wrong_variance():
    x = skellam_noise(6.0, N, AesCtrRandom.seeded_for_tests(3))
    assert _chi_square_pvalue(x, lambda k: stats.skellam.pmf(k, 3.3, 3.3)) < 1e-6


@pytest.mark.parametrize("sigma", [0.4, 1.0, 3.5, 20.0])
def test_discrete_gaussian_matches_the_exact_pmf(sigma):
    x = discrete_gaussian_noise(sigma, N, AesCtrRandom.seeded_for_tests(5))
    variance = discrete_gaussian_variance(sigma)
    assert abs(x.mean()) < 5 * np.sqrt(variance / x.size)
    assert abs(x.var() - variance) < 5 * variance * np.sqrt(2.5 / x.size)
    assert _chi_square_pvalue(x, lambda k: discrete_gaussian_pmf(k, sigma)) > 1e-4
    if sigma >= 1.0:  # the test has power against a 5% wrong sigma
        assert _chi_square_pvalue(x, lambda k: discrete_gaussian_pmf(k, sigma * 1.05)) < 1e-4


def test_samplers_refuse_bad_parameters():
    rng = AesCtrRandom.seeded_for_tests(0)
    with pytest.raises(ValueError, match="variance"):
        skellam_noise(0.0, 3, rng)
    with pytest.raises(ValueError, match="sigma"):
        discrete_gaussian_noise(float("nan"), 3, rng)


@pytest.mark.parametrize("lam", [0.3, 4.0, 9.9, 10.0, 37.5, 1e3])
def test_poisson_from_the_keystream_matches_the_exact_pmf_on_both_sides_of_ptrs(lam):
    x = poisson(lam, N, AesCtrRandom.seeded_for_tests(int(lam * 10)))
    assert _chi_square_pvalue(x, lambda k: stats.poisson.pmf(k, lam)) > 1e-4
    assert _chi_square_pvalue(x, lambda k: stats.poisson.pmf(k, 1.05 * lam)) < 1e-4


# configs/distributed_dp.yaml's share (variance 7.3e8 in integer units) and a smaller one; small
# variances are checked against the exact pmf above (the continuous shape test needs a wide one)
@pytest.mark.parametrize("variance", [7.3e8, 1e6])
@pytest.mark.parametrize("mechanism", ["skellam", "dgauss"])
def test_shares_pass_the_dp_sgd_scale_check_and_fail_it_at_0_9x_the_variance(mechanism, variance):
    def draw(v: float, seed: int) -> np.ndarray:
        rng = AesCtrRandom.seeded_for_tests(seed)
        if mechanism == "skellam":
            return skellam_noise(v, N, rng).astype(np.float64)
        return discrete_gaussian_noise(np.sqrt(v), N, rng).astype(np.float64)

    std = np.sqrt(variance)
    assert min(gaussian_p_values(draw(variance, 21), std).values()) > ALPHA
    assert gaussian_p_values(draw(0.9 * variance, 22), std)["variance"] < ALPHA


def test_every_encoded_share_draws_from_a_fresh_os_keyed_aes_ctr_stream(monkeypatch):
    plan = plan_distributed_dp(
        mechanism="skellam",
        target_epsilon=8.0,
        delta=1e-5,
        clip_norm=1.0,
        bits=20,
        dimension=100,
        cohort_size=5,
        min_survivors=4,
        colluders=0,
        sample_rate=1.0,
        rounds=1,
    )
    assert share_random().label == NOISE_SOURCE_OS
    drawn: list[AesCtrRandom] = []

    def recorded() -> AesCtrRandom:
        drawn.append(AesCtrRandom.seeded_for_tests(len(drawn)))
        return drawn[-1]

    import securefed.privacy.distributed.encoding as encoding

    monkeypatch.setattr(encoding, "share_random", recorded)
    codec = DistributedDpCodec(plan, QuantizationParams(clip_norm=1.0, bits=20), b"seed")
    zero = np.zeros(100)
    first, second = (codec.encode(zero, 1.0, np.zeros(0)) for _ in range(2))
    assert len(drawn) == 2  # one fresh stream per share
    # a zero update rounds to zero: what is sent is the share drawn from that stream, mod 2^b
    for sent, seed in ((first, 0), (second, 1)):
        share = noise_share(plan, AesCtrRandom.seeded_for_tests(seed))
        np.testing.assert_array_equal(sent, share & ((1 << 20) - 1))
