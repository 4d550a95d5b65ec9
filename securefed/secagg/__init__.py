"""Secure aggregation: the server learns the sum of the clients' updates and nothing else.

Bonawitz et al. (CCS 2017) with the sparse neighbour graph of SecAgg+ (Bell et al., CCS
2020), shaped after Google's production implementation (fcp/secagg). numpy arrays and bytes
only -- never torch. See ``threat_model.md`` at the repository root for what each party can
and cannot learn.

Modules, in protocol order: ``quantize`` (fixed-point encoding), ``params`` (round plan),
``advertise`` / ``share_keys`` / ``masked_input`` / ``consistency`` / ``unmasking`` (one
module per stage, both halves), ``client`` / ``server`` (the state machines), ``driver``
(in-process transport).
Underneath: ``crypto`` (the only importer of cryptography.hazmat), ``masking``, ``shamir``,
``session`` (session id and labelled derivations), ``graph``, ``roster``, ``wire``,
``entropy`` (the randomness seam).
"""

from securefed.secagg.client import SecAggClient
from securefed.secagg.driver import (
    ClientInput,
    DropoutSchedule,
    RoundOutcome,
    simulate_round,
    with_generated_identities,
)
from securefed.secagg.params import RoundContext, RoundPlan, SecAggParams, plan_round
from securefed.secagg.quantize import (
    QuantizationParams,
    check_no_overflow,
    decode_sum,
    encode_input,
)
from securefed.secagg.roster import Roster, generate_identities, generate_roster, load_roster
from securefed.secagg.server import SecAggServer

__all__ = [
    "ClientInput",
    "DropoutSchedule",
    "QuantizationParams",
    "Roster",
    "RoundContext",
    "RoundOutcome",
    "RoundPlan",
    "SecAggClient",
    "SecAggParams",
    "SecAggServer",
    "check_no_overflow",
    "decode_sum",
    "encode_input",
    "generate_identities",
    "generate_roster",
    "load_roster",
    "plan_round",
    "simulate_round",
    "with_generated_identities",
]
