"""Bit-for-bit repeatability: with secure aggregation and DP off, two runs are identical.

Covers the default's machinery on a tiny config: top-N adapters over cached prefix
activations, and the baselines trained in forked worker processes while the federation runs.
"""

from __future__ import annotations

import json

import numpy as np

from securefed.config import load_config
from securefed.run.folder import RunFolder
from securefed.run.simulate import simulate

TINY = [
    "task.synthetic.num_examples=96",
    "training.rounds=2",
    "training.local_steps=2",
    "training.batch_size=8",
    "model.max_length=32",
    "model.adapter_layers=top-2",
    "partition.num_clients=3",
    "training.clients_per_round=2",
    "secure_aggregation.enabled=false",
]
# measurements, not results; and the hashes over records that hold them
NOT_REPEATABLE = {"wall_s", "cpu_s", "timing", "energy", "record_hash", "prev_hash"}


def _strip(value):
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in NOT_REPEATABLE}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def test_two_runs_without_protective_randomness_are_identical(tmp_path):
    cfg = load_config(overrides=TINY)
    one_dir, one = simulate(cfg, out=str(tmp_path / "one"))
    two_dir, two = simulate(cfg, out=str(tmp_path / "two"))
    assert set(one) >= {"federated", "centralized", "isolated"}
    assert _strip(one) == _strip(two)
    for rel in ("checkpoints/round-0001.safetensors", "checkpoints/initial.safetensors"):
        a, b = RunFolder(one_dir).load_adapter(rel), RunFolder(two_dir).load_adapter(rel)
        assert np.array_equal(a, b)
    for name in ("centralized", "isolated"):
        rel = f"baselines/{name}.json"
        assert json.loads((one_dir / rel).read_text()) == json.loads((two_dir / rel).read_text())
    assert _strip(RunFolder(one_dir).read_metrics()) == _strip(RunFolder(two_dir).read_metrics())
