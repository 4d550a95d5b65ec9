"""THE federated round loop: the one place that knows the stage order, for both transports.

    per round sample clients (seeded) -> transport: local training (optionally DP-SGD) and
              aggregation (secure: only the masked sum reaches the server; or plain)
              -> the server optimizer's step on the weighted mean delta (fedavg: global +=
              server_lr * mean delta; ``server_optimizer``) -> evaluate -> record
    finally   transport delivers the final global adapter

A transport provides the two things that depend on where the clients are (``Transport``):
``securefed simulate`` calls them in this process (``securefed.run.inprocess``), the Flower
ServerApp sends them messages (``securefed.flower.transport``). Everything else -- sampling,
the global step, evaluation, the checkpoint, the hash-chained record -- happens here, once.

Randomness that decides *what* happens (client sampling, data order, simulated dropouts) is
derived from ``seed`` and the round index, so a resumed run repeats an uninterrupted one, and
a Flower run repeats ``securefed simulate``. Randomness that protects someone (keys, masks, DP
noise) comes from the OS. This module is torch-free; the model is reached through
``evaluate`` and the transport.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from securefed.config import RunConfig
from securefed.run.aggregation import AggregateResult
from securefed.run.folder import (
    LEDGERS,
    RunFolder,
    server_state_rel,
    transcript_rel,
    vector_hash,
    write_json,
)
from securefed.run.progress import Progress
from securefed.run.records import EvalMetrics, RoundRecord
from securefed.run.server_optimizer import ServerState, initial_state, server_step
from securefed.seeding import derived_seed


@dataclass(frozen=True)
class RoundOutcome:
    """What a transport reports for one round: the aggregate and what the server observed."""

    aggregate: AggregateResult
    budget_stopped: list[int]
    epsilon: dict[str, float | str]  # per institution so far; {} where each node keeps its own
    ledgers: dict | None  # privacy/ledgers.json, where the server keeps the ledgers
    stage_wall_s: dict[str, float] | None = None  # per protocol stage, where it is measured


class Transport(Protocol):
    """Where the clients are: what the round loop asks of them."""

    def train_and_aggregate(
        self, round_index: int, sampled: list[int], global_vector: np.ndarray
    ) -> RoundOutcome:
        """Have the ``sampled`` clients train from ``global_vector`` and aggregate their deltas."""
        ...

    def deliver(self, global_vector: np.ndarray) -> float:
        """Hand the final global adapter to the clients (after the last round); seconds taken."""
        ...


@dataclass
class FederationState:
    """What a resumed run needs: the global adapter, the server optimizer's state, the next
    round, the records so far."""

    global_vector: np.ndarray  # (d,) float32
    server_state: ServerState | None = None  # None: the optimizer's state before round 0
    next_round: int = 0
    history: list[RoundRecord] = field(default_factory=list)
    delivery_wall_s: float = 0.0  # handing the final adapter to the clients


def sample_clients(cfg: RunConfig, num_clients: int, round_index: int) -> list[int]:
    """This round's institutions: seeded, so every transport (and a resume) samples the same."""
    rng = np.random.default_rng(derived_seed(cfg.seed, "sample", round_index))
    chosen = rng.choice(num_clients, size=cfg.training.clients_per_round, replace=False)
    return sorted(int(c) for c in chosen)


def fedavg_weight(cfg: RunConfig, train_size: int, largest_train_size: int) -> float:
    """FedAvg weight in (0, 1]: uniform, or the client's share of the largest shard."""
    if cfg.training.weighting == "uniform":
        return 1.0
    return train_size / largest_train_size


def run_federation(
    cfg: RunConfig,
    folder: RunFolder,
    state: FederationState,
    transport: Transport,
    evaluate: Callable[[np.ndarray], EvalMetrics | None],
    spec_hash: str,
    progress: Progress,
) -> FederationState:
    """Run rounds ``state.next_round .. rounds-1``, recording each one as it finishes."""
    optimizer = cfg.training.server_optimizer
    if state.server_state is None:
        state.server_state = initial_state(optimizer, int(state.global_vector.shape[0]))
    for r in progress.iterate(
        range(state.next_round, cfg.training.rounds),
        "rounds",
        total=cfg.training.rounds,
        completed=state.next_round,
    ):
        started, cpu_started = time.perf_counter(), time.process_time()
        # ---- sample, then train and aggregate: the server learns only the (masked) sum ------
        sampled = sample_clients(cfg, cfg.partition.num_clients, r)
        outcome = transport.train_and_aggregate(r, sampled, state.global_vector)
        # ---- the global step: the server optimizer on the unmasked mean (post-processing) -----
        mean_delta = outcome.aggregate.mean_delta
        if mean_delta is not None:
            state.global_vector, state.server_state = server_step(
                optimizer,
                cfg.training.server_lr,
                state.global_vector,
                mean_delta,
                state.server_state,
            )
        # ---- evaluate the new global adapter (where the server holds test data) -------------
        metrics = evaluate(state.global_vector)
        # ---- record: checkpoint, transcript, ledgers, hash-chained metrics line -------------
        record = _record(folder, r, sampled, outcome, state, spec_hash, metrics)
        record["wall_s"] = time.perf_counter() - started
        record["cpu_s"] = time.process_time() - cpu_started
        state.history.append(folder.append_metrics(record))
        state.next_round = r + 1
        folder.write_state(r)
        if metrics is not None:
            progress.log(
                f"round {r}: pooled {progress.metrics(metrics['pooled'])}"
                + (f", budget stopped {outcome.budget_stopped}" if outcome.budget_stopped else "")
                + (f", skipped: {skipped}" if (skipped := outcome.aggregate.skipped) else "")
            )
    # ---- finally: every client gets the final global adapter ------------------------------
    state.delivery_wall_s = transport.deliver(state.global_vector)
    return state


def _record(
    folder: RunFolder,
    r: int,
    sampled: list[int],
    outcome: RoundOutcome,
    state: FederationState,
    spec_hash: str,
    metrics: EvalMetrics | None,
) -> RoundRecord:
    """Write this round's artefacts; the metrics record that names them (without timings)."""
    global_vector = state.global_vector
    artefacts = [folder.checkpoint_rel(r)]
    folder.save_adapter(artefacts[0], global_vector, spec_hash)
    if state.server_state:  # a stateful server optimizer: its state is part of the commit
        artefacts.append(server_state_rel(r))
        folder.save_server_state(artefacts[-1], state.server_state)
    agg = outcome.aggregate
    if agg.transcript is not None:
        write_json(folder.file(transcript_rel(r)), agg.transcript)
        artefacts.append(transcript_rel(r))
    if outcome.ledgers is not None:
        write_json(folder.file(LEDGERS), outcome.ledgers)
        artefacts.append(LEDGERS)
    artefacts.extend(folder.present_setup_files())  # so `audit --verify` can check them too
    record: RoundRecord = {
        "round": r,
        "sampled": sampled,
        "budget_stopped": outcome.budget_stopped,
        "aggregated": list(agg.survivors),
        "train_loss": agg.mean_train_loss,
        "global_adapter_sha256": vector_hash(global_vector),
        "eval": metrics,
        "epsilon": outcome.epsilon,
        "bytes": agg.bytes_per_client,
        "artefacts": folder.artefact_hashes(artefacts),
    }
    if outcome.stage_wall_s is not None:
        record["stage_wall_s"] = outcome.stage_wall_s
    if agg.skipped is not None:
        record["skipped"] = agg.skipped
    return record
