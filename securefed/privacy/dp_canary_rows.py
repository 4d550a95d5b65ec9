"""Gradient canaries inside DP-SGD (for the empirical audit): each step, the included canaries
of one institution are Poisson-sampled at the records' rate and their rows appended to the
per-sample gradients before clipping. Torch; used by ``dp_sgd`` and the non-private loop.
"""

from __future__ import annotations

import numpy as np
import torch

from securefed.privacy.canaries import GRADIENT_NORM_FACTOR, CanaryPlan, canary_coordinates


class GradientCanaryRows:
    """Per step: Poisson-sample this institution's included gradient canaries at rate q and
    return their rows (sign x GRADIENT_NORM_FACTOR x C at the canary's coordinate, zero
    elsewhere), split per parameter.

    ``params``: the trainable parameters in adapter-vector order. DP-SGD appends the rows
    before clipping; a non-private loop adds ``rows.sum(0) / batch_rows`` to each ``p.grad``
    after ``backward`` (the batch-mean loss's scale), so DP-off runs carry the same canaries.
    ``epoch_steps``: the non-private loop's batches per epoch. Its records are shuffled, each
    seen once an epoch, and so is every included canary then (at a uniformly random step of
    each epoch) instead of Poisson-sampled: a record like any other of that loop.
    """

    def __init__(
        self,
        plan: CanaryPlan,
        institution: int,
        params: list[torch.Tensor],
        sample_rate: float,
        max_grad_norm: float,
        generator: torch.Generator,
        epoch_steps: int | None = None,
    ) -> None:
        if plan.kind != "gradient":
            raise ValueError(f"DP-SGD injects gradient canaries only, got {plan.kind!r}")
        self.params, self.generator = params, generator
        self.indices = plan.included_at(institution)
        coordinates, signs = canary_coordinates(plan)
        self.coordinates, self.signs = coordinates[self.indices], signs[self.indices]
        self.sample_rate = sample_rate
        self.norm = GRADIENT_NORM_FACTOR * max_grad_norm
        self.dimension = sum(p.numel() for p in params)
        self.epoch_steps, self.calls = epoch_steps, 0
        self.slots = np.zeros(len(self.indices), dtype=np.int64)  # each canary's step this epoch
        if len(self.coordinates) and self.coordinates.max() >= self.dimension:
            raise ValueError(
                f"canary coordinates reach {self.coordinates.max()}, the adapter has "
                f"{self.dimension}"
            )

    def __call__(self) -> dict[torch.Tensor, torch.Tensor]:
        if self.epoch_steps is None:
            uniform = torch.rand(len(self.indices), generator=self.generator)
            drawn = (uniform < self.sample_rate).numpy()
        else:
            step = self.calls % self.epoch_steps
            if step == 0:
                slots = torch.randint(
                    self.epoch_steps, (len(self.indices),), generator=self.generator
                )
                self.slots = slots.numpy()
            drawn = self.slots == step
        self.calls += 1
        flat = np.zeros((int(drawn.sum()), self.dimension), dtype=np.float32)  # [k, d]
        flat[np.arange(len(flat)), self.coordinates[drawn]] = self.norm * self.signs[drawn]
        rows, offset = {}, 0
        for p in self.params:
            chunk = torch.from_numpy(flat[:, offset : offset + p.numel()])
            rows[p] = chunk.reshape(len(flat), *p.shape)
            offset += p.numel()
        return rows
