"""Evaluation of one adapter on every client's test split and on the pooled test set."""

from __future__ import annotations

import numpy as np
from torch.utils.data import Subset

from securefed.model.adapters import AdapterModel
from securefed.model.training import labels_of, predict
from securefed.tasks import Task


def evaluate_splits(
    bundle: AdapterModel,
    task: Task,
    pooled_test: Subset,
    client_test_sizes: list[int],
    batch_size: int,
) -> dict:
    """Metrics of the model's current adapter: ``{"pooled": {...}, "clients": {"0": {...}}}``.

    Predicts the pooled test set once and slices it per client: ``pooled_test`` is the
    concatenation of the client test splits, in client order, of ``client_test_sizes``.
    """
    preds = predict(bundle, pooled_test, batch_size)
    labels = labels_of(pooled_test)
    out = {"pooled": task.metrics(labels, preds), "clients": {}}
    start = 0
    for cid, size in enumerate(client_test_sizes):
        stop = start + size
        out["clients"][str(cid)] = task.metrics(labels[start:stop], preds[start:stop])
        start = stop
    return out


def mean_metrics(per_client: dict[str, dict]) -> dict:
    """Unweighted mean of each metric over clients."""
    keys = next(iter(per_client.values())).keys() if per_client else []
    return {k: float(np.mean([m[k] for m in per_client.values()])) for k in keys}
