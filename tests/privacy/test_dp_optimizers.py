"""The DP optimizers: DP-AdamBC is Adam minus the noise variance; the config picks the optimizer."""

from __future__ import annotations

import pytest
import torch

from securefed.config import load_config
from securefed.errors import ConfigError
from securefed.privacy.dp_optimizers import DPAdamBC, make_dp_optimizer


def _run(optimizer_for, grads: list[torch.Tensor]) -> torch.Tensor:
    p = torch.nn.Parameter(torch.zeros(grads[0].shape, dtype=torch.float64))
    opt = optimizer_for([p])
    for g in grads:
        p.grad = g.clone()
        opt.step()
    return p.detach()


def test_without_noise_variance_adam_bc_is_adam():
    g = torch.Generator().manual_seed(0)
    grads = [torch.randn(50, generator=g, dtype=torch.float64) for _ in range(20)]
    bc = _run(lambda ps: DPAdamBC(ps, lr=0.01, noise_variance=0.0, gamma=1e-300), grads)
    adam = _run(lambda ps: torch.optim.Adam(ps, lr=0.01, eps=0.0), grads)
    torch.testing.assert_close(bc, adam)


def test_noise_variance_is_removed_from_the_second_moment():
    """Signal 1 plus noise of std 3: Adam's second moment estimates 1 + 9, AdamBC's corrected
    one (v_hat - Phi) estimates the signal's 1; and a noise-free coordinate steps like Adam."""
    g = torch.Generator().manual_seed(1)
    steps, d, std = 400, 2000, 3.0
    p = torch.nn.Parameter(torch.zeros(d, dtype=torch.float64))
    opt = DPAdamBC([p], lr=1e-3, noise_variance=std**2)
    for _ in range(steps):
        p.grad = 1.0 + std * torch.randn(d, generator=g, dtype=torch.float64)
        opt.step()
    state = opt.state[p]
    v_hat = state["v"] / (1 - 0.999**steps)
    assert float(v_hat.mean()) == pytest.approx(10.0, rel=0.05)  # what Adam divides by
    assert float((v_hat - std**2).mean()) == pytest.approx(1.0, abs=0.3)  # what AdamBC uses


def test_make_dp_optimizer_builds_each_choice():
    params = [torch.nn.Parameter(torch.zeros(3))]
    kw = dict(
        lr=0.1,
        weight_decay=0.0,
        momentum=0.5,
        noise_multiplier=2.0,
        max_grad_norm=1.0,
        expected_batch=4.0,
    )
    assert isinstance(make_dp_optimizer(params, "adamw", **kw), torch.optim.AdamW)
    sgd = make_dp_optimizer(params, "sgd", **kw)
    assert isinstance(sgd, torch.optim.SGD) and sgd.param_groups[0]["momentum"] == 0.5
    bc = make_dp_optimizer(params, "adam_bc", **kw)
    assert bc.param_groups[0]["noise_variance"] == pytest.approx((2.0 * 1.0 / 4.0) ** 2)
    with pytest.raises(ValueError, match="dp_optimizer"):
        make_dp_optimizer(params, "lion", **kw)


def test_config_validates_the_dp_recipe_keys():
    cfg = load_config(overrides=["training.dp_optimizer=sgd", "training.dp_lr=0.5"])
    assert (cfg.training.dp_optimizer, cfg.training.dp_lr) == ("sgd", 0.5)
    with pytest.raises(ConfigError, match="training.dp_optimizer"):
        load_config(overrides=["training.dp_optimizer=lion"])
    with pytest.raises(ConfigError, match="training.dp_lr"):
        load_config(overrides=["training.dp_lr=0"])
    with pytest.raises(ConfigError, match="noise_source"):
        load_config(overrides=["privacy.dp.secure_mode=true"])
