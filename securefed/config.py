"""Typed, frozen run configuration: YAML in, one validated ``RunConfig`` out.

Every section is a pydantic model that forbids unknown keys, so a misspelled privacy field is
an error rather than a silent default. Cross-field rules (cohort vs threshold, modular overflow,
impossible combinations) run in ``RunConfig``'s validator, before any work starts. Errors are
turned into one ``ConfigError`` line naming the key, the value and what is allowed.

May import: pydantic, yaml, scipy, ``config_training``, ``config_yaml``, ``secagg`` (its round
planner and overflow check: a config that cannot run is refused when it is loaded), ``errors``.
"""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import Field, ValidationError, model_validator
from scipy import stats

from securefed.config_training import PRESET_KEYS, PartitionConfig, TrainingConfig
from securefed.config_training import Section as _Section
from securefed.config_yaml import apply_overrides as _apply_dotted
from securefed.config_yaml import (
    default_config_path,
    read_yaml,
    validation_error,
)
from securefed.errors import ConfigError
from securefed.secagg import STAGES, SecAggParams, check_no_overflow, plan_round

TASK_NAMES = ("synthetic_finance", "synthetic_medqa", "medqa", "medmcqa", "fpb", "fiqa_sa")


class SyntheticConfig(_Section):
    """Knobs of the seeded synthetic tasks (ignored by the real benchmark tasks)."""

    num_examples: int = Field(800, ge=40, le=1_000_000)
    num_institutions: int = Field(4, ge=1, le=64)
    difficulty: float = Field(0.3, ge=0.0, le=1.0)
    institution_vocab: float = Field(0.5, ge=0.0, le=1.0)


class TaskConfig(_Section):
    name: Literal[TASK_NAMES] = "synthetic_finance"  # type: ignore[valid-type]
    path: str | None = None
    hub_id: str | None = None
    hub_config: str | None = None
    split: str = "train"
    max_examples: int | None = Field(None, ge=10)
    synthetic: SyntheticConfig = SyntheticConfig()


class ModelConfig(_Section):
    backbone: str = "embedded:all-MiniLM-L6-v2"
    kind: Literal["auto", "causal", "encoder"] = "auto"
    adapter: Literal["lora", "ffa_lora", "qlora", "ia3"] = "lora"
    target_modules: list[str] | None = None
    lora_r: int = Field(8, ge=1, le=1024)
    lora_alpha: float = Field(16.0, gt=0.0)
    lora_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    max_length: int = Field(96, ge=8, le=8192)
    adapter_layers: str = Field("all", pattern=r"^(all|top-[1-9][0-9]*)$")
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"


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
    noise_source: Literal["aes_ctr", "torch"] = "aes_ctr"
    secure_mode: bool = False

    @model_validator(mode="after")
    def _one_noise_source(self) -> DPConfig:
        if self.enabled and self.target_epsilon is None and self.noise_multiplier is None:
            raise ValueError("set target_epsilon or noise_multiplier when dp.enabled is true")
        if isinstance(self.delta, float) and not 0.0 < self.delta < 1.0:
            raise ValueError("delta must be 'auto' or in (0, 1)")
        if self.secure_mode and self.noise_source != "torch":
            raise ValueError(
                "secure_mode (Opacus + torchcsprng) needs noise_source: torch; "
                "noise_source aes_ctr is a CSPRNG already"
            )
        return self


class DistributedDPConfig(_Section):
    """Institution-level DP without a trusted server: each client adds a share of discrete
    noise inside the secure sum (``securefed.privacy.distributed``). With it on,
    ``secure_aggregation.bits`` is the bit width of the aggregate (the sum is taken mod
    2^bits), as in TFF's DistributedDpSumFactory; ``delta: auto`` is
    min(1e-5, num_institutions^-1.1)."""

    enabled: bool = False
    mechanism: Literal["skellam", "dgauss"] = "skellam"
    target_epsilon: float = Field(8.0, gt=0.0, le=1e4)
    delta: float | Literal["auto"] = "auto"
    clip_norm: float = Field(1.0, gt=0.0, le=1e9)
    modclip_probability: float = Field(1e-4, gt=0.0, lt=0.5)


def modclip_stddevs(modclip_probability: float) -> float:
    """k such that a Gaussian falls outside +-k std with probability ``modclip_probability``:
    distributed DP's headroom in the secure sum (checked here, planned in privacy.distributed)."""
    if not 0.0 < modclip_probability < 1.0:
        raise ValueError(f"modclip_probability must be in (0, 1), got {modclip_probability}")
    return float(stats.norm.isf(modclip_probability / 2.0))


