"""Optimizers for noisy gradients: what ``training.dp_optimizer`` selects under DP-SGD.

- ``adamw``: torch AdamW, as without DP. Adam divides every coordinate by the root of its
  second moment, which under DP is dominated by the noise variance (sigma C / B)^2: where the
  noise dominates, each coordinate takes a full-size random step (benchmarks/
  dp_signal_to_noise.py). Kept as the default so that existing runs do not change.
- ``sgd``: SGD with ``training.dp_momentum``: noise enters the update linearly and averages
  out over steps; the classic DP-SGD recipe.
- ``adam_bc``: DP-AdamBC (Tang et al., AAAI 2024): Adam whose second-moment estimate has the
  known noise variance Phi = (sigma C / B)^2 subtracted, v_corr = max(v_hat - Phi, gamma), so
  that the preconditioner sees the gradient's own scale. Post-processing of the noised
  gradient: no privacy cost. Written here because torch ships no such optimizer.

These run on the gradient Opacus leaves in ``p.grad`` (clipped, summed, noised, divided by
the expected batch B).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import torch
from torch import nn

from securefed.errors import AdapterCorrupted

DPOptimizerName = Literal["adamw", "sgd", "adam_bc"]


class DPAdamBC(torch.optim.Optimizer):
    """Adam with the DP noise variance removed from the second moment (Tang et al. 2024)."""

    def __init__(
        self,
        params: Iterable[torch.nn.Parameter],
        *,
        lr: float,
        noise_variance: float,
        betas: tuple[float, float] = (0.9, 0.999),
        gamma: float = 5e-8,
        weight_decay: float = 0.0,
    ) -> None:
        # gamma floors the corrected second moment where the noise estimate exceeds it; a small
        # absolute floor (5e-8, as in a public implementation of arXiv 2312.14334): tune dp_lr
        # with it, since noise-dominated coordinates then take large steps.
        if noise_variance < 0 or gamma <= 0:
            raise ValueError(f"need noise_variance >= 0, gamma > 0; got {noise_variance}, {gamma}")
        defaults = {"lr": lr, "betas": betas, "gamma": gamma, "weight_decay": weight_decay}
        defaults["noise_variance"] = noise_variance
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001, ANN201 - torch's Optimizer signature
        loss = None if closure is None else closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["m"] = torch.zeros_like(p)
                    state["v"] = torch.zeros_like(p)
                state["step"] += 1
                t, m, v = state["step"], state["m"], state["v"]
                m.mul_(beta1).add_(p.grad, alpha=1 - beta1)
                v.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                m_hat = m / (1 - beta1**t)
                v_hat = v / (1 - beta2**t)
                denom = (v_hat - group["noise_variance"]).clamp_min(group["gamma"]).sqrt_()
                if group["weight_decay"]:
                    p.mul_(1 - group["lr"] * group["weight_decay"])
                p.addcdiv_(m_hat, denom, value=-group["lr"])
        return loss


def make_dp_optimizer(
    params: list[torch.nn.Parameter],
    name: DPOptimizerName,
    *,
    lr: float,
    weight_decay: float,
    momentum: float,
    noise_multiplier: float,
    max_grad_norm: float,
    expected_batch: float,
) -> torch.optim.Optimizer:
    """The optimizer ``training.dp_optimizer`` names, over the adapter's parameters."""
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam_bc":
        phi = (noise_multiplier * max_grad_norm / expected_batch) ** 2
        return DPAdamBC(params, lr=lr, noise_variance=phi, weight_decay=weight_decay)
    raise ValueError(f"training.dp_optimizer {name!r}: allowed adamw | sgd | adam_bc")


def check_step_moved_adapter(
    before: list[torch.Tensor], after: list[nn.Parameter], names: dict[int, str]
) -> None:
    """Raise ``AdapterCorrupted`` unless every parameter is finite and differs from ``before``.

    A noised step moves every trainable tensor (the noise alone does); one that stays put or
    turns non-finite was corrupted, e.g. by Opacus issue 820 (LoRA weights under DP).
    """
    for old, p in zip(before, after, strict=True):
        name = names.get(id(p), f"<unnamed {tuple(p.shape)}>")
        if not bool(torch.isfinite(p).all()):
            raise AdapterCorrupted(
                f"DP-SGD step left adapter parameter {name} non-finite (NaN or inf); "
                "stopping rather than training on corrupted weights (see Opacus issue 820)"
            )
        if torch.equal(old, p.detach()):
            raise AdapterCorrupted(
                f"DP-SGD step did not change adapter parameter {name}, although noise was "
                "added to it: the update was lost (see Opacus issue 820)"
            )
