"""The ClientApp: one institution's side of every message the ServerApp sends.

Flower starts a fresh process per message, unless the node runs ``warm_node`` (one long-running
process for all of them, which keeps ``_local`` loaded). ``join`` (accepted once per run, a
restart included) checks the run's config against the security settings the node pinned in its
own node config (``node_security``) and refuses the run if any differs; it then keeps the
config in the node's ``context.state``. Every protocol step runs with the node's pinned
settings and roster, never the server's. ``advertise`` evaluates the global adapter on the
node's own test split, trains on its own shard (DP-SGD when the config says so), spends privacy
budget in the node's own ledger, encodes the delta and starts the secure-aggregation round; the
four later stages answer protocol messages only (they never load the model, so they start
fast). What leaves the node: its institution id, the protocol messages (public keys, sealed
shares, the masked vector, unmasking shares) -- and, if its budget is spent, the word
"stopped".
"""

from __future__ import annotations

import functools
import hashlib
import json
import time

import numpy as np
import yaml
from flwr.app import ConfigRecord, Context, Message
from flwr.clientapp import ClientApp

from securefed.config import RunConfig, dump_config, validate
from securefed.errors import ProtocolAbort, SecurefedError
from securefed.flower import wire
from securefed.flower.node import (
    NodeIdentity,
    NodeLedger,
    NodeLocal,
    node_config_of,
    save_run_config,
)
from securefed.flower.node_round import NodeRound
from securefed.flower.node_security import NodeSecurity, disagreements, node_security
from securefed.flower.protocol import (
    client_extras,
    extras_count,
    global_adapter_hash,
    round_encoding,
    rounding_rng,
)
from securefed.plan_inputs import PlanInputs
from securefed.privacy.institution import distributed_codec, plan_for_run
from securefed.run.federation import sample_clients
from securefed.run.folder import CONFIG
from securefed.run.progress import Progress
from securefed.secagg import STAGE_TABLE, Stage, plan_round

app = ClientApp()
JOIN_LOG = "join.jsonl"

_RUN = "securefed.run"


# ---- per-call context ------------------------------------------------------------------------
def _config_text(context: Context) -> str:
    record = context.state.config_records.get(_RUN)
    return str((record or _rejoin(context))["config_yaml"])


def _rejoin(context: Context) -> ConfigRecord:
    """A restarted SuperNode has lost its ``context.state``: take back the config this node
    accepted at ``join`` from its own run folder (written by the node after the pin check,
    never by the server), checked against its pins again. Round state is not restored: a
    round the node was in when it stopped is one it dropped out of."""
    identity = NodeIdentity.from_node_config(node_config_of(context.node_config))
    path = identity.records(context.run_id).file(CONFIG)
    if not path.is_file():
        raise ProtocolAbort("this node has not joined the run")
    cfg = validate(yaml.safe_load(path.read_text()))
    differ = disagreements(cfg, _security(context, identity))
    if differ:
        raise ProtocolAbort(
            "the config this node joined differs from its pins: " + "; ".join(differ)
        )
    record = ConfigRecord({"config_yaml": dump_config(cfg)})
    context.state[_RUN] = record
    return record


def _run_config(context: Context) -> RunConfig:
    return validate(yaml.safe_load(_config_text(context)))


@functools.lru_cache(maxsize=8)
def _local(config_text: str, identity: NodeIdentity) -> NodeLocal:
    """The node's data and model, built once per process: once per node life on a warm
    node (``warm_node``), in Flower's simulation engine and the in-process test grid; every
    message where Flower starts a process per message."""
    return NodeLocal(validate(yaml.safe_load(config_text)), identity)


def _security(context: Context, identity: NodeIdentity) -> NodeSecurity:
    return node_security(node_config_of(context.node_config), identity.institution)


def _node_round(context: Context, identity: NodeIdentity, security: NodeSecurity) -> NodeRound:
    """This round's state machine, planned from the node's pinned inputs only."""
    return NodeRound(
        context.state,
        security.params(),
        security.inputs.cohort_size,
        identity.institution,
        security.identity,
    )


def _log(context: Context, identity: NodeIdentity, record: dict) -> None:
    identity.records(context.run_id).append_metrics(record)


def _log_join(context: Context, identity: NodeIdentity, record: dict) -> None:
    """Every join this node was sent, accepted or refused, in ``join.jsonl`` of its folder."""
    path = identity.records(context.run_id).file(JOIN_LOG)
    with path.open("a") as handle:
        handle.write(json.dumps({"time": time.time(), **record}, sort_keys=True) + "\n")