class PrivacyConfig(_Section):
    dp: DPConfig = DPConfig()
    distributed: DistributedDPConfig = DistributedDPConfig()

    @property
    def any_mechanism(self) -> bool:
        """Sample-level or institution-level DP on: counts of training records are withheld."""
        return self.dp.enabled or self.distributed.enabled


Stage = Literal[STAGES]  # type: ignore[valid-type]  # the protocol's stage names (secagg.state)


class DropoutConfig(_Section):
    """Simulated dropouts, for testing: a per-stage rate and/or explicit client ids per stage."""

    rate: float = Field(0.0, ge=0.0, lt=1.0)
    stages: list[Stage] = list(STAGES)
    advertise_keys: list[int] = []
    share_keys: list[int] = []
    masked_input: list[int] = []
    consistency_check: list[int] = []
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
    adversary: Literal["semi_malicious", "curious"] = "semi_malicious"
    dropout: DropoutConfig = DropoutConfig()

    def params(self) -> SecAggParams:
        """The ``securefed.secagg.SecAggParams`` these settings stand for."""
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
            adversary=self.adversary,
        )


# The fewest canaries the empirical audit accepts: its estimate needs both included and
# excluded ones, and below ~20 the one-run bound can reject nothing anyway.
MIN_CANARIES = 20


class AuditConfig(_Section):
    """Empirical privacy audit: canaries carried in the run itself (0 = none).

    ``canary_institutions``: who carries them, round-robin (default: every institution).
    ``canary_parameters``: gradient canaries live in the adapter matrices whose names contain
    one of these (default: every adapter matrix but the head's; ``privacy.canary_scores``).
    """

    canaries: int = Field(0, ge=0, le=100_000)
    canary_kind: Literal["gradient", "input"] = "gradient"
    canary_institutions: list[int] | None = None
    # Left out of the resolved config while unset, so that every config resolved before the key
    # existed (and each committed sweep cell's hash, sweep.spec) stays as it was.
    canary_parameters: list[str] | None = Field(None, exclude_if=lambda v: v is None)

    @model_validator(mode="after")
    def _enough_canaries(self) -> AuditConfig:
        if 0 < self.canaries < MIN_CANARIES:
            raise ConfigError(
                "audit.canaries", self.canaries, f"0 (off) or at least {MIN_CANARIES}"
            )
        institutions = self.canary_institutions
        if institutions is not None and (
            not institutions or len(set(institutions)) != len(institutions)
        ):
            raise ConfigError(
                "audit.canary_institutions", institutions, "distinct institution ids, at least one"
            )
        return self


class OutputConfig(_Section):
    dir: str = "runs"


BaselineName = Literal["centralized", "isolated", "zero_shot"]
BASELINE_NAMES: tuple[str, ...] = get_args(BaselineName)


class RunConfig(_Section):
    name: str = Field("default", pattern=r"^[A-Za-z0-9_.-]{1,80}$")
    seed: int = Field(0, ge=0, le=2**32 - 1)
    task: TaskConfig = TaskConfig()
    partition: PartitionConfig = PartitionConfig()
    model: ModelConfig = ModelConfig()
    training: TrainingConfig = TrainingConfig()
    privacy: PrivacyConfig = PrivacyConfig()
    secure_aggregation: SecureAggregationConfig = SecureAggregationConfig()
    baselines: list[BaselineName] = ["centralized", "isolated"]
    audit: AuditConfig = AuditConfig()
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
        distributed = privacy.get("distributed") or {} if isinstance(privacy, dict) else {}
        dp_off = all(
            isinstance(section, dict) and section.get("enabled", False) is False
            for section in (dp, distributed)
        )
        weighting = "examples" if dp_off else "uniform"  # anything unclear: the private side
        return {**data, "training": {**training, "weighting": weighting}}

    @model_validator(mode="after")
    def _cross_field(self) -> RunConfig:
        _check_cross_fields(self)
        return self


