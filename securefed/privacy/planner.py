"""Before a DP run: per institution, the calibrated noise and whether the run can learn.

The figure is the one ``benchmarks/dp_signal_to_noise.py`` measures: the per-coordinate noise
std of an institution's averaged DP-SGD gradient, sigma * C / B (B the expected Poisson batch,
q * N), over C / sqrt(d), the per-coordinate size of a clipped gradient spread evenly over the
d trainable parameters:

    noise_to_signal = (sigma * C / B) / (C / sqrt(d)) = sigma * sqrt(d) / B

Above ``LEARNS_NOTHING_ABOVE[training.dp_optimizer]`` the run is predicted to learn nothing.
The thresholds are heuristics from one task and backbone (the embedded synthetic task on
all-MiniLM-L6-v2), each placed between measured outcomes, stated as such:

- ``sgd`` (momentum 0.9, ``configs/dp.yaml``'s recipe: FFA-LoRA, batch 256, 6 rounds, seed 0):
  ratios 0.555 (top-2 layers, 0.731 pooled accuracy), 1.54 (0.571), 1.55 (rank 2: 0.481) and
  2.04 (top-1 layer, 4,000 records, epsilon 1: 0.545 at dp_lr 4.0, 0.554 at 8.0) learned above
  the 0.40 floor; 2.77 (top-2, epsilon 1, dp_lr 2.0) stayed at it. Threshold 2.5. The edge is
  soft: the same 2.77 reached 0.49 at dp_lr 4.0 with two head-only rounds first.
- ``adam_bc``: 0.555 learned (0.650); nothing above it was measured. Threshold 1.0.
- ``adamw``: 0.555 stayed at the floor in that federation (AdamW's per-coordinate scaling
  turns noise-dominated coordinates into full-size steps), while 0.64 learned centrally on a
  75k-parameter LoRA (README, "DP needs data"). Threshold 0.5, and the fixes name ``sgd``.

With ``privacy.distributed`` on, the same figure for the federation's update: the noise every
allowed survivor set's sum carries (descaled std per coordinate z * C, n_min the threshold's
smallest survivor set), averaged over the n_min updates, over C / sqrt(d) for one clipped
update:

    noise_to_signal = (z * C / n_min) / (C / sqrt(d)) = z * sqrt(d) / n_min

Its threshold, ``FEDERATION_LEARNS_NOTHING_ABOVE``, is measured on the federation of
``configs/distributed_dp.yaml`` (FFA-LoRA rank 1 on the top value projection, d = 1,539; 20
of 50 institutions a round, 5 rounds; majority-class floor 0.34, 0.62 with clipping and no
noise): ratio 1.78 (epsilon 16) reached 0.54-0.57, ratio 3.11 (epsilon 8) 0.47-0.48, while
LoRA rank 4 (15 a round, epsilon 8 over 20 rounds, ratio 22.2) stayed at the floor. The gain
over the floor shrinks by about 6 points per unit of ratio between 1.78 and 3.11, so it is
gone near 5: the threshold. The server step averages no noise over local steps, which is why
it sits above the DP-SGD momentum one.

Torch-free: it takes sizes and calibrated noise multipliers as numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

LEARNS_NOTHING_ABOVE = {"sgd": 2.5, "adam_bc": 1.0, "adamw": 0.5}
FEDERATION_LEARNS_NOTHING_ABOVE = 5.0  # distributed DP's server step (module docstring)

SWITCH_TO_SGD = "training.dp_optimizer sgd with dp_momentum (noise averages out over steps)"
FIXES = (
    "more records per institution (at fixed epsilon sigma/B falls roughly as 1/N)",
    "a larger expected batch (training.batch_size) with fewer local steps",
    "fewer trainable parameters: model.adapter ffa_lora, a smaller model.lora_r",
    "a larger privacy.dp.target_epsilon, or fewer training.rounds",
)


@dataclass(frozen=True)
class InstitutionPlan:
    """One institution's DP-SGD as planned for the whole run."""

    client: int
    records: int
    sample_rate: float
    expected_batch: float
    steps: int  # noised steps over the whole run if it trains every round
    noise_multiplier: float
    noise_to_signal: float
    dp_optimizer: str
    threshold: float  # LEARNS_NOTHING_ABOVE[dp_optimizer]

    @property
    def learns_nothing(self) -> bool:
        return self.noise_to_signal > self.threshold


def noise_to_signal(noise_multiplier: float, expected_batch: float, dimension: int) -> float:
    """sigma * C / B over C / sqrt(d) (C cancels): see the module docstring."""
    if expected_batch <= 0 or dimension < 1:
        raise ValueError(f"need expected_batch > 0 and d >= 1, got {expected_batch}, {dimension}")
    return noise_multiplier * math.sqrt(dimension) / expected_batch


