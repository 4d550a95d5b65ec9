"""One secure-aggregation round over Flower: one message exchange per row of
``secagg.STAGE_TABLE``, driving ``SecAggServer``.

    advertise_keys     global adapter + invited ids -> nodes train, answer AdvertiseKeys  (U1)
    share_keys         KeyDirectory to U1           -> ShareKeys                         (U2)
    masked_input       each node's ShareDelivery    -> MaskedInput (uint32, masked)      (U3)
    consistency_check  SurvivorSet (U3) to U3       -> SurvivorSignature                 (U4)
    unmasking          each node's UnmaskRequest    -> UnmaskResponse                    (U5)

Before the first exchange the server waits, up to ``Timeouts.online_s``, for the invited nodes
the SuperLink lists as offline (one being restarted) to come back (``exchange.await_online``).
A node that times out, fails, refuses (aborts) or sends a message that does not verify is a
dropout at that stage; the protocol recovers it when at least t remain. A reply is only
accepted from the node that joined as that institution: a node cannot speak for another.
The server keeps the running sum of masked vectors and nothing per client.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from flwr.app import RecordDict
from flwr.serverapp import Grid

from securefed.config import RunConfig
from securefed.errors import InvalidMessage, ProtocolAbort
from securefed.flower import wire
from securefed.flower.exchange import Exchange, await_online, exchange
from securefed.flower.protocol import extras_count, global_adapter_hash, round_encoding
from securefed.plan_inputs import plan_inputs
from securefed.privacy.institution import InstitutionPrivacy
from securefed.run.aggregation import release
from securefed.secagg import (
    STAGE_TABLE,
    RoundContext,
    SecAggServer,
    dropouts_by_stage,
    load_roster,
    round_transcript,
)


@dataclass(frozen=True)
class Timeouts:
    train_s: float  # the advertise exchange: includes loading the model and local training
    stage_s: float  # each of the four protocol-only exchanges
    poll_s: float = 0.2
    online_s: float = 0.0  # at a round's start, how long to wait for invited nodes offline


@dataclass
class RoundResult:
    mean_delta: np.ndarray | None  # (d,) float32; None when the round aborted
    survivors: tuple[int, ...]
    mean_train_loss: float | None
    budget_stopped: list[int]
    transcript: dict
    bytes_per_client: dict[str, dict[str, int]]
    stage_wall_s: dict[str, float] = field(default_factory=dict)
    unresponsive: frozenset[int] = frozenset()  # timed out or failed at some stage
    aborted: str | None = None


class _Round:
    """Bookkeeping of one round: who answered what, bytes, failures."""

    def __init__(
        self,
        grid: Grid,
        nodes: dict[int, int],
        round_index: int,
        timeouts: Timeouts,
        on_stage: Callable[[dict], None],
    ) -> None:
        self.grid, self.nodes, self.round_index, self.timeouts = grid, nodes, round_index, timeouts
        self.institution_of = {node: inst for inst, node in nodes.items()}
        self.traffic: dict[int, dict[str, int]] = {}
        self.failures: dict[str, dict[str, str]] = {}
        self.stage_wall_s: dict[str, float] = {}
        self.unresponsive: set[int] = set()
        self.on_stage = on_stage

    def send(
        self, stage: str, message_type: str, bodies: dict[int, RecordDict], timeout_s: float
    ) -> dict[int, dict]:
        """Exchange with institutions (``bodies`` by institution); their reply fields."""
        reachable = {self.nodes[i]: body for i, body in bodies.items() if i in self.nodes}
        ex: Exchange = exchange(
            self.grid,
            message_type,
            reachable,
            group_id=str(self.round_index),
            timeout_s=timeout_s,
            poll_s=self.timeouts.poll_s,
        )
        self.stage_wall_s[stage] = ex.wall_s
        failures = {str(i): "not connected" for i in bodies if i not in self.nodes}
        failures.update({str(self.institution_of[n]): f"error: {r}" for n, r in ex.failed.items()})
        failures.update({str(self.institution_of[n]): "timed out" for n in ex.timed_out})
        self.unresponsive.update(int(i) for i in failures)
        out: dict[int, dict] = {}
        for node, body in reachable.items():
            inst = self.institution_of[node]
            counts = self.traffic.setdefault(inst, {"up": 0, "down": 0})
            counts["down"] += wire.content_bytes(body)
            if node in ex.replies:
                counts["up"] += wire.content_bytes(ex.replies[node].content)
                try:
                    out[inst] = wire.fields_of(ex.replies[node])
                except InvalidMessage:
                    failures[str(inst)] = "reply without securefed fields"
        for inst, fields in list(out.items()):
            if "aborted" in fields:
                failures[str(inst)] = f"aborted: {fields['aborted']}"
                del out[inst]
        self.failures[stage] = failures
        return out

    def accept(self, server: SecAggServer, stage: str, replies: dict[int, dict], parse) -> None:
        """Feed protocol replies to the server; a reply that does not verify is a dropout."""
        for inst, fields in sorted(replies.items()):
            try:
                msg = parse(bytes(fields["payload"]))
                if msg.sender != inst:
                    raise InvalidMessage(round_index=self.round_index)
                server.accept(msg)
            except (InvalidMessage, KeyError, TypeError):
                self.failures[stage][str(inst)] = "invalid message"

    def closed(self, server: SecAggServer, stage: str) -> None:
        """Report a closed stage (tests and operators watch ``flower/progress.jsonl``)."""
        self.on_stage(
            {
                "round": self.round_index,
                "stage": stage,
                "participants": list(server.participants[stage]),
                "failures": self.failures[stage],
            }
        )


def secure_round(
    grid: Grid,
    cfg: RunConfig,
    round_index: int,
    invited: list[int],
    nodes: dict[int, int],
    global_vector: np.ndarray,
    spec_hash: str,
    timeouts: Timeouts,
    on_stage: Callable[[dict], None],
    institution: InstitutionPrivacy | None = None,
) -> RoundResult:
    """Run one round with the institutions ``invited``; ``nodes`` maps institution -> node id.

    ``institution``: distributed DP's plan and ledger (None: off). Each node adds its noise
    share inside its masked input; a round whose sum is released records the shares that
    reached it (the survivors of masked input) in the ledger."""
    params = cfg.secure_aggregation.params()
    roster = load_roster(params.roster) if params.roster is not None else None
    dimension = int(global_vector.shape[0])
    global_hash = global_adapter_hash(global_vector)
    distributed = None if institution is None else institution.codec(round_index, global_hash)
    codec, bound_spec = round_encoding(
        distributed, params.quantization, dimension, bytes.fromhex(spec_hash)
    )
    context = RoundContext(
        round_index,
        len(invited),
        params,
        global_hash,
        bound_spec,
        codec.encoded_dimension,
        extras_count(plan_inputs(cfg)),
    )
    server = SecAggServer(context, invited=frozenset(invited), roster=roster)
    rnd = _Round(grid, nodes, round_index, timeouts, on_stage)
    started = time.perf_counter()
    offline = await_online(
        grid,
        [nodes[i] for i in invited if i in nodes],
        timeout_s=timeouts.online_s,
        poll_s=timeouts.poll_s,
    )
    on_stage(
        {
            "round": round_index,
            "stage": "online",
            "waited_s": time.perf_counter() - started,
            "offline": sorted(rnd.institution_of[n] for n in offline),
        }
    )
    stopped: list[int] = []
    try:
        # ---- the stages of STAGE_TABLE, in order: one message to each node still in, one back
        #   advertise_keys     global adapter + invited out; nodes train, then public keys in
        #   share_keys         the key directory out; sealed Shamir shares for each neighbour in
        #   masked_input       each node's own shares out; its masked vector in
        #   consistency_check  the survivor set out; each survivor's signature on it in
        #   unmasking          the signatures and the lists out; one kind of share per peer in
        opened, recipients = None, invited
        for stage in STAGE_TABLE:
            if stage.request is None:  # the round's opening: the model, then local training
                bodies = {
                    i: wire.content({"round": round_index, "invited": invited}, global_vector)
                    for i in recipients
                }
            else:
                bodies = _requests(round_index, stage, opened, recipients)
            timeout = timeouts.train_s if stage.request is None else timeouts.stage_s
            replies = rnd.send(stage.name, wire.message_type(stage), bodies, timeout)
            if stage.request is None:
                stopped = sorted(i for i, f in replies.items() if "stopped" in f)
                replies = {i: f for i, f in replies.items() if i not in stopped}
            rnd.accept(server, stage.name, replies, stage.reply.from_bytes)
            opened = server.close(stage)
            rnd.closed(server, stage.name)
            recipients = list(server.participants[stage.name])
        total = opened
    except ProtocolAbort as exc:
        transcript = _transcript(server, params, invited, rnd, stopped, None, aborted=str(exc))
        return RoundResult(
            None,
            (),
            None,
            stopped,
            transcript,
            _bytes(rnd),
            rnd.stage_wall_s,
            frozenset(rnd.unresponsive),
            aborted=str(exc),
        )
    survivors = tuple(server.participants["masked_input"])
    decoded = codec.decode(total, len(survivors))
    transcript = _transcript(server, params, invited, rnd, stopped, decoded)
    out = release(decoded, round_index, len(survivors), institution)
    if out.distributed_dp is not None:
        transcript["distributed_dp"] = out.distributed_dp
    return RoundResult(
        out.mean_delta,
        survivors,
        out.mean_train_loss,
        stopped,
        transcript,
        _bytes(rnd),
        rnd.stage_wall_s,
        frozenset(rnd.unresponsive),
    )


def _requests(round_index: int, stage, opened, recipients: list[int]) -> dict[int, RecordDict]:
    """Each recipient's request of ``stage``, as bytes in a message body (a message sent to
    every recipient is serialized once)."""
    encoded: dict[int, bytes] = {}
    bodies = {}
    for i in recipients:
        msg = stage.request_for(opened, i)
        if id(msg) not in encoded:
            encoded[id(msg)] = msg.to_bytes()
        bodies[i] = wire.content({"round": round_index, "payload": encoded[id(msg)]})
    return bodies


def _bytes(rnd: _Round) -> dict[str, dict[str, int]]:
    return {str(i): dict(v) for i, v in sorted(rnd.traffic.items())}


def _transcript(
    server: SecAggServer,
    params,
    invited: list[int],
    rnd: _Round,
    stopped: list[int],
    decoded,
    aborted: str | None = None,
) -> dict:
    """The round's audit record: the shared fields, plus what only this transport observes.

    The server cannot see where the nodes drew their keys, so ``entropy`` is None here; each
    node's own record states it.
    """
    live = [i for i in invited if i not in stopped]
    out = round_transcript(
        server,
        params,
        invited,
        dropouts_by_stage(live, server.participants),
        rnd.traffic,
        decoded.wrap_count if decoded is not None else None,
        entropy=None,
    )
    out |= {
        "transport": "flower",
        "budget_stopped": stopped,
        "failures": rnd.failures,
        "stage_wall_s": rnd.stage_wall_s,
    }
    if aborted is not None:
        out["aborted"] = aborted
    return out
