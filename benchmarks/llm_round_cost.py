"""What a step of ``configs/llm.yaml``'s federated round and baselines costs against the plain loop.

Builds the run's setup once (``build_setup``: the backbone, the frozen prefix's cached
activations), then, in this one process and in alternation, CPU-times:

- ``plain``: ``train_local`` on one institution's shard, the loop ``llm_recipe_probe`` times;
- ``round``: the in-process transport's ``train_and_aggregate`` over every institution (their
  local training, then secure aggregation of the deltas), per local step;
- ``centralized`` and ``isolated``: the baseline runners (``securefed.run.baselines``), per step,
  their evaluations included;
- ``evaluate``: one evaluation of the global adapter on every institution's test split.

Prints each one's CPU seconds per step and its ratio to ``plain`` measured in the same run, and
the setup's CPU seconds per record (the frozen prefix). A shard of 80 records keeps the setup
short; a step's cost depends on the batch, not on the shard's size.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/llm_round_cost.py --steps 4 --repeats 2
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from securefed.config import load_config
from securefed.model.training import train_local
from securefed.run.baselines import run_centralized, run_isolated
from securefed.run.inprocess import InProcessTransport
from securefed.run.progress import Progress
from securefed.run.setup import build_setup
from securefed.run.simulate import client_privacy


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="configs/llm.yaml")
    ap.add_argument("--examples", type=int, default=80)
    ap.add_argument("--steps", type=int, default=4, help="local steps per institution")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--set", action="append", default=[], help="a config override, as simulate's")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = load_config(
        args.config,
        [
            f"task.synthetic.num_examples={args.examples}",
            "training.rounds=1",
            f"training.local_steps={args.steps}",
            *args.set,
        ],
    )
    t0 = time.process_time()
    setup = build_setup(cfg)
    print(f"setup (backbone, prefix cache): {time.process_time() - t0:.1f} CPU-s "
          f"for {len(setup.data)} records", flush=True)  # fmt: skip
    quiet = Progress(enabled=False)
    clients = list(range(setup.num_clients))
    t = cfg.training

    def plain() -> int:
        generator = torch.Generator().manual_seed(0)
        train_local(setup.scorer, setup.client_train[0], steps=args.steps * len(clients),
                    batch_size=t.batch_size, lr=t.lr, weight_decay=t.weight_decay,
                    generator=generator)  # fmt: skip
        return args.steps * len(clients)

    def round_() -> int:
        transport = InProcessTransport(setup, client_privacy(setup), quiet)
        transport.train_and_aggregate(0, clients, setup.initial_vector)
        return args.steps * len(clients)

    def centralized() -> int:
        return int(run_centralized(setup, quiet)["steps"])

    def isolated() -> int:
        return sum(int(c["steps"]) for c in run_isolated(setup, quiet)["clients"].values())

    def evaluate() -> int:
        setup.evaluate(setup.initial_vector)
        return 1

    paths = {"plain": plain, "round": round_, "centralized": centralized,
             "isolated": isolated, "evaluate": evaluate}  # fmt: skip
    per_step: dict[str, list[float]] = {name: [] for name in paths}
    plain()  # warm-up, untimed
    for repeat in range(args.repeats):
        for name, path in paths.items():
            t0 = time.process_time()
            steps = path()
            per_step[name].append((time.process_time() - t0) / steps)
            print(f"repeat {repeat} {name}: {per_step[name][-1]:.3f} CPU-s per step", flush=True)
    base = float(np.median(per_step["plain"]))
    for name, values in per_step.items():
        unit = "per evaluation" if name == "evaluate" else "per step"
        print(f"{name:<12} {np.median(values):.3f} CPU-s {unit} (median of {len(values)}), "
              f"{np.median(values) / base:.2f}x plain")  # fmt: skip


if __name__ == "__main__":
    main()
