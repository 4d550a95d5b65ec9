"""Distributed DP through the real secure-aggregation state machines, with dropouts.

``ManualRound`` drives the client and server state machines with the distributed-DP encoder's
uint32 vectors: the protocol carries them unchanged, the masks cancel, and the decoded sum
holds exactly the noise shares of the clients whose input is in it. ``simulate_round`` does
the same through its codec seam, as the simulation runs it.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from secagg_harness import ManualRound, make_context

from securefed.privacy.distributed.accounting import institution_epsilon
from securefed.privacy.distributed.encoding import DistributedDpCodec, round_rotation_seed
from securefed.privacy.distributed.parameters import central_noise_std, plan_distributed_dp
from securefed.secagg import ClientInput, DropoutSchedule, SecAggParams, simulate_round
from securefed.secagg.params import cohort_colluders, plan_round
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
        colluders=cohort_colluders(COHORT, params.corrupt_fraction),
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


def test_simulate_round_carries_the_codec_and_the_survivors_noise():
    """The simulation's own path: ``simulate_round`` encodes with the codec it is given."""
    params = SecAggParams(adversary="curious", corrupt_fraction=0.0)
    plan = plan_distributed_dp(
        mechanism="skellam",
        target_epsilon=5.0,
        delta=1e-4,
        clip_norm=1.0,
        bits=20,
        dimension=D,
        cohort_size=COHORT,
        min_survivors=plan_round(COHORT, params).threshold,
        colluders=cohort_colluders(COHORT, params.corrupt_fraction),
        sample_rate=1.0,
        rounds=30,
    )
    codec = DistributedDpCodec(
        plan, QuantizationParams(1.0, 20), round_rotation_seed(GLOBAL_ADAPTER_HASH, 0)
    )
    updates = np.random.default_rng(2).normal(size=(COHORT, D)) * 0.002  # norms ~0.26
    outcome = simulate_round(
        round_index=0,
        inputs={u: ClientInput(updates[u], 1.0, np.array([1.0])) for u in range(COHORT)},
        params=params,
        global_adapter_hash=GLOBAL_ADAPTER_HASH,
        vector_spec_hash=codec.bind(b"spec".ljust(32, b".")),
        dropout=DropoutSchedule(explicit={"share_keys": {1}, "unmasking": {6}}),
        codec=codec,
    )
    assert outcome.survivors == (0, 2, 3, 4, 5, 6, 7)
    assert outcome.extras_sum[0] == pytest.approx(7.0, abs=1e-6)
    residual = outcome.delta_sum - updates[list(outcome.survivors)].sum(axis=0)
    tolerance = 5 * np.sqrt(2 / D)
    assert abs(_variance_ratio(residual, central_noise_std(plan, 7) ** 2) - 1) < tolerance
    assert abs(_variance_ratio(residual, central_noise_std(plan, COHORT) ** 2) - 1) > tolerance
