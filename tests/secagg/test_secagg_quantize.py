"""Fixed-point encoding: error within the bound, unbiased rounding, clipping, overflow rule."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from securefed.errors import ConfigError
from securefed.secagg.quantize import (
    QuantizationParams,
    check_no_overflow,
    decode_sum,
    encode_input,
    error_bound,
)


def _clipped_weighted(delta: np.ndarray, weight: float, clip: float) -> np.ndarray:
    x = delta.astype(np.float64)
    norm = np.linalg.norm(x)
    return weight * x * (min(1.0, clip / norm) if norm else 1.0)


def _sum_mod(vectors: list[np.ndarray]) -> np.ndarray:
    total = np.zeros_like(vectors[0])
    for v in vectors:
        np.add(total, v, out=total)
    return total


finite = st.floats(-50, 50, allow_nan=False, width=32)


@settings(max_examples=40, deadline=None)
@given(
    d=st.integers(1, 64),
    clients=st.integers(1, 6),
    bits=st.integers(8, 24),
    clip=st.floats(0.1, 100),
    data=st.data(),
)
def test_decoded_sum_is_within_the_quantization_bound(d, clients, bits, clip, data) -> None:
    params = QuantizationParams(clip_norm=clip, bits=bits, extras_bound=1000.0)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32)))
    deltas = [data.draw(arrays(np.float32, d, elements=finite)) for _ in range(clients)]
    weights = [data.draw(st.floats(1e-3, 1.0)) for _ in range(clients)]
    extras = [
        data.draw(arrays(np.float64, 3, elements=st.floats(-1000, 1000))) for _ in range(clients)
    ]
    encoded = [
        encode_input(x, w, e, params, rng) for x, w, e in zip(deltas, weights, extras, strict=True)
    ]
    decoded = decode_sum(_sum_mod(encoded), d, clients, params)
    delta_bound, extras_bound = error_bound(clients, params)
    truth = sum(_clipped_weighted(x, w, clip) for x, w in zip(deltas, weights, strict=True))
    assert np.max(np.abs(decoded.delta_sum - truth)) <= delta_bound * (1 + 1e-9)
    assert np.max(np.abs(decoded.extras_sum - sum(extras))) <= extras_bound * (1 + 1e-9) + 1e-9
    assert decoded.wrap_count == 0


def test_stochastic_rounding_is_unbiased() -> None:
    params = QuantizationParams(clip_norm=100.0, bits=12)  # norm of x is ~6.6: no clipping
    x = np.full(200_000, 0.3 / params.delta_scale, dtype=np.float32)  # 0.3 units each
    encoded = encode_input(x, 1.0, np.zeros(0), params, np.random.default_rng(1))
    values = encoded.view(np.int32)
    assert set(np.unique(values)) == {0, 1}
    assert abs(values.mean() - 0.3) < 4 * np.sqrt(0.3 * 0.7 / values.size)


def test_delta_is_l2_clipped_then_weighted() -> None:
    params = QuantizationParams(clip_norm=2.0, bits=24)
    delta = np.array([30.0, 40.0], dtype=np.float32)  # norm 50 -> clipped to norm 2
    encoded = encode_input(delta, 0.5, np.zeros(0), params, np.random.default_rng(0))
    decoded = decode_sum(encoded, 2, 1, params).delta_sum
    np.testing.assert_allclose(decoded, [0.6, 0.8], atol=error_bound(1, params)[0])


def test_extremes_encode_to_plus_minus_q_max() -> None:
    params = QuantizationParams(clip_norm=1.0, bits=20)
    encoded = encode_input(
        np.array([1.0, 0.0], np.float32), 1.0, np.array([-1000.0, 1000.0]), params
    )
    signed = encoded.view(np.int32)
    assert signed[0] == params.q_max
    assert np.all(np.abs(signed) <= params.q_max)
    negative = encode_input(np.array([-1.0], np.float32), 1.0, np.zeros(0), params)
    assert negative.view(np.int32)[0] == -params.q_max


@pytest.mark.parametrize(
    ("weight", "extras", "message"),
    [
        (0.0, np.zeros(1), "weight"),
        (1.5, np.zeros(1), "weight"),
        (1.0, np.array([1001.0]), "extras"),
        (1.0, np.array([np.nan]), "finite"),
    ],
)
def test_bad_inputs_are_refused(weight: float, extras: np.ndarray, message: str) -> None:
    params = QuantizationParams(clip_norm=1.0, bits=20)
    with pytest.raises(ValueError, match=message):
        encode_input(np.zeros(3, np.float32), weight, extras, params)


def test_overflow_rule_is_tight() -> None:
    """4096 clients at 20 bits fit below 2^31; 4097 do not, and their worst case does wrap."""
    params = QuantizationParams(clip_norm=1.0, bits=20)
    check_no_overflow(4096, 20)
    with pytest.raises(ConfigError, match="at most 19 for 4097"):
        check_no_overflow(4097, 20)
    worst = encode_input(np.array([1.0], np.float32), 1.0, np.array([1000.0]), params)
    for clients in (4096, 4097):
        total = (worst.astype(np.uint64) * clients % 2**32).astype(np.uint32)
        decoded = decode_sum(total, 1, clients, params)
        exact = decoded.delta_sum[0] == pytest.approx(clients * 1.0)
        assert exact == (clients == 4096)


def test_wrap_count_flags_values_no_honest_cohort_can_sum_to() -> None:
    params = QuantizationParams(clip_norm=1.0, bits=20)
    honest = [encode_input(np.array([1.0, -1.0], np.float32), 1.0, np.zeros(0), params)] * 3
    assert decode_sum(_sum_mod(honest), 2, 3, params).wrap_count == 0
    forged = np.array([10 * params.q_max, 0], dtype=np.int32).view(np.uint32)
    assert decode_sum(_sum_mod([*honest, forged]), 2, 4, params).wrap_count == 1


def test_overflow_rule_counts_noise_headroom() -> None:
    check_no_overflow(1000, 20)
    with pytest.raises(ConfigError, match="headroom"):
        check_no_overflow(1000, 20, noise_headroom=2**31 - 1000 * (2**19 - 1))
