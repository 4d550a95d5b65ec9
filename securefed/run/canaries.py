"""The run's side of the empirical audit: plan the canaries, record them when the run ends.

``simulate`` makes the plan before round 0 (its seed from the OS, held in this process only)
and the carriers' local training takes it (``setup.client_update``); ``attach_canaries``
also builds the rows of input canaries, or the ``CanaryTrace`` gradient canaries' carriers
record their steps into (``privacy.canary_trace``). After the last round,
``record_canaries`` scores every canary (gradient canaries: from the trace, which it writes
beside; input canaries: the final global adapter's loss on them) and writes
``canaries.json``: the plan with its seed, the scores and the claim they are audited
against. The audit computes the figures from that file
(``securefed.audit.empirical_report``); ``rescore_input_canaries`` recomputes input
canaries' scores for ``audit --verify`` from the run folder alone. Until the run ends the
coins exist nowhere else, so a run with canaries cannot be resumed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch.utils.data import TensorDataset

from securefed.config import RunConfig, load_config
from securefed.errors import ConfigError
from securefed.model.adapters import AdapterModel, VectorSpec, set_vector
from securefed.model.input_canaries import canary_losses, input_canary_rows
from securefed.privacy.canaries import (
    CanaryPlan,
    canary_blocks,
    canary_claim,
    canary_record,
    input_scores,
    plan_canaries,
)
from securefed.privacy.canary_scores import gradient_scores
from securefed.privacy.canary_trace import CanaryTrace
from securefed.run.folder import CANARIES, CANARY_TRACE, CONFIG, RunFolder, write_json
from securefed.run.setup import RunSetup, adapter_model
from securefed.tasks import get_task


def canary_plan(cfg: RunConfig, spec: VectorSpec) -> CanaryPlan | None:
    """The run's canaries (``audit.canaries``; None when 0), carried by
    ``audit.canary_institutions`` (default: every institution); gradient canaries in the
    adapter matrices ``audit.canary_parameters`` names (of ``spec``, the adapter vector)."""
    audit = cfg.audit
    if not audit.canaries:
        return None
    carriers = audit.canary_institutions
    if carriers is None:
        carriers = list(range(cfg.partition.num_clients))
    blocks: tuple = ()
    if audit.canary_kind == "gradient":
        blocks = canary_blocks(spec.names, spec.shapes, audit.canary_parameters)
        room = sum(rows * cols for _, rows, cols in blocks)
        if room < audit.canaries:
            matrices = [n for n, s in zip(spec.names, spec.shapes, strict=True) if len(s) == 2]
            raise ConfigError(
                "audit.canary_parameters",
                audit.canary_parameters,
                f"names matching adapter matrices with at least audit.canaries = "
                f"{audit.canaries} entries in all (they match {room}); the matrices: {matrices}",
            )
    return plan_canaries(audit.canaries, audit.canary_kind, tuple(carriers), blocks)


def attach_canaries(setup: RunSetup) -> None:
    """Plan the run's canaries into ``setup``; gradient canaries also get the trace their
    carriers record into, input canaries their rows, encoded and cached as the records are
    (``securefed.model.input_canaries``)."""
    setup.canaries = plan = canary_plan(setup.cfg, setup.bundle.spec)
    if plan is not None and plan.kind == "gradient":
        setup.canary_trace = CanaryTrace(plan)
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
        assert setup.canary_trace is not None, "gradient canaries record into a trace"
        folder.save_arrays(CANARY_TRACE, setup.canary_trace.arrays())
        scores = gradient_scores(plan, setup.canary_trace)
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
