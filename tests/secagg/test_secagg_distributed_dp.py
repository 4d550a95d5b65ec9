"""Distributed DP through the real secure-aggregation state machines, with dropouts.

``simulate_round`` encodes its inputs itself (``quantize.encode_input``), so this drives the
client and server state machines with ``ManualRound`` and the distributed-DP encoder's
uint32 vectors: the protocol carries them unchanged, the masks cancel, and the decoded sum
holds exactly the noise shares of the clients whose input is in it.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from secagg_harness import ManualRound, make_context

from securefed.privacy.distributed.accounting import institution_epsilon
from securefed.privacy.distributed.encoding import DistributedDpCodec, round_rotation_seed
from securefed.privacy.distributed.parameters import central_noise_std, plan_distributed_dp
from securefed.secagg import SecAggParams
from securefed.secagg.params import plan_round
from securefed.secagg.quantize import QuantizationParams

D, COHORT = 1 << 14, 8
GLOBAL_ADAPTER_HASH = b"global-adapter".ljust(32, b".")  # what make_context binds


def _variance_ratio(residual: np.ndarray, variance: float) -> float:
    return float(np.mean(residual**2)) / variance


@pytest.mark.parametrize("mechanism", ["skellam", "dgauss"])
def test_noisy_sum_survives_dropouts_at_every_stage(mechanism):
    params = SecAggParams(adversary="curious", corrupt_fraction=0.0)
    min_survivors = plan_round(COHORT, params).threshold  # 6 of 8: the calibration point
    plan = plan_distributed_dp(
        mechanism=mechanism,
        target_epsilon=5.0,
        delta=1e-4,
        clip_norm=1.0,
        bits=20,
        dimension=D,
        cohort_size=COHORT,
        min_survivors=min_survivors,
        sample_rate=0.2,
        rounds=30,
    )
    codec = DistributedDpCodec(
        plan,
        QuantizationParams(clip_norm=1.0, bits=20),
        round_rotation_seed(GLOBAL_ADAPTER_HASH, 0),
    )
    updates = np.random.default_rng(1).normal(size=(COHORT, D)) * 0.02  # norms ~2.6: clipped
    inputs = {u: codec.encode(updates[u], 1.0, np.array([1.0])) for u in range(COHORT)}  # OS noise
    context = make_context(COHORT, dimension=codec.encoded_dimension, extras_count=1, params=params)
    run = ManualRound(range(COHORT), context)
    total = run.run(inputs, drops={"masked_input": [2], "unmasking": [5]})
    contributors = run.server.participants["masked_input"]  # 5's input is in the sum
    assert len(contributors) == COHORT - 1

    decoded = codec.decode(total, len(contributors))
    assert decoded.extras_sum[0] == pytest.approx(len(contributors), abs=1e-6)
    clipped = updates[list(contributors)]
    clipped = clipped * np.minimum(1.0, 1.0 / np.linalg.norm(clipped, axis=1, keepdims=True))
    residual = decoded.delta_sum - clipped.sum(axis=0)
    tolerance = 5 * np.sqrt(2 / D)  # 5 standard errors of the sample variance (5.5%)
    ratio = _variance_ratio(residual, central_noise_std(plan, len(contributors)) ** 2)
    assert abs(ratio - 1) < tolerance
    for wrong in (COHORT, min_survivors):  # the planned or the full noise: both wrong here
        ratio = _variance_ratio(residual, central_noise_std(plan, wrong) ** 2)
        assert abs(ratio - 1) > tolerance

    # The ledger records the shares that arrived; its epsilon is within the target.
    events = [plan.event(r, len(contributors)) for r in range(plan.rounds)]
    assert institution_epsilon(events, plan.delta) <= plan.target_epsilon
    short = [dataclasses.replace(e, noise_contributors=min_survivors - 1) for e in events]
    assert institution_epsilon(short, plan.delta) > plan.target_epsilon
