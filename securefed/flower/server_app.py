"""The ServerApp: securefed's one round loop (``securefed.run.federation``) over Flower.

    join      every connected node learns the resolved config and answers its institution id
    rounds    ``run_federation`` with the Flower transport (``flower.transport``): sample
              institutions (seeded, as in ``securefed simulate``) -> ``secure_round`` -> global
              += server_lr * masked mean delta -> evaluate (when the server holds the task
              data) -> record (the run-folder layout of ``securefed simulate``)
    finally   each node evaluates the final adapter on its own test split, for its own record

Run config (``[tool.flwr.app.config]`` in ``deploy/app/pyproject.toml``, or ``flwr run
--run-config``): ``config`` (YAML path on the server; empty: the embedded default),
``overrides`` (``key=value`` pairs separated by ``;``), ``run-dir``, ``min-nodes``
(0: ``partition.num_clients``), ``join-timeout``, ``train-timeout``, ``stage-timeout``,
``online-wait`` (seconds a round waits at its start for invited nodes marked offline, e.g.
one being restarted), ``poll-interval`` (seconds), ``server-evaluation`` and
``final-evaluation`` (each node evaluates the final adapter on its own test split and keeps
the result).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from securefed.config import RunConfig, dump_config, load_config
from securefed.errors import ConfigError
from securefed.flower.object_pulls import install_pull_retry
from securefed.flower.server_round import Timeouts
from securefed.flower.transport import FlowerTransport, join_nodes, progress_note
from securefed.model.adapters import base_weights_hash, build_adapter_model, get_vector
from securefed.privacy.institution import InstitutionPrivacy
from securefed.run.federation import FederationState, run_federation
from securefed.run.folder import FLOWER_PROGRESS, RESULTS, RunFolder, check_creatable, write_json
from securefed.run.progress import Progress
from securefed.run.records import (
    EvalMetrics,
    base_weights,
    environment,
    federated_results,
    federated_timing,
)
from securefed.run.seal import seal_run
from securefed.run.setup import build_setup, model_facts, resolve_device, task_facts
from securefed.tasks import get_task

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
                online_s=float(run_config.get("online-wait", 30)),
            ),
            server_evaluation=bool(run_config.get("server-evaluation", True)),
            final_evaluation=bool(run_config.get("final-evaluation", True)),
        )


class ServerModel:
    """The global adapter's model on the server; with the task data only if it evaluates."""

    def __init__(self, cfg: RunConfig, evaluate: bool) -> None:
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
                per_option=self.task.kind == "multiple_choice",
            )
        self.initial_vector = get_vector(self.bundle.model)

    def evaluate(self, vector: np.ndarray) -> EvalMetrics | None:
        return None if self.setup is None else self.setup.evaluate(vector)

    def partition_summary(self) -> dict | None:
        """The partition the server built (None: the data stays with the nodes)."""
        if self.setup is None:
            return None
        return self.setup.partition.summary(
            list(self.task.label_names),
            withhold_training_counts=self.setup.cfg.privacy.any_mechanism,
        )


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run the federation described by the run config; write the server's run folder."""
    install_pull_retry()  # a reply is listed before its objects are all on the SuperLink
    settings = ServerSettings.from_run_config(dict(context.run_config))
    cfg = load_config(settings.config, settings.overrides)
    run_flower_federation(grid, cfg, settings, context.run_id)


def run_flower_federation(
    grid: Grid, cfg: RunConfig, settings: ServerSettings, run_id: int
) -> Path:
    """Join the nodes, run every round, write the run folder; returns its path."""
    if not cfg.secure_aggregation.enabled:
        raise ConfigError(
            "secure_aggregation.enabled",
            False,
            "true on Flower: across machines the server only gets masked sums",
        )
    if cfg.audit.canaries:
        raise ConfigError(
            "audit.canaries",
            cfg.audit.canaries,
            "0 on Flower (canaries run in securefed simulate only, for now)",
        )
    wall0, cpu0 = time.perf_counter(), time.process_time()
    path = settings.run_dir or Path(cfg.output.dir) / f"{cfg.name}-flower-{run_id}"
    check_creatable(Path(path), "run-dir")
    model = ServerModel(cfg, evaluate=settings.server_evaluation)  # before anything is written
    institution = (  # distributed DP's plan, also before anything is written (it may not exist)
        InstitutionPrivacy(cfg, model.bundle.spec.size) if cfg.privacy.distributed.enabled else None
    )
    folder = RunFolder.create(path, dump_config(cfg), "run-dir")
    facts = model_facts(model.bundle)
    base_before = base_weights_hash(model.bundle.model)
    transport_facts = {"engine": "flower", "run_id": run_id}
    folder.write_setup(
        environment(
            cfg,
            facts,
            base_before,
            transport={**transport_facts, "server_evaluation": model.setup is not None},
        ),
        model.partition_summary(),
        model.initial_vector,
        facts.vector_spec_hash,
    )
    note = progress_note(folder.file(FLOWER_PROGRESS))
    poll_s = settings.timeouts.poll_s
    nodes = join_nodes(grid, cfg, settings.min_nodes, settings.join_timeout_s, poll_s, note)
    transport = FlowerTransport(
        grid,
        cfg,
        nodes,
        settings.timeouts,
        note,
        facts.vector_spec_hash,
        settings.final_evaluation,
        institution,
    )
    state = run_federation(
        cfg,
        folder,
        FederationState(global_vector=model.initial_vector.copy()),
        transport,
        model.evaluate,
        facts.vector_spec_hash,
        Progress(enabled=False),
    )
    results = federated_results(
        cfg,
        task_facts(model.task),
        facts,
        state.history,
        {
            "kept_by_nodes": True,
            "dp_enabled": cfg.privacy.dp.enabled,
            "accountant_of_record": cfg.privacy.dp.accountant,
            **({} if institution is None else {"institution": institution.report()}),
        },
        secure_aggregation_enabled=True,
    )
    results["transport"] = {**transport_facts, "nodes": {str(i): n for i, n in nodes.items()}}
    results["base_weights"] = base_weights(base_before, base_weights_hash(model.bundle.model))
    results["timing"] = {
        **federated_timing(state.history),
        "this_invocation_wall_s": time.perf_counter() - wall0,
        "this_invocation_cpu_s": time.process_time() - cpu0,
        "final_evaluation_wall_s": state.delivery_wall_s,
        "resumed": False,
    }
    write_json(folder.file(RESULTS), results)
    note({"stage": "finished"})
    seal_run(folder)  # the server's last write (the records collector seals again after it)
    folder.release()
    return folder.path
