"""The server state machine: accept messages per stage, then close the stage, in the order
of ``stages.STAGE_TABLE`` (``accept(msg)``, ``close(stage)``, or the named forms)::

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

from typing import Any

import numpy as np

from securefed.errors import InvalidMessage, ProtocolAbort
from securefed.secagg import advertise, consistency, masked_input, share_keys, unmasking
from securefed.secagg.params import RoundContext, RoundPlan, plan_round
from securefed.secagg.roster import Roster
from securefed.secagg.stages import STAGE, STAGE_TABLE, STAGES, Stage
from securefed.secagg.state import ServerState

ClientMessage = (
    advertise.AdvertiseKeys
    | share_keys.ShareKeys
    | masked_input.MaskedInput
    | consistency.SurvivorSignature
    | unmasking.UnmaskResponse
)


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
        self.open = 0  # index in STAGE_TABLE of the stage taking replies; past the end: done

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

    @property
    def stage(self) -> str:
        """The stage now taking replies, or "done"."""
        return STAGES[self.open] if self.open < len(STAGES) else "done"

    def accept(self, msg: ClientMessage) -> None:
        """Take one client message of the current stage; ``InvalidMessage`` if it is bad."""
        if self.open >= len(STAGE_TABLE) or not isinstance(msg, STAGE_TABLE[self.open].reply):
            raise InvalidMessage(round_index=self.state.context.round_index)
        STAGE_TABLE[self.open].accept(self.state, msg)

    def close(self, stage: Stage) -> Any:
        """End ``stage`` (the one taking replies): what opens the next stage -- one message
        for every client (``KeyDirectory``) or one each, by client id -- or, after the last,
        the unmasked sum (uint32) of the encoded inputs of U3."""
        if self.stage != stage.name:
            raise ProtocolAbort(
                f"server is at {self.stage}, cannot close {stage.name}",
                round_index=self.state.context.round_index,
            )
        self.open += 1
        return stage.close(self.state)

    # ---- the table's rows by name (for readers and tests) -------------------------------------
    def close_advertise_keys(self) -> share_keys.KeyDirectory:
        """End stage 0; the directory goes to every client in U1."""
        return self.close(STAGE["advertise_keys"])

    def close_share_keys(self) -> dict[int, masked_input.ShareDelivery]:
        """End stage 1; each client in U2 gets its own delivery."""
        return self.close(STAGE["share_keys"])

    def close_masked_input(self) -> dict[int, consistency.SurvivorSet]:
        """End stage 2; each client in U3 gets the survivor set to sign."""
        return self.close(STAGE["masked_input"])

    def close_consistency_check(self) -> dict[int, unmasking.UnmaskRequest]:
        """End stage 3; each signer gets the alive and dropped lists and the signatures."""
        return self.close(STAGE["consistency_check"])

    def close_unmasking(self) -> np.ndarray:
        """End stage 4: the unmasked sum (uint32) of the encoded inputs of U3."""
        return self.close(STAGE["unmasking"])
