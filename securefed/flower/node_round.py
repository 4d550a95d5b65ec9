"""One institution's secure-aggregation round across ClientApp calls, kept in ``context.state``.

Flower starts a fresh ClientApp process for every message, so the client state machine
(``securefed.secagg.SecAggClient``) cannot stay in memory between stages. Instead of
serializing its secrets, the node keeps one 32-byte random seed per round in the node's own
state (``context.state``, held by its SuperNode, never sent to the server) and rebuilds the
client for each stage by replaying the server messages it has already answered: every key,
seed and share coefficient the client draws comes through its ``entropy`` seam, and that
entropy is a stream keyed by the seed, so the replay reaches the very same state.

The stage order is the table's (``secagg.STAGE_TABLE``), enforced here as well as in the
client: the record holds the last stage answered and the request bytes of each, under the
stage's name. A stage that was answered, one out of order, or a message for another round
aborts the round for this node and wipes the seed, so a server that asks twice (say, for
both kinds of shares of one peer) learns nothing new.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict

from securefed.errors import ProtocolAbort
from securefed.secagg import (
    STAGE_TABLE,
    STAGES,
    Entropy,
    Roster,
    RoundContext,
    SecAggClient,
    SecAggParams,
    Stage,
)

_ROUND = "securefed.round"
_INPUT = "securefed.encoded"
SEED_BYTES = 32


def keyed_entropy(seed: bytes) -> Entropy:
    """A deterministic byte stream keyed by a secret seed: SHAKE-256(label || seed || counter).

    Written here because the replay needs the client's draws to repeat exactly; with a
    uniformly random 32-byte secret seed this is a standard XOF-based generator.
    """
    counter = 0

    def draw(n: int) -> bytes:
        nonlocal counter
        counter += 1
        block = b"securefed/v1/node-round-entropy" + seed + counter.to_bytes(8, "big")
        return hashlib.shake_256(block).digest(n)

    return draw


@dataclass(frozen=True)
class Identity:
    """Optional Ed25519 identity of this institution (both or neither)."""

    key: bytes | None = None
    roster: Roster | None = None


class NodeRound:
    """The persisted state of this node's current round; it answers the stages of
    ``secagg.STAGE_TABLE`` in order, one per ClientApp call.

    ``params`` are the node's own pinned settings (``node_security``), never the server's."""

    def __init__(
        self,
        state: RecordDict,
        params: SecAggParams,
        cohort_size: int,
        institution: int,
        identity: Identity,
    ) -> None:
        self.state, self.params, self.cohort_size = state, params, cohort_size
        self.institution, self.identity = institution, identity

    def check_new(self, round_index: int) -> None:
        """Refuse a round this node already started: answering one round twice, with fresh
        keys over the same update, would let a server difference two sums."""
        record = self.state.config_records.get(_ROUND)
        if record is not None and int(record["round"]) >= round_index:
            raise ProtocolAbort(
                f"node {self.institution} already started round {record['round']}",
                round_index=round_index,
            )

    def advertise(
        self,
        round_index: int,
        encoded: np.ndarray,
        global_hash: bytes,
        spec_hash: bytes,
        dimension: int,
        extras_count: int,
    ) -> Any:
        """Start a round with this node's encoded input and answer the table's first stage
        (this round's public keys); a previous unfinished round is void."""
        self.check_new(round_index)
        self.state[_ROUND] = ConfigRecord(
            {
                "round": round_index,
                "stage": "new",
                "seed": os.urandom(SEED_BYTES),
                "global_hash": global_hash,
                "spec_hash": spec_hash,
                "dimension": dimension,
                "extras_count": extras_count,
            }
        )
        self.state[_INPUT] = ArrayRecord({"encoded": Array(np.ascontiguousarray(encoded))})
        return self.answer(round_index, STAGE_TABLE[0])

    def answer(self, round_index: int, stage: Stage, data: bytes = b"") -> Any:
        """Answer the server's request of ``stage`` (its bytes ``data``): rebuild the client,
        replay the stages this node answered, in table order, then answer this one. The
        stage must follow the last one answered; anything else voids the round here."""
        index = STAGES.index(stage.name)
        expected = "new" if index == 0 else STAGES[index - 1]
        try:
            record = self._record(round_index, expected)
        except ProtocolAbort:
            self.forget("aborted")
            raise
        result = self._run(record, stage, data)
        if stage.request is not None:
            record[stage.name] = data
        record["stage"] = stage.name
        self.state[_ROUND] = record
        if stage is STAGE_TABLE[-1]:
            self.forget()
        return result

    def forget(self, reason: str = "done") -> None:
        """Drop the seed and the encoded input: the round can no longer be answered."""
        if _ROUND in self.state.config_records:
            record = self.state.config_records[_ROUND]
            self.state[_ROUND] = ConfigRecord({"round": record["round"], "stage": reason})
        if _INPUT in self.state.array_records:
            del self.state[_INPUT]

    # ---- internals --------------------------------------------------------------------------
    def _record(self, round_index: int, stage: str) -> ConfigRecord:
        record = self.state.config_records.get(_ROUND)
        if record is None or record["round"] != round_index or record["stage"] != stage:
            found = "nothing" if record is None else f"round {record['round']} {record['stage']}"
            raise ProtocolAbort(
                f"node {self.institution} holds {found}, not {stage}", round_index=round_index
            )
        return record

    def _run(self, record: ConfigRecord, stage: Stage, data: bytes) -> Any:
        """Rebuild the client, replay the answered stages, then answer ``stage``."""
        context = RoundContext(
            int(record["round"]),
            self.cohort_size,
            self.params,
            bytes(record["global_hash"]),
            bytes(record["spec_hash"]),
            int(record["dimension"]),
            int(record["extras_count"]),
        )
        client = SecAggClient(
            self.institution,
            context,
            identity_key=self.identity.key,
            roster=self.identity.roster,
            entropy=keyed_entropy(bytes(record["seed"])),
        )
        try:
            for answered in STAGE_TABLE[: STAGES.index(stage.name)]:
                self._answer(client, answered, bytes(record.get(answered.name, b"")))
            return self._answer(client, stage, data)
        except BaseException:  # any failure, a bug included, voids the round on this node
            self.forget("aborted")
            raise

    def _answer(self, client: SecAggClient, stage: Stage, data: bytes) -> Any:
        request = None if stage.request is None else stage.request.from_bytes(data)
        encoded = self._encoded() if stage.takes_input else None
        return client.answer(stage, request, encoded)

    def _encoded(self) -> np.ndarray:
        return self.state.array_records[_INPUT]["encoded"].numpy()  # uint32 (d + 2m,)
