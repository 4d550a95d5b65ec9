"""The multiple-choice path learns: synthetic_medqa on the default encoder, a small config.

A claim, not digits: after 90 steps on 240 records, held-out accuracy well above chance (0.25)
and above the untrained model's. One 4-way head over the lettered prompt stayed at chance on
4,000 records (issue 32). Measured (seed 0, the same calls): 0.275 untrained, 0.31 after 30
steps, 0.36 after 60, 0.45 after 90, the loss from ln 4 to 1.19: a plateau, then learning.
``slow``: about 100 CPU-seconds.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import Subset

from securefed.config import ModelConfig, TaskConfig
from securefed.model.adapters import build_adapter_model
from securefed.model.prefix_cache import scorer_and_rows
from securefed.model.training import encode_examples, labels_of, predict, train_local
from securefed.tasks import accuracy, get_task

TRAIN, TEST = 240, 80


@pytest.mark.slow
def test_synthetic_medqa_learns_on_the_encoder():
    task = get_task("synthetic_medqa")
    knobs = {"num_examples": TRAIN + TEST, "difficulty": 0.0}
    examples = task.load(TaskConfig(name=task.name, synthetic=knobs), seed=0)
    model = ModelConfig(adapter_layers="top-2", target_modules=["query", "key", "value", "dense"])
    bundle = build_adapter_model(model, num_labels=4, seed=0, per_option=True)
    rows = encode_examples(examples, task, bundle, max_length=96)
    scorer, rows = scorer_and_rows(bundle, rows, model.adapter_layers, batch_size=64)
    train, test = Subset(rows, range(TRAIN)), Subset(rows, range(TRAIN, TRAIN + TEST))

    def held_out() -> float:
        return accuracy(labels_of(test), predict(scorer, test, batch_size=64))

    before, generator = held_out(), torch.Generator().manual_seed(0)
    for _ in range(3):  # as measured: three calls of 30 steps, one generator
        stats = train_local(scorer, train, steps=30, batch_size=16, lr=3e-3, weight_decay=0.0,
                            generator=generator)  # fmt: skip
    after = held_out()
    assert after >= 0.40 and after >= before + 0.1 and stats.mean_loss < 1.3, (before, after)
