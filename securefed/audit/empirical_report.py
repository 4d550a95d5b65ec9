"""The ``empirical`` section of audit.json: the leak measured beside the leak claimed.

A run with canaries (``securefed.privacy.canaries``) writes ``canaries.json`` when it ends
(``canary_record``): the plan with its seed (the coins and the canary contents derive from it,
and stop being secret once the run is over), the score of every canary under the released
model, and the claim it is audited against: the largest final epsilon among the institutions
that carried canaries, at the largest of their deltas (every canary is protected by at least
that claim, so a bound above it contradicts the run's privacy claim).

``section_from_record`` turns that record into the section (figures, and the record's own
plan and scores, so an audit folder can recompute its figures alone); ``empirical_flags``
raises the critical flag when the lower bound exceeds the claim; ``verify_scores``
recomputes the scores: of gradient canaries from their carriers' trace in the run folder
(numpy, ``privacy.canary_scores``), of input canaries from the final global adapter's losses
on the canaries regenerated from the seed, which needs the backbone
(``securefed.run.canaries``, imported then: torch); ``verify_figures`` recomputes both
figures from the scores and coins; each lists what does not match.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from safetensors import SafetensorError

from securefed.audit.empirical import (
    CONFIDENCE,
    one_run_ceiling,
    one_run_lower_bound,
    one_shot_estimate,
)
from securefed.privacy.canaries import CanaryPlan
from securefed.privacy.canary_scores import gradient_scores
from securefed.privacy.canary_trace import CanaryTrace
from securefed.run.folder import CANARIES, CANARY_TRACE, RunFolder

BOOTSTRAP_SEED = 0  # the interval is a bootstrap: a fixed seed makes it recomputable
SCORE_REL_TOL = 1e-6  # scores recomputed in float64 from the same float32 trace values
# Input canaries' losses come from a float32 forward pass: the same on one machine, within
# ~1e-6 across thread counts or devices (the audit recomputes them on the CPU).
INPUT_SCORE_TOL = 1e-5
FIGURE_REL_TOL = 1e-6


def empirical_section(
    scores: np.ndarray,
    included: np.ndarray,
    *,
    kind: str,
    delta: float,
    claimed_epsilon: float,
    confidence: float = CONFIDENCE,
) -> dict:
    """The audit.json ``empirical`` section from canary scores and their secret coins."""
    bound = one_run_lower_bound(scores, included, delta, confidence)
    estimate = one_shot_estimate(scores, included, delta, confidence, seed=BOOTSTRAP_SEED)
    return {
        "canaries": int(np.size(scores)),
        "canary_kind": kind,
        "included": int(np.sum(included)),
        "confidence": confidence,
        "delta": delta,
        "claimed_epsilon": claimed_epsilon,
        "epsilon_lower_bound": bound.epsilon,
        # The most this many canaries can show: a claim above it cannot be refuted by the bound.
        "lower_bound_ceiling": one_run_ceiling(int(np.size(scores)), delta, confidence),
        "lower_bound_guesses": {
            "in": bound.guesses_in,
            "out": bound.guesses_out,
            "correct": bound.correct,
            "hypotheses": bound.hypotheses,
        },
        "epsilon_estimate": estimate.epsilon,
        "epsilon_estimate_interval": list(estimate.interval),
        "estimate_fit": {
            "included": dict(zip(("mean", "std"), estimate.included, strict=True)),
            "excluded": dict(zip(("mean", "std"), estimate.excluded, strict=True)),
            "resamples": estimate.resamples,
            "seed": estimate.seed,
        },
        "lower_bound_exceeds_claim": bound.epsilon > claimed_epsilon,
        "estimate_exceeds_claim": estimate.interval[0] > claimed_epsilon,
    }


def section_from_record(record: dict, scores: np.ndarray | None = None) -> dict:
    """The section of a ``canaries.json`` record (``scores`` overrides its own), carrying the
    record's plan and scores."""
    plan = CanaryPlan.from_json(record["plan"])
    scores = np.asarray(record["scores"] if scores is None else scores, dtype=np.float64)
    section = empirical_section(
        scores,
        plan.included,
        kind=plan.kind,
        delta=float(record["delta"]),
        claimed_epsilon=float(record["claimed_epsilon"]),
    )
    return {**section, "plan": plan.to_json(), "scores": scores.tolist()}


