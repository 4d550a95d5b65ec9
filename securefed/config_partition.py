"""The ``partition`` section of the run config, and ``partition.preset``: a named kind of
institutional heterogeneity (docs/heterogeneity.md) that sets the partition keys of its row
when the config is validated. The resolved config records the preset beside the keys it set,
so a resumed run and a sweep cell's hash see both; unset, it stays out of the resolved config
(pydantic ``exclude_if``), so every config resolved before the key existed, and each committed
sweep cell's id (``securefed.sweep.spec``), stays as it was. ``config.py`` imports this module.

May import: pydantic, ``config_training`` (the section base), ``config_yaml``, ``errors``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from securefed.config_training import Section
from securefed.config_yaml import apply_overrides as _apply_dotted
from securefed.errors import ConfigError

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
