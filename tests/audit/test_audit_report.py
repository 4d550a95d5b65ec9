"""The audit record of real tiny runs: every section, reproducible, flags that cannot be missed."""

from __future__ import annotations

import json

import pytest
from audit_runs import BOTH_RUNS

from securefed.audit import SCHEMA_VERSION, build_audit
from securefed.audit.report import SECTIONS, flags
from securefed.privacy.display import epsilon_text

INSTITUTION_FIELDS = {
    "epsilon",
    "delta",
    "accountant",
    "cross_checks",
    "noise_multiplier",
    "clip_norm",
    "sample_rates",
    "steps",
    "rounds_trained",
}


def test_audit_of_a_private_run_has_every_section(private_audit_dir):
    audit = json.loads((private_audit_dir / "audit.json").read_text())
    assert tuple(audit) == SECTIONS
    assert audit["schema_version"] == SCHEMA_VERSION
    assert audit["run"]["complete"] and audit["run"]["rounds_finished"] == 2
    privacy = audit["privacy"]
    assert privacy["dp_enabled"] and privacy["target_epsilon"] == 8.0
    for c in ("0", "1", "2"):
        client = privacy["clients"][c]
        assert set(client) >= INSTITUTION_FIELDS
        assert 0 < client["epsilon"] <= 8.0 and client["within_budget"]
        assert client["noise_multiplier"] > 0 and client["rounds_trained"] == [0, 1]
        assert client["cross_checks"], "the ledger reports no cross-check accountant"
    assert [r["round"] for r in privacy["epsilon_by_round"]] == [0, 1]
    sa = audit["secure_aggregation"]
    assert sa["enabled"] and sa["protocol"]["protocol"].startswith("securefed/secagg")
    round1 = sa["rounds"][1]
    assert round1["dropouts"]["masked_input"] == [1] and round1["aggregated"] == [0, 2]
    assert round1["plan"]["threshold"] == 2
    acc = audit["accuracy"]
    assert all(acc["pooled"][t] for t in ("federated", "centralized", "isolated"))
    assert all(all(v.values()) for v in acc["clients"].values())
    assert len(audit["communication"]["rounds"]) == 2
    assert audit["communication"]["totals"]["0"]["up"] > 0
    assert len(audit["cost"]["rounds"]) == 2
    assert len(audit["partition"]["clients"]) == 3
    assert audit["environment"]["libraries"]["opacus"]
    assert audit["config"]["values"]["seed"] == 0
    assert audit["integrity"]["verified"], audit["integrity"]["mismatches"]
    assert {"config.yaml", "metrics.jsonl", "privacy/ledgers.json"} <= set(audit["sources"])
    codes = {f["code"] for f in audit["flags"]}
    assert {"synthetic_data", "simulated_dropouts"} <= codes
    assert not codes & {"dp_off", "secure_aggregation_off", "verification_failed", "over_budget"}


