"""Gradient canaries inside DP-SGD (for the empirical audit): each step, the included canaries
of one institution are Poisson-sampled at the records' rate and their rows appended to the
per-sample gradients before clipping. Torch; used by ``dp_sgd`` and the non-private loop.
"""

from __future__ import annotations

import numpy as np
import torch

from securefed.privacy.canaries import GRADIENT_NORM_FACTOR, CanaryPlan, canary_direction


class GradientCanaryRows:
    """Per step: Poisson-sample this institution's included gradient canaries at rate q and
    return their rows (direction x GRADIENT_NORM_FACTOR x C), split per parameter.

    ``params``: the trainable parameters in adapter-vector order. DP-SGD appends the rows
    before clipping; a non-private loop adds ``rows.sum(0) / batch_rows`` to each ``p.grad``
    after ``backward`` (the batch-mean loss's scale), so DP-off runs carry the same canaries.
    """

    def __init__(
        self,
        plan: CanaryPlan,
        institution: int,
        params: list[torch.Tensor],
        sample_rate: float,
        max_grad_norm: float,
        generator: torch.Generator,
    ) -> None:
        if plan.kind != "gradient":
            raise ValueError(f"DP-SGD injects gradient canaries only, got {plan.kind!r}")
        self.plan, self.params, self.generator = plan, params, generator
        self.indices = plan.included_at(institution)
        self.sample_rate = sample_rate
        self.norm = GRADIENT_NORM_FACTOR * max_grad_norm
        self.dimension = sum(p.numel() for p in params)

    def __call__(self) -> dict[torch.Tensor, torch.Tensor]:
        drawn = torch.rand(len(self.indices), generator=self.generator) < self.sample_rate
        sampled = self.indices[drawn.numpy()]
        flat = np.zeros((len(sampled), self.dimension), dtype=np.float32)  # [k, d]
        for row, index in enumerate(sampled):
            flat[row] = self.norm * canary_direction(self.plan.seed, int(index), self.dimension)
        rows, offset = {}, 0
        for p in self.params:
            chunk = torch.from_numpy(flat[:, offset : offset + p.numel()])
            rows[p] = chunk.reshape(len(sampled), *p.shape)
            offset += p.numel()
        return rows
