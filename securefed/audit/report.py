"""The audit record: one JSON document built from a run folder alone (schema ``SCHEMA_VERSION``).

    build_audit(run_dir) -> dict
        run, flags, warnings, threat_model, privacy, secure_aggregation, accuracy, communication,
        cost, partition, environment, config, integrity, sources

The flags at the top name everything that makes the run less private than it may look (DP
off, secure aggregation off, test-only randomness, synthetic data, over budget, failed
verification, ...). A feature that was off or never recorded appears as such: a section is
never dropped. Nothing in the record depends on when or where it was built, so rebuilding
from an unchanged run folder gives the same JSON.
"""

from __future__ import annotations

from pathlib import Path

from securefed.audit.empirical_report import audit_section, carried_flags
from securefed.audit.performance import accuracy_section, communication_section, cost_section
from securefed.audit.privacy import privacy_section
from securefed.audit.secure_aggregation import secure_aggregation_section
from securefed.audit.source import RunSnapshot, as_float, json_safe, read_snapshot
from securefed.audit.threat_model import threat_model_section
from securefed.audit.verdict import verdict
from securefed.audit.verification import Verification
from securefed.audit.verify import verify_records
from securefed.run.folder import CONFIG, RESULTS

SCHEMA_VERSION = 1
SECTIONS = (
    "schema_version",
    "verdict",
    "run",
    "flags",
    "warnings",
    "threat_model",
    "privacy",
    "empirical",
    "secure_aggregation",
    "accuracy",
    "communication",
    "cost",
    "partition",
    "environment",
    "config",
    "integrity",
    "sources",
)
CRITICAL, CAVEAT = "critical", "caveat"


def build_audit(
    run_dir: str | Path,
    threat_model: Path | None = None,
    *,
    verification: Verification | None = None,
    threat_model_record: dict | None = None,
) -> dict:
    """The audit record of a run folder (strict JSON: infinities are the string "inf").

    ``verification``: ``verify_records`` of the folder, when the caller has it already;
    ``threat_model_record``: the threat-model section an earlier build embedded (a rebuild
    judges the run under the model the audit states, not today's file)."""
    run = read_snapshot(run_dir)
    verification = verification or verify_records(run.path)
    audit = {
        "schema_version": SCHEMA_VERSION,
        "verdict": "",
        "run": _run_section(run),
        "flags": [],
        "warnings": run.warnings,
        "threat_model": threat_model_record or threat_model_section(threat_model),
        "privacy": privacy_section(run),
        "empirical": audit_section(run.canaries, run.cfg.audit.canaries),
        "secure_aggregation": secure_aggregation_section(run),
        "accuracy": accuracy_section(run),
        "communication": communication_section(run),
        "cost": cost_section(run),
        "partition": run.partition,
        "environment": {
            **run.environment,
            "base_weights_unchanged": ((run.results or {}).get("base_weights") or {}).get(
                "unchanged"
            ),
        },
        "config": {"sha256": run.sources[CONFIG], "values": run.config},
        "integrity": {
            "chain_head": run.metrics[-1]["record_hash"] if run.metrics else None,
            "records": len(run.metrics),
            **verification.to_json(),
        },
        "sources": run.sources,
    }
    audit = json_safe(audit)
    audit["flags"] = flags(audit)
    audit["verdict"] = verdict(audit)
    return audit


def _run_section(run: RunSnapshot) -> dict:
    cfg, results = run.cfg, run.results or {}
    planned = cfg.training.rounds
    task = (
        results["task"]
        if results
        else {
            "name": cfg.task.name,
            "synthetic": (run.environment.get("task") or {}).get("synthetic"),
        }
    )
    return {
        "name": cfg.name,
        "folder": run.path.name,
        "task": task,
        "backbone": cfg.model.backbone,
        "adapter": cfg.model.adapter,
        "trainable_parameters": results["trainable_parameters"] if results else None,
        "institutions": len(run.partition.get("clients", [])),
        "seed": cfg.seed,
        "rounds_planned": planned,
        "rounds_finished": len(run.metrics),
        "complete": run.results is not None and len(run.metrics) == planned,
    }


