"""Every epsilon a run or its audit shows recomputes from recorded events, baselines included.

An audit.json is what gets committed and signed off; its run folder may be gone. So it
carries each institution's and each baseline's events and sigma, and ``securefed audit
--verify AUDIT_DIR`` recomputes every epsilon it shows from them alone.
"""

from __future__ import annotations

import json
import shutil

import pytest

from securefed.audit import verify_audit, verify_run
from securefed.cli import main


def _edit_json(path, edit) -> None:
    obj = json.loads(path.read_text())
    edit(obj)
    path.write_text(json.dumps(obj, indent=2))


def _failed(result) -> set[str]:
    assert not result.ok
    return {m.check for m in result.mismatches}


def test_the_audit_carries_every_event_and_sigma_behind_its_epsilons(private_audit_dir, capsys):
    audit = json.loads((private_audit_dir / "audit.json").read_text())
    privacy = audit["privacy"]
    for client in privacy["clients"].values():
        assert [e["round_index"] for e in client["recorded_events"]] == client["rounds_trained"]
    for name in ("centralized", "isolated"):
        ledgers = privacy["baseline_ledgers"][name]
        assert set(ledgers) == set(privacy["baselines"][name])
        for ledger in ledgers.values():
            assert ledger["recorded_events"] and ledger["noise_multiplier"] == 1.2
            assert ledger["steps"] == sum(e["steps"] for e in ledger["recorded_events"])
    result = verify_audit(private_audit_dir)
    assert result.ok, result.mismatches
    shown = len(privacy["clients"]) * (1 + len(privacy["epsilon_by_round"]))
    shown += sum(len(v) for v in privacy["baselines"].values())
    assert result.checks > shown  # each epsilon shown, plus cross-checks, sigma and steps
    assert main(["audit", "--verify", str(private_audit_dir)]) == 0, capsys.readouterr().out


def _baseline_event_steps(privacy: dict) -> None:
    privacy["baseline_ledgers"]["isolated"]["0"]["recorded_events"][0]["steps"] += 1


def _baseline_sigma(privacy: dict) -> None:
    privacy["baseline_ledgers"]["centralized"]["0"]["noise_multiplier"] = 2.4


def _baseline_event_sigma(privacy: dict) -> None:
    privacy["baseline_ledgers"]["centralized"]["0"]["recorded_events"][0]["noise_multiplier"] = 2.4


def _baseline_events_dropped(privacy: dict) -> None:
    del privacy["baseline_ledgers"]


def _institution_event(privacy: dict) -> None:
    privacy["clients"]["1"]["recorded_events"][0]["sample_rate"] /= 2


@pytest.mark.parametrize(
    ("edit", "check"),
    [
        (_baseline_event_steps, "epsilon of record"),
        (_baseline_sigma, "noise_multiplier of the events"),
        (_baseline_event_sigma, "epsilon of record"),
        (_baseline_events_dropped, "baseline events in the audit"),
        (_institution_event, "epsilon after round"),
    ],
)
def test_an_edited_audit_does_not_verify(private_audit_dir, tmp_path, edit, check):
    copy = shutil.copytree(private_audit_dir, tmp_path / "audit")
    _edit_json(copy / "audit.json", lambda audit: edit(audit["privacy"]))
    assert check in _failed(verify_audit(copy))
    assert main(["audit", "--verify", str(copy)]) == 1


@pytest.fixture
def private_copy(private_run, tmp_path):
    return shutil.copytree(private_run, tmp_path / "run")


def test_an_edited_baseline_event_fails_verification(private_copy):
    def more_steps(block: dict) -> None:
        block["privacy"]["clients"]["1"]["events"][0]["steps"] += 1

    _edit_json(private_copy / "baselines/isolated.json", more_steps)
    _edit_json(private_copy / "results.json", lambda results: more_steps(results["isolated"]))
    assert {"epsilon of record", "steps of the events"} <= _failed(verify_run(private_copy))


BINDING_CHECKS = {
    "sealed file sha256",
    "audit figure recomputed",
    "audit text rendered from the record",
    "audit plot rendered from the record",
}


@pytest.mark.parametrize("field", ["report", "events"])
def test_an_edited_baseline_sigma_fails_verification(private_copy, field):
    """Edited alike in both files that state it, so only the sigma checks can see it."""

    def more_noise(block: dict) -> None:
        report = block["privacy"]["clients"]["0"]
        if field == "report":
            report["noise_multiplier"] = 2.4
        else:
            for event in report["events"]:
                event["noise_multiplier"] = 2.4
            report["noise_multiplier"] = 2.4

    _edit_json(private_copy / "baselines/centralized.json", more_noise)
    _edit_json(private_copy / "results.json", lambda results: more_noise(results["centralized"]))
    # The seal and the bound audit see every edit; of the record checks only the sigma ones can.
    failed = _failed(verify_run(private_copy)) - BINDING_CHECKS
    if field == "report":
        assert failed == {"noise_multiplier of the events"}
    else:
        assert {"epsilon of record", "events' sigma = configured sigma"} <= failed


def test_an_audit_without_dp_recomputes_its_infinite_epsilons(plain_audit_dir):
    audit = json.loads((plain_audit_dir / "audit.json").read_text())
    assert {c["epsilon"] for c in audit["privacy"]["clients"].values()} == {"inf"}
    result = verify_audit(plain_audit_dir)
    assert result.ok and result.checks > 0, result.mismatches
