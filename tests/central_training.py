"""Train an adapter centrally on some records and score the rest, before and after: the loop the
multiple-choice learning tests share (the library's own encode, scorer, train and predict)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import Subset

from securefed.config import ModelConfig
from securefed.model.adapters import build_adapter_model
from securefed.model.prefix_cache import scorer_and_rows
from securefed.model.training import LocalStats, encode_examples, labels_of, predict, train_local
from securefed.tasks import accuracy


@dataclass(frozen=True)
class Learned:
    before: float  # held-out accuracy of the untrained adapter
    after: float
    stats: LocalStats


def train_and_score(
    examples, task, model: ModelConfig, *, train: int, max_length: int, steps: int, lr: float
) -> Learned:
    """Train on ``examples[:train]`` (batch 16, seed 0), score ``examples[train:]``."""
    bundle = build_adapter_model(model, num_labels=4, seed=0, per_option=True)
    rows = encode_examples(examples, task, bundle, max_length=max_length)
    scorer, rows = scorer_and_rows(bundle, rows, model.adapter_layers, batch_size=64)
    train_rows, test = Subset(rows, range(train)), Subset(rows, range(train, len(examples)))

    def held_out() -> float:
        return accuracy(labels_of(test), predict(scorer, test, batch_size=64))

    before = held_out()
    stats = train_local(scorer, train_rows, steps=steps, batch_size=16, lr=lr, weight_decay=0.0,
                        generator=torch.Generator().manual_seed(0))  # fmt: skip
    return Learned(before, held_out(), stats)