def test_markdown_shows_every_section(private_audit_dir):
    text = (private_audit_dir / "audit.md").read_text()
    for heading in (
        "## Flags",
        "## Per institution",
        "### Institution 0",
        "## Plots",
        "## At a glance",
        "## The run",
        "## 1. Differential",
        "## 2. Secure aggregation",
        "## 3. Accuracy",
        "## 4. Bytes",
        "## 5. Time",
        "## 6. Data partition",
        "## 7. Environment",
        "## 8. Configuration",
        "## 9. Integrity",
        "## Files this audit was built from",
        "# Appendix",
        "## A. Threat model",
    ):
        assert heading in text, heading
    for image in ("accuracy", "accuracy_by_round", "epsilon_by_client", "epsilon_by_round"):
        assert f"(plots/{image}.png)" in text
        assert (private_audit_dir / "plots" / f"{image}.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("kind", BOTH_RUNS)
def test_rebuilding_from_the_run_folder_gives_identical_json(kind, request):
    run, audit_dir = (
        request.getfixturevalue(f"{kind}_run"),
        request.getfixturevalue(f"{kind}_audit_dir"),
    )
    written = (audit_dir / "audit.json").read_text()
    assert json.dumps(build_audit(run), indent=2, allow_nan=False) + "\n" == written


def test_flags_appear_when_dp_and_secure_aggregation_are_off(plain_audit_dir):
    audit = json.loads((plain_audit_dir / "audit.json").read_text())
    assert tuple(audit) == SECTIONS  # absent features are shown as absent, never dropped
    flags = {f["code"]: f for f in audit["flags"]}
    assert flags["dp_off"]["severity"] == "critical"
    assert flags["secure_aggregation_off"]["severity"] == "critical"
    assert list(flags)[:2] == ["dp_off", "secure_aggregation_off"]  # before any caveat
    assert all(c["epsilon"] == "inf" for c in audit["privacy"]["clients"].values())
    assert audit["secure_aggregation"]["protocol"] is None
    assert audit["accuracy"]["pooled"]["centralized"] is None  # absent, and said so
    assert audit["accuracy"]["baselines"]["isolated"] == {
        "configured": False,
        "present": False,
        "steps": None,
    }
    assert all(r["transcript"] is None for r in audit["secure_aggregation"]["rounds"])
    assert audit["integrity"]["verified"], audit["integrity"]["mismatches"]


def test_majority_class_floor_is_recomputed_from_the_partition(plain_run, plain_audit_dir):
    audit = json.loads((plain_audit_dir / "audit.json").read_text())
    partition = json.loads((plain_run / "partition.json").read_text())
    counts: dict[str, int] = {}
    for c in partition["clients"]:
        for label, n in c["test_labels"].items():
            counts[label] = counts.get(label, 0) + n
        own = audit["accuracy"]["majority_class"]["clients"][str(c["client"])]
        assert own == max(c["test_labels"].values()) / c["test_size"]
    floor = audit["accuracy"]["majority_class"]
    assert floor["pooled"] == max(counts.values()) / sum(counts.values())
    assert counts[floor["label"]] == max(counts.values())


@pytest.mark.parametrize(("above_floor", "raised"), [(0.0, True), (0.015, True), (0.05, False)])
def test_accuracy_at_the_majority_floor_is_flagged(plain_audit_dir, above_floor, raised):
    audit = json.loads((plain_audit_dir / "audit.json").read_text())
    floor = audit["accuracy"]["majority_class"]["pooled"]
    audit["accuracy"]["pooled"]["federated"]["accuracy"] = floor + above_floor
    assert ("not_above_majority" in {f["code"] for f in flags(audit)}) is raised


@pytest.mark.parametrize("source", ["seeded test stream", "unlabelled"])
def test_keys_not_from_the_os_are_flagged_critical(plain_audit_dir, source):
    audit = json.loads((plain_audit_dir / "audit.json").read_text())
    audit["secure_aggregation"]["entropy_sources"] = ["os"]
    assert "test_only_randomness" not in {f["code"] for f in flags(audit)}
    audit["secure_aggregation"]["entropy_sources"] = ["os", source]
    raised = {f["code"]: f for f in flags(audit)}["test_only_randomness"]
    assert raised["severity"] == "critical" and source in raised["message"]


def test_threat_model_is_embedded_or_flagged_absent(plain_run, tmp_path):
    absent = build_audit(plain_run, threat_model=tmp_path / "threat_model.md")
    assert absent["threat_model"]["present"] is False
    assert "threat_model_missing" in {f["code"] for f in absent["flags"]}
    (tmp_path / "threat_model.md").write_text(
        "# Threat model\n\nHonest-but-curious server.\n\n## Adversaries\n\nThe server.\n\n"
        "```\n## not a heading\n```\n\n## Out of scope\n\nSide channels.\n"
    )
    present = build_audit(plain_run, threat_model=tmp_path / "threat_model.md")["threat_model"]
    assert present["present"] and present["title"] == "Threat model"
    assert present["summary"] == "Honest-but-curious server."
    assert [s["title"] for s in present["sections"]] == ["Adversaries", "Out of scope"]
    assert "## not a heading" in present["sections"][0]["text"]


def test_the_verdict_comes_first_and_holds_one_table_per_institution(private_audit_dir):
    text = (private_audit_dir / "audit.md").read_text()
    order = ["**Verdict:**", "## At a glance", "## Flags", "## Per institution", "## Plots"]
    order.append("# Appendix")
    assert [text.index(h) for h in order] == sorted(text.index(h) for h in order)
    audit = json.loads((private_audit_dir / "audit.json").read_text())
    for c, privacy in audit["privacy"]["clients"].items():
        block = text.split(f"### Institution {c}\n")[1].split("###")[0].split("## Plots")[0]
        assert "2 rounds trained" in block  # a count, not the indices [0, 1]
        assert f"delta {privacy['delta']:.4g}" in block
        header = f"| institution {c} | federated | isolated | centralized |"
        assert header in block
        for row in ("| epsilon |", "| accuracy, own test split |", "| accuracy, pooled test set |"):
            assert row in block, row
        (pooled_epsilon,) = audit["privacy"]["baselines"]["centralized"].values()
        shown = [privacy["epsilon"], audit["privacy"]["baselines"]["isolated"][c], pooled_epsilon]
        epsilons = "| epsilon | " + " | ".join(epsilon_text(e) for e in shown) + " |"
        assert epsilons in block  # centralized: the pooled model's epsilon covers everyone
    assert "—" not in text  # a missing figure is left out, not shown as a dash


def test_warnings_the_run_printed_are_in_the_audit(private_run, private_audit_dir):
    recorded = json.loads((private_run / "warnings.json").read_text())
    messages = [w["message"] for w in recorded]
    assert len(messages) == len(set(messages))  # each once, though 3 institutions x 2 rounds
    assert any("secure_mode" in m for m in messages)  # DP-SGD without secure_mode warns
    audit = json.loads((private_audit_dir / "audit.json").read_text())
    assert audit["warnings"] == recorded
    assert "## Warnings the run printed" in (private_audit_dir / "audit.md").read_text()


def test_a_run_that_assumes_a_curious_server_says_so(private_audit_dir):
    """The default signs identities (simulate generates them), so no flag; a run configured
    as ``adversary: curious`` (or one whose transcripts show no identities) is flagged."""
    audit = json.loads((private_audit_dir / "audit.json").read_text())
    protocol = audit["secure_aggregation"]["protocol"]
    assert protocol["identities"] is True and protocol["adversary"] == "semi_malicious"
    assert "curious_server_only" not in {f["code"] for f in flags(audit)}
    for change in ({"adversary": "curious", "identities": False}, {"identities": False}):
        audit["secure_aggregation"]["protocol"] = {**protocol, **change}
        raised = {f["code"]: f for f in flags(audit)}["curious_server_only"]
        assert "HONEST-BUT-CURIOUS" in raised["message"]
