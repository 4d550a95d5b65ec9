"""Learning rates chosen alike for every arm: one grid, one validation split, one metric.

With ``training.lr_grid`` set and no DP, each arm -- the federation and each configured
baseline (centralized, isolated) -- trains once per learning rate of the grid on the training
data *minus* a validation part carved from every institution's training shard
(``validation_fraction``, seeded), and takes the rate with the best pooled accuracy on those
validation parts (ties: the first in the grid). The test splits are never read. The run then
trains each arm at its own chosen rate on the whole training data.

The federation's candidates run its rounds exactly as configured (the same sampled clients,
batches, linear probing, FedProx and server optimizer), averaged in the clear: secure
aggregation changes the mean only by its quantization, and a tuning run releases nothing.

With DP (either mechanism) on, nothing is tuned: choosing a rate by the accuracy of models
trained on private records is itself a release the ledgers do not account (Papernot and
Steinke, ICLR 2022), so every arm keeps the configured rate and the record says why.

The choice is written to ``tuning.json`` before round 0, one of the run's setup files (hashed
into state.json and every round's record), so a resumed run continues with the same rates.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from torch.utils.data import Subset

from securefed.run.baselines import RUNNERS
from securefed.run.federation import fedavg_weight, sample_clients
from securefed.run.progress import Progress
from securefed.run.records import EvalMetrics
from securefed.run.server_optimizer import initial_state, server_step
from securefed.run.setup import RunSetup, client_update
from securefed.seeding import derived_seed

FEDERATED = "federated"
NOT_TUNED_UNDER_DP = (
    "not tuned: DP is on, and a rate chosen by the accuracy of models trained on private "
    "records would be a release outside the ledgers; every arm uses the configured rate"
)


def tuned_arms(setup: RunSetup) -> list[str]:
    """The arms that train: the federation and the configured trained baselines."""
    return [FEDERATED, *(b for b in setup.cfg.baselines if b in ("centralized", "isolated"))]


def choose_learning_rates(setup: RunSetup, progress: Progress) -> dict | None:
    """``tuning.json``'s content: each arm's rate and its validation accuracy per candidate;
    None when ``training.lr_grid`` is unset."""
    cfg = setup.cfg
    grid = cfg.training.lr_grid
    if grid is None:
        return None
    if cfg.privacy.any_mechanism:
        dp_lr = cfg.training.dp_lr if cfg.privacy.dp.enabled else None
        rate = dp_lr if dp_lr is not None else cfg.training.lr
        return {
            "grid": grid,
            "tuned": False,
            "reason": NOT_TUNED_UNDER_DP,
            "lr": {arm: rate for arm in tuned_arms(setup)},
        }
    held_out = validation_setup(setup)
    arms: dict[str, dict] = {}
    for arm in tuned_arms(setup):
        scores = []
        for lr in grid:
            candidate = held_out.with_lr(lr)
            if arm == FEDERATED:
                metrics = federated_candidate(candidate, Progress(enabled=False))
            else:
                metrics = RUNNERS[arm](candidate, Progress(enabled=False))
            scores.append(float(metrics["pooled"]["accuracy"]))
            progress.log(f"tuning {arm}: lr {lr:g} -> validation accuracy {scores[-1]:.3f}")
        chosen = grid[int(np.argmax(scores))]  # argmax: the first of equal scores
        arms[arm] = {
            "lr": chosen,
            "validation_accuracy": dict(zip(map(repr, grid), scores, strict=True)),
        }
    return {
        "grid": grid,
        "tuned": True,
        "validation_fraction": cfg.training.validation_fraction,
        "metric": "pooled accuracy on the validation parts of the training shards",
        "validation_records": sum(len(s) for s in held_out.client_test),
        "lr": {arm: a["lr"] for arm, a in arms.items()},
        "arms": arms,
    }


def validation_setup(setup: RunSetup) -> RunSetup:
    """``setup`` with each institution's training shard split (seeded) into what trains and a
    validation part, which takes the test splits' place; the test splits are not in it."""
    rng = np.random.default_rng(derived_seed(setup.cfg.seed, "validation"))
    fit, held = [], []
    for shard in setup.client_train:
        indices = np.asarray(shard.indices)
        order = rng.permutation(len(indices))
        n_val = max(1, round(setup.cfg.training.validation_fraction * len(indices)))
        held.append(indices[order[:n_val]])
        fit.append(indices[order[n_val:]])
    data = setup.data
    return dataclasses.replace(
        setup,
        canaries=None,  # the empirical audit's canaries belong to the run, not to tuning
        canary_rows=None,
        client_train=[Subset(data, f.tolist()) for f in fit],
        client_test=[Subset(data, h.tolist()) for h in held],
        pooled_train=Subset(data, np.concatenate(fit).tolist()),
        pooled_test=Subset(data, np.concatenate(held).tolist()),
    )


def federated_candidate(setup: RunSetup, progress: Progress) -> EvalMetrics:
    """The federation's rounds on ``setup``'s shards, averaged in the clear; its metrics on
    ``setup``'s test splits (the validation parts, from ``validation_setup``)."""
    cfg = setup.cfg
    vector = setup.initial_vector.copy()
    state = initial_state(cfg.training.server_optimizer, int(vector.shape[0]))
    largest = max(len(d) for d in setup.client_train)
    for r in range(cfg.training.rounds):
        total, weights = np.zeros(vector.shape, dtype=np.float64), 0.0
        for c in sample_clients(cfg, setup.num_clients, r):
            delta, _ = client_update(setup, c, vector, r, None, progress)
            weight = fedavg_weight(cfg, len(setup.client_train[c]), largest)
            total += weight * delta.astype(np.float64)
            weights += weight
        mean = (total / weights).astype(np.float32)
        vector, state = server_step(
            cfg.training.server_optimizer, cfg.training.server_lr, vector, mean, state
        )
    return setup.evaluate(vector)
