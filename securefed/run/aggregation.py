"""One round's aggregation: secure (masked sum, securefed.secagg) or plain FedAvg.

What travels per client under secure aggregation is one uint32 vector: the clipped, weighted,
quantized delta followed by masked extras ``[weight, weight * train_loss]``. The server learns
only their sums, so the FedAvg denominator and the reported train loss are aggregates too.
With DP on, the train loss is not sent at all: it is computed from the records without noise,
so even its aggregate would sit outside the (epsilon, delta) guarantee.

With institution-level DP (``privacy.distributed``) each client encodes with the round's
``DistributedDpCodec`` instead: rotated, scaled, rounded, its noise share added, reduced mod
2^bits; the server descales and rotates the unmasked sum back, and the round's ledger event
records the noise shares in that sum (the survivors of masked input), never the planned ones.
Rounding and noise then come from the OS CSPRNG, not the seeded rounding generator.

A round whose cohort (the institutions still able to train) is too small to aggregate --
nobody left, or, under secure aggregation, fewer than 2 or fewer than the threshold the
protocol needs for that cohort -- is *skipped*, not a run-ending error: see
``cohort_shortfall``. Budget stops shrink cohorts, so this is an ordinary end of a run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from securefed.config import RunConfig
from securefed.errors import ConfigError, ProtocolAbort
from securefed.plan_inputs import PlanInputs, loss_is_summed, plan_inputs
from securefed.privacy.distributed.encoding import DistributedDpCodec
from securefed.privacy.distributed.parameters import central_noise_std
from securefed.privacy.institution import InstitutionPrivacy
from securefed.privacy.plan import LocalStats
from securefed.run.folder import vector_digest
from securefed.secagg import (
    STAGES,
    ClientInput,
    DropoutSchedule,
    FixedPointCodec,
    InputCodec,
    QuantizationParams,
    plan_round,
    simulate_round,
    with_generated_identities,
)
from securefed.secagg.quantize import Decoded
from securefed.seeding import derived_seed


@dataclass(frozen=True)
class AggregateResult:
    mean_delta: np.ndarray | None  # (d,) float32; None when nothing could be aggregated
    survivors: tuple[int, ...]
    mean_train_loss: float | None
    transcript: dict | None
    bytes_per_client: dict[str, dict[str, int]]
    aborted: str | None = None
    skipped: str | None = None  # why the round aggregated nothing without starting the protocol

    @classmethod
    def skip(cls, reason: str) -> AggregateResult:
        """A round that aggregated nothing and started no protocol: the global adapter stays."""
        return cls(None, (), None, None, {}, aborted=reason, skipped=reason)


def global_adapter_hash(vector: np.ndarray) -> bytes:
    """The hash of the global adapter every party binds into the session id."""
    return vector_digest(vector)


def client_extras(inputs: PlanInputs, weight: float, mean_loss: float) -> np.ndarray:
    """The masked scalars a client appends: ``[w, w * loss]``, or ``[w]`` under either DP
    (``plan_inputs.loss_is_summed``)."""
    values = [weight, weight * mean_loss] if loss_is_summed(inputs) else [weight]
    return np.array(values, dtype=np.float64)  # (m,)


def rounding_rng(cfg: RunConfig, round_index: int, client: int) -> np.random.Generator:
    """The generator of one client's stochastic rounding in one round, the same in-process
    and on a Flower node. It protects no one (the server learns only the sum), so it is
    seeded like the other "what happens" randomness: a resumed run, and the same run over
    Flower, then repeat the very same sums."""
    return np.random.default_rng(derived_seed(cfg.seed, "rounding", round_index, client))


def round_encoding(
    distributed: DistributedDpCodec | None,
    quantization: QuantizationParams,
    dimension: int,
    spec_hash: bytes,
) -> tuple[InputCodec, bytes]:
    """A round's input codec and the vector-spec hash its session id binds (in-process, on
    the Flower server and on each node): plain fixed point, or distributed DP's codec, whose
    plan is folded into the hash so that parties holding different plans cannot complete a
    round together."""
    if distributed is None:
        return FixedPointCodec(quantization, dimension), spec_hash
    return distributed, distributed.bind(spec_hash)


def dropout_schedule(cfg: RunConfig, round_index: int) -> DropoutSchedule:
    """The simulated dropouts of this round (explicit ids apply to ``dropout.rounds``)."""
    d = cfg.secure_aggregation.dropout
    explicit_applies = d.rounds is None or round_index in d.rounds
    explicit = {s: set(getattr(d, s)) if explicit_applies else set() for s in STAGES}
    return DropoutSchedule(rate=d.rate, stages=tuple(d.stages), explicit=explicit)


def cohort_shortfall(cfg: RunConfig, cohort: list[int]) -> str | None:
    """Why a round whose trained institutions are ``cohort`` cannot be aggregated, or None.

    Under secure aggregation the protocol's own round plan decides (``secagg.plan_round``:
    at least 2 clients, and the threshold for this cohort size must be reachable); plain
    FedAvg needs one. Asked before anyone trains, so a round that cannot aggregate costs no
    training and no privacy budget.
    """
    if not cohort:
        return "no institution left to train"
    if not cfg.secure_aggregation.enabled:
        return None
    left = f"{len(cohort)} institution{'s' * (len(cohort) > 1)} left to train {cohort}"
    if len(cohort) < 2:
        return f"{left}: secure aggregation needs at least 2"
    try:
        plan_round(len(cohort), cfg.secure_aggregation.params())
    except ConfigError as exc:
        return f"{left}: too few for secure aggregation ({exc.key}={exc.value!r}: {exc.allowed})"
    return None


def aggregate_round(
    cfg: RunConfig,
    round_index: int,
    updates: dict[int, tuple[np.ndarray, LocalStats]],
    weights: dict[int, float],
    global_vector: np.ndarray,
    spec_hash: str,
    institution: InstitutionPrivacy | None = None,
) -> AggregateResult:
    """Aggregate this round's updates: the weighted mean delta and what the server saw.

    ``institution``: distributed DP's plan and ledger (None: plain quantization); a round
    that completes records its noise shares there.

    A cohort too small to aggregate (``cohort_shortfall``) aborts the round here, after its
    clients trained: their ledgers keep the round (counted as released, never understated).
    The in-process transport asks ``cohort_shortfall`` before training, so it never gets here.
    """
    shortfall = cohort_shortfall(cfg, sorted(updates))
    if shortfall is not None:
        return AggregateResult(None, (), None, None, {}, aborted=shortfall)
    if not cfg.secure_aggregation.enabled:
        return _plain(cfg, updates, weights)
    adapter_hash = global_adapter_hash(global_vector)
    params = cfg.secure_aggregation.params()
    distributed = None if institution is None else institution.codec(round_index, adapter_hash)
    codec, bound_spec = round_encoding(
        distributed, params.quantization, int(global_vector.shape[0]), bytes.fromhex(spec_hash)
    )
    planned = plan_inputs(cfg)
    inputs = {
        c: ClientInput(
            delta=delta.astype(np.float32),
            weight=weights[c],
            extras=client_extras(planned, weights[c], stats.mean_loss),
            rounding=None if distributed is not None else rounding_rng(cfg, round_index, c),
        )
        for c, (delta, stats) in updates.items()
    }
    rng = np.random.default_rng(derived_seed(cfg.seed, "dropout", round_index))
    try:
        outcome = simulate_round(
            round_index=round_index,
            inputs=inputs,
            params=with_generated_identities(params, sorted(inputs)),
            global_adapter_hash=adapter_hash,
            vector_spec_hash=bound_spec,
            dropout=dropout_schedule(cfg, round_index),
            rng=rng,
            codec=codec,
        )
    except ProtocolAbort as exc:
        return AggregateResult(None, (), None, {"aborted": str(exc)}, {}, aborted=str(exc))
    out = release(outcome.decoded, round_index, len(outcome.survivors), institution)
    transcript = outcome.transcript
    if out.distributed_dp is not None:
        transcript = {**transcript, "distributed_dp": out.distributed_dp}
    return AggregateResult(
        out.mean_delta,
        tuple(outcome.survivors),
        out.mean_train_loss,
        transcript,
        _bytes(transcript),
    )


@dataclass(frozen=True)
class Release:
    """What the server takes from one round's unmasked sum."""

    mean_delta: np.ndarray  # (d,) float32: the weighted sum over the total weight
    mean_train_loss: float | None  # None when the loss was not summed (either DP)
    distributed_dp: dict | None  # the round's noise record (distributed DP), else None


