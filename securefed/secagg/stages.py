"""The stage table: the one place that states the protocol's stage order.

Each row names a stage (the one spelling every driver, the transcript, the dropout config,
the audit and Flower's message types use), the message the server sends to open it and the
client's reply, the client's step, and the server's two halves: take one reply, then close
the stage, which returns what opens the next stage (one message for every client, or one
each) or, after the last, the unmasked sum. The halves themselves live in the stage modules
(one module per stage, both sides); this table only orders them.

Every transport walks the table, as Flower's SecAgg+ workflow walks its ``steps``::

    requests = None                                   # the first stage has no request
    for stage in STAGE_TABLE:
        for u in the clients still in:
            server.accept(client[u].answer(stage, stage.request_for(requests, u), encoded[u]))
        requests = server.close(stage)                # after the last: the sum (uint32)

``secagg.driver`` (in-process), ``flower.server_round`` (the ServerApp) and
``flower.node_round`` (a node, replaying its answered stages) do exactly that.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from securefed.secagg import advertise, consistency, masked_input, share_keys, unmasking
from securefed.secagg.state import ClientState, ServerState


@dataclass(frozen=True)
class Stage:
    """One row of the table."""

    name: str
    request: type | None  # server -> client message that opens the stage (None: the first)
    reply: type  # client -> server
    answer: Callable[[ClientState, Any, np.ndarray | None], Any]  # client: (request, input)
    accept: Callable[[ServerState, Any], None]  # server: take one reply
    close: Callable[[ServerState], Any]  # server: end the stage; open the next (or the sum)
    broadcast: bool = False  # the request is one message, the same for every client
    takes_input: bool = False  # the client's step also takes its encoded input (uint32)

    def request_for(self, opened: Any, client: int) -> Any:
        """The request client ``client`` gets, from what the previous close returned."""
        if self.request is None:
            return None
        return opened if self.broadcast else opened[client]


STAGE_TABLE: tuple[Stage, ...] = (
    Stage(
        "advertise_keys",
        None,
        advertise.AdvertiseKeys,
        lambda state, _request, _input: advertise.advertise_keys(state),
        advertise.accept_advertisement,
        share_keys.open_share_keys,
    ),
    Stage(
        "share_keys",
        share_keys.KeyDirectory,
        share_keys.ShareKeys,
        lambda state, directory, _input: share_keys.share_keys(state, directory),
        share_keys.accept_share_keys,
        masked_input.open_masked_input,
        broadcast=True,
    ),
    Stage(
        "masked_input",
        masked_input.ShareDelivery,
        masked_input.MaskedInput,
        masked_input.masked_input,
        masked_input.accept_masked_input,
        consistency.open_consistency_check,
        takes_input=True,
    ),
    Stage(
        "consistency_check",
        consistency.SurvivorSet,
        consistency.SurvivorSignature,
        lambda state, survivors, _input: consistency.sign_survivors(state, survivors),
        consistency.accept_survivor_signature,
        unmasking.open_unmasking,
    ),
    Stage(
        "unmasking",
        unmasking.UnmaskRequest,
        unmasking.UnmaskResponse,
        lambda state, request, _input: unmasking.unmask(state, request),
        unmasking.accept_unmask_response,
        unmasking.finish_unmasking,
    ),
)
STAGES = tuple(stage.name for stage in STAGE_TABLE)
STAGE = {stage.name: stage for stage in STAGE_TABLE}
