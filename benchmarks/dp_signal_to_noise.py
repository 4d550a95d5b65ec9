"""Why DP-SGD learns nothing at the embedded default's scale, and what would change it.

Trains one model on the embedded default's pooled training set (centralized: the best case
for DP) for the same number of steps under each condition, then scores the pooled test set:

- ``plain``: AdamW on shuffled batches (the non-private loop);
- ``clip only``: securefed's DP-SGD path with negligible noise (sigma 1e-6): Poisson
  batches and per-example clipping, no privacy. Isolates what clipping costs;
- ``eps E, batch B``: DP-SGD with sigma calibrated so that these steps spend epsilon E at
  the default delta, for each expected batch size B asked for.

For each DP row it prints the per-coordinate noise std of the averaged gradient, sigma*C/B,
against C/sqrt(d), the per-coordinate size of a clipped gradient spread evenly over the d
trainable parameters. AdamW rescales every coordinate by its running RMS, so wherever the
noise dominates, the coordinate takes a full-size random step each iteration: a ratio well
above 1 means the adapter random-walks. Accuracy is reported beside the majority-class floor.
Usage::

    python benchmarks/dp_signal_to_noise.py [--steps 60] [--epsilon 8] [--batches 16 64]
                                            [--threads 1]
"""

from __future__ import annotations

import argparse
import math
import time
import warnings

import numpy as np
import torch

from securefed.config import load_config
from securefed.model.adapters import set_vector
from securefed.model.training import labels_of, predict, train_local
from securefed.privacy.accounting import calibrate_noise_multiplier, default_delta
from securefed.privacy.dp_sampling import sample_rate_for
from securefed.privacy.plan import DPPlan
from securefed.run.setup import build_setup


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--epsilon", type=float, default=8.0)
    parser.add_argument("--batches", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--clip", type=float, default=1.0, help="max_grad_norm C")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--set", action="append", default=[], help="config override")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message="DP-SGD without secure_mode")

    cfg = load_config(overrides=args.set)
    setup = build_setup(cfg)
    train, test = setup.pooled_train, setup.pooled_test
    labels = labels_of(test)
    majority = float(np.bincount(labels).max() / len(labels))
    d = setup.bundle.spec.size
    delta = default_delta(len(train))
    print(
        f"{cfg.task.name}, {cfg.model.adapter} on {cfg.model.backbone}: {len(train)} pooled "
        f"training records, d = {d} trainable parameters, {args.steps} steps, lr "
        f"{cfg.training.lr}, C = {args.clip}, delta = {delta:.2g}; majority-class floor "
        f"{majority:.3f}"
    )
    conditions: list[tuple[str, int, DPPlan | None]] = [
        ("plain", cfg.training.batch_size, None),
        ("clip only (sigma 1e-6)", cfg.training.batch_size, DPPlan(1e-6, args.clip)),
    ]
    for batch in args.batches:
        q = sample_rate_for(len(train), batch)
        sigma = calibrate_noise_multiplier(args.epsilon, delta, q, args.steps)
        conditions.append((f"eps {args.epsilon:g}, batch {batch}", batch, DPPlan(sigma, args.clip)))

    header = f"{'condition':<26}{'sigma':>8}{'noise/signal':>14}{'loss':>8}{'acc':>8}"
    print(header + f"{'acc - floor':>13}{'cpu s':>8}")
    for name, batch, plan in conditions:
        set_vector(setup.bundle.model, setup.initial_vector, setup.bundle.spec)
        start = time.process_time()
        stats = train_local(
            setup.bundle,
            train,
            steps=args.steps,
            batch_size=batch,
            lr=cfg.training.lr,
            weight_decay=cfg.training.weight_decay,
            generator=torch.Generator().manual_seed(cfg.seed),
            dp=plan,
        )
        accuracy = float((predict(setup.bundle, test, 64) == labels).mean())
        cpu = time.process_time() - start
        sigma = plan.noise_multiplier if plan else math.nan
        ratio = (sigma * args.clip / batch) / (args.clip / math.sqrt(d)) if plan else math.nan
        print(
            f"{name:<26}{sigma:>8.3g}{ratio:>14.3g}{stats.mean_loss:>8.3f}{accuracy:>8.3f}"
            f"{accuracy - majority:>+13.3f}{cpu:>8.0f}"
        )


if __name__ == "__main__":
    main()
