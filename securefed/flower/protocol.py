"""What the ServerApp and every ClientApp derive the same way from the run config.

Kept free of torch so that the three protocol-only ClientApp calls start in well under a
second (importing torch and transformers takes 10-15 s on a small CPU machine).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from securefed.config import RunConfig
from securefed.run.aggregation import client_extras, global_adapter_hash, rounding_rng
from securefed.secagg import FixedPointCodec, InputCodec, QuantizationParams

if TYPE_CHECKING:
    from securefed.privacy.distributed.parameters import DistributedDpPlan

# One mapping from config to protocol for both transports (securefed.run.aggregation is torch-free).
__all__ = [
    "client_extras",
    "extras_count",
    "global_adapter_hash",
    "round_encoding",
    "rounding_rng",
]


def extras_count(cfg: RunConfig) -> int:
    """How many masked scalars follow the delta (see ``client_extras``)."""
    return len(client_extras(cfg, 1.0, 0.0))


def round_encoding(
    plan: DistributedDpPlan | None,
    quantization: QuantizationParams,
    dimension: int,
    global_hash: bytes,
    spec_hash: bytes,
    round_index: int,
) -> tuple[InputCodec, bytes]:
    """This round's input codec and the vector-spec hash its session id binds: plain fixed
    point (``plan`` None), or distributed DP's, whose plan is folded into the hash so that a
    node and a server holding different plans cannot complete a round together."""
    if plan is None:
        return FixedPointCodec(quantization, dimension), spec_hash
    from securefed.privacy.distributed.encoding import (  # lazy: scipy stays out of stages 1-4
        DistributedDpCodec,
        round_rotation_seed,
    )

    codec = DistributedDpCodec(plan, quantization, round_rotation_seed(global_hash, round_index))
    return codec, codec.bind(spec_hash)
