"""The run's side of the empirical audit: plan the canaries, record them when the run ends.

``simulate`` makes the plan before round 0 (its seed from the OS, held in this process only)
and the carriers' local training takes it (``setup.client_update``). After the last round,
``record_canaries`` scores every canary against the released global adapters (the initial
one and the final one) and writes ``canaries.json``: the plan with its seed, the scores and
the claim they are audited against. The audit computes the figures from that file
(``securefed.audit.empirical_report``). Until the run ends the coins exist nowhere else, so a
run with canaries cannot be resumed.
"""

from __future__ import annotations

import numpy as np

from securefed.config import RunConfig
from securefed.privacy.canaries import (
    CanaryPlan,
    canary_claim,
    canary_record,
    gradient_scores,
    plan_canaries,
)
from securefed.run.folder import CANARIES, RunFolder, write_json


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


def record_canaries(
    folder: RunFolder,
    plan: CanaryPlan,
    initial: np.ndarray,
    final: np.ndarray,
    privacy_report: dict,
) -> dict:
    """Score the canaries against the released adapters; write and return ``canaries.json``."""
    epsilon, delta = canary_claim(plan, privacy_report)
    record = canary_record(
        plan, gradient_scores(plan, initial, final), delta=delta, claimed_epsilon=epsilon
    )
    write_json(folder.file(CANARIES), record)
    return record
