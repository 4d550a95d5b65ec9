"""In-process transport: run one secure-aggregation round over plain function calls.

``simulate_round`` plays the server and every client in one process. Every message goes
through ``to_bytes`` / ``from_bytes`` on the way, exactly as a network transport would carry
it, so the byte counts in the transcript are what a deployment would send. Simulated
dropouts (``DropoutSchedule``) remove clients before any stage; ``rng`` drives only those
draws. Keys, seeds and masks come from ``entropy`` (OS entropy unless a test pins it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Self, TypeVar

import numpy as np

from securefed.errors import ConfigError
from securefed.secagg.client import SecAggClient
from securefed.secagg.entropy import Entropy, entropy_source, os_entropy
from securefed.secagg.params import RoundContext, SecAggParams, check_identities
from securefed.secagg.quantize import Decoded, FixedPointCodec, InputCodec
from securefed.secagg.roster import (
    Roster,
    default_keys_path,
    generate_identities,
    load_identity_keys,
    load_roster,
)
from securefed.secagg.server import ClientMessage, SecAggServer
from securefed.secagg.stages import STAGE_TABLE, STAGES
from securefed.secagg.transcript import round_transcript

MessageT = TypeVar("MessageT", bound="_Message")


@dataclass(frozen=True, eq=False)
class ClientInput:
    """One client's contribution: its adapter delta, weight in (0, 1], and masked scalars.

    ``rounding`` draws the client's stochastic rounding (OS entropy when None)."""

    delta: np.ndarray  # float32 (d,)
    weight: float = 1.0
    extras: np.ndarray = field(default_factory=lambda: np.zeros(0))  # float64 (m,)
    rounding: np.random.Generator | None = None


