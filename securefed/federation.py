"""The federated round loop of ``securefed simulate``: the one place that knows the stage order.

    prepare   data -> partition -> backbone + adapter (run_setup)
    per round sample clients -> local training (optionally DP-SGD) -> delta = local - global
              -> secure aggregation (only the masked sum reaches the server) or plain sum
              -> global += server_lr * weighted mean delta -> evaluate -> record
    finally   baselines (centralized, isolated) -> results.json

Randomness that decides *what* happens (client sampling, data order, simulated dropouts) is
derived from ``seed`` and the round index, so a resumed run repeats an uninterrupted one.
Randomness that protects someone (keys, masks, DP noise) comes from the OS.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from securefed.adapters import get_vector, set_vector, vector_hash
from securefed.aggregation import aggregate_round
from securefed.config import RunConfig
from securefed.dp_budget import ClientPrivacy
from securefed.evaluation import evaluate_global
from securefed.progress import Progress
from securefed.run_folder import RunFolder, write_json
from securefed.run_setup import RunSetup
from securefed.seeding import derived_seed
from securefed.training import LocalStats

# Written once before round 0; every round's record carries their hashes as well.
RUN_SETUP_FILES = (
    "config.yaml",
    "environment.json",
    "partition.json",
    "checkpoints/initial.safetensors",
)


@dataclass
class FederationState:
    """What a resumed run needs: the global adapter, the last finished round, the ledgers."""

    global_vector: np.ndarray
    next_round: int = 0
    history: list[dict] = field(default_factory=list)


def sample_clients(cfg: RunConfig, num_clients: int, round_index: int) -> list[int]:
    rng = np.random.default_rng(derived_seed(cfg.seed, "sample", round_index))
    chosen = rng.choice(num_clients, size=cfg.training.clients_per_round, replace=False)
    return sorted(int(c) for c in chosen)


def client_update(
    setup: RunSetup,
    client: int,
    global_vector: np.ndarray,
    round_index: int,
    dp_plan,
    progress: Progress,
) -> tuple[np.ndarray, LocalStats]:
    """Train from the global adapter on one client's shard; return (delta, stats)."""
    stats = setup.train_from(
        global_vector,
        setup.client_train[client],
        setup.local_steps(client),
        ("data", round_index, client),
        dp_plan,
        progress,
        f"client {client}",
        head_only_round=round_index < setup.cfg.training.linear_probe_rounds,
    )
    delta = get_vector(setup.bundle.model) - global_vector  # (d,) float32
    return delta, stats


def run_federation(
    setup: RunSetup,
    folder: RunFolder,
    state: FederationState,
    privacy: ClientPrivacy,
    progress: Progress,
) -> FederationState:
    """Run rounds ``state.next_round .. rounds-1``, recording each one as it finishes."""
    cfg = setup.cfg
    spec_hash = setup.bundle.spec.hash
    for r in progress.iterate(
        range(state.next_round, cfg.training.rounds),
        "rounds",
        total=cfg.training.rounds,
        completed=state.next_round,
    ):
        started, cpu_started = time.perf_counter(), time.process_time()
        # ---- sample and train: each institution works on its own shard ------------------
        sampled = sample_clients(cfg, setup.num_clients, r)
        updates: dict[int, tuple[np.ndarray, LocalStats]] = {}
        stopped: list[int] = []
        for c in sampled:
            plan = privacy.plan_round(c, setup.local_steps(c))
            if plan is privacy.EXHAUSTED:
                stopped.append(c)
                continue
            updates[c] = client_update(setup, c, state.global_vector, r, plan, progress)
            privacy.record_round(c, r, updates[c][1])
        # ---- aggregate: the server learns only the (masked) weighted sum ------------------
        weights = {c: _weight(setup, c) for c in updates}
        agg = aggregate_round(cfg, r, updates, weights, state.global_vector, spec_hash)
        if agg.mean_delta is not None:
            state.global_vector = (
                state.global_vector + cfg.training.server_lr * agg.mean_delta
            ).astype(np.float32)
        # ---- evaluate the new global adapter everywhere -----------------------------------
        set_vector(setup.bundle.model, state.global_vector, setup.bundle.spec)
        metrics = evaluate_global(setup)
        # ---- record: checkpoint, transcript, ledgers, hash-chained metrics line -----------
        artefacts = [folder.checkpoint_rel(r)]
        folder.save_adapter(artefacts[0], state.global_vector, spec_hash)
        if agg.transcript is not None:
            rel = f"secagg/round-{r:04d}.json"
            write_json(folder.file(rel), agg.transcript)
            artefacts.append(rel)
        write_json(folder.file("privacy/ledgers.json"), privacy.to_json())
        artefacts.append("privacy/ledgers.json")
        artefacts.extend(RUN_SETUP_FILES)  # so `audit --verify` can check them too
        record = folder.append_metrics(
            {
                "round": r,
                "sampled": sampled,
                "budget_stopped": stopped,
                "aggregated": list(agg.survivors),
                "train_loss": agg.mean_train_loss,
                "global_adapter_sha256": vector_hash(state.global_vector),
                "eval": metrics,
                "epsilon": privacy.epsilons(),
                "bytes": agg.bytes_per_client,
                "wall_s": time.perf_counter() - started,
                "cpu_s": time.process_time() - cpu_started,
                "artefacts": folder.artefact_hashes(artefacts),
            }
        )
        state.history.append(record)
        state.next_round = r + 1
        write_json(
            folder.file("state.json"),
            {"next_round": state.next_round, "checkpoint": folder.checkpoint_rel(r)},
        )
        progress.log(
            f"round {r}: pooled {_fmt(metrics['pooled'])}"
            + (f", budget stopped {stopped}" if stopped else "")
        )
    return state


def _weight(setup: RunSetup, client: int) -> float:
    """FedAvg weight in (0, 1]: uniform, or the client's share of the largest shard."""
    if setup.cfg.training.weighting == "uniform":
        return 1.0
    largest = max(len(t) for t in setup.client_train)
    return len(setup.client_train[client]) / largest


def _fmt(metrics: dict) -> str:
    return ", ".join(f"{k} {v:.3f}" for k, v in metrics.items())
