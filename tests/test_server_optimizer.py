"""The server optimizers (run.server_optimizer): each equals an independent reference where
one exists, and the step taken on the secure sum equals the step on the plaintext mean."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_run import TINY

from securefed.config import load_config
from securefed.config_training import SERVER_OPTIMIZERS, ServerOptimizerConfig
from securefed.privacy.plan import LocalStats
from securefed.run.aggregation import aggregate_round
from securefed.run.server_optimizer import initial_state, server_step

D, ROUNDS, ETA = 6, 5, 0.1


def _deltas(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(scale=0.05, size=D).astype(np.float32) for _ in range(ROUNDS)]


def _run(cfg: ServerOptimizerConfig, deltas: list[np.ndarray], eta: float = ETA) -> np.ndarray:
    x, state = np.zeros(D, dtype=np.float32), initial_state(cfg, D)
    for delta in deltas:
        x, state = server_step(cfg, eta, x, delta, state)
    return x


def _torch(make, deltas: list[np.ndarray]) -> np.ndarray:
    """torch.optim on the pseudo-gradient -delta (the server descends on minus the update)."""
    x = torch.zeros(D, dtype=torch.float64, requires_grad=True)
    optimizer = make([x])
    for delta in deltas:
        x.grad = -torch.from_numpy(delta.astype(np.float64))
        optimizer.step()
    return x.detach().numpy()


def test_fedavgm_is_sgd_with_momentum_on_the_pseudo_gradient():
    cfg = ServerOptimizerConfig(name="fedavgm", momentum=0.8)
    expected = _torch(lambda p: torch.optim.SGD(p, lr=ETA, momentum=0.8), _deltas())
    np.testing.assert_allclose(_run(cfg, _deltas()), expected, rtol=1e-6, atol=1e-8)


def test_fedadagrad_without_first_moment_is_adagrad_from_tau_squared():
    cfg = ServerOptimizerConfig(name="fedadagrad", beta1=0.0, tau=1e-2)
    reference = lambda p: torch.optim.Adagrad(  # noqa: E731
        p, lr=ETA, initial_accumulator_value=1e-4, eps=1e-2
    )
    np.testing.assert_allclose(
        _run(cfg, _deltas()), _torch(reference, _deltas()), rtol=1e-6, atol=1e-8
    )


@pytest.mark.parametrize("name", ["fedadam", "fedyogi"])
def test_adaptive_steps_follow_reddi_algorithm_2(name):
    """Algorithm 2 of Reddi et al. (ICLR 2021) written out: no bias correction, tau outside
    the square root, v from tau^2."""
    b1, b2, tau = 0.9, 0.99, 1e-3
    cfg = ServerOptimizerConfig(name=name, beta1=b1, beta2=b2, tau=tau)
    x, m, v = np.zeros(D), np.zeros(D), np.full(D, tau**2)
    for delta in _deltas():
        d = delta.astype(np.float64)
        m = b1 * m + (1 - b1) * d
        if name == "fedadam":
            v = b2 * v + (1 - b2) * d**2
        else:
            v = v - (1 - b2) * d**2 * np.sign(v - d**2)
        x = x + ETA * m / (np.sqrt(v) + tau)
    np.testing.assert_allclose(_run(cfg, _deltas()), x, rtol=1e-6, atol=1e-8)


def test_fedavg_is_the_plain_server_step():
    deltas = _deltas()
    expected = np.zeros(D, dtype=np.float32)
    for delta in deltas:
        expected = (expected + 0.5 * delta).astype(np.float32)
    assert np.array_equal(_run(ServerOptimizerConfig(), deltas, eta=0.5), expected)


def test_the_optimizers_differ():  # the tests above cannot pass with one optimizer for all
    outs = [_run(ServerOptimizerConfig(name=n), _deltas()) for n in SERVER_OPTIMIZERS]
    assert len({o.tobytes() for o in outs}) == len(outs)


@pytest.mark.parametrize("name", SERVER_OPTIMIZERS)
def test_a_step_on_the_secure_sum_equals_the_step_on_the_plaintext_mean(name):
    """Three clients' deltas through the full secure-aggregation round, against the same
    deltas averaged in the clear. The deltas lie on the fixed-point grid (clip_norm chosen so
    that the scale is 2^16), so the masked sum decodes to the plaintext sum; the mean then
    differs only by the total weight's rounding (~1e-12 relative)."""
    scale = 2.0**16
    clip = (2**19 - 1) / scale  # secure_aggregation.bits 20: q_max / clip_norm = 2^16 exactly
    common = ["partition.num_clients=3", "training.clients_per_round=3"]
    secure = load_config(overrides=[*common, f"secure_aggregation.clip_norm={clip!r}"])
    plain = load_config(overrides=[*common, "secure_aggregation.enabled=false"])
    cfg = ServerOptimizerConfig(name=name)
    rng = np.random.default_rng(1)
    stats = LocalStats(steps=1, examples=8, mean_loss=0.5)
    weights = {0: 1.0, 1: 1.0, 2: 1.0}
    x_secure = x_plain = np.zeros(D, dtype=np.float32)
    state_secure, state_plain = initial_state(cfg, D), initial_state(cfg, D)
    for r in range(3):
        updates = {
            c: ((rng.integers(-3000, 3000, size=D) / scale).astype(np.float32), stats)
            for c in range(3)
        }
        mean_s = aggregate_round(secure, r, updates, weights, x_secure, "00" * 32).mean_delta
        mean_p = aggregate_round(plain, r, updates, weights, x_plain, "00" * 32).mean_delta
        exact = np.mean([u[0].astype(np.float64) for u in updates.values()], axis=0)
        np.testing.assert_allclose(mean_s, exact, rtol=1e-7, atol=1e-9)
        x_secure, state_secure = server_step(cfg, ETA, x_secure, mean_s, state_secure)
        x_plain, state_plain = server_step(cfg, ETA, x_plain, mean_p, state_plain)
        np.testing.assert_allclose(x_secure, x_plain, rtol=1e-6, atol=1e-9)
        for key in state_plain:
            np.testing.assert_allclose(state_secure[key], state_plain[key], rtol=1e-6, atol=1e-12)
    assert np.any(x_plain != 0)


def test_the_dp_ledger_is_the_same_whatever_the_server_optimizer_and_proximal_term(tmp_path):
    """Both act after the noise (the server on the released mean, FedProx on the noised
    gradient): the same run under FedAvg and under FedAdam with FedProx records the very same
    privacy events and epsilons, while its adapters differ."""
    import json

    from securefed.run.folder import RunFolder
    from securefed.run.simulate import simulate

    tiny = [*TINY, "privacy.dp.enabled=true", "privacy.dp.target_epsilon=8"]
    runs = {}
    for name, extra in {
        "fedavg": [],
        "fedadam_prox": ["training.server_optimizer.name=fedadam", "training.proximal_mu=0.1"],
    }.items():
        run_dir, results = simulate(load_config(overrides=tiny + extra), out=str(tmp_path / name))
        ledgers = json.loads((run_dir / "privacy/ledgers.json").read_text())
        final = RunFolder(run_dir).load_adapter("checkpoints/round-0001.safetensors")
        runs[name] = (ledgers, results["privacy"], final)
    (ledgers_a, report_a, final_a), (ledgers_b, report_b, final_b) = runs.values()
    assert ledgers_a == ledgers_b and report_a == report_b
    assert ledgers_a["ledgers"] and not np.array_equal(final_a, final_b)
