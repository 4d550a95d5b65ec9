"""``model.adapter_layers``: which transformer layers carry the adapter (all, or the top N).

``adapters`` places the adapter with it (PEFT's ``layers_to_transform``), ``prefix_cache``
computes the frozen prefix below those layers once.
"""

from __future__ import annotations

import re

from securefed.errors import ConfigError

ALL_LAYERS = "all"
_TOP_N = re.compile(r"^top-([1-9][0-9]*)$")


def top_layers(setting: str, num_layers: int) -> int | None:
    """How many top layers carry the adapter: N for ``top-N`` (N <= num_layers), None for all."""
    if setting == ALL_LAYERS:
        return None
    match = _TOP_N.match(setting)
    if match is None or int(match.group(1)) > num_layers:
        raise ConfigError(
            "model.adapter_layers",
            setting,
            f"'all' or 'top-N' with 1 <= N <= {num_layers} (this backbone's layer count)",
        )
    return int(match.group(1))


def layers_to_transform(setting: str, num_layers: int) -> list[int] | None:
    """PEFT's ``layers_to_transform`` for ``model.adapter_layers`` (None: every layer)."""
    top = top_layers(setting, num_layers)
    return None if top is None else list(range(num_layers - top, num_layers))