# ---- handlers ----------------------------------------------------------------------------------
@app.query("join")
def join(msg: Message, context: Context) -> Message:
    """Accept the run's config once, if it matches this node's pinned security settings;
    answer with this node's institution id (or refuse, saying why)."""
    identity = NodeIdentity.from_node_config(node_config_of(context.node_config))

    def refuse(reason: str) -> Message:
        _log_join(context, identity, {"refused": reason})
        return wire.reply(msg, {"refused": reason})

    if (
        _RUN in context.state.config_records
        or identity.records(context.run_id).file(CONFIG).is_file()
    ):
        return refuse("this node already joined the run; join is accepted once")
    try:
        security = _security(context, identity)
        text = str(wire.fields_of(msg)["config_yaml"])
        cfg = validate(yaml.safe_load(text))
    except SecurefedError as exc:
        return refuse(str(exc))
    differ = disagreements(cfg, security)
    if differ:
        return refuse("the server's settings differ from this node's: " + "; ".join(differ))
    # the canonical text: what a restarted node reads back from its folder (``_rejoin``)
    context.state[_RUN] = ConfigRecord({"config_yaml": dump_config(cfg)})
    save_run_config(identity.records(context.run_id), cfg)
    _log_join(context, identity, {"accepted": True, "pinned": security.record()})
    return wire.reply(msg, {"institution": identity.institution})


@app.train(STAGE_TABLE[0].name)
def advertise(msg: Message, context: Context) -> Message:
    """Evaluate, train, spend budget, encode, and advertise this round's keys."""
    from securefed.run.setup import client_update  # lazy: torch stays out of protocol-only calls

    started = time.perf_counter()
    identity = NodeIdentity.from_node_config(node_config_of(context.node_config))
    cfg = _run_config(context)
    fields = wire.fields_of(msg)
    round_index = int(fields["round"])
    invited = [int(c) for c in fields["invited"]]
    refuse = functools.partial(_abort, msg, context, identity, round_index, STAGE_TABLE[0].name)
    if invited != sample_clients(cfg, cfg.partition.num_clients, round_index):
        return refuse("the invited institutions are not the seeded sample of this round")
    if not 0 <= round_index < cfg.training.rounds:
        # the noise plans (this node's and the federation's) cover the run's planned rounds
        return refuse(f"round {round_index} is outside the run's {cfg.training.rounds} rounds")
    security = _security(context, identity)
    node_round = _node_round(context, identity, security)
    try:
        node_round.check_new(round_index)
    except ProtocolAbort as exc:
        return refuse(str(exc))
    vector = wire.global_vector_of(msg)
    loading, misses = time.perf_counter(), _local.cache_info().misses
    local = _local(_config_text(context), identity)
    load = {"load_s": time.perf_counter() - loading, "warm": _local.cache_info().misses == misses}
    if vector.shape != (local.setup.bundle.spec.size,):
        return refuse("the global adapter does not fit this node's adapter spec")
    record = {
        "round": round_index,
        "stage": STAGE_TABLE[0].name,
        "eval_global_before": local.evaluate(vector),
        **load,  # warm: model and data were already loaded in this process
    }
    ledger = NodeLedger(local, identity.records(context.run_id))
    plan = ledger.privacy.plan_round(local.index, local.setup.local_steps(local.index))
    if plan is ledger.privacy.EXHAUSTED:
        _log(context, identity, {**record, "budget_stopped": True, "epsilon": ledger.epsilon()})
        return wire.reply(msg, {"stopped": "privacy budget"})
    delta, stats = client_update(
        local.setup, local.index, vector, round_index, plan, Progress(enabled=False)
    )
    ledger.privacy.record_round(local.index, round_index, stats)
    ledger.save()
    if identity.keep_updates:
        identity.records(context.run_id).save_adapter(
            f"updates/round-{round_index:04d}.safetensors", delta, local.setup.bundle.spec.hash
        )
    weight = local.weight()
    global_hash = global_adapter_hash(vector)
    plan = _distributed_plan(security.inputs, local.setup.bundle.spec.size)
    quantization = node_round.params.quantization
    distributed = (
        None if plan is None else distributed_codec(plan, quantization, global_hash, round_index)
    )
    codec, spec_hash = round_encoding(
        distributed,
        quantization,
        local.setup.bundle.spec.size,
        bytes.fromhex(local.setup.bundle.spec.hash),
    )
    # stochastic rounding: seeded without distributed DP (the sum is all anyone sees), from
    # the OS CSPRNG with it (rounding is then part of the mechanism, beside the noise share)
    rounding = None if plan is not None else rounding_rng(cfg, round_index, local.index)
    encoded = codec.encode(
        delta, weight, client_extras(security.inputs, weight, stats.mean_loss), rounding
    )
    keys = node_round.advertise(
        round_index,
        encoded,
        global_hash,
        spec_hash,
        codec.encoded_dimension,
        extras_count(security.inputs),
    )
    answer = wire.reply(msg, {"payload": keys.to_bytes()})
    _log(
        context,
        identity,
        {
            **record,
            "train": {
                "steps": stats.steps,
                "examples": stats.examples,
                "mean_loss": stats.mean_loss,
                "sample_rate": stats.sample_rate,
                "noise_multiplier": stats.noise_multiplier,
                "weight": weight,
            },
            "secagg": _plan_record(node_round),
            # public: shows each round's keys are fresh (a reused seed repeats them)
            "keys_sha256": hashlib.sha256(keys.mask_public + keys.encryption_public).hexdigest(),
            **_distributed_record(plan),
            "epsilon": ledger.epsilon(),
            "delta_l2": float(np.linalg.norm(delta)),
            **_traffic(msg, answer, started),
        },
    )
    return answer


