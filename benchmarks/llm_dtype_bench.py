"""``model.dtype`` float32 against bfloat16 on SmolLM2-135M-Instruct: the frozen prefix and a step.

Builds the backbone twice (float32, and bfloat16 with the same float32 adapter), caches the
frozen prefix of the same ``synthetic_medqa`` records for each (timed: CPU seconds per record),
then times training steps (forward and backward on one packed row per record, the top 2 layers,
LoRA on ``configs/llm.yaml``'s modules) on the same batches in alternation, same process.
Prints each dtype's CPU seconds, the ratios, and the largest score difference between them.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/llm_dtype_bench.py --batch 8 --steps 4
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from securefed.config import TaskConfig, load_config
from securefed.model.adapters import build_adapter_model
from securefed.model.prefix_cache import scorer_and_rows
from securefed.model.training import choice_scores, encode_examples, trim_padding
from securefed.tasks import get_task

DTYPES = ("float32", "bfloat16")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="configs/llm.yaml")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=4, help="timed steps per dtype")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = load_config(args.config)
    task = get_task(cfg.task.name)
    records = args.batch * (args.steps + 1)
    knobs = cfg.task.synthetic.model_copy(update={"num_examples": records})
    examples = task.load(TaskConfig(name=task.name, synthetic=knobs), seed=0)[:records]
    prefix_s, cached, scorers = {}, {}, {}
    for dtype in DTYPES:
        model = cfg.model.model_copy(update={"dtype": dtype})
        bundle = build_adapter_model(model, num_labels=task.num_choices, seed=0, per_option=True)
        rows = encode_examples(examples, task, bundle, model.max_length)
        t0 = time.process_time()
        scorers[dtype], cached[dtype] = scorer_and_rows(
            bundle, rows, model.adapter_layers, cfg.training.eval_batch_size
        )
        prefix_s[dtype] = (time.process_time() - t0) / records
        scorers[dtype].model.train()
    step_s = dict.fromkeys(DTYPES, 0.0)
    worst = 0.0
    for step in range(args.steps + 1):  # step 0 warms both up, untimed
        batch = slice(step * args.batch, (step + 1) * args.batch)
        scores = {}
        for dtype in DTYPES:
            acts, mask, targets, labels = cached[dtype].tensors
            inputs, m = trim_padding(acts[batch], mask[batch])
            t0 = time.process_time()
            out = choice_scores(scorers[dtype], inputs, m, targets[batch])
            F.cross_entropy(out, labels[batch]).backward()
            if step:
                step_s[dtype] += time.process_time() - t0
            scores[dtype] = out.detach()
        worst = max(worst, float((scores["float32"] - scores["bfloat16"]).abs().max()))
    for dtype in DTYPES:
        print(f"{dtype:<9} prefix {prefix_s[dtype]:.3f} CPU-s per record, "
              f"step {step_s[dtype] / args.steps:.3f} CPU-s")  # fmt: skip
    print(f"float32 / bfloat16: prefix {prefix_s['float32'] / prefix_s['bfloat16']:.2f}x, "
          f"step {step_s['float32'] / step_s['bfloat16']:.2f}x; "
          f"largest score difference {worst:.3f} nats")  # fmt: skip


if __name__ == "__main__":
    main()
