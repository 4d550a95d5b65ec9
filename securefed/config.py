"""Typed, frozen run configuration: YAML in, one validated ``RunConfig`` out.

Every section is a pydantic model that forbids unknown keys, so a misspelled privacy field is
an error rather than a silent default. Cross-field rules (cohort vs threshold, modular overflow,
impossible combinations) run in ``RunConfig``'s validator, before any work starts. Errors are
turned into one ``ConfigError`` line naming the key, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from securefed.errors import ConfigError

TASK_NAMES = ("synthetic_finance", "synthetic_medqa", "medqa", "medmcqa", "fpb", "fiqa_sa")
MULTIPLE_CHOICE_TASKS = ("synthetic_medqa", "medqa", "medmcqa")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class SyntheticConfig(_Section):
    """Knobs of the seeded synthetic tasks (ignored by the real benchmark tasks)."""

    num_examples: int = Field(800, ge=40, le=1_000_000)
    num_institutions: int = Field(4, ge=1, le=64)
    difficulty: float = Field(0.3, ge=0.0, le=1.0)
    institution_vocab: float = Field(0.5, ge=0.0, le=1.0)


class TaskConfig(_Section):
    name: Literal["synthetic_finance", "synthetic_medqa", "medqa", "medmcqa", "fpb", "fiqa_sa"] = (
        "synthetic_finance"
    )
    path: str | None = None
    hub_id: str | None = None
    hub_config: str | None = None
    split: str = "train"
    max_examples: int | None = Field(None, ge=10)
    synthetic: SyntheticConfig = SyntheticConfig()


class PartitionConfig(_Section):
    scheme: Literal["iid", "dirichlet", "quantity", "natural"] = "dirichlet"
    num_clients: int = Field(4, ge=1, le=10_000)
    alpha: float = Field(0.5, gt=0.0, le=1e6)
    column: str | None = None
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    min_examples: int = Field(8, ge=2)


class ModelConfig(_Section):
    backbone: str = "embedded:all-MiniLM-L6-v2"
    kind: Literal["auto", "causal", "encoder"] = "auto"
    adapter: Literal["lora", "qlora", "ia3"] = "lora"
    target_modules: list[str] | None = None
    lora_r: int = Field(8, ge=1, le=1024)
    lora_alpha: float = Field(16.0, gt=0.0)
    lora_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    max_length: int = Field(96, ge=8, le=8192)
    adapter_layers: str = Field("all", pattern=r"^(all|top-[1-9][0-9]*)$")
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"


class TrainingConfig(_Section):
    rounds: int = Field(5, ge=1, le=100_000)
    clients_per_round: int = Field(4, ge=1)
    local_epochs: float = Field(1.0, gt=0.0, le=1000)
    local_steps: int | None = Field(None, ge=1)
    batch_size: int = Field(16, ge=1, le=65_536)
    lr: float = Field(3.0e-3, gt=0.0, le=10.0)
    weight_decay: float = Field(0.0, ge=0.0)
    weighting: Literal["auto", "uniform", "examples"] = "auto"  # resolved at load, see below
    server_lr: float = Field(1.0, gt=0.0, le=100.0)
    eval_batch_size: int = Field(64, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"


# The least noise the accountants can bound in reasonable time (securefed.privacy.accounting
# has the same floor): at 0.05 one PLD epsilon takes ~40 s and epsilon is in the thousands;
# at 0.01 the PLD grid outgrows memory. Less noise than this is no privacy: turn DP off.
MIN_NOISE_MULTIPLIER = 0.05


class DPConfig(_Section):
    enabled: bool = False
    target_epsilon: float | None = Field(8.0, gt=0.0, le=1e4)
    noise_multiplier: float | None = Field(None, ge=MIN_NOISE_MULTIPLIER, le=1e4)
    delta: float | Literal["auto"] = "auto"
    max_grad_norm: float = Field(1.0, gt=0.0, le=1e6)
    accountant: Literal["pld", "rdp", "prv"] = "pld"
    secure_mode: bool = False

    @model_validator(mode="after")
    def _one_noise_source(self) -> DPConfig:
        if self.enabled and self.target_epsilon is None and self.noise_multiplier is None:
            raise ValueError("set target_epsilon or noise_multiplier when dp.enabled is true")
        if isinstance(self.delta, float) and not 0.0 < self.delta < 1.0:
            raise ValueError("delta must be 'auto' or in (0, 1)")
        return self


class PrivacyConfig(_Section):
    dp: DPConfig = DPConfig()


Stage = Literal["advertise_keys", "share_keys", "masked_input", "unmasking"]
STAGES: tuple[str, ...] = ("advertise_keys", "share_keys", "masked_input", "unmasking")


class DropoutConfig(_Section):
    """Simulated dropouts, for testing: a per-stage rate and/or explicit client ids per stage."""

    rate: float = Field(0.0, ge=0.0, lt=1.0)
    stages: list[Stage] = list(STAGES)
    advertise_keys: list[int] = []
    share_keys: list[int] = []
    masked_input: list[int] = []
    unmasking: list[int] = []
    rounds: list[int] | None = None


class SecureAggregationConfig(_Section):
    enabled: bool = True
    threshold: int | Literal["auto"] = "auto"
    graph: Literal["auto", "complete", "harary"] = "auto"
    degree: int | Literal["auto"] = "auto"
    clip_norm: float = Field(10.0, gt=0.0, le=1e9)
    bits: int = Field(20, ge=4, le=30)
    security_bits: int = Field(40, ge=20, le=128)
    corrupt_fraction: float = Field(0.05, ge=0.0, lt=0.5)
    dropout_budget: float = Field(0.33, ge=0.0, lt=1.0)
    identity_roster: str | None = None
    dropout: DropoutConfig = DropoutConfig()

    def params(self):
        """The ``securefed.secagg.SecAggParams`` these settings stand for (numpy-only import)."""
        from securefed.secagg import SecAggParams

        return SecAggParams(
            threshold=self.threshold,
            graph=self.graph,
            degree=self.degree,
            clip_norm=self.clip_norm,
            bits=self.bits,
            security_bits=self.security_bits,
            corrupt_fraction=self.corrupt_fraction,
            dropout_budget=self.dropout_budget,
            roster=self.identity_roster,
        )


class OutputConfig(_Section):
    dir: str = "runs"


class RunConfig(_Section):
    name: str = Field("default", pattern=r"^[A-Za-z0-9_.-]{1,80}$")
    seed: int = Field(0, ge=0, le=2**32 - 1)
    task: TaskConfig = TaskConfig()
    partition: PartitionConfig = PartitionConfig()
    model: ModelConfig = ModelConfig()
    training: TrainingConfig = TrainingConfig()
    privacy: PrivacyConfig = PrivacyConfig()
    secure_aggregation: SecureAggregationConfig = SecureAggregationConfig()
    baselines: list[Literal["centralized", "isolated"]] = ["centralized", "isolated"]
    output: OutputConfig = OutputConfig()

    @model_validator(mode="before")
    @classmethod
    def _resolve_weighting(cls, data: Any) -> Any:
        """``training.weighting: auto`` becomes ``examples`` (FedAvg as McMahan et al. define
        it: the average matches the pooled objective) when DP is off, and ``uniform`` when DP
        may be on: the weights derive from record counts, whose sum the server learns outside
        the DP guarantee. The resolved config records the concrete choice."""
        if not isinstance(data, dict):
            return data
        training = data.get("training") or {}
        if not isinstance(training, dict) or training.get("weighting", "auto") != "auto":
            return data
        privacy = data.get("privacy") or {}
        dp = privacy.get("dp") or {} if isinstance(privacy, dict) else {}
        dp_off = isinstance(dp, dict) and dp.get("enabled", False) is False
        weighting = "examples" if dp_off else "uniform"  # anything unclear: the private side
        return {**data, "training": {**training, "weighting": weighting}}

    @model_validator(mode="after")
    def _cross_field(self) -> RunConfig:
        _check_cross_fields(self)
        return self


def _check_cross_fields(cfg: RunConfig) -> None:
    n, k = cfg.partition.num_clients, cfg.training.clients_per_round
    if k > n:
        raise ConfigError("training.clients_per_round", k, f"at most partition.num_clients ({n})")
    if cfg.partition.scheme == "natural" and not cfg.partition.column:
        raise ConfigError(
            "partition.column", None, "a column name is required when partition.scheme is natural"
        )
    if (
        cfg.model.adapter == "qlora"
        and cfg.model.dtype != "float32"
        and cfg.training.device == "cpu"
    ):
        raise ConfigError("model.dtype", cfg.model.dtype, "float32 for qlora on cpu")
    if len(set(cfg.baselines)) != len(cfg.baselines):
        raise ConfigError("baselines", cfg.baselines, "each of centralized, isolated at most once")
    sa = cfg.secure_aggregation
    if sa.enabled:
        if k < 2:
            raise ConfigError(
                "training.clients_per_round", k, "at least 2 when secure_aggregation.enabled"
            )
        # Threshold, graph and degree are checked by the same planner every client runs,
        # and modular overflow is ruled out here, not discovered after a round (DESIGN.md §3).
        from securefed.secagg.params import plan_round
        from securefed.secagg.quantize import check_no_overflow

        plan_round(k, dataclasses.replace(sa.params(), roster=None))
        check_no_overflow(k, sa.bits)
        for stage in STAGES:
            for cid in getattr(sa.dropout, stage):
                if not 0 <= cid < n:
                    raise ConfigError(
                        f"secure_aggregation.dropout.{stage}", cid, f"client ids in [0, {n - 1}]"
                    )


def _format_validation_error(err: ValidationError) -> ConfigError:
    first = err.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "<root>"
    value = first.get("input")
    kind = first["type"]
    msg = first["msg"]
    if kind == "extra_forbidden":
        parent_loc = first["loc"][:-1]
        allowed = _allowed_keys(parent_loc)
        return ConfigError(key, value, f"unknown key; allowed keys here: {', '.join(allowed)}")
    if kind == "literal_error":
        return ConfigError(key, value, msg.replace("Input should be", "allowed:"))
    if isinstance(first.get("ctx", {}).get("error"), ConfigError):
        return first["ctx"]["error"]
    return ConfigError(key, value, msg)


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    model: type[BaseModel] = RunConfig
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None or not isinstance(field.annotation, type):
            return []
        if not issubclass(field.annotation, BaseModel):
            return []
        model = field.annotation
    return sorted(model.model_fields)


def _coerce_scalar(text: str) -> Any:
    """Parse a ``--set`` value with YAML rules, so ``--set a=1e-4`` is a float and ``null`` None."""
    return yaml.safe_load(text) if text != "" else ""


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``dotted.key=value`` overrides to a raw config dict (validation happens later)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(item, None, "overrides look like dotted.key=value")
        dotted, text = item.split("=", 1)
        parts = dotted.strip().split(".")
        node = raw
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(dotted, text, f"{part} is not a section")
            node = child
        node[parts[-1]] = _coerce_scalar(text)
    return raw


def default_config_path() -> Path:
    """The embedded default config, shipped inside the package."""
    return Path(str(resources.files("securefed") / "default.yaml"))


def read_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError("config", str(p), "a path to an existing YAML file")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError("config", str(p), f"valid YAML ({exc.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise ConfigError("config", str(p), "a YAML mapping at the top level")
    return data


def validate(raw: dict[str, Any]) -> RunConfig:
    """Validate a raw dict into a frozen ``RunConfig`` or raise one ``ConfigError``."""
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as err:
        raise _format_validation_error(err) from None
    except ConfigError:
        raise


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Load YAML (default: the embedded default), apply ``--set`` overrides, validate."""
    raw = read_yaml(path or default_config_path())
    return validate(apply_overrides(raw, list(overrides or [])))


def dump_config(cfg: RunConfig) -> str:
    """The resolved config as YAML (every key, defaults included)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
