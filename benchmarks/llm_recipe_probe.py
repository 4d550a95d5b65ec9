"""Which adapter recipe makes SmolLM2-135M-Instruct learn ``synthetic_medqa``: a central probe.

Builds the frozen prefix's cached activations ONCE for ``--train`` + ``--test`` records
(difficulty 0.3, seed 0) through the shipped calls (``build_adapter_model``,
``encode_examples``, ``scorer_and_rows``; saved under ``--cache-dir`` for the next probe with
the same ``--top``), then trains centrally with ``train_local`` and prints held-out accuracy
every ``--eval-every`` steps. Each result is appended as one JSON line to ``--out``.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/llm_recipe_probe.py --top 2 \
        --targets q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj --lr 3e-3 --steps 200
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from pathlib import Path

import torch
from torch.utils.data import Subset, TensorDataset

from securefed.config import ModelConfig, TaskConfig
from securefed.model import training
from securefed.model.adapters import build_adapter_model
from securefed.model.packed_options import packed_option_scores
from securefed.model.prefix_cache import prefix_activations, suffix_view
from securefed.model.training import encode_examples, labels_of, predict, train_local
from securefed.tasks import accuracy, get_task

BACKBONE = "embedded:smollm2-135m-instruct"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--top", type=int, default=2)
    ap.add_argument("--targets", default="q_proj,k_proj,v_proj,o_proj")
    ap.add_argument("--adapter", default="lora")
    ap.add_argument("--r", type=int, default=8)
    ap.add_argument("--alpha", type=float, default=32.0)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--linear", action="store_true", help="linear decay to 0 over --steps")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--score", choices=["mean", "sum"], default="mean")
    ap.add_argument(
        "--dtype",
        choices=["float32", "bfloat16"],
        default="float32",
        help="model.dtype: the frozen weights' (the adapter stays float32)",
    )
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--eval-every", type=int, default=20)
    ap.add_argument("--train", type=int, default=640)
    ap.add_argument("--test", type=int, default=160)
    ap.add_argument("--cache-dir", default="/tmp/llm_probe_cache")
    ap.add_argument("--out", default="benchmarks/llm_recipe_probe.jsonl")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.score == "sum":  # the option's summed log-likelihood instead of its mean
        training.packed_option_scores = functools.partial(packed_option_scores, reduce="sum")
    targets = args.targets.split(",")
    task = get_task("synthetic_medqa")
    knobs = {"num_examples": args.train + args.test, "difficulty": 0.3}
    examples = task.load(TaskConfig(name=task.name, synthetic=knobs), seed=0)
    model = ModelConfig(backbone=BACKBONE, kind="causal", adapter=args.adapter,
                        target_modules=targets, adapter_layers=f"top-{args.top}",
                        lora_r=args.r, lora_alpha=args.alpha, max_length=192,
                        dtype=args.dtype)  # fmt: skip
    bundle = build_adapter_model(model, num_labels=4, seed=0, per_option=True)
    suffix = "" if args.dtype == "float32" else f"_{args.dtype}"
    cache = Path(args.cache_dir) / f"top{args.top}_{args.train}_{args.test}{suffix}.pt"
    start = time.process_time()
    if cache.exists():
        rows = TensorDataset(*torch.load(cache))
    else:
        tokens = encode_examples(examples, task, bundle, max_length=192)
        rows = prefix_activations(bundle, tokens, args.top, batch_size=64)
        cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save(rows.tensors, cache)
    print(f"prefix cache: {time.process_time() - start:.0f} CPU-s", flush=True)
    scorer = suffix_view(bundle, args.top)
    train = Subset(rows, range(args.train))
    test = Subset(rows, range(args.train, args.train + args.test))
    trainable = sum(p.numel() for p in bundle.model.parameters() if p.requires_grad)

    def held_out() -> float:
        return accuracy(labels_of(test), predict(scorer, test, batch_size=32))

    curve = [(0, held_out(), None)]
    print(f"step 0: held-out {curve[0][1]:.3f}", flush=True)
    gen = torch.Generator().manual_seed(0)
    train_cpu = 0.0
    done = 0
    while done < args.steps:
        k = min(args.eval_every, args.steps - done)
        span = (1 - done / args.steps, 1 - (done + k) / args.steps) if args.linear else None
        t0 = time.process_time()
        stats = train_local(scorer, train, steps=k, batch_size=args.batch, lr=args.lr,
                            weight_decay=0.0, generator=gen, lr_span=span)  # fmt: skip
        train_cpu += time.process_time() - t0
        done += k
        curve.append((done, held_out(), stats.mean_loss))
        print(f"step {done}: held-out {curve[-1][1]:.3f} loss {stats.mean_loss:.3f} "
              f"({train_cpu / done:.2f} CPU-s/step)", flush=True)  # fmt: skip
    record = {**vars(args), "trainable": trainable, "curve": curve,
              "train_cpu_s_per_step": train_cpu / done, "date": time.strftime("%F %T")}  # fmt: skip
    with open(args.out, "a") as fh:
        fh.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
