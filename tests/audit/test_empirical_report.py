"""The audit.json ``empirical`` section: recorded, flagged, verified; the ``audit`` config keys."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from securefed.audit.empirical_report import (
    empirical_flags,
    section_from_record,
    verify_empirical,
    verify_figures,
)
from securefed.audit.source import json_safe
from securefed.config import validate
from securefed.errors import ConfigError
from securefed.privacy.canaries import CanaryPlan, canary_coordinates, canary_record
from securefed.privacy.canary_scores import gradient_scores
from securefed.privacy.canary_trace import CanaryTrace
from securefed.run.folder import CANARY_TRACE, RunFolder

BLOCKS = ((0, 64, 32),)


def _trace(plan: CanaryPlan, strength: float) -> CanaryTrace:
    """Two steps per carrier: each included canary adds ``strength`` (sign included) to the
    sum, over the records' part and a noise of 0.05; B = 50."""
    rng = np.random.default_rng(0)
    _, signs = canary_coordinates(plan)
    trace = CanaryTrace(plan)
    for institution in plan.institutions:
        carried = plan.carried_by(institution)
        for _ in range(2):
            records = rng.normal(size=len(carried))
            canaries = strength * signs[carried] * plan.included[carried]
            summed = records + canaries + 0.05 * rng.normal(size=len(carried))
            trace.add_step(institution, summed / 50.0, records, 50.0)
    return trace


def _run(tmp_path, strength: float = 0.05, claimed: float = 1.0, kind: str = "gradient"):
    plan = CanaryPlan(kind, 200, (0, 1), seed=42, blocks=BLOCKS if kind == "gradient" else ())
    if kind == "gradient":
        trace = _trace(plan, strength)
        RunFolder(tmp_path).save_arrays(CANARY_TRACE, trace.arrays())
        scores = gradient_scores(plan, trace)
    else:
        scores = np.random.default_rng(1).normal(size=200) + plan.included
    record = canary_record(plan, scores, delta=1e-5, claimed_epsilon=claimed)
    # What the run and the audit write: strict JSON (infinity as the string "inf").
    record = json.loads(json.dumps(json_safe(record)))
    section = json.loads(json.dumps(json_safe(section_from_record(record))))  # as in audit.json
    assert section["scores"] == record["scores"] and section["plan"] == record["plan"]
    return section, record, tmp_path


def test_an_untouched_run_verifies(tmp_path):
    section, record, run_dir = _run(tmp_path)
    assert verify_empirical(section, record, run_dir) == []
    assert section["canaries"] == 200 and section["canary_kind"] == "gradient"
    assert section["confidence"] == 0.95
    low, high = section["epsilon_estimate_interval"]
    assert 0 <= low <= high


def test_dp_off_claim_of_infinity_verifies_and_never_flags(tmp_path):
    section, record, run_dir = _run(tmp_path, strength=1.0, claimed=math.inf)
    assert section["claimed_epsilon"] == "inf"
    assert verify_empirical(section, record, run_dir) == []
    assert empirical_flags(section) == []


def test_a_changed_trace_score_or_figure_is_reported(tmp_path):
    section, record, run_dir = _run(tmp_path)
    folder = RunFolder(run_dir)
    arrays = folder.load_arrays(CANARY_TRACE)
    for name in ("released/1", "records/0"):  # either part of any carrier's trace
        edited = {**arrays, name: arrays[name].copy()}
        edited[name][1, :10] += 1.0
        folder.save_arrays(CANARY_TRACE, edited)
        assert any("scores" in p for p in verify_empirical(section, record, run_dir))
    folder.save_arrays(CANARY_TRACE, {k: v for k, v in arrays.items() if k != "divisor/1"})
    assert "canary_trace" in verify_empirical(section, record, run_dir)[0]
    folder.save_arrays(CANARY_TRACE, arrays)
    edited = {**section, "epsilon_lower_bound": section["epsilon_lower_bound"] + 0.5}
    (problem,) = verify_empirical(edited, record, run_dir)
    assert problem.startswith("empirical.epsilon_lower_bound")
    claimed = {**section, "claimed_epsilon": 9.0}
    assert any("claimed_epsilon" in p for p in verify_empirical(claimed, record, run_dir))
    folder.file(CANARY_TRACE).unlink()
    assert "canary_trace" in verify_empirical(section, record, run_dir)[0]


def test_an_audit_folder_recomputes_its_figures_from_its_own_scores(tmp_path):
    section, *_ = _run(tmp_path)
    assert verify_figures(section, section) == []
    edited = json.loads(json.dumps(section))
    edited["scores"][int(np.argmax(edited["scores"]))] = -1.0  # the top guess, now wrong
    assert verify_figures(edited, edited) != []
    reseeded = {**section, "plan": {**section["plan"], "seed": "43"}}  # other coins
    assert verify_figures(reseeded, reseeded) != []


def test_input_canaries_are_rescored_from_the_final_checkpoint_only(tmp_path):
    """Their scores need the final adapter and the backbone (the run test,
    ``test_input_canary_run``, rescores them from a run folder)."""
    section, record, run_dir = _run(tmp_path, kind="input")
    (problem,) = verify_empirical(section, record, run_dir)
    assert "final checkpoint" in problem


def test_the_flag_is_critical_only_when_the_bound_exceeds_the_claim(tmp_path):
    loud, *_ = _run(tmp_path, strength=1.0, claimed=1.0)
    assert loud["epsilon_lower_bound"] > 1.0
    (flag,) = empirical_flags(loud)
    assert flag["severity"] == "critical" and flag["code"] == "empirical_leak"
    assert "200 gradient canaries" in flag["message"]
    above_bound, *_ = _run(tmp_path, strength=1.0, claimed=loud["epsilon_lower_bound"] + 0.01)
    (caveat,) = empirical_flags(above_bound)  # the estimate still lies far above such a claim
    assert caveat["severity"] == "caveat" and caveat["code"] == "empirical_estimate_above_claim"
    quiet, *_ = _run(tmp_path, strength=1.0, claimed=loud["epsilon_estimate_interval"][1] + 1.0)
    assert empirical_flags(quiet) == [] and empirical_flags(None) == []
    assert loud["lower_bound_ceiling"] >= loud["epsilon_lower_bound"]


def test_audit_config_keys():
    for kind in ("gradient", "input"):
        cfg = validate(
            {"audit": {"canaries": 1000, "canary_kind": kind, "canary_institutions": [0, 2]}}
        )
        assert (cfg.audit.canaries, cfg.audit.canary_kind) == (1000, kind)
    assert validate({}).audit.canaries == 0  # off by default
    for bad, key in [
        ({"canaries": 5}, "audit.canaries"),
        ({"canaries": 5, "canary_kind": "input"}, "audit.canaries"),
        ({"canary_kind": "label"}, "audit.canary_kind"),
        ({"canary_institutions": [0, 0]}, "audit.canary_institutions"),
        ({"canary_institutions": [9]}, "audit.canary_institutions"),
        ({"canarys": 10}, "audit.canarys"),
    ]:
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            validate({"audit": bad})