def _check_cross_fields(cfg: RunConfig) -> None:
    n, k = cfg.partition.num_clients, cfg.training.clients_per_round
    if cfg.training.linear_probe_rounds > cfg.training.rounds:
        raise ConfigError(
            "training.linear_probe_rounds",
            cfg.training.linear_probe_rounds,
            f"at most training.rounds ({cfg.training.rounds})",
        )
    if k > n:
        raise ConfigError("training.clients_per_round", k, f"at most partition.num_clients ({n})")
    if cfg.partition.scheme == "natural" and not cfg.partition.column:
        raise ConfigError(
            "partition.column", None, "a column name is required when partition.scheme is natural"
        )
    model = cfg.model
    if model.adapter == "qlora" and model.dtype != "float32" and cfg.training.device == "cpu":
        raise ConfigError("model.dtype", model.dtype, "float32 for qlora on cpu")
    for cid in cfg.audit.canary_institutions or []:
        if not 0 <= cid < n:
            raise ConfigError("audit.canary_institutions", cid, f"institution ids in [0, {n - 1}]")
    if len(set(cfg.baselines)) != len(cfg.baselines):
        raise ConfigError(
            "baselines", cfg.baselines, "each of centralized, isolated, zero_shot at most once"
        )
    _check_distributed_dp(cfg)
    sa = cfg.secure_aggregation
    if sa.enabled:
        if k < 2:
            raise ConfigError(
                "training.clients_per_round", k, "at least 2 when secure_aggregation.enabled"
            )
        # Threshold, graph and degree are checked by the same planner every client runs,
        # and modular overflow is ruled out here, not discovered after a round (DESIGN.md §3).
        plan_round(k, dataclasses.replace(sa.params(), roster=None))
        check_no_overflow(k, sa.bits)
        for stage in STAGES:
            for cid in getattr(sa.dropout, stage):
                if not 0 <= cid < n:
                    raise ConfigError(
                        f"secure_aggregation.dropout.{stage}", cid, f"client ids in [0, {n - 1}]"
                    )


def _check_distributed_dp(cfg: RunConfig) -> None:
    ddp, key = cfg.privacy.distributed, "privacy.distributed"
    if not ddp.enabled:
        return
    if not cfg.secure_aggregation.enabled:
        raise ConfigError(
            f"{key}.enabled",
            True,
            "needs secure_aggregation.enabled: true (the noise shares protect only inside the "
            "secure sum)",
        )
    if cfg.training.weighting != "uniform":
        raise ConfigError(
            "training.weighting",
            cfg.training.weighting,
            "uniform or auto when privacy.distributed is on (sensitivity is one clipped update)",
        )
    institutions = cfg.partition.num_clients
    if isinstance(ddp.delta, float) and not 0.0 < ddp.delta < 1.0 / institutions:
        raise ConfigError(
            f"{key}.delta",
            ddp.delta,
            f"'auto' or in (0, 1/{institutions}) for {institutions} institutions",
        )
    k, bits = modclip_stddevs(ddp.modclip_probability), cfg.secure_aggregation.bits
    clients = cfg.training.clients_per_round
    if 4.0**bits < clients * k**2:
        raise ConfigError(
            "secure_aggregation.bits",
            bits,
            f"at least {math.ceil(math.log(clients * k * k, 4))} for distributed DP with "
            f"{clients} clients per round at modclip_probability {ddp.modclip_probability}",
        )


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``dotted.key=value`` overrides to a raw config dict. An override that sets
    ``partition.preset`` first clears the partition keys a preset sets (``PRESET_KEYS``) from
    ``raw``: the preset replaces the file's partition, and only keys the same overrides set are
    then checked against it."""
    if any(_sets_preset(item) for item in overrides):
        partition = raw.get("partition")
        if isinstance(partition, dict):
            raw["partition"] = {k: v for k, v in partition.items() if k not in PRESET_KEYS}
    return _apply_dotted(raw, overrides)


def _sets_preset(override: str) -> bool:
    key, _, value = override.partition("=")
    return key.strip() == "partition.preset" and value.strip() not in ("", "null", "~")


def validate(raw: dict[str, Any]) -> RunConfig:
    """Validate a raw dict into a frozen ``RunConfig`` or raise one ``ConfigError``."""
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as err:
        raise validation_error(err, RunConfig) from None


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Load YAML (default: the embedded default), apply ``--set`` overrides, validate. A
    config that sets no ``name`` is named after its file (``configs/fpb-lora.yaml``: fpb-lora)."""
    source = Path(path) if path else default_config_path()
    raw = read_yaml(source)
    raw.setdefault("name", re.sub(r"[^A-Za-z0-9_.-]", "-", source.stem)[:80] or "run")
    return validate(apply_overrides(raw, list(overrides or [])))


def dump_config(cfg: RunConfig) -> str:
    """The resolved config as YAML (every key, defaults included)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
