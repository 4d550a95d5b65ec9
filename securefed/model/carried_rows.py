"""Input canaries as records of one institution's training set, kept out of what it reports.

A carrier trains on ``CarriedRows``: its records followed by its included input canaries,
each row flagged (record or canary) and padded to one width so that records and canaries
collate into one batch (``trim_padding`` cuts every batch back to its longest row, so the
padding never reaches the model). Shuffling, Poisson sampling, clipping and noise see one
dataset; nothing tells a canary from a record on that path. ``RecordLoss`` is the batch-mean
loss that trains (over every row, as ``batch_loss``) and tallies the loss and count of the
records alone, which is what the institution reports.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

ExampleLosses = Callable[[object, tuple], torch.Tensor]  # (bundle, 4-tensor batch) -> [B]


class CarriedRows(Dataset):
    """``records`` then ``canaries``; each row ``(x, mask, answer_ids, label, is_record)``."""

    def __init__(self, records: Dataset, canaries: Dataset) -> None:
        self.records, self.canaries = records, canaries
        self.width = max(int(records[0][0].shape[0]), int(canaries[0][0].shape[0]))

    def __len__(self) -> int:
        return len(self.records) + len(self.canaries)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        is_record = index < len(self.records)
        x, mask, answer_ids, label = (
            self.records[index] if is_record else self.canaries[index - len(self.records)]
        )
        extra = self.width - x.shape[0]  # right-pad positions (dim 0 of tokens or activations)
        if extra:
            x = F.pad(x, (0, 0) * (x.dim() - 1) + (0, extra))
            mask = F.pad(mask, (0, extra))
        return x, mask, answer_ids, label, torch.tensor(is_record)


class RecordLoss:
    """The batch-mean loss of ``CarriedRows`` batches, tallying the records' losses alone;
    ``example_losses`` gives the per-row losses of a batch without its flag."""

    def __init__(self, example_losses: ExampleLosses) -> None:
        self.example_losses = example_losses
        self.total, self.records = 0.0, 0

    def __call__(self, bundle: object, batch: tuple) -> torch.Tensor:
        *rows, is_record = batch
        losses = self.example_losses(bundle, tuple(rows))  # [B]
        real = is_record.to(losses.device)
        self.total += float(losses.detach()[real].sum())
        self.records += int(real.sum())
        return losses.mean()  # what trains: every row of the batch, canaries included

    @property
    def mean(self) -> float:
        return self.total / self.records if self.records else math.nan