def release(
    decoded: Decoded,
    round_index: int,
    contributors: int,
    institution: InstitutionPrivacy | None,
) -> Release:
    """Decode a round's sum the same way on both transports: the masked scalars are
    ``client_extras`` (total weight first, then the weighted loss when it was summed); under
    distributed DP the round is recorded in the ledger with the ``contributors`` noise shares
    that reached the sum (the survivors of masked input)."""
    total_weight = float(decoded.extras_sum[0])
    extras = decoded.extras_sum
    mean_loss = float(extras[1]) / total_weight if len(extras) > 1 else None
    noise = None
    if institution is not None:
        institution.record(round_index, contributors)
        noise = noise_record(institution, contributors, decoded.headroom_used)
    return Release((decoded.delta_sum / total_weight).astype(np.float32), mean_loss, noise)


def noise_record(institution: InstitutionPrivacy, contributors: int, headroom_used: float) -> dict:
    """What the transcript states about a round's distributed noise (both transports)."""
    plan = institution.plan
    return {
        "mechanism": plan.mechanism,
        "bits": plan.bits,
        "scale": plan.scale,
        "padded_dimension": plan.padded_dimension,
        "noise_contributors": contributors,
        "calibrated_for": plan.min_survivors,
        "central_noise_std": central_noise_std(plan, contributors),
        "headroom_used": headroom_used,
    }


def _plain(
    cfg: RunConfig,
    updates: dict[int, tuple[np.ndarray, LocalStats]],
    weights: dict[int, float],
) -> AggregateResult:
    total_w = sum(weights.values())
    acc = np.zeros_like(next(iter(updates.values()))[0], dtype=np.float64)  # (d,)
    extras = 0.0
    for c, (delta, stats) in updates.items():
        acc += weights[c] * delta.astype(np.float64)
        extras = extras + client_extras(plan_inputs(cfg), weights[c], stats.mean_loss)
    d = acc.shape[0]
    sent = {str(c): {"up": 4 * d, "down": 4 * d} for c in updates}
    mean_loss = float(extras[1]) / total_w if len(extras) > 1 else None
    return AggregateResult(
        (acc / total_w).astype(np.float32), tuple(sorted(updates)), mean_loss, None, sent
    )


def _bytes(transcript: dict) -> dict[str, dict[str, int]]:
    per_client = transcript.get("bytes", {}) if isinstance(transcript, dict) else {}
    return {str(k): dict(v) for k, v in per_client.items()}