def plan_institutions(
    *,
    train_sizes: Sequence[int],
    noise_multipliers: Sequence[float],
    steps_per_round: Sequence[int],
    rounds: int,
    batch_size: int,
    trainable_parameters: int,
    dp_optimizer: str,
) -> list[InstitutionPlan]:
    """Each institution's plan from its record count and its calibrated sigma."""
    threshold = LEARNS_NOTHING_ABOVE[dp_optimizer]
    plans = []
    for c, (n, sigma, steps) in enumerate(
        zip(train_sizes, noise_multipliers, steps_per_round, strict=True)
    ):
        q = min(1.0, batch_size / n)
        batch = q * n
        plans.append(
            InstitutionPlan(
                client=c,
                records=n,
                sample_rate=q,
                expected_batch=batch,
                steps=rounds * steps,
                noise_multiplier=sigma,
                noise_to_signal=noise_to_signal(sigma, batch, trainable_parameters),
                dp_optimizer=dp_optimizer,
                threshold=threshold,
            )
        )
    return plans


def format_plan(plans: Sequence[InstitutionPlan], trainable_parameters: int) -> str:
    """The planner's printout: a table, then a warning with the fixes if a run cannot learn."""
    lines = [
        f"DP plan (d = {trainable_parameters} trainable parameters; noise/signal = "
        f"sigma*sqrt(d)/B, predicted to learn nothing above {plans[0].threshold:g} "
        "with this DP optimizer):",
        f"{'institution':>11} {'records':>8} {'q':>7} {'exp batch':>9} {'steps':>6} "
        f"{'sigma':>8} {'noise/signal':>13}",
    ]
    for p in plans:
        lines.append(
            f"{p.client:>11} {p.records:>8} {p.sample_rate:>7.3f} {p.expected_batch:>9.1f} "
            f"{p.steps:>6} {p.noise_multiplier:>8.3g} {p.noise_to_signal:>13.3g}"
            + ("  LEARNS NOTHING" if p.learns_nothing else "")
        )
    warning = learns_nothing_warning(plans)
    return "\n".join(lines + ([warning] if warning else []))


def learns_nothing_warning(plans: Sequence[InstitutionPlan]) -> str | None:
    """The warning (with suggested fixes) when some institution is predicted to learn nothing."""
    bad = [p for p in plans if p.learns_nothing]
    if not bad:
        return None
    worst = max(bad, key=lambda p: p.noise_to_signal)
    fixes = FIXES if worst.dp_optimizer == "sgd" else (SWITCH_TO_SGD, *FIXES)
    return (
        f"WARNING: institutions {[p.client for p in bad]} are predicted to learn nothing "
        f"under DP (noise/signal up to {worst.noise_to_signal:.3g} > {worst.threshold:g}; "
        "the model would stay at the majority-class floor). Fixes: " + "; ".join(fixes) + "."
    )


@dataclass(frozen=True)
class FederationPlan:
    """``privacy.distributed``: the noise in the federation's averaged update, per round."""

    cohort: int
    min_survivors: int
    rounds: int
    noise_multiplier: float  # descaled noise std per coordinate of the sum, over the clip norm
    noise_to_signal: float
    threshold: float

    @property
    def learns_nothing(self) -> bool:
        return self.noise_to_signal > self.threshold


def plan_federation(
    *, noise_multiplier: float, min_survivors: int, cohort: int, rounds: int, dimension: int
) -> FederationPlan:
    """The plan of a distributed-DP run: ``noise_multiplier`` is the descaled noise std per
    coordinate of the smallest allowed survivor set's sum, over the clip norm."""
    return FederationPlan(
        cohort=cohort,
        min_survivors=min_survivors,
        rounds=rounds,
        noise_multiplier=noise_multiplier,
        noise_to_signal=noise_to_signal(noise_multiplier, min_survivors, dimension),
        threshold=FEDERATION_LEARNS_NOTHING_ABOVE,
    )


def format_federation_plan(plan: FederationPlan, dimension: int) -> str:
    """The planner's printout for distributed DP, with the warning when it cannot learn."""
    lines = [
        f"Distributed DP plan (d = {dimension}; {plan.cohort} institutions a round, the noise "
        f"calibrated for {plan.min_survivors} survivors, {plan.rounds} rounds): noise std "
        f"{plan.noise_multiplier:.3g} x clip on the sum, noise/signal of the averaged update "
        f"{plan.noise_to_signal:.3g} (sigma*sqrt(d)/n; predicted to learn nothing above "
        f"{plan.threshold:g})"
    ]
    if plan.learns_nothing:
        lines.append(
            "WARNING: the federation is predicted to learn nothing under distributed DP "
            "(the model would stay at the majority-class floor). Fixes: more institutions "
            "a round (training.clients_per_round; the noise is shared, the signal adds up); "
            "fewer trainable parameters (model.adapter ffa_lora, a smaller model.lora_r, "
            "model.adapter_layers top-1); fewer training.rounds; a larger "
            "privacy.distributed.target_epsilon; a smaller secure_aggregation.dropout_budget "
            "(the noise is planned for the fewest survivors it allows)."
        )
    return "\n".join(lines)
