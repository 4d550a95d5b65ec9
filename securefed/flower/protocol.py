"""What the ServerApp and every ClientApp derive the same way from the run config.

Kept free of torch so that the three protocol-only ClientApp calls start in well under a
second (importing torch and transformers takes 10-15 s on a small CPU machine).
"""

from __future__ import annotations

from securefed.plan_inputs import PlanInputs
from securefed.run.aggregation import (
    client_extras,
    global_adapter_hash,
    round_encoding,
    rounding_rng,
)

# One mapping from config to protocol for both transports (securefed.run.aggregation is torch-free).
__all__ = [
    "client_extras",
    "extras_count",
    "global_adapter_hash",
    "round_encoding",
    "rounding_rng",
]


def extras_count(inputs: PlanInputs) -> int:
    """How many masked scalars follow the delta (see ``client_extras``)."""
    return len(client_extras(inputs, 1.0, 0.0))
