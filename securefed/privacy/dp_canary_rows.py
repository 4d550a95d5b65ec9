"""Gradient canaries inside DP-SGD (for the empirical audit): each step, the included canaries
of one institution are Poisson-sampled at the records' rate and their rows appended to the
per-sample gradients before clipping; the step's values at the institution's canary
coordinates go to the run's ``CanaryTrace``. Torch; used by ``dp_sgd`` and the non-private
loop.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from securefed.privacy.canaries import GRADIENT_NORM_FACTOR, canary_coordinates
from securefed.privacy.canary_trace import CarriedCanaries

_OPACUS_NORM_EPSILON = 1e-6  # Opacus's clip factor: C / (norm + 1e-6), at most 1


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

    With a trace in ``carried``, each step notes the records' part (``note_clipped_records``
    under DP, ``note_batch_records`` without, before the canaries join), then
    ``note_released`` (what the optimizer reads) records the step at every coordinate the
    institution carries a canary at, included or not.
    """

    def __init__(
        self,
        carried: CarriedCanaries,
        params: list[torch.Tensor],
        sample_rate: float,
        max_grad_norm: float,
        generator: torch.Generator,
        epoch_steps: int | None = None,
    ) -> None:
        plan, self.institution, self.trace = carried
        if plan.kind != "gradient":
            raise ValueError(f"DP-SGD injects gradient canaries only, got {plan.kind!r}")
        self.params, self.generator = params, generator
        self.indices = plan.included_at(self.institution)
        coordinates, signs = canary_coordinates(plan)
        self.coordinates, self.signs = coordinates[self.indices], signs[self.indices]
        self.watched = torch.from_numpy(coordinates[plan.carried_by(self.institution)])
        self.sample_rate = sample_rate
        self.norm = GRADIENT_NORM_FACTOR * max_grad_norm
        self.dimension = sum(p.numel() for p in params)
        self.epoch_steps, self.calls = epoch_steps, 0
        self.slots = np.zeros(len(self.indices), dtype=np.int64)  # each canary's step this epoch
        self.records: np.ndarray | None = None
        if len(self.watched) and int(self.watched.max()) >= self.dimension:
            raise ValueError(
                f"canary coordinates reach {int(self.watched.max())}, the adapter has "
                f"{self.dimension}"
            )

    @classmethod
    def private(
        cls,
        carried: CarriedCanaries,
        params: list[torch.Tensor],
        sample_rate: float,
        max_grad_norm: float,
        generator: torch.Generator | None,
    ) -> GradientCanaryRows:
        """DP-SGD's rows: Poisson draws from ``generator`` (OS entropy when None)."""
        seed = int.from_bytes(os.urandom(8), "little")
        rng = generator or torch.Generator().manual_seed(seed)
        return cls(carried, params, sample_rate, max_grad_norm, rng)

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

    def note_clipped_records(self, per_sample: list[torch.Tensor], max_grad_norm: float) -> None:
        """DP: the records' part of this step's clipped sum at the watched coordinates, from
        each parameter's per-sample rows [n, *shape], clipped with Opacus's own factor."""
        if self.trace is None:
            return
        flat = [g.detach().reshape(len(g), -1) for g in per_sample]
        norms = torch.cat(flat, dim=1).norm(2, dim=1)
        factor = (max_grad_norm / (norms + _OPACUS_NORM_EPSILON)).clamp(max=1.0)
        self.records = factor.double().numpy() @ self._watched(flat)

    def note_batch_records(self, mean_gradients: list[torch.Tensor], rows: int) -> None:
        """Without DP: the records' part of this step's sum, their batch-mean gradients
        (before the canaries join) times the batch's ``rows``."""
        if self.trace is not None:
            self.records = rows * self._watched(g.reshape(1, -1) for g in mean_gradients)[0]

    def note_released(self, gradients: list[torch.Tensor], divisor: float) -> None:
        """Record the step: the gradient the optimizer reads now, at the watched coordinates,
        and ``divisor`` (B under DP, the batch's rows without) that scales it to a sum."""
        if self.trace is None:
            return
        if self.records is None:
            raise RuntimeError("the records' part must be noted before each released step")
        released = self._watched(g.reshape(1, -1) for g in gradients)[0]
        self.trace.add_step(self.institution, released, self.records, divisor)
        self.records = None

    def _watched(self, flat) -> np.ndarray:
        """[rows, watched] float64: the adapter-vector columns of the watched coordinates."""
        values = torch.cat([f.detach().to("cpu", torch.float64) for f in flat], dim=1)
        return values[:, self.watched].numpy()