def empirical_flags(section: dict | None) -> list[dict]:
    """Critical when the one-run lower bound exceeds the claimed epsilon (a proof, at the
    stated confidence, that the run leaks more than it claims); a caveat when only the
    estimate's whole interval lies above it (evidence, not proof: the estimate is no bound)."""
    if section is None:
        return []
    who = f"{section['canaries']} {section['canary_kind']} canaries"
    claimed = float(section["claimed_epsilon"])  # "inf" in strict JSON when DP was off
    claim = f"the claimed epsilon {claimed:.2f} (delta {section['delta']:.1e})"
    if section["lower_bound_exceeds_claim"]:
        return [
            {
                "severity": "critical",
                "code": "empirical_leak",
                "message": (
                    f"MEASURED LEAK ABOVE THE CLAIM: {who} show epsilon >= "
                    f"{section['epsilon_lower_bound']:.2f} with "
                    f"{100 * section['confidence']:.0f}% confidence, above {claim}: the "
                    "implementation leaks more than its accounting says."
                ),
            }
        ]
    if section["estimate_exceeds_claim"]:
        # strict JSON holds an infinite estimate (perfectly separated scores) as "inf"
        low, high = (float(v) for v in section["epsilon_estimate_interval"])
        estimate = float(section["epsilon_estimate"])
        return [
            {
                "severity": "caveat",
                "code": "empirical_estimate_above_claim",
                "message": (
                    f"The empirical estimate from {who} ({estimate:.2f}, "
                    f"interval {low:.2f}-{high:.2f}) lies above {claim}; the lower bound "
                    f"({section['epsilon_lower_bound']:.2f}, at most "
                    f"{section['lower_bound_ceiling']:.2f} with this many canaries) does not "
                    "prove it. Check the noise and clipping, or audit with more canaries."
                ),
            }
        ]
    return []


def verify_empirical(
    section: dict, record: dict, run_dir: Path, final: np.ndarray | None = None
) -> list[str]:
    """``verify_scores`` then ``verify_figures`` against the recomputed scores."""
    problems, scores = verify_scores(record, run_dir, final)
    return problems + verify_figures(section, {**record, "scores": scores.tolist()})


def verify_scores(
    record: dict, run_dir: Path, final: np.ndarray | None = None
) -> tuple[list[str], np.ndarray]:
    """The canaries' scores recomputed from the run folder ``run_dir``: gradient canaries'
    from its ``canary_trace.safetensors`` (bound by the seal), input canaries' from the
    ``final`` global adapter and the backbone its config names; one line per mismatch with
    the record, and the scores to recompute the figures from."""
    plan = CanaryPlan.from_json(record["plan"])
    recorded = np.asarray(record["scores"], dtype=np.float64)
    if plan.kind == "input":
        if final is None:
            return [f"{CANARIES}: input canaries need the final checkpoint"], recorded
        from securefed.run.canaries import (
            rescore_input_canaries,  # lazy: imports torch, needed for input canaries only
        )

        scores = rescore_input_canaries(run_dir, plan, final)
        tolerance = INPUT_SCORE_TOL
    else:
        try:
            arrays = RunFolder(run_dir).load_arrays(CANARY_TRACE)
            trace = CanaryTrace.from_arrays(plan, arrays)
        except (OSError, SafetensorError, ValueError) as exc:
            return [f"{CANARY_TRACE}: missing or not the plan's ({exc})"], recorded
        scores, tolerance = gradient_scores(plan, trace), SCORE_REL_TOL
    if recorded.shape != scores.shape:
        return [f"{CANARIES} scores: {recorded.size} recorded for {plan.count} canaries"], scores
    atol = tolerance if plan.kind == "input" else 1e-12
    if not np.allclose(scores, recorded, rtol=tolerance, atol=atol):
        worst = int(np.argmax(np.abs(scores - recorded)))
        source = "the final checkpoint" if plan.kind == "input" else CANARY_TRACE
        return [
            f"{CANARIES} scores: canary {worst} recorded {recorded[worst]!r}, "
            f"{source} gives {scores[worst]!r}"
        ], scores
    return [], scores


