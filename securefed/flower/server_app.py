"""The ServerApp: securefed's round loop with Flower carrying the messages.

    join      every connected node learns the resolved config and answers its institution id
    per round sample institutions (seeded, as in ``securefed simulate``) -> ``secure_round``
              (advertise with local training, share keys, masked input, unmask) -> global +=
              server_lr * masked mean delta -> evaluate (when the server holds the task data)
              -> record (the run-folder layout of ``securefed simulate``)
    finally   each node evaluates the final adapter on its own test split, for its own record

Run config (``[tool.flwr.app.config]`` in ``deploy/app/pyproject.toml``, or ``flwr run
--run-config``): ``config`` (YAML path on the server; empty: the embedded default),
``overrides`` (``key=value`` pairs separated by ``;``), ``run-dir``, ``min-nodes``
(0: ``partition.num_clients``), ``join-timeout``, ``train-timeout``, ``stage-timeout``,
``poll-interval`` (seconds), ``server-evaluation`` and ``final-evaluation`` (each node
evaluates the final adapter on its own test split and keeps the result).
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from securefed.config import RunConfig, dump_config, load_config
from securefed.errors import ConfigError
from securefed.flower import wire
from securefed.flower.exchange import exchange
from securefed.flower.server_round import RoundResult, Timeouts, secure_round
from securefed.run_folder import RunFolder, write_json

app = ServerApp()


@dataclass(frozen=True)
class ServerSettings:
    config: str | None
    overrides: list[str]
    run_dir: str | None
    min_nodes: int
    join_timeout_s: float
    timeouts: Timeouts
    server_evaluation: bool
    final_evaluation: bool

    @classmethod
    def from_run_config(cls, run_config: dict) -> ServerSettings:
        text = str(run_config.get("overrides", ""))
        return cls(
            config=str(run_config.get("config", "")) or None,
            overrides=[s.strip() for s in text.split(";") if s.strip()],
            run_dir=str(run_config.get("run-dir", "")) or None,
            min_nodes=int(run_config.get("min-nodes", 0)),
            join_timeout_s=float(run_config.get("join-timeout", 300)),
            timeouts=Timeouts(
                train_s=float(run_config.get("train-timeout", 900)),
                stage_s=float(run_config.get("stage-timeout", 120)),
                poll_s=float(run_config.get("poll-interval", 0.2)),
            ),
            server_evaluation=bool(run_config.get("server-evaluation", True)),
            final_evaluation=bool(run_config.get("final-evaluation", True)),
        )


class ServerModel:
    """The global adapter's model on the server; with the task data only if it evaluates."""

    def __init__(self, cfg: RunConfig, evaluate: bool) -> None:
        from securefed.adapters import build_adapter_model, get_vector
        from securefed.run_setup import build_setup, resolve_device
        from securefed.tasks import get_task

        self.task = get_task(cfg.task.name)
        self.setup = build_setup(cfg) if evaluate else None
        if self.setup is not None:
            self.bundle = self.setup.bundle
        else:
            self.bundle = build_adapter_model(
                cfg.model,
                num_labels=self.task.num_choices,
                seed=cfg.seed,
                device=resolve_device(cfg.training.device),
            )
        self.initial_vector = get_vector(self.bundle.model)

    def evaluate(self, vector: np.ndarray) -> dict | None:
        if self.setup is None:
            return None
        from securefed.adapters import set_vector
        from securefed.evaluation import evaluate_global

        set_vector(self.bundle.model, vector, self.bundle.spec)
        return evaluate_global(self.setup)


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run the federation described by the run config; write the server's run folder."""
    settings = ServerSettings.from_run_config(dict(context.run_config))
    cfg = load_config(settings.config, settings.overrides)
    run_flower_federation(grid, cfg, settings, context.run_id)


