"""The server state machine: accept messages per stage, then close the stage.

    server = SecAggServer(context, invited=ids, roster=...)
    for msg in advertisements:  server.accept(msg)            # AdvertiseKeys
    directory = server.close_advertise_keys()                 # -> KeyDirectory, to all of U1
    for msg in shares:          server.accept(msg)            # ShareKeys
    deliveries = server.close_share_keys()                    # -> {client: ShareDelivery}
    for msg in masked_inputs:   server.accept(msg)            # MaskedInput
    survivors = server.close_masked_input()                   # -> {client: SurvivorSet}
    for msg in signatures:      server.accept(msg)            # SurvivorSignature
    requests = server.close_consistency_check()               # -> {client: UnmaskRequest}
    for msg in responses:       server.accept(msg)            # UnmaskResponse
    total = server.close_unmasking()                          # uint32 sum over U3

``accept`` raises ``InvalidMessage`` for a message that does not fit the stage or session and
leaves the state unchanged, so a transport can drop that client and carry on. A client that
sends nothing before a stage closes has dropped out. Each close raises ``ProtocolAbort``
when fewer than t clients remain, saying how many did.
"""

from __future__ import annotations

import enum

import numpy as np

from securefed.errors import InvalidMessage, ProtocolAbort
from securefed.secagg import advertise, consistency, masked_input, share_keys, unmasking
from securefed.secagg.params import RoundContext, RoundPlan, plan_round
from securefed.secagg.roster import Roster
from securefed.secagg.state import ServerState

ClientMessage = (
    advertise.AdvertiseKeys
    | share_keys.ShareKeys
    | masked_input.MaskedInput
    | consistency.SurvivorSignature
    | unmasking.UnmaskResponse
)


class ServerStage(enum.Enum):
    ADVERTISE_KEYS = "advertise_keys"
    SHARE_KEYS = "share_keys"
    MASKED_INPUT = "masked_input"
    CONSISTENCY_CHECK = "consistency_check"
    UNMASKING = "unmasking"
    DONE = "done"


_ACCEPTS = {
    ServerStage.ADVERTISE_KEYS: (advertise.AdvertiseKeys, advertise.accept_advertisement),
    ServerStage.SHARE_KEYS: (share_keys.ShareKeys, share_keys.accept_share_keys),
    ServerStage.MASKED_INPUT: (masked_input.MaskedInput, masked_input.accept_masked_input),
    ServerStage.CONSISTENCY_CHECK: (
        consistency.SurvivorSignature,
        consistency.accept_survivor_signature,
    ),
    ServerStage.UNMASKING: (unmasking.UnmaskResponse, unmasking.accept_unmask_response),
}


class SecAggServer:
    """The server's side of one secure-aggregation round."""

    def __init__(
        self, context: RoundContext, *, invited: frozenset[int], roster: Roster | None = None
    ) -> None:
        if len(invited) != context.cohort_size:
            raise ValueError(f"{len(invited)} invited clients, cohort size {context.cohort_size}")
        self.state = ServerState(
            context=context,
            plan=plan_round(context.cohort_size, context.params),
            roster=roster,
            invited=frozenset(invited),
        )
        self.stage = ServerStage.ADVERTISE_KEYS

    @property
    def plan(self) -> RoundPlan:
        return self.state.plan

    @property
    def session_id(self) -> bytes:
        return self.state.session_id

    @property
    def participants(self) -> dict[str, tuple[int, ...]]:
        """Clients that completed each stage so far (U1..U5), by stage name."""
        return dict(self.state.participants)

    def accept(self, msg: ClientMessage) -> None:
        """Take one client message of the current stage; ``InvalidMessage`` if it is bad."""
        expected = _ACCEPTS.get(self.stage)
        if expected is None or not isinstance(msg, expected[0]):
            raise InvalidMessage(round_index=self.state.context.round_index)
        expected[1](self.state, msg)

    def _close(self, current: ServerStage, after: ServerStage) -> None:
        if self.stage is not current:
            raise ProtocolAbort(
                f"server is at {self.stage.value}, cannot close {current.value}",
                round_index=self.state.context.round_index,
            )
        self.stage = after

    def close_advertise_keys(self) -> share_keys.KeyDirectory:
        """End stage 0; the directory goes to every client in U1."""
        self._close(ServerStage.ADVERTISE_KEYS, ServerStage.SHARE_KEYS)
        return share_keys.open_share_keys(self.state)

    def close_share_keys(self) -> dict[int, masked_input.ShareDelivery]:
        """End stage 1; each client in U2 gets its own delivery."""
        self._close(ServerStage.SHARE_KEYS, ServerStage.MASKED_INPUT)
        return masked_input.open_masked_input(self.state)

    def close_masked_input(self) -> dict[int, consistency.SurvivorSet]:
        """End stage 2; each client in U3 gets the survivor set to sign."""
        self._close(ServerStage.MASKED_INPUT, ServerStage.CONSISTENCY_CHECK)
        return consistency.open_consistency_check(self.state)

    def close_consistency_check(self) -> dict[int, unmasking.UnmaskRequest]:
        """End stage 3; each signer gets the alive and dropped lists and the signatures."""
        self._close(ServerStage.CONSISTENCY_CHECK, ServerStage.UNMASKING)
        return unmasking.open_unmasking(self.state)

    def close_unmasking(self) -> np.ndarray:
        """End stage 4: the unmasked sum (uint32) of the encoded inputs of U3."""
        self._close(ServerStage.UNMASKING, ServerStage.DONE)
        return unmasking.finish_unmasking(self.state)
