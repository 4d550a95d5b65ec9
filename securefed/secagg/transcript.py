"""The audit record of one secure-aggregation round, for every transport.

One builder, so that the in-process driver and the Flower server write the same fields with
the same meaning; a transport adds only what it alone observes (wall time per stage, failures).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from securefed.secagg.params import SecAggParams
from securefed.secagg.quantize import error_bound
from securefed.secagg.server import SecAggServer
from securefed.secagg.session import PROTOCOL_VERSION
from securefed.secagg.stages import STAGES


def dropouts_by_stage(
    invited: Sequence[int], participants: Mapping[str, Sequence[int]]
) -> dict[str, list[int]]:
    """Who was live before each closed stage but is missing from its participants."""
    before, out = list(invited), {}
    for stage in STAGES:
        if stage in participants:
            out[stage] = sorted(set(before) - set(participants[stage]))
            before = list(participants[stage])
    return out


def round_transcript(
    server: SecAggServer,
    params: SecAggParams,
    invited: Sequence[int],
    dropouts: Mapping[str, Sequence[int]],
    traffic: Mapping[int, Mapping[str, int]],
    wrap_count: int | None,
    entropy: str | None,
) -> dict[str, Any]:
    """The JSON-serializable record of a round, finished or aborted (``wrap_count`` None).

    ``entropy`` names where the clients' keys came from (``securefed.secagg.entropy.
    entropy_source``), or is None where the transport cannot see it (a server over a network).
    """
    plan, context, quantization = server.plan, server.state.context, params.quantization
    survivors = server.participants.get("masked_input", ())
    delta_bound, extras_bound = error_bound(len(survivors), quantization)
    return {
        "protocol": PROTOCOL_VERSION.decode(),
        "round": context.round_index,
        "session_id": server.session_id.hex(),
        "graph": plan.graph,
        "degree": plan.degree,
        "threshold": plan.threshold,
        "cohort_size": plan.cohort_size,
        "adversary": params.adversary,
        "security_bits": params.security_bits,
        "corrupt_fraction": params.corrupt_fraction,
        "dropout_budget": params.dropout_budget,
        "identities": params.roster is not None,
        "survivor_set_signed": params.roster is not None,  # the consistency check's signatures
        "entropy": entropy,
        "participants": {
            "invited": list(invited),
            **{s: list(server.participants.get(s, ())) for s in STAGES},
        },
        "dropouts": {s: list(v) for s, v in dropouts.items()},
        "quantization": {
            "clip_norm": quantization.clip_norm,
            "bits": quantization.bits,
            "extras_bound": quantization.extras_bound,
            "modulus_bits": 32,
            "dimension": context.dimension,
            "extras_count": context.extras_count,
            "error_bound_delta": delta_bound,
            "error_bound_extras": extras_bound,
        },
        "wrap_count": wrap_count,
        "bytes": {str(u): dict(traffic.get(u, {})) for u in sorted(invited)},
    }
