"""Secure aggregation: the server learns the sum of the clients' updates and nothing else.

Bonawitz et al. (CCS 2017) with the sparse neighbour graph of SecAgg+ (Bell et al., CCS
2020), shaped after Google's production implementation (fcp/secagg). See ``threat_model.md``
at the repository root for what each party can and cannot learn.

Modules, in protocol order: ``quantize`` (fixed-point encoding), ``params`` (round plan),
``advertise`` / ``share_keys`` / ``masked_input`` / ``consistency`` / ``unmasking`` (one
module per stage, both halves), ``stages`` (the stage table: their order, which every
transport walks), ``key_messages`` (the two key stages' messages, which the parties' ``state``
keeps), ``client`` / ``server`` (the state machines), ``driver``
(in-process transport), ``transcript`` (the round's audit record). Underneath: ``crypto`` (the
only importer of cryptography.hazmat), ``masking``, ``shamir``, ``session`` (session id and
labelled derivations), ``graph``, ``roster``, ``wire``, ``entropy`` (the randomness seam).

May import: numpy, cryptography, the standard library and ``errors`` -- never
torch, transformers, peft, opacus or flwr (tests/test_architecture.py checks it).
Exports: the state machines, the round parameters, the quantization (and the codec seam
another encoding plugs into), and every message type a
transport carries (a new stage adds its messages to the imports and ``__all__``).
"""

from securefed.secagg.client import SecAggClient
from securefed.secagg.consistency import SurvivorSet, SurvivorSignature
from securefed.secagg.driver import (
    ClientInput,
    DropoutSchedule,
    RoundOutcome,
    simulate_round,
    with_generated_identities,
)
from securefed.secagg.entropy import Entropy
from securefed.secagg.key_messages import AdvertiseKeys, KeyDirectory, ShareKeys
from securefed.secagg.masked_input import MaskedInput, ShareDelivery
from securefed.secagg.params import RoundContext, RoundPlan, SecAggParams, plan_round
from securefed.secagg.quantize import (
    FixedPointCodec,
    InputCodec,
    QuantizationParams,
    check_no_overflow,
    decode_sum,
    encode_input,
)
from securefed.secagg.roster import (
    Roster,
    generate_identities,
    generate_roster,
    load_identity_keys,
    load_roster,
)
from securefed.secagg.server import SecAggServer
from securefed.secagg.stages import STAGE_TABLE, STAGES, Stage
from securefed.secagg.transcript import dropouts_by_stage, round_transcript
from securefed.secagg.unmasking import UnmaskRequest, UnmaskResponse

__all__ = [
    "STAGES",
    "STAGE_TABLE",
    "AdvertiseKeys",
    "ClientInput",
    "DropoutSchedule",
    "Entropy",
    "FixedPointCodec",
    "InputCodec",
    "KeyDirectory",
    "MaskedInput",
    "QuantizationParams",
    "Roster",
    "RoundContext",
    "RoundOutcome",
    "RoundPlan",
    "SecAggClient",
    "SecAggParams",
    "SecAggServer",
    "ShareDelivery",
    "ShareKeys",
    "Stage",
    "SurvivorSet",
    "SurvivorSignature",
    "UnmaskRequest",
    "UnmaskResponse",
    "check_no_overflow",
    "decode_sum",
    "dropouts_by_stage",
    "encode_input",
    "generate_identities",
    "generate_roster",
    "load_identity_keys",
    "load_roster",
    "plan_round",
    "round_transcript",
    "simulate_round",
    "with_generated_identities",
]
