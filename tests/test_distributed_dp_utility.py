"""The paired design of benchmarks/distributed_dp_utility.py: the noise it hands the
server-side arm is exactly the noise the distributed sum carried, and the wraps it counts are
the coordinates whose exact integer sum left the modulus."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from securefed.privacy.distributed.encoding import DistributedDpCodec
from securefed.privacy.distributed.parameters import central_noise_std, plan_distributed_dp
from securefed.secagg.quantize import FixedPointCodec, QuantizationParams

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "distributed_dp_utility.py"
_SPEC = importlib.util.spec_from_file_location("distributed_dp_utility", _PATH)
utility = sys.modules.setdefault(_SPEC.name, importlib.util.module_from_spec(_SPEC))
_SPEC.loader.exec_module(utility)  # registered first: its dataclasses look their module up

EXTRAS = QuantizationParams(clip_norm=1.0, bits=20)
CLIENTS, DIMENSION = 20, 300


def _plan(**overrides):
    """configs/distributed_dp.yaml's plan (epsilon 16 over 5 rounds, 18 of 20), smaller."""
    kwargs = {
        "mechanism": "skellam",
        "target_epsilon": 16.0,
        "delta": 1e-5,
        "clip_norm": 1.0,
        "bits": 20,
        "dimension": DIMENSION,
        "cohort_size": CLIENTS,
        "min_survivors": 18,
        "colluders": 1,  # floor(0.05 x 20)
        "sample_rate": 1.0,
        "rounds": 5,
    }
    return plan_distributed_dp(**{**kwargs, **overrides})


def _round(modclip_probability: float, seed: int = 0):
    """One round of 20 clipped updates through the capturing codec, and the same updates
    summed exactly by the plain codec: (decoded, capture, exact plain total, clipped sum)."""
    plan = _plan(modclip_probability=modclip_probability)
    captured: dict = {}
    codec = utility.CapturingCodec(DistributedDpCodec(plan, EXTRAS, b"seed"), 3, captured)
    plain = FixedPointCodec(QuantizationParams(1.0, 20), DIMENSION)
    rng = np.random.default_rng(seed)
    updates = rng.normal(0.3, 0.1, size=(CLIENTS, DIMENSION))  # aligned, as trained updates are
    extras = np.array([1.0])
    total = sum(codec.encode(u, 1.0, extras).astype(np.uint64) for u in updates)
    exact = sum(plain.encode(u, 1.0, extras, rng).astype(np.uint64) for u in updates)
    decoded = codec.decode((total % 2**32).astype(np.uint32), CLIENTS)
    clipped = updates / np.linalg.norm(updates, axis=1, keepdims=True)
    return plan, decoded, captured[3], (exact % 2**32).astype(np.uint32), clipped.sum(axis=0)


def test_the_server_side_arm_gets_the_sum_the_distributed_arm_decoded():
    plan, decoded, capture, exact_total, clipped_sum = _round(1e-4)
    assert capture.wraps == 0 and capture.contributors == CLIENTS
    assert capture.rounding_error < 1e-3
    server_side = utility.CentralNoiseCodec(
        FixedPointCodec(QuantizationParams(1.0, 20), DIMENSION), capture.noise
    ).decode(exact_total, CLIENTS)
    np.testing.assert_allclose(server_side.delta_sum, decoded.delta_sum, atol=1e-3)
    np.testing.assert_allclose(server_side.extras_sum, decoded.extras_sum)
    # and it is the survivors' noise: std of 20 shares, not the planned 18
    assert capture.noise.std() == pytest.approx(central_noise_std(plan, CLIENTS), rel=0.15)
    np.testing.assert_allclose(decoded.delta_sum - capture.noise, clipped_sum, atol=1e-3)


def test_wraps_are_counted_where_the_exact_sum_left_the_modulus():
    _, decoded, capture, _, clipped_sum = _round(0.5)  # 0.67 std of headroom: many wraps
    wrapped = np.abs(decoded.delta_sum - capture.noise - clipped_sum) > 1e-3
    assert capture.wraps > 10
    assert capture.rounding_error > 0.1
    assert wrapped.any()  # each wrap, rotated back, moves the whole decoded vector


def test_a_dropout_after_encoding_is_refused():
    plan = _plan(dimension=8, cohort_size=3, min_survivors=2, colluders=0)
    codec = utility.CapturingCodec(DistributedDpCodec(plan, EXTRAS, b"seed"), 1, {})
    inputs = [codec.encode(np.ones(8), 1.0, np.array([1.0])) for _ in range(3)]
    with pytest.raises(RuntimeError, match="no dropouts"):
        codec.decode(sum(i.astype(np.uint64) for i in inputs[:2]).astype(np.uint32), 2)