def verify_figures(section: dict, record: dict) -> list[str]:
    """Both figures (and the counts, claim and verdicts) recomputed from ``record``'s plan,
    scores and claim; one line per figure of ``section`` that does not match."""
    problems: list[str] = []
    found = section_from_record(record)
    for key in (
        "canaries",
        "canary_kind",
        "included",
        "lower_bound_exceeds_claim",
        "estimate_exceeds_claim",
    ):
        if section.get(key) != found[key]:
            problems.append(f"empirical.{key}: recorded {section.get(key)!r}, found {found[key]!r}")
    figures = {
        "delta": found["delta"],
        "claimed_epsilon": found["claimed_epsilon"],
        "epsilon_lower_bound": found["epsilon_lower_bound"],
        "epsilon_estimate": found["epsilon_estimate"],
        "epsilon_estimate_interval[0]": found["epsilon_estimate_interval"][0],
        "epsilon_estimate_interval[1]": found["epsilon_estimate_interval"][1],
    }
    interval = section.get("epsilon_estimate_interval") or [None, None]
    recorded = {
        "delta": section.get("delta"),
        "claimed_epsilon": section.get("claimed_epsilon"),
        "epsilon_lower_bound": section.get("epsilon_lower_bound"),
        "epsilon_estimate": section.get("epsilon_estimate"),
        "epsilon_estimate_interval[0]": interval[0],
        "epsilon_estimate_interval[1]": interval[1],
    }
    for key, value in figures.items():
        if not _close(recorded[key], value):
            problems.append(f"empirical.{key}: recorded {recorded[key]!r}, recomputed {value!r}")
    return problems


def _close(recorded: object, found: float) -> bool:
    """Equal within FIGURE_REL_TOL; infinities may be recorded as the string "inf"."""
    try:
        value = float(recorded)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    if math.isinf(found) or math.isinf(value):
        return value == found
    return math.isclose(value, found, rel_tol=FIGURE_REL_TOL, abs_tol=1e-9)


def audit_section(canaries: dict | None, configured: int) -> dict:
    """audit.json's ``empirical``: the figures of the run's ``canaries.json``, or why there
    are none (``configured``: the ``audit.canaries`` of the run's config)."""
    if canaries is None:
        return {
            "canaries": 0,
            "configured": configured,
            "note": (
                f"{CANARIES} missing: the run did not finish, so its {configured} canaries "
                "were never scored"
                if configured
                else "this run carried no canaries (audit.canaries: 0)"
            ),
        }
    try:
        return {**section_from_record(canaries), "configured": configured}
    except (KeyError, TypeError, ValueError) as exc:  # an edited file: verification says so
        return {"canaries": 0, "configured": configured, "note": f"{CANARIES} is damaged ({exc})"}


def carried_flags(section: dict) -> list[dict]:
    """A caveat that the run carried canaries (they are in the released model), then
    ``empirical_flags``."""
    if "epsilon_lower_bound" not in section:
        return []
    carriers = ", ".join(str(c) for c in section["plan"]["institutions"])
    carried = {
        "severity": "caveat",
        "code": "canaries_carried",
        "message": (
            f"CANARIES: this run carried {section['canaries']} {section['canary_kind']} "
            f"canaries ({section['included']} included by their secret coins) in institution(s) "
            f"{carriers}, for the empirical privacy audit. The released adapter was trained on "
            "them; no count, loss or accuracy the run reports includes them."
        ),
    }
    return [*empirical_flags(section), carried]
