"""One institution's secure-aggregation round across ClientApp calls, kept in ``context.state``.

Flower starts a fresh ClientApp process for every message, so the client state machine
(``securefed.secagg.SecAggClient``) cannot stay in memory between stages. Instead of
serializing its secrets, the node keeps one 32-byte random seed per round in the node's own
state (``context.state``, held by its SuperNode, never sent to the server) and rebuilds the
client for each stage by replaying the server messages it has already answered: every key,
seed and share coefficient the client draws comes through its ``entropy`` seam, and that
entropy is a stream keyed by the seed, so the replay reaches the very same state.

The stage order is enforced here as well as in the client: a stage that was answered, or a
message for another round, aborts the round for this node and wipes the seed, so a server
that asks twice (say, for both kinds of shares of one peer) learns nothing new.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict

from securefed.errors import ProtocolAbort
from securefed.secagg import (
    AdvertiseKeys,
    Entropy,
    KeyDirectory,
    MaskedInput,
    Roster,
    RoundContext,
    SecAggClient,
    SecAggParams,
    ShareDelivery,
    ShareKeys,
    SurvivorSet,
    SurvivorSignature,
    UnmaskRequest,
    UnmaskResponse,
)

_ROUND = "securefed.round"
_INPUT = "securefed.encoded"
SEED_BYTES = 32
# stage reached -> the messages already answered, in protocol order
_ANSWERED = {
    "advertised": ("advertise",),
    "shared": ("advertise", "directory"),
    "masked": ("advertise", "directory", "delivery"),
    "signed": ("advertise", "directory", "delivery", "survivors"),
}


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
    """The persisted state of this node's current round, and the five protocol steps.

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

    # ---- stage 0: after local training ---------------------------------------------------
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
    ) -> AdvertiseKeys:
        """Start a round with this node's encoded input; a previous unfinished round is void."""
        self.check_new(round_index)
        self.state[_ROUND] = ConfigRecord(
            {
                "round": round_index,
                "stage": "advertised",
                "seed": os.urandom(SEED_BYTES),
                "global_hash": global_hash,
                "spec_hash": spec_hash,
                "dimension": dimension,
                "extras_count": extras_count,
            }
        )
        self.state[_INPUT] = ArrayRecord({"encoded": Array(np.ascontiguousarray(encoded))})
        return self._run(round_index, "advertised", lambda client: client.advertise_keys(), ())

    # ---- stages 1-4: replay what was answered, then answer the new message ----------------
    def share_keys(self, round_index: int, data: bytes) -> ShareKeys:
        directory = KeyDirectory.from_bytes(data)
        return self._step(
            round_index,
            "advertised",
            "shared",
            "directory",
            data,
            lambda client: client.share_keys(directory),
        )

    def masked_input(self, round_index: int, data: bytes) -> MaskedInput:
        delivery = ShareDelivery.from_bytes(data)
        return self._step(
            round_index,
            "shared",
            "masked",
            "delivery",
            data,
            lambda client: client.masked_input(delivery, self._encoded()),
        )

    def sign_survivors(self, round_index: int, data: bytes) -> SurvivorSignature:
        survivors = SurvivorSet.from_bytes(data)
        return self._step(
            round_index,
            "masked",
            "signed",
            "survivors",
            data,
            lambda client: client.sign_survivors(survivors),
        )

    def unmask(self, round_index: int, data: bytes) -> UnmaskResponse:
        request = UnmaskRequest.from_bytes(data)
        response = self._step(
            round_index, "signed", "done", "request", data, lambda client: client.unmask(request)
        )
        self.forget()
        return response

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

    def _step(self, round_index, expected, after, field, data, answer):
        try:
            record = self._record(round_index, expected)
        except ProtocolAbort:
            self.forget("aborted")
            raise
        result = self._run(round_index, expected, answer, _ANSWERED[expected])
        record[field] = data
        record["stage"] = after
        self.state[_ROUND] = record
        return result

    def _run(self, round_index, stage, answer, answered):
        """Rebuild the client, replay ``answered`` messages, then ``answer`` the new one."""
        record = self._record(round_index, stage)
        context = RoundContext(
            round_index,
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
            if "advertise" in answered:
                client.advertise_keys()
            if "directory" in answered:
                client.share_keys(KeyDirectory.from_bytes(bytes(record["directory"])))
            if "delivery" in answered:
                client.masked_input(
                    ShareDelivery.from_bytes(bytes(record["delivery"])), self._encoded()
                )
            if "survivors" in answered:
                client.sign_survivors(SurvivorSet.from_bytes(bytes(record["survivors"])))
            return answer(client)
        except BaseException:  # any failure, a bug included, voids the round on this node
            self.forget("aborted")
            raise

    def _encoded(self) -> np.ndarray:
        return self.state.array_records[_INPUT]["encoded"].numpy()  # uint32 (d + 2m,)
