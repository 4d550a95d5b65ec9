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

The candidates run in forked one-thread workers, one per core (CPU), as the baselines do.
The choice is written to ``tuning.json`` before round 0, one of the run's setup files (hashed
into state.json and every round's record), so a resumed run continues with the same rates.
"""

from __future__ import annotations

import dataclasses
import multiprocessing

import numpy as np
from torch.utils.data import Subset

from securefed.run.baselines import RUNNERS
from securefed.run.federation import fedavg_weight, sample_clients
from securefed.run.parallel_baselines import one_thread, usable_cores
from securefed.run.progress import Progress
from securefed.run.records import EvalMetrics
from securefed.run.server_optimizer import initial_state, server_step
from securefed.run.setup import RunSetup, client_update, resolve_device
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
    jobs = [(arm, lr) for arm in tuned_arms(setup) for lr in grid]
    accuracy = dict(zip(jobs, _run_candidates(held_out, jobs), strict=True))
    arms: dict[str, dict] = {}
    for arm in tuned_arms(setup):
        scores = [accuracy[arm, lr] for lr in grid]
        for lr, score in zip(grid, scores, strict=True):
            progress.log(f"tuning {arm}: lr {lr:g} -> validation accuracy {score:.3f}")
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


_HELD_OUT: RunSetup | None = None  # what a forked candidate worker inherits


def _candidate(job: tuple[str, float]) -> float:
    """One arm at one rate on the validation setup: its pooled validation accuracy."""
    assert _HELD_OUT is not None, "candidate run without a validation setup"
    arm, lr = job
    candidate, quiet = _HELD_OUT.with_lr(lr), Progress(enabled=False)
    if arm == FEDERATED:
        metrics = federated_candidate(candidate, quiet)
    else:
        metrics = RUNNERS[arm](candidate, quiet)
    return float(metrics["pooled"]["accuracy"])


def _run_candidates(held_out: RunSetup, jobs: list[tuple[str, float]]) -> list[float]:
    """Every candidate's accuracy: in forked one-thread workers, one per core, on a CPU with
    several (as the baselines run, ``parallel_baselines``); else one after the other here.
    Each candidate is seeded on its own, so the order and the process do not matter."""
    global _HELD_OUT
    _HELD_OUT = held_out
    try:
        cores = usable_cores()
        if resolve_device(held_out.cfg.training.device) != "cpu" or cores < 2:
            return [_candidate(job) for job in jobs]
        context = multiprocessing.get_context("fork")
        with context.Pool(min(cores, len(jobs)), initializer=one_thread) as pool:
            return pool.map(_candidate, jobs, chunksize=1)
    finally:
        _HELD_OUT = None


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