MAJORITY_MARGIN = 0.02  # accuracy within 2 points of the majority-class floor


def at_majority_floor(accuracy: float, floor: float) -> bool:
    """Whether ``accuracy`` fails to clear the majority-class ``floor`` by the margin."""
    return accuracy <= floor + MAJORITY_MARGIN


def against_floor(accuracy: float, floor: float) -> str:
    """How ``accuracy`` stands to a floor, in words the numbers bear out."""
    gap = 100 * (accuracy - floor)
    if abs(gap) < 0.05:
        return "equals"
    return f"is {abs(gap):.1f} points {'below' if gap < 0 else 'above'}"


def _not_above_majority(acc: dict) -> str | None:
    """The caveat when federated pooled accuracy does not clear the majority-class floor."""
    floor = acc["majority_class"]["pooled"]
    federated = (acc["pooled"]["federated"] or {}).get("accuracy")
    if floor is None or federated is None or not at_majority_floor(federated, floor):
        return None
    return (
        f"NOT ABOVE MAJORITY CLASS: federated pooled accuracy {federated:.3f} "
        f"{against_floor(federated, floor)} always answering "
        f"'{acc['majority_class']['label']}' ({floor:.3f}; the flag stands within "
        f"{100 * MAJORITY_MARGIN:.0f} points above it): the adapter learned little or nothing."
    )


def _below_own_floor(acc: dict) -> str | None:
    """The caveat naming each institution whose own test split the federated model does not
    beat by always answering that split's most common label."""
    below = []
    for c, floor in acc["majority_class"]["clients"].items():
        federated = ((acc["clients"].get(c) or {}).get("federated") or {}).get("accuracy")
        if floor is not None and federated is not None and federated <= floor:
            below.append(f"{c} ({federated:.3f} {against_floor(federated, floor)} {floor:.3f})")
    if not below:
        return None
    return (
        f"NOT ABOVE ITS OWN MAJORITY FLOOR: on institution(s) {', '.join(below)} the federated "
        "model does not beat always answering that institution's most common test label."
    )


