"""Where the default run's time goes, before and after top-N adapters over cached activations.

Measures, in this one process and single-threaded (CPU seconds, so a loaded machine inflates
both sides alike), the unit costs of the embedded default under the old settings (adapter on
all six layers, every step through the whole backbone) and under the current default (adapter
on the top layers, prefix activations computed once): building the setup, one local training
step, one evaluation of the pooled test set, one round of secure aggregation. It multiplies
them by the counts the default performs (its rounds, its clients' steps, the baselines' equal
budget, its evaluations) and prints the breakdown side by side with the ratios.

The "quiet wall" estimate divides the CPU seconds by the processes that run at once: the old
default ran everything one after another; the current one trains the two baselines in forked
workers while the federation runs (``securefed.parallel_baselines``), 3 processes on 2 cores.

    python benchmarks/default_profile.py            # unit costs, about a minute of CPU
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import torch

from securefed.config import load_config
from securefed.privacy.plan import LocalStats
from securefed.run.aggregation import aggregate_round
from securefed.run.baselines import baseline_steps
from securefed.run.progress import Progress
from securefed.run.setup import build_setup

BEFORE = [  # the embedded default as it was before issue 13
    "model.adapter_layers=all",
    "model.target_modules=null",
    "model.max_length=96",
    "training.rounds=5",
    "training.local_epochs=1.0",
]
AFTER: list[str] = []  # the embedded default now
CORES = 2


def _cpu(fn, repeat: int = 1) -> float:
    start = time.process_time()
    for _ in range(repeat):
        fn()
    return (time.process_time() - start) / repeat


def unit_costs(overrides: list[str], probe_steps: int) -> dict:
    """CPU seconds of each unit of work, and how many of each the default performs."""
    cfg = load_config(overrides=overrides)
    t = cfg.training
    setup_s = time.process_time()
    setup = build_setup(cfg)
    setup_s = time.process_time() - setup_s
    off = Progress(enabled=False)
    client = max(range(setup.num_clients), key=lambda c: len(setup.client_train[c]))
    step_s = _cpu(
        lambda: setup.train_from(
            setup.initial_vector,
            setup.client_train[client],
            steps=probe_steps,
            seed_parts=("probe",),
            dp=None,
            progress=off,
            label="probe",
        )
    ) / probe_steps  # fmt: skip
    eval_s = _cpu(lambda: setup.evaluate_current(), repeat=2)
    d = setup.bundle.spec.size
    rng = np.random.default_rng(0)
    updates = {
        c: (rng.normal(0, 1e-3, d).astype(np.float32), LocalStats(1, 1, 0.5))
        for c in range(t.clients_per_round)
    }
    weights = {c: 1.0 for c in updates}
    secagg_s = _cpu(
        lambda: aggregate_round(cfg, 0, updates, weights, setup.initial_vector, "0" * 64)
    )
    steps_per_round = sum(setup.local_steps(c) for c in range(setup.num_clients))
    share = t.clients_per_round / setup.num_clients
    fed_steps = t.rounds * steps_per_round * share
    base = sum(baseline_steps(setup))
    phases = {
        "setup (load, encode, cache)": setup_s,
        "federated: local training": fed_steps * step_s,
        "federated: secure aggregation": t.rounds * secagg_s,
        "federated: evaluation": t.rounds * eval_s,
        "centralized": base * step_s + eval_s,
        "isolated": base * step_s + setup.num_clients * eval_s,
    }
    return {
        "phases": phases,
        "step_s": step_s,
        "eval_s": eval_s,
        "steps": {"federated": fed_steps, "centralized": base, "isolated": base},
        "trainable": d,
        "width": int(setup.data.tensors[1].shape[1]),
    }


def quiet_wall(phases: dict, parallel: bool) -> float:
    """Estimated wall seconds on an otherwise idle 2-core machine."""
    total = sum(phases.values())
    if not parallel:
        return total
    setup = phases["setup (load, encode, cache)"]
    federated = sum(v for k, v in phases.items() if k.startswith("federated"))
    longest = max(federated, phases["centralized"], phases["isolated"])
    return setup + max(longest, (total - setup) / CORES)


def main() -> None:
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    before = unit_costs(BEFORE, probe_steps=6)
    after = unit_costs(AFTER, probe_steps=12)
    print(f"{'phase (CPU s, 1 thread)':<32}{'before':>10}{'after':>10}{'after/before':>14}")
    for name in before["phases"]:
        b, a = before["phases"][name], after["phases"][name]
        print(f"{name:<32}{b:>10.1f}{a:>10.1f}{a / b:>14.2f}")
    tb, ta = sum(before["phases"].values()), sum(after["phases"].values())
    print(f"{'total CPU':<32}{tb:>10.1f}{ta:>10.1f}{ta / tb:>14.2f}")
    wb, wa = quiet_wall(before["phases"], False), quiet_wall(after["phases"], True)
    print(f"{'quiet wall estimate (2 cores)':<32}{wb:>10.1f}{wa:>10.1f}{wa / wb:>14.2f}")
    for key in ("step_s", "eval_s", "trainable", "width"):
        print(f"{key:<32}{before[key]:>10.4g}{after[key]:>10.4g}")
    print("training steps", {k: round(v) for k, v in after["steps"].items()})


if __name__ == "__main__":
    main()