def _protocol_handler(stage: Stage):
    """The handler of one protocol-only stage: answer it from the node's round state."""

    def handle(msg: Message, context: Context) -> Message:
        return _protocol_step(msg, context, stage)

    handle.__name__ = stage.name
    return handle


for _stage in STAGE_TABLE[1:]:  # every stage after the first answers protocol messages only
    app.train(_stage.name)(_protocol_handler(_stage))


@app.evaluate("final")
def final(msg: Message, context: Context) -> Message:
    """Evaluate the final global adapter on this node's own test split; keep the result."""
    identity = NodeIdentity.from_node_config(node_config_of(context.node_config))
    local = _local(_config_text(context), identity)
    round_index = int(wire.fields_of(msg)["round"])
    metrics = local.evaluate(wire.global_vector_of(msg))
    _log(context, identity, {"round": round_index, "stage": "final", "eval_global": metrics})
    return wire.reply(msg, {"done": 1})


# ---- helpers -----------------------------------------------------------------------------------
def _protocol_step(msg: Message, context: Context, stage: Stage) -> Message:
    started = time.perf_counter()
    identity = NodeIdentity.from_node_config(node_config_of(context.node_config))
    fields = wire.fields_of(msg)
    round_index = int(fields["round"])
    try:
        _run_config(context)  # this node joined the run
        node_round = _node_round(context, identity, _security(context, identity))
        payload = node_round.answer(round_index, stage, wire.payload_of(msg)).to_bytes()
    except Exception as exc:  # noqa: BLE001 - the round is void on this node (secrets dropped)
        reason = str(exc) if isinstance(exc, SecurefedError) else f"{type(exc).__name__}: {exc}"
        return _abort(msg, context, identity, round_index, stage.name, reason)
    answer = wire.reply(msg, {"payload": payload})
    _log(
        context,
        identity,
        {"round": round_index, "stage": stage.name, **_traffic(msg, answer, started)},
    )
    return answer


@functools.lru_cache(maxsize=8)
def _distributed_plan(inputs: PlanInputs, dimension: int):
    """The institution-level noise plan this node calibrates its share from (None: off),
    from the plan inputs it pinned, never from the server's config."""
    return plan_for_run(inputs, dimension) if inputs.distributed.enabled else None


def _distributed_record(plan) -> dict:
    """What the node's record states about the noise share it added (nothing when off)."""
    if plan is None:
        return {}
    return {
        "distributed_dp": {
            "mechanism": plan.mechanism,
            "local_variance": plan.local_variance,
            "scale": plan.scale,
            "bits": plan.bits,
            "calibrated_for": plan.min_survivors,
            "noise_source": "os",
        }
    }


def _plan_record(node_round: NodeRound) -> dict:
    """The plan this node computed from its own settings: what it actually ran with."""
    plan = plan_round(node_round.cohort_size, node_round.params)
    return {
        "graph": plan.graph,
        "degree": plan.degree,
        "threshold": plan.threshold,
        "cohort_size": plan.cohort_size,
        "adversary": node_round.params.adversary,
        "identities": node_round.identity.roster is not None,
    }


def _abort(
    msg: Message,
    context: Context,
    identity: NodeIdentity,
    round_index: int,
    stage: str,
    reason: str,
) -> Message:
    """Refuse this stage (nothing is released) and tell the server why, in one line."""
    _log(context, identity, {"round": round_index, "stage": stage, "aborted": reason})
    return wire.reply(msg, {"aborted": reason})


def _traffic(msg: Message, answer: Message, started: float) -> dict:
    return {
        "bytes_down": wire.content_bytes(msg.content),
        "bytes_up": wire.content_bytes(answer.content),
        "wall_s": time.perf_counter() - started,
    }
