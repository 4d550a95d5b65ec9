"""One packed row per multiple-choice record against its C whole rows, on SmolLM2-135M-Instruct.

A training step (forward and backward of the cross-entropy over the option scores) on the
trained top layers, cached prefix activations as input, both paths on the same batches in
alternation, same process; prints each path's CPU seconds per step and the ratio, and the
largest score difference between the paths. ``synthetic_medqa`` records as ``configs/llm.yaml``
builds them (difficulty 0.3, seed 0).

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/packed_options_bench.py --top 2 --batch 8
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from securefed.config import ModelConfig, TaskConfig
from securefed.model.adapters import build_adapter_model
from securefed.model.option_rows import option_scores
from securefed.model.prefix_cache import scorer_and_rows
from securefed.model.training import choice_scores, encode_examples, trim_padding
from securefed.tasks import get_task


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--top", type=int, default=2)
    ap.add_argument("--targets", default="q_proj,k_proj,v_proj,o_proj")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=4, help="timed steps per path")
    args = ap.parse_args()
    torch.set_num_threads(1)
    task = get_task("synthetic_medqa")
    records = args.batch * (args.steps + 1)
    knobs = {"num_examples": records, "difficulty": 0.3}
    examples = task.load(TaskConfig(name=task.name, synthetic=knobs), seed=0)[:records]
    cfg = ModelConfig(backbone="embedded:smollm2-135m-instruct", kind="causal",
                      target_modules=args.targets.split(","), adapter_layers=f"top-{args.top}",
                      max_length=192)  # fmt: skip
    bundle = build_adapter_model(cfg, num_labels=4, seed=0, per_option=True)
    rows = encode_examples(examples, task, bundle, max_length=192)
    scorer, cached = scorer_and_rows(bundle, rows, cfg.adapter_layers, batch_size=32)
    acts, mask, targets, labels = cached.tensors
    paths = {"whole rows": option_scores, "packed": choice_scores}
    spent = dict.fromkeys(paths, 0.0)
    worst = 0.0
    scorer.model.train()
    for step in range(args.steps + 1):  # step 0 warms both paths up, untimed
        batch = slice(step * args.batch, (step + 1) * args.batch)
        inputs, m = trim_padding(acts[batch], mask[batch])
        scores = {}
        for name, score in paths.items():
            t0 = time.process_time()
            out = score(scorer, inputs, m, targets[batch])
            F.cross_entropy(out, labels[batch]).backward()
            if step:
                spent[name] += time.process_time() - t0
            scorer.model.zero_grad(set_to_none=True)
            scores[name] = out.detach()
        worst = max(worst, float((scores["packed"] - scores["whole rows"]).abs().max()))
    for name, total in spent.items():
        print(f"{name}: {total / args.steps:.2f} CPU-s per step of {args.batch} records")
    print(f"speed-up (whole rows / packed): {spent['whole rows'] / spent['packed']:.2f}x")
    print(f"largest score difference: {worst:.2e} nats")


if __name__ == "__main__":
    main()
