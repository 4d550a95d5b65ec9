"""FedProx's proximal term (model.training.add_proximal_term): its gradient is mu (w - w_start),
added after DP-SGD's per-sample clipping and noise, and only to the federation's clients."""

from __future__ import annotations

import torch
from opacus import GradSampleModule
from opacus.optimizers import DPOptimizer
from tiny_run import TINY

import securefed.model.training as training
from securefed.config import load_config
from securefed.run.simulate import simulate


def test_the_proximal_gradient_is_mu_times_the_distance_from_the_start():
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.5]))
    optimizer = torch.optim.SGD([w], lr=0.1)
    training.add_proximal_term(optimizer, [w], mu=0.5)
    with torch.no_grad():
        w += torch.tensor([1.0, 1.0, -1.0])  # moved away from where the round started
    w.grad = torch.zeros(3)
    optimizer.step()
    expected = torch.tensor([2.0, -1.0, -0.5]) - 0.1 * 0.5 * torch.tensor([1.0, 1.0, -1.0])
    assert torch.allclose(w.detach(), expected)


def test_under_dp_sgd_the_proximal_gradient_is_added_outside_clipping():
    """Per-sample clip 1e-6 and no noise: the records move the weights by at most lr * 1e-6,
    yet the step carries the whole proximal gradient: it was not clipped with them."""
    torch.manual_seed(0)
    model = GradSampleModule(torch.nn.Linear(3, 1, bias=False))
    (w,) = model.parameters()
    inner = torch.optim.SGD([w], lr=0.1)
    training.add_proximal_term(inner, [w], mu=2.0)
    optimizer = DPOptimizer(inner, noise_multiplier=0.0, max_grad_norm=1e-6, expected_batch_size=4)
    with torch.no_grad():
        w += 1.0  # one unit from the start in every coordinate
    before = w.detach().clone()
    optimizer.zero_grad()
    model(torch.randn(4, 3)).pow(2).sum().backward()
    optimizer.step()
    moved = before - w.detach()  # lr * (clipped mean gradient + mu * 1)
    assert torch.allclose(moved, torch.full_like(moved, 0.1 * 2.0), atol=1e-6)


def test_only_the_federation_clients_train_with_the_proximal_term(tmp_path, monkeypatch):
    calls: list[float] = []
    real = training.add_proximal_term

    def spy(optimizer, params, mu):
        calls.append(mu)
        real(optimizer, params, mu)

    monkeypatch.setattr(training, "add_proximal_term", spy)
    simulate(load_config(overrides=[*TINY, "training.proximal_mu=0.25"]), out=str(tmp_path / "r"))
    assert calls == [0.25] * 4  # 2 rounds x 2 clients
