"""The client state machine: one call per row of ``stages.STAGE_TABLE``, in order, each
answering one server message (``answer(stage, request, encoded)``, or its named form)::

    client = SecAggClient(client_id, context, identity_key=..., roster=...)
    advertise = client.advertise_keys()                       # -> AdvertiseKeys
    shares    = client.share_keys(KeyDirectory)               # -> ShareKeys
    masked    = client.masked_input(ShareDelivery, encoded)   # -> MaskedInput
    signature = client.sign_survivors(SurvivorSet)            # -> SurvivorSignature
    response  = client.unmask(UnmaskRequest)                  # -> UnmaskResponse

A call out of order, a repeated call, or any call after a failure raises ``ProtocolAbort``.
On any failure -- any exception at all inside a handler, not only a protocol error -- the
client aborts for good and forgets its secrets, so a misbehaving server gains nothing by
asking again. The client derives the round plan (graph, threshold) itself
from its own configuration; nothing the server says can lower the threshold. It refuses at
construction, with a ``ConfigError``, a plan that is not safe for the adversary model it is
given: a semi-malicious server without an identity roster (the consistency check is signed
with the roster's keys), or a threshold the rule rejects (``params.check_plan_secure``).
"""

from __future__ import annotations

import enum
from typing import Any

import numpy as np

from securefed.errors import InvalidMessage, ProtocolAbort
from securefed.secagg import advertise, consistency, masked_input, share_keys, unmasking
from securefed.secagg.entropy import Entropy, os_entropy
from securefed.secagg.params import RoundContext, check_plan_secure, plan_round, require_roster
from securefed.secagg.roster import Roster
from securefed.secagg.stages import STAGE, STAGE_TABLE, STAGES, Stage
from securefed.secagg.state import ClientState

# Where a client stands: new, the last stage of STAGE_TABLE it answered, or aborted. The
# stage members are generated from the table, so their names are the stage names.
ClientStage = enum.Enum(
    "ClientStage",
    {"NEW": "new", **{name.upper(): name for name in STAGES}, "ABORTED": "aborted"},
)


def _when(stage: ClientStage) -> str:
    if stage is ClientStage.NEW:
        return "before any stage"
    return "after aborting" if stage is ClientStage.ABORTED else f"after {stage.value}"


class SecAggClient:
    """One client's side of one secure-aggregation round."""

    def __init__(
        self,
        client_id: int,
        context: RoundContext,
        *,
        identity_key: bytes | None = None,
        roster: Roster | None = None,
        entropy: Entropy = os_entropy,
    ) -> None:
        if (identity_key is None) != (roster is None):
            raise ValueError("identity_key and roster go together: give both or neither")
        adversary = context.params.adversary
        require_roster(adversary, has_roster=roster is not None)
        plan = plan_round(context.cohort_size, context.params)
        check_plan_secure(plan, adversary)
        self.state = ClientState(
            client_id=client_id,
            context=context,
            plan=plan,
            entropy=entropy,
            identity_key=identity_key,
            roster=roster,
        )
        self.stage = ClientStage.NEW

    @property
    def client_id(self) -> int:
        return self.state.client_id

    def answer(self, stage: Stage, request: Any = None, encoded: np.ndarray | None = None) -> Any:
        """Answer the server's ``request`` opening ``stage``, which must be the next stage of
        ``STAGE_TABLE``; ``encoded`` (uint32) is this client's input, for the stage that
        takes it. Any failure aborts the client for good and drops its secrets."""
        index = STAGES.index(stage.name)
        expected = ClientStage.NEW if index == 0 else ClientStage(STAGES[index - 1])
        if self.stage is not expected:
            raise ProtocolAbort(
                f"client {self.client_id} cannot answer {stage.name} {_when(self.stage)}, "
                f"only {_when(expected)}",
                round_index=self.state.context.round_index,
            )
        try:
            if stage.request is not None and not isinstance(request, stage.request):
                raise InvalidMessage(round_index=self.state.context.round_index)
            result = stage.answer(self.state, request, encoded)
        except BaseException:  # a parse error or a bug must not leave the secrets behind
            self.stage = ClientStage.ABORTED
            self.state.forget_secrets()
            raise
        self.stage = ClientStage(stage.name)
        if stage is STAGE_TABLE[-1]:
            self.state.forget_secrets()
        return result

    # ---- the table's rows by name (for readers and tests) -------------------------------------
    def advertise_keys(self) -> advertise.AdvertiseKeys:
        """Stage 0: fresh key pairs for this round."""
        return self.answer(STAGE["advertise_keys"])

    def share_keys(self, directory: share_keys.KeyDirectory) -> share_keys.ShareKeys:
        """Stage 1: check the directory, fix the session, seal shares for the neighbours."""
        return self.answer(STAGE["share_keys"], directory)

    def masked_input(
        self, delivery: masked_input.ShareDelivery, encoded: np.ndarray
    ) -> masked_input.MaskedInput:
        """Stage 2: keep the delivered shares and upload ``encoded`` (uint32) masked."""
        return self.answer(STAGE["masked_input"], delivery, encoded)

    def sign_survivors(self, survivors: consistency.SurvivorSet) -> consistency.SurvivorSignature:
        """Stage 3: check the survivor set against what this client saw, and sign it."""
        return self.answer(STAGE["consistency_check"], survivors)

    def unmask(self, request: unmasking.UnmaskRequest) -> unmasking.UnmaskResponse:
        """Stage 4: release one kind of share per peer, after the strict checks."""
        return self.answer(STAGE["unmasking"], request)
