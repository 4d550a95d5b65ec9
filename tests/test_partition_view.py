"""What simulate prints of the shards before round 0 (run.partition_view): every count with DP
off; with DP on, none computed from the training records."""

from __future__ import annotations

import numpy as np

from securefed.config import load_config
from securefed.run.partition_view import partition_lines
from securefed.tasks.partition import partition


def _summary(withhold: bool) -> dict:
    cfg = load_config(overrides=["partition.alpha=0.1"])
    labels = np.random.default_rng(0).integers(0, 3, size=400)
    shards = partition(labels, cfg.partition, seed=0)
    return shards.summary(["neg", "neu", "pos"], withhold_training_counts=withhold)


def test_the_histograms_are_shown_with_dp_off():
    summary = _summary(withhold=False)
    lines = partition_lines(summary)
    assert lines[0].startswith("partition: label skew, Dirichlet alpha 0.1 (label_skew ")
    for c, line in zip(summary["clients"], lines[1:], strict=True):
        counts = ", ".join(f"{k} {v}" for k, v in c["train_labels"].items())
        assert f"train {c['train_size']} ({counts})" in line


def test_training_counts_are_withheld_with_dp_on():
    shown = "\n".join(partition_lines(_summary(withhold=True)))
    assert "withheld" in shown and "train " not in shown and "label_skew" not in shown
    assert "test " in shown


def test_the_histograms_survive_the_console():  # rich reads [..] as markup and drops it
    from rich.console import Console

    console = Console(record=True, width=200)
    for line in partition_lines(_summary(withhold=False)):
        console.log(line)
    assert "neg " in console.export_text()
