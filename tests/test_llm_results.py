"""The README's ``configs/llm.yaml`` figures are the committed runs' in ``audits/llm_config/``.

Each ``audits/llm_config/seed-N/`` holds one run's results.json and its resolved config.yaml
(copied from the run folder). Checked here, without training: every committed run is today's
``configs/llm.yaml`` at its seed; seed 0 meets the bar (0.60, zero-shot + 20 points, isolated + 5);
and the README states seed 0's figures and the three seeds' mean and range as these files give
them. ``tests/test_llm_config_learns.py`` (slow) reruns seed 0.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from securefed.config import load_config

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "audits" / "llm_config"
SEEDS = (0, 1, 2)


def _results(seed: int) -> dict:
    return json.loads((RUNS / f"seed-{seed}" / "results.json").read_text())


def _pooled(results: dict, arm: str) -> float:
    return results[arm]["pooled"]["accuracy"]


def test_each_committed_run_is_todays_llm_config_at_its_seed():
    for seed in SEEDS:
        committed = load_config(str(RUNS / f"seed-{seed}" / "config.yaml"))
        today = load_config(str(ROOT / "configs" / "llm.yaml"), [f"seed={seed}"])
        assert committed.model_dump() == today.model_dump(), seed


def test_seed_0_meets_the_bar():
    results = _results(0)
    federated = _pooled(results, "federated")
    assert federated >= 0.60
    assert federated >= _pooled(results, "zero_shot") + 0.20
    assert federated >= _pooled(results, "isolated") + 0.05


def test_the_readme_states_the_committed_figures():
    flat = " ".join((ROOT / "README.md").read_text().split())
    seed0 = _results(0)
    for arm in ("federated", "zero_shot", "isolated", "centralized"):
        assert f"{arm.replace('_', '-')} {_pooled(seed0, arm):.3f}" in flat, arm
    federated = [_pooled(_results(s), "federated") for s in SEEDS]
    stated = (
        f"seeds 0-2 federated mean {np.mean(federated):.3f} "
        f"(range {min(federated):.3f}-{max(federated):.3f})"
    )
    assert stated in flat, stated
