"""What one round of local training is told (``DPPlan``) and what it reports (``LocalStats``).

Torch-free, so that the budget, the aggregation and the Flower protocol stages can name them
without loading the training stack that produces them (``securefed.model.training``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

NoiseSource = Literal["aes_ctr", "torch"]  # privacy.dp.noise_source


@dataclass(frozen=True)
class DPPlan:
    """How one institution trains privately this round (sigma from its calibration)."""

    noise_multiplier: float
    max_grad_norm: float
    secure_mode: bool = False
    noise_source: NoiseSource = "aes_ctr"
    optimizer: str = "adamw"  # training.dp_optimizer: adamw | sgd | adam_bc
    lr: float | None = None  # training.dp_lr; None: the non-private training.lr
    momentum: float = 0.9  # training.dp_momentum (sgd)


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
    noise_source: str | None = None  # DP only: label of the generator of noise and sampling
