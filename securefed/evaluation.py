"""Evaluation of one adapter on every client's test split and on the pooled test set."""

from __future__ import annotations

import numpy as np

from securefed.run_setup import RunSetup
from securefed.training import labels_of, predict


def evaluate_global(setup: RunSetup) -> dict:
    """Metrics of the model's current adapter: ``{"pooled": {...}, "clients": {"0": {...}}}``.

    Predicts the pooled test set once and slices it per client (the pooled set is the
    concatenation of the client test splits, in client order).
    """
    preds = predict(setup.scorer, setup.pooled_test, setup.cfg.training.eval_batch_size)
    labels = labels_of(setup.pooled_test)
    out = {"pooled": setup.task.metrics(labels, preds), "clients": {}}
    start = 0
    for cid, test in enumerate(setup.client_test):
        stop = start + len(test)
        out["clients"][str(cid)] = setup.task.metrics(labels[start:stop], preds[start:stop])
        start = stop
    return out


def mean_metrics(per_client: dict[str, dict]) -> dict:
    """Unweighted mean of each metric over clients."""
    keys = next(iter(per_client.values())).keys() if per_client else []
    return {k: float(np.mean([m[k] for m in per_client.values()])) for k in keys}
