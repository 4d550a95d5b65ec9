"""The CSPRNG behind DP-SGD: the keystream is AES-CTR, the normals have the calibrated scale.

The scale tests are deterministic (test-only seeded keys), and each shows its power: the same
check run on the draws scaled by 0.9 (too little noise, weaker privacy than accounted) fails.
"""

from __future__ import annotations

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from noise_checks import ALPHA, gaussian_p_values
from scipy import stats

from securefed.privacy.secure_noise import NOISE_SOURCE_OS, AesCtrRandom

N = 200_000


def test_normals_have_mean_zero_and_unit_variance_and_scaled_noise_is_caught():
    z = AesCtrRandom.seeded_for_tests(1).standard_normal(N)
    assert min(gaussian_p_values(z, 1.0).values()) > ALPHA
    weak = gaussian_p_values(0.9 * z, 1.0)  # 10% too little noise
    assert weak["variance"] < ALPHA, "the variance check must catch noise scaled by 0.9"
    assert min(gaussian_p_values(z + 0.05, 1.0).values()) < ALPHA  # a bias is caught too


def test_noise_at_a_dp_scale_passes_at_that_scale_only():
    std = 2.0 * 0.5 / 16  # sigma * C / B
    z = std * AesCtrRandom.seeded_for_tests(2).standard_normal(N)
    assert min(gaussian_p_values(z, std).values()) > ALPHA
    assert gaussian_p_values(z, std / 0.9)["variance"] < ALPHA


def test_keystream_is_aes_256_ctr_from_counter_zero():
    """Brute-force reference: the words are AES-256(key, counter block i) for i = 0, 1, ..."""
    key = bytes(range(32))
    words = AesCtrRandom(key, label="vector").words(10)  # 80 bytes = 5 blocks
    ecb = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    blocks = b"".join(ecb.update(i.to_bytes(16, "big")) for i in range(5))
    assert words.tobytes() == blocks


def test_draws_continue_the_stream_and_never_repeat_it():
    key = bytes(32)
    one = AesCtrRandom(key, label="x")
    split = np.concatenate([one.words(3), one.words(5)])
    assert np.array_equal(split, AesCtrRandom(key, label="x").words(8))
    assert len(np.unique(split)) == 8


def test_fresh_keys_give_independent_streams():
    a, b = AesCtrRandom.from_os_entropy(), AesCtrRandom.from_os_entropy()
    assert a.label == NOISE_SOURCE_OS and not a.test_only
    za, zb = a.standard_normal(N), b.standard_normal(N)
    bound = 5 / np.sqrt(N)  # |correlation| of independent streams is ~ N(0, 1/N)
    assert abs(np.corrcoef(za, zb)[0, 1]) < bound
    assert abs(np.corrcoef(za[:-1], za[1:])[0, 1]) < bound  # successive draws of one stream
    half = N // 2  # Box-Muller pairs: the cos and sin outputs of one pair are uncorrelated
    assert abs(np.corrcoef(za[:half], za[half : 2 * half])[0, 1]) < bound


def test_seeded_generators_are_reproducible_and_labelled_test_only():
    a, b = AesCtrRandom.seeded_for_tests(5), AesCtrRandom.seeded_for_tests(5)
    assert a.test_only and "TEST ONLY" in a.label and "5" in a.label
    assert np.array_equal(a.standard_normal(100), b.standard_normal(100))
    assert not np.array_equal(
        AesCtrRandom.seeded_for_tests(6).standard_normal(100),
        AesCtrRandom.seeded_for_tests(5).standard_normal(100),
    )


@pytest.mark.parametrize("p", [0.0, 0.01, 0.1, 0.5, 1.0])
def test_bernoulli_rate_is_p(p):
    hits = int(AesCtrRandom.seeded_for_tests(3).bernoulli(N, p).sum())
    if p in (0.0, 1.0):
        assert hits == p * N
        return
    assert stats.binomtest(hits, N, p).pvalue > ALPHA
    assert stats.binomtest(hits, N, 0.9 * p).pvalue < ALPHA  # a rate 10% off is caught


def test_uniforms_are_in_the_open_interval_and_odd_sizes_work():
    rng = AesCtrRandom.seeded_for_tests(4)
    u = rng.uniform(N)
    assert u.min() > 0.0 and u.max() < 1.0
    assert stats.kstest(u, "uniform").pvalue > ALPHA
    assert rng.standard_normal(7).shape == (7,) and rng.standard_normal(0).shape == (0,)


def test_bad_key_and_probability_are_refused():
    with pytest.raises(ValueError, match="32-byte key"):
        AesCtrRandom(bytes(16), label="x")
    with pytest.raises(ValueError, match="probability"):
        AesCtrRandom(bytes(32), label="x").bernoulli(3, 1.5)
