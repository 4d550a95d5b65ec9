"""The run's side of the empirical audit: plan the canaries, record them when the run ends.

``simulate`` makes the plan before round 0 (its seed from the OS, held in this process only)
and the carriers' local training takes it (``setup.client_update``); ``attach_canaries`` also
builds the rows of input canaries. After the last round, ``record_canaries`` scores every
canary against the released global adapters (gradient canaries: the initial one and the final
one; input canaries: the final one's loss on them) and writes ``canaries.json``: the plan with
its seed, the scores and the claim they are audited against. The audit computes the figures
from that file (``securefed.audit.empirical_report``); ``rescore_input_canaries`` recomputes
input canaries' scores for ``audit --verify`` from the run folder alone. Until the run ends
the coins exist nowhere else, so a run with canaries cannot be resumed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch.utils.data import TensorDataset

from securefed.config import RunConfig, load_config
from securefed.model.adapters import AdapterModel, set_vector
from securefed.model.input_canaries import canary_losses, input_canary_rows
from securefed.privacy.canaries import (
    CanaryPlan,
    canary_claim,
    canary_record,
    gradient_scores,
    input_scores,
    plan_canaries,
)
from securefed.run.folder import CANARIES, CONFIG, RunFolder, write_json
from securefed.run.setup import RunSetup, adapter_model
from securefed.tasks import get_task


def canary_plan(cfg: RunConfig) -> CanaryPlan | None:
    """The run's canaries (``audit.canaries``; None when 0), carried by
    ``audit.canary_institutions`` (default: every institution)."""
    audit = cfg.audit
    if not audit.canaries:
        return None
    carriers = audit.canary_institutions
    if carriers is None:
        carriers = list(range(cfg.partition.num_clients))
    return plan_canaries(audit.canaries, audit.canary_kind, tuple(carriers))


def attach_canaries(setup: RunSetup) -> None:
    """Plan the run's canaries into ``setup``; input canaries also get their rows, encoded and
    cached as the records are (``securefed.model.input_canaries``)."""
    setup.canaries = plan = canary_plan(setup.cfg)
    if plan is not None and plan.kind == "input":
        cfg = setup.cfg
        setup.canary_rows = input_canary_rows(
            plan, setup.bundle, setup.task, cfg.model, cfg.training.eval_batch_size
        )[1]


def record_canaries(
    folder: RunFolder, setup: RunSetup, final: np.ndarray, privacy_report: dict
) -> dict:
    """Score the canaries against the released adapters; write and return ``canaries.json``."""
    plan = setup.canaries
    assert plan is not None, "a run without canaries has nothing to record"
    if plan.kind == "input":
        batch = setup.cfg.training.eval_batch_size
        scores = _scored(setup.scorer, setup.canary_rows, final, batch)
    else:
        scores = gradient_scores(plan, setup.initial_vector, final)
    epsilon, delta = canary_claim(plan, privacy_report)
    record = canary_record(plan, scores, delta=delta, claimed_epsilon=epsilon)
    write_json(folder.file(CANARIES), record)
    return record


def rescore_input_canaries(run_dir: str | Path, plan: CanaryPlan, final: np.ndarray) -> np.ndarray:
    """The input canaries' scores from a run folder alone: the backbone and adapter its
    ``config.yaml`` names (on the CPU), the canaries regenerated from ``plan``'s seed, the
    ``final`` global adapter; as ``record_canaries`` scored them at the end of the run."""
    cfg = load_config(RunFolder(run_dir).file(CONFIG), overrides=["training.device=cpu"])
    task = get_task(cfg.task.name)
    bundle = adapter_model(cfg, task)
    batch = cfg.training.eval_batch_size
    scorer, rows = input_canary_rows(plan, bundle, task, cfg.model, batch)
    return _scored(scorer, rows, final, batch)


def _scored(scorer: AdapterModel, rows: TensorDataset, final: np.ndarray, batch: int) -> np.ndarray:
    """Input canaries' scores: minus each one's loss with ``final`` loaded into ``scorer``."""
    set_vector(scorer.model, final, scorer.spec)
    return input_scores(canary_losses(scorer, rows, batch))
