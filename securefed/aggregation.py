"""One round's aggregation: secure (masked sum, securefed.secagg) or plain FedAvg.

What travels per client under secure aggregation is one uint32 vector: the clipped, weighted,
quantized delta followed by masked extras ``[weight, weight * train_loss]``. The server learns
only their sums, so the FedAvg denominator and the reported train loss are aggregates too.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from securefed.config import STAGES, RunConfig
from securefed.errors import ProtocolAbort
from securefed.run_setup import derived_seed
from securefed.training import LocalStats


@dataclass(frozen=True)
class AggregateResult:
    mean_delta: np.ndarray | None  # (d,) float32; None when nothing could be aggregated
    survivors: tuple[int, ...]
    mean_train_loss: float | None
    transcript: dict | None
    bytes_per_client: dict[str, dict[str, int]]
    aborted: str | None = None


def secagg_params(cfg: RunConfig, roster=None):
    """The secure-aggregation parameters of a run config."""
    from securefed.secagg import SecAggParams

    sa = cfg.secure_aggregation
    return SecAggParams(threshold=sa.threshold, graph=sa.graph, degree=sa.degree,
                        clip_norm=sa.clip_norm, bits=sa.bits, security_bits=sa.security_bits,
                        corrupt_fraction=sa.corrupt_fraction, dropout_budget=sa.dropout_budget,
                        roster=roster if roster is not None else sa.identity_roster)


def dropout_schedule(cfg: RunConfig, round_index: int):
    """The simulated dropouts of this round (explicit ids apply to ``dropout.rounds``)."""
    from securefed.secagg import DropoutSchedule

    d = cfg.secure_aggregation.dropout
    explicit_applies = d.rounds is None or round_index in d.rounds
    explicit = {s: set(getattr(d, s)) if explicit_applies else set() for s in STAGES}
    return DropoutSchedule(rate=d.rate, stages=tuple(d.stages), explicit=explicit)


def aggregate_round(cfg: RunConfig, round_index: int,
                    updates: dict[int, tuple[np.ndarray, LocalStats]],
                    weights: dict[int, float], global_vector: np.ndarray, spec_hash: str,
                    num_clients: int) -> AggregateResult:
    if not updates:
        return AggregateResult(None, (), None, None, {}, aborted="no client trained")
    if cfg.secure_aggregation.enabled:
        return _secure(cfg, round_index, updates, weights, global_vector, spec_hash)
    return _plain(updates, weights)


def _plain(updates, weights) -> AggregateResult:
    total_w = sum(weights.values())
    acc = np.zeros_like(next(iter(updates.values()))[0], dtype=np.float64)
    loss = 0.0
    for c, (delta, stats) in updates.items():
        acc += weights[c] * delta.astype(np.float64)
        loss += weights[c] * stats.mean_loss
    d = acc.shape[0]
    sent = {str(c): {"up": 4 * d, "down": 4 * d} for c in updates}
    return AggregateResult((acc / total_w).astype(np.float32), tuple(sorted(updates)),
                           loss / total_w, None, sent)


def _secure(cfg, round_index, updates, weights, global_vector, spec_hash) -> AggregateResult:
    from securefed.secagg import ClientInput, simulate_round

    inputs = {
        c: ClientInput(delta=delta.astype(np.float32), weight=weights[c],
                       extras=np.array([weights[c], weights[c] * stats.mean_loss], dtype=np.float64))
        for c, (delta, stats) in updates.items()
    }
    global_hash = hashlib.sha256(np.ascontiguousarray(global_vector).tobytes()).digest()
    rng = np.random.default_rng(derived_seed(cfg.seed, "dropout", round_index))
    try:
        outcome = simulate_round(round_index=round_index, inputs=inputs,
                                 params=secagg_params(cfg), global_adapter_hash=global_hash,
                                 vector_spec_hash=bytes.fromhex(spec_hash),
                                 dropout=dropout_schedule(cfg, round_index), rng=rng)
    except ProtocolAbort as exc:
        return AggregateResult(None, (), None, {"aborted": str(exc)}, {}, aborted=str(exc))
    total_w, loss_sum = float(outcome.extras_sum[0]), float(outcome.extras_sum[1])
    mean = (outcome.delta_sum / total_w).astype(np.float32)
    return AggregateResult(mean, tuple(outcome.survivors), loss_sum / total_w,
                           outcome.transcript, _bytes(outcome.transcript))


def _bytes(transcript: dict) -> dict[str, dict[str, int]]:
    per_client = transcript.get("bytes", {}) if isinstance(transcript, dict) else {}
    return {str(k): dict(v) for k, v in per_client.items()}