def run_flower_federation(
    grid: Grid, cfg: RunConfig, settings: ServerSettings, run_id: int
) -> Path:
    from securefed.adapters import base_weights_hash, vector_hash
    from securefed.federation import RUN_SETUP_FILES, sample_clients

    if not cfg.secure_aggregation.enabled:
        raise ConfigError(
            "secure_aggregation.enabled",
            False,
            "true on Flower: across machines the server only gets masked sums",
        )
    wall0, cpu0 = time.perf_counter(), time.process_time()
    folder = RunFolder(settings.run_dir or Path(cfg.output.dir) / f"{cfg.name}-flower-{run_id}")
    folder.path.mkdir(parents=True, exist_ok=True)
    folder.file("config.yaml").write_text(dump_config(cfg))
    model = ServerModel(cfg, evaluate=settings.server_evaluation)
    spec = model.bundle.spec
    base_before = base_weights_hash(model.bundle.model)
    _write_environment(folder, cfg, model, base_before, run_id)
    folder.save_adapter(folder.checkpoint_rel(None), model.initial_vector, spec.hash)
    progress = folder.file("flower/progress.jsonl")

    def note(event: dict) -> None:
        with open(progress, "a") as handle:
            handle.write(json.dumps({"t": time.time(), **event}) + "\n")

    progress.parent.mkdir(parents=True, exist_ok=True)
    nodes = join_nodes(grid, cfg, settings, note)
    global_vector = model.initial_vector.copy()
    history: list[dict] = []
    unresponsive: frozenset[int] = frozenset()
    for r in range(cfg.training.rounds):
        started, cpu_started = time.perf_counter(), time.process_time()
        # ---- sample, then one secure-aggregation round over the nodes ---------------------------
        sampled = sample_clients(cfg, cfg.partition.num_clients, r)
        result: RoundResult = secure_round(
            grid, cfg, r, sampled, nodes, global_vector, spec.hash, settings.timeouts, note
        )
        unresponsive = result.unresponsive
        if result.mean_delta is not None:
            global_vector = (global_vector + cfg.training.server_lr * result.mean_delta).astype(
                np.float32
            )
        # ---- evaluate (server-held data only) and record -----------------------------------------
        metrics = model.evaluate(global_vector)
        artefacts = [folder.checkpoint_rel(r), f"secagg/round-{r:04d}.json"]
        folder.save_adapter(artefacts[0], global_vector, spec.hash)
        write_json(folder.file(artefacts[1]), result.transcript)
        artefacts += [f for f in RUN_SETUP_FILES if folder.file(f).is_file()]
        record = folder.append_metrics(
            {
                "round": r,
                "sampled": sampled,
                "budget_stopped": result.budget_stopped,
                "aggregated": list(result.survivors),
                "train_loss": result.mean_train_loss,
                "global_adapter_sha256": vector_hash(global_vector),
                "eval": metrics,
                "epsilon": {},  # the server sees no ledger: each node keeps its own
                "bytes": result.bytes_per_client,
                "stage_wall_s": result.stage_wall_s,
                "wall_s": time.perf_counter() - started,
                "cpu_s": time.process_time() - cpu_started,
                "artefacts": folder.artefact_hashes(artefacts),
            }
        )
        history.append(record)
        write_json(
            folder.file("state.json"), {"next_round": r + 1, "checkpoint": folder.checkpoint_rel(r)}
        )
        note({"round": r, "stage": "done", "aborted": result.aborted})
    # ---- each node keeps its own evaluation of the final adapter --------------------------------
    final_s = 0.0
    if settings.final_evaluation:
        bodies = {
            node: wire.content({"round": cfg.training.rounds}, global_vector)
            for inst, node in nodes.items()
            if inst not in unresponsive
        }  # a node that timed out in the last round is gone
        final_s = exchange(
            grid,
            wire.FINAL,
            bodies,
            group_id="final",
            timeout_s=settings.timeouts.train_s,
            poll_s=settings.timeouts.poll_s,
        ).wall_s
    results = _results(cfg, model, history, nodes, run_id)
    base_after = base_weights_hash(model.bundle.model)
    results["base_weights"] = {
        "before": base_before,
        "after": base_after,
        "unchanged": base_before == base_after,
    }
    results["timing"] = {
        "federated_wall_s": sum(r["wall_s"] for r in history),
        "federated_cpu_s": sum(r["cpu_s"] for r in history),
        "this_invocation_wall_s": time.perf_counter() - wall0,
        "this_invocation_cpu_s": time.process_time() - cpu0,
        "final_evaluation_wall_s": final_s,
        "resumed": False,
    }
    write_json(folder.file("results.json"), results)
    note({"stage": "finished"})
    return folder.path


