"""The ``training`` and ``partition`` sections of the run config: local training, what the
federation adds to it -- the server's optimizer on the aggregated update and FedProx's
proximal term -- and how the institutions' data differ (``partition.preset``, a named kind of
heterogeneity expanded into the partition keys when the config is validated).

Keys added after sweep cells were committed (``server_optimizer``, ``proximal_mu``,
``lr_grid``, ``validation_fraction``, ``lr_schedule``, ``partition.preset``) stay out of the
resolved config while they hold their defaults (pydantic ``exclude_if``): every key of the
resolved config enters a sweep cell's hash (``securefed.sweep.spec``), so a key that appeared
in every dump would re-key every committed cell. ``config.py`` imports this module.

May import: pydantic, ``errors``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from securefed.errors import ConfigError

SERVER_OPTIMIZERS = ("fedavg", "fedavgm", "fedadam", "fedyogi", "fedadagrad")


class Section(BaseModel):
    """A config section: unknown keys are errors; values are frozen once validated."""

    # NaN and infinity pass every range check unnoticed (or fail it with a misleading message):
    # refused as "not a finite number" wherever a float is read.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False, allow_inf_nan=False)


class ServerOptimizerConfig(Section):
    """The server's step on the unmasked mean delta (Reddi et al., ICLR 2021, Algorithm 2;
    ``securefed.run.server_optimizer``). Its step size is ``training.server_lr``.

    ``fedavg``: global += server_lr * mean delta. ``fedavgm``: server momentum (Hsu et al.
    2019). ``fedadam`` / ``fedyogi`` / ``fedadagrad``: adaptive, with ``beta1`` (first
    moment), ``beta2`` (second moment; not fedadagrad) and ``tau`` (adaptivity: the larger,
    the closer to momentum SGD)."""

    name: Literal[SERVER_OPTIMIZERS] = "fedavg"  # type: ignore[valid-type]
    momentum: float = Field(0.9, ge=0.0, lt=1.0)  # fedavgm
    beta1: float = Field(0.9, ge=0.0, lt=1.0)
    beta2: float = Field(0.99, ge=0.0, lt=1.0)
    tau: float = Field(1.0e-3, gt=0.0, le=10.0)


class TrainingConfig(Section):
    rounds: int = Field(5, ge=1, le=100_000)
    clients_per_round: int = Field(4, ge=1)
    local_epochs: float = Field(1.0, gt=0.0, le=1000)
    local_steps: int | None = Field(None, ge=1)
    batch_size: int = Field(16, ge=1, le=65_536)
    lr: float = Field(3.0e-3, gt=0.0, le=10.0)
    weight_decay: float = Field(0.0, ge=0.0)
    dp_optimizer: Literal["adamw", "sgd", "adam_bc"] = "adamw"
    dp_lr: float | None = Field(None, gt=0.0, le=10.0)
    dp_momentum: float = Field(0.9, ge=0.0, lt=1.0)
    linear_probe_rounds: int = Field(0, ge=0)
    weighting: Literal["auto", "uniform", "examples"] = "auto"  # resolved at load (config.py)
    server_lr: float = Field(1.0, gt=0.0, le=100.0)
    server_optimizer: ServerOptimizerConfig = Field(
        ServerOptimizerConfig(), exclude_if=lambda v: v == ServerOptimizerConfig()
    )
    # FedProx (Li et al., MLSys 2020): (mu/2) ||w - w_global||^2 added to each client's local
    # objective; its gradient is added after DP-SGD's clipping and noise (model.training)
    proximal_mu: float = Field(0.0, ge=0.0, le=1e4, exclude_if=lambda v: v == 0.0)
    # Learning rates chosen alike for every arm (federated, centralized, isolated) on a
    # validation split carved from the training data (run.tuning); null: training.lr for all.
    # With any DP on the grid is not used: tuning on private data would itself be a release
    lr_grid: list[Annotated[float, Field(gt=0.0, le=10.0)]] | None = Field(
        None, min_length=1, exclude_if=lambda v: v is None
    )
    validation_fraction: float = Field(0.1, gt=0.0, lt=0.5, exclude_if=lambda v: v == 0.1)
    # constant: every step at the rate; linear: the rate decays linearly towards 0 over each
    # arm's whole training (the federation's over its rounds; model.training.decay_learning_rate)
    lr_schedule: Literal["constant", "linear"] = Field(
        "constant", exclude_if=lambda v: v == "constant"
    )
    eval_batch_size: int = Field(64, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"


# ``partition.preset``: each institutional heterogeneity preset (docs/heterogeneity.md) as the
# partition keys it sets. It is expanded when the config is validated, and the resolved config
# records the preset beside the keys it set, so a resumed run and a sweep cell's hash see both.
PARTITION_PRESETS: dict[str, dict[str, Any]] = {
    "iid": {"scheme": "iid"},
    "label_skew_mild": {"scheme": "dirichlet", "alpha": 1.0},
    "label_skew": {"scheme": "dirichlet", "alpha": 0.5},
    "label_skew_severe": {"scheme": "dirichlet", "alpha": 0.1},
    "quantity_skew": {"scheme": "quantity", "alpha": 0.5},
    "natural": {"scheme": "natural", "column": "institution"},
}
PRESET_KEYS = ("scheme", "alpha", "column")  # every key a preset may set


class PartitionConfig(Section):
    """How the records are split into institutions; ``preset`` names a kind of
    heterogeneity and sets the keys of its row (``PARTITION_PRESETS``)."""

    # Left out of the resolved config while unset, so that every config resolved before the
    # key existed (and each committed sweep cell's hash, sweep.spec) stays as it was.
    preset: Literal[tuple(PARTITION_PRESETS)] | None = Field(  # type: ignore[valid-type]
        None, exclude_if=lambda v: v is None
    )
    scheme: Literal["iid", "dirichlet", "quantity", "natural"] = "dirichlet"
    num_clients: int = Field(4, ge=1, le=10_000)
    alpha: float = Field(0.5, gt=0.0, le=1e6)
    column: str | None = None
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    min_examples: int = Field(8, ge=2)

    @model_validator(mode="before")
    @classmethod
    def _expand_preset(cls, data: Any) -> Any:
        """Set the keys ``preset`` names; a key set to another value is refused (a null
        ``column`` counts as unset). An unknown preset is left to the field's own check."""
        if not isinstance(data, dict) or data.get("preset") not in PARTITION_PRESETS:
            return data
        preset = data["preset"]
        for key, value in PARTITION_PRESETS[preset].items():
            given = data.get(key)
            if given is not None and given != value:
                raise ConfigError(
                    f"partition.{key}",
                    given,
                    f"{value!r} or unset: partition.preset {preset} sets it (set one of the two)",
                )
        return {**data, **PARTITION_PRESETS[preset]}