def flags(audit: dict) -> list[dict]:
    """Everything a reader must not miss, most serious first."""
    out: list[dict] = []

    def flag(severity: str, code: str, message: str) -> None:
        out.append({"severity": severity, "code": code, "message": message})

    run, privacy, sa = audit["run"], audit["privacy"], audit["secure_aggregation"]
    integrity = audit["integrity"]
    if not integrity["verified"]:
        flag(
            CRITICAL,
            "verification_failed",
            f"VERIFICATION FAILED: {len(integrity['mismatches'])} recorded figure(s) or hash(es) "
            "do not match the run folder; see the integrity section. Do not rely on this audit.",
        )
    institution = privacy.get("institution")
    if not privacy["dp_enabled"]:
        flag(
            CRITICAL,
            "dp_off",
            "DIFFERENTIAL PRIVACY OFF: institutions trained on their records without DP-SGD; "
            "epsilon is infinity for every institution that trained. The released adapter may "
            "memorise individual records."
            + (
                " (Institution-level DP was on: it bounds what the sums reveal about a whole "
                "institution, at its own epsilon; see the privacy section.)"
                if institution
                else ""
            ),
        )
    if institution and institution["within_budget"] is False:
        flag(
            CRITICAL,
            "institution_over_budget",
            f"OVER BUDGET: institution-level epsilon {institution['epsilon']} exceeds its "
            f"target {institution['target_epsilon']}.",
        )
    if not sa["enabled"]:
        flag(
            CRITICAL,
            "secure_aggregation_off",
            "SECURE AGGREGATION OFF: the server received each institution's adapter update in "
            "the clear, not only their sum.",
        )
    test_entropy = [e for e in sa["entropy_sources"] if e != "os"]
    if test_entropy:
        flag(
            CRITICAL,
            "test_only_randomness",
            f"TEST-ONLY RANDOMNESS: secure-aggregation keys came from {', '.join(test_entropy)}, "
            "not the operating system: masks are reproducible, not secret.",
        )
    over = [c for c, v in privacy["clients"].items() if v["within_budget"] is False]
    if over:
        flag(
            CRITICAL,
            "over_budget",
            f"OVER BUDGET: institution(s) {', '.join(over)} spent more than epsilon "
            f"{privacy['target_epsilon']}.",
        )
    if not any(r["aggregated"] for r in sa["rounds"]):
        flag(
            CRITICAL,
            "nothing_trained",
            f"NOTHING TRAINED: none of the {run['rounds_finished']} recorded round(s) aggregated "
            "an update; every accuracy here is the initial adapter's.",
        )
    if not run["complete"]:
        flag(
            CRITICAL,
            "incomplete_run",
            f"INCOMPLETE RUN: {run['rounds_finished']} of {run['rounds_planned']} rounds recorded"
            + ("" if audit["sources"].get(RESULTS) else ", no results.json")
            + ".",
        )
    if audit["environment"].get("base_weights_unchanged") is False:
        flag(
            CRITICAL,
            "base_weights_changed",
            "BASE WEIGHTS CHANGED during the run: more than the adapter was trained.",
        )
    out.extend(carried_flags(audit["empirical"]))  # the measured leak: critical when above
    learned = _not_above_majority(audit["accuracy"])
    if learned:
        flag(CAVEAT, "not_above_majority", learned)
    own_floor = _below_own_floor(audit["accuracy"])
    if own_floor:
        flag(CAVEAT, "below_own_majority_floor", own_floor)
    if run["task"].get("synthetic"):
        flag(
            CAVEAT,
            "synthetic_data",
            f"SYNTHETIC DATA: task {run['task'].get('name')} is generated; accuracy here says "
            "nothing about real records.",
        )
    if not audit["threat_model"]["present"]:
        flag(
            CAVEAT,
            "threat_model_missing",
            "No threat_model.md was found: the assumptions behind this audit are not stated.",
        )
    if (
        privacy["dp_enabled"]
        and privacy["noise_source"] != "aes_ctr"
        and not privacy["secure_mode"]
    ):
        flag(
            CAVEAT,
            "dp_noise_not_cryptographic",
            "DP noise was drawn from torch's Mersenne Twister (noise_source torch, Opacus "
            "secure_mode off): not a CSPRNG, and floating-point Gaussian sampling (see the "
            "threat model).",
        )
    if privacy["dp_enabled"] and any(
        "TEST ONLY" in s for s in privacy.get("noise_sources_used") or []
    ):
        flag(
            CAVEAT,
            "dp_noise_test_only",
            "DP noise was drawn from a generator seeded for tests: reproducible, hence NOT "
            "private.",
        )
    protocol = sa.get("protocol") or {}
    ran = bool(protocol)  # no transcript (nothing aggregated): no protocol ran to judge
    if sa["enabled"] and ran and (protocol["adversary"] == "curious" or not protocol["identities"]):
        flag(
            CAVEAT,
            "curious_server_only",
            "HONEST-BUT-CURIOUS SERVER ASSUMED: secure aggregation ran without signed identities "
            "(adversary: curious), so no consistency check could run. A server that lies in the "
            "lists it sends, or adds clients of its own, could unmask an institution's update.",
        )
    if sa["aborted_rounds"]:
        flag(
            CAVEAT,
            "aborted_rounds",
            f"Rounds {sa['aborted_rounds']} aggregated nothing (see secure aggregation).",
        )
    stopped = {c for c, v in privacy["clients"].items() if v["rounds_budget_stopped"]}
    if stopped:
        flag(
            CAVEAT,
            "budget_stopped",
            f"Institution(s) {', '.join(sorted(stopped))} stopped training to stay within budget.",
        )
    dropout = sa["configured"].get("dropout") or {}
    if sa["enabled"] and (
        as_float(dropout.get("rate")) or any(dropout.get(s) for s in sa["stages"])
    ):
        flag(CAVEAT, "simulated_dropouts", "Dropouts in this run were SIMULATED (testing).")
    return out