def join_nodes(grid: Grid, cfg: RunConfig, settings: ServerSettings, note) -> dict[int, int]:
    """Wait for the nodes, send them the config; institution id -> node id of those that join."""
    expected = settings.min_nodes or cfg.partition.num_clients
    deadline = time.perf_counter() + settings.join_timeout_s
    while len(list(grid.get_node_ids())) < expected and time.perf_counter() < deadline:
        time.sleep(settings.timeouts.poll_s)
    text = dump_config(cfg)
    joined = exchange(
        grid,
        wire.JOIN,
        {n: wire.content({"config_yaml": text}) for n in grid.get_node_ids()},
        group_id="join",
        timeout_s=max(1.0, deadline - time.perf_counter()),
        poll_s=settings.timeouts.poll_s,
    )
    claims: dict[int, list[int]] = {}
    for node, reply in joined.replies.items():
        institution = int(wire.fields_of(reply)["institution"])
        if 0 <= institution < cfg.partition.num_clients:
            claims.setdefault(institution, []).append(node)
    nodes = {inst: ids[0] for inst, ids in sorted(claims.items()) if len(ids) == 1}
    conflicts = {str(inst): ids for inst, ids in claims.items() if len(ids) > 1}
    note(
        {
            "stage": "join",
            "institutions": {str(i): n for i, n in nodes.items()},
            "conflicting_claims": conflicts,
            "failed": {str(n): r for n, r in joined.failed.items()},
        }
    )
    return nodes


def _write_environment(
    folder: RunFolder, cfg: RunConfig, model: ServerModel, base_hash: str, run_id: int
) -> None:
    from securefed.simulate import library_versions

    if model.setup is not None:
        write_json(
            folder.file("partition.json"),
            model.setup.partition.summary(withhold_training_counts=cfg.privacy.dp.enabled),
        )
    write_json(
        folder.file("environment.json"),
        {
            "libraries": library_versions(),
            "platform": platform.platform(),
            "device": str(next(model.bundle.model.parameters()).device),
            "backbone": cfg.model.backbone,
            "model_kind": model.bundle.kind,
            "vector_spec": model.bundle.spec.to_json(),
            "vector_spec_hash": model.bundle.spec.hash,
            "base_weights_sha256": base_hash,
            "transport": {
                "engine": "flower",
                "run_id": run_id,
                "server_evaluation": model.setup is not None,
            },
        },
    )
    write_json(
        folder.file("state.json"), {"next_round": 0, "checkpoint": folder.checkpoint_rel(None)}
    )


def _results(
    cfg: RunConfig, model: ServerModel, history: list[dict], nodes: dict[int, int], run_id: int
) -> dict:
    last = history[-1] if history else None
    evaluated = model.setup is not None and last is not None
    return {
        "name": cfg.name,
        "task": {
            "name": model.task.name,
            "synthetic": model.task.synthetic,
            "primary_metric": model.task.primary_metric,
        },
        "backbone": cfg.model.backbone,
        "adapter": cfg.model.adapter,
        "trainable_parameters": model.bundle.spec.size,
        "federated": {
            "pooled": last["eval"]["pooled"] if evaluated else None,
            "clients": last["eval"]["clients"] if evaluated else None,
            "rounds": len(history),
            "pooled_by_round": [r["eval"]["pooled"] for r in history] if evaluated else None,
        },
        "privacy": {
            "kept_by_nodes": True,
            "dp_enabled": cfg.privacy.dp.enabled,
            "accountant_of_record": cfg.privacy.dp.accountant,
        },
        "secure_aggregation": {
            "enabled": True,
            "aborted_rounds": [r["round"] for r in history if not r["aggregated"]],
        },
        "transport": {
            "engine": "flower",
            "run_id": run_id,
            "nodes": {str(i): n for i, n in nodes.items()},
        },
    }
