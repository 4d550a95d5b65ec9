"""What one round of local training is told (``DPPlan``) and what it reports (``LocalStats``).

Torch-free, so that the budget, the aggregation and the Flower protocol stages can name them
without loading the training stack that produces them (``securefed.model.training``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DPPlan:
    """How one institution trains privately this round (sigma from its calibration)."""

    noise_multiplier: float
    max_grad_norm: float
    secure_mode: bool = False


@dataclass(frozen=True)
class LocalStats:
    """One client's round of local training, as the trainer reports it.

    ``mean_loss`` and ``examples`` are computed from the records without noise: under DP they
    stay local (or out of anything the server sees).
    """

    steps: int
    examples: int
    mean_loss: float
    sample_rate: float | None = None  # DP only: Poisson sampling rate actually used
    noise_multiplier: float | None = None