@dataclass(frozen=True)
class DropoutSchedule:
    """Simulated dropouts: before each stage in ``stages`` every live client drops with
    probability ``rate``; ``explicit[stage]`` names clients that drop before that stage."""

    rate: float = 0.0
    stages: tuple[str, ...] = STAGES
    explicit: Mapping[str, Set[int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = (set(self.stages) | set(self.explicit)) - set(STAGES)
        if unknown:
            raise ValueError(f"unknown dropout stages {sorted(unknown)}; stages are {STAGES}")
        if not 0.0 <= self.rate < 1.0:
            raise ValueError(f"dropout rate must be in [0, 1), got {self.rate}")

    def draw(self, stage: str, live: Sequence[int], rng: np.random.Generator) -> set[int]:
        """The clients among ``live`` that drop before ``stage``."""
        out = set(self.explicit.get(stage, set())) & set(live)
        if self.rate > 0 and stage in self.stages:
            out |= {u for u, x in zip(live, rng.random(len(live)), strict=True) if x < self.rate}
        return out


@dataclass(frozen=True, eq=False)
class RoundOutcome:
    delta_sum: np.ndarray  # float64 (d,): sum over survivors of weight * clip(delta)
    extras_sum: np.ndarray  # float64 (m,)
    survivors: tuple[int, ...]  # U3: clients whose input is in the sum
    transcript: dict[str, Any]  # JSON-serializable audit record of the round
    wrap_count: int
    decoded: Decoded  # the codec's own reading of the total (distributed DP: headroom used)


def with_generated_identities(params: SecAggParams, client_ids: Sequence[int]) -> SecAggParams:
    """``params`` with a fresh in-memory Ed25519 identity per simulated client (OS entropy)
    when no roster is configured and the server is not assumed curious; else unchanged."""
    if params.roster is not None or params.adversary == "curious":
        return params
    roster, keys = generate_identities(client_ids)
    return dataclasses.replace(params, roster=roster, identity_keys=keys)


def _identities(params: SecAggParams, ids: Sequence[int]) -> tuple[Roster | None, dict[int, bytes]]:
    check_identities(params)
    if params.roster is None:
        return None, {}
    key = "secure_aggregation.identity_roster"
    roster = params.roster if isinstance(params.roster, Roster) else load_roster(params.roster)
    source = params.identity_keys
    if source is None and not isinstance(params.roster, Roster):
        source = default_keys_path(params.roster)
    if source is None:
        raise ConfigError(key, "<Roster>", "identity_keys for the simulated clients")
    keys = dict(source) if isinstance(source, Mapping) else load_identity_keys(Path(source))
    missing = sorted(u for u in ids if u not in roster or u not in keys)
    if missing:
        raise ConfigError(
            key, str(params.roster), f"an identity for every client; none for {missing}"
        )
    return roster, keys


class _Message(Protocol):
    def to_bytes(self) -> bytes: ...

    @classmethod
    def from_bytes(cls, data: bytes) -> Self: ...


class _CountingTransport:
    """Carries every message as bytes, as a network would, and counts them per client."""

    def __init__(self, server: SecAggServer, ids: Sequence[int]) -> None:
        self.server = server
        self.traffic = {u: {"up": 0, "down": 0} for u in ids}

    def up(self, client_id: int, msg: ClientMessage) -> None:
        data = msg.to_bytes()
        self.traffic[client_id]["up"] += len(data)
        self.server.accept(type(msg).from_bytes(data))

    def down(self, client_id: int, msg: MessageT) -> MessageT:
        data = msg.to_bytes()
        self.traffic[client_id]["down"] += len(data)
        return type(msg).from_bytes(data)


def simulate_round(
    *,
    round_index: int,
    inputs: Mapping[int, ClientInput],
    params: SecAggParams,
    global_adapter_hash: bytes,
    vector_spec_hash: bytes,
    dropout: DropoutSchedule | None = None,
    rng: np.random.Generator | None = None,
    entropy: Entropy = os_entropy,
    codec: InputCodec | None = None,
) -> RoundOutcome:
    """Run one round; raise ``ProtocolAbort`` when fewer than t clients remain at any stage.

    ``params.roster`` is a roster file (its private keys beside it, or in
    ``params.identity_keys``) or a ``Roster`` with ``identity_keys`` a mapping (see
    ``roster.generate_identities``); without one only ``adversary="curious"`` is allowed.
    ``rng`` draws the simulated dropouts; ``entropy`` (tests only) pins keys and seeds. Both
    default to OS entropy. ``codec`` encodes each client's input and decodes the unmasked total
    (default: ``FixedPointCodec`` of ``params.quantization``).
    """
    ids = sorted(inputs)
    shapes = {inputs[u].delta.shape for u in ids}
    extras_shapes = {np.shape(inputs[u].extras) for u in ids}
    if len(shapes) != 1 or len(extras_shapes) != 1 or len(next(iter(shapes))) != 1:
        raise ValueError("every client needs a 1-D delta and extras of the same shapes")
    (dimension,), (extras_count,) = next(iter(shapes)), next(iter(extras_shapes))
    codec = codec if codec is not None else FixedPointCodec(params.quantization, dimension)
    context = RoundContext(
        round_index,
        len(ids),
        params,
        global_adapter_hash,
        vector_spec_hash,
        codec.encoded_dimension,
        extras_count,
    )
    roster, identity_keys = _identities(params, ids)
    clients = {
        u: SecAggClient(
            u, context, identity_key=identity_keys.get(u), roster=roster, entropy=entropy
        )
        for u in ids
    }
    server = SecAggServer(context, invited=frozenset(ids), roster=roster)
    wire = _CountingTransport(server, ids)
    schedule, draws = (
        dropout or DropoutSchedule(),
        rng if rng is not None else np.random.default_rng(),
    )
    dropped: dict[str, list[int]] = {}

    def survivors_of(stage: str, live: Sequence[int]) -> list[int]:
        gone = schedule.draw(stage, live, draws)
        dropped[stage] = sorted(gone)
        return [u for u in live if u not in gone]

    # -- the stages, in the order of STAGE_TABLE: requests down, replies up, then close -----
    opened, live = None, ids
    for stage in STAGE_TABLE:
        for u in survivors_of(stage.name, live):
            encoded = None
            if stage.takes_input:
                x = inputs[u]
                encoded = codec.encode(x.delta, x.weight, x.extras, x.rounding)
            request = stage.request_for(opened, u)
            if request is not None:
                request = wire.down(u, request)
            wire.up(u, clients[u].answer(stage, request, encoded))
        opened = server.close(stage)
        live = server.participants[stage.name]
    total = opened

    survivors = server.participants["masked_input"]
    decoded = codec.decode(total, len(survivors))
    transcript = round_transcript(
        server, params, ids, dropped, wire.traffic, decoded.wrap_count, entropy_source(entropy)
    )
    return RoundOutcome(
        decoded.delta_sum,
        decoded.extras_sum,
        tuple(survivors),
        transcript,
        decoded.wrap_count,
        decoded,
    )
