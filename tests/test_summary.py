"""The line `securefed simulate` ends with says which server secure aggregation defends against."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from securefed.run.folder import AUDIT_RECORD
from securefed.run.summary import print_results, print_summary


def _results(enabled: bool, adversary: str) -> dict:
    return {
        "task": {"name": "synthetic_finance", "synthetic": True},
        "backbone": "tiny",
        "adapter": "lora",
        "federated": {"pooled": {"accuracy": 0.8}},
        "privacy": {"clients": {"0": {"epsilon": "inf"}}, "dp_enabled": False,
                    "accountant_of_record": "pld"},
        "secure_aggregation": {"enabled": enabled, "adversary": adversary, "aborted_rounds": []},
        "base_weights": {"unchanged": True},
    }  # fmt: skip


@pytest.mark.parametrize(
    ("enabled", "adversary", "said"),
    [
        (True, "semi_malicious", "a server that lies in its lists"),
        (True, "curious", "HONEST-BUT-CURIOUS server only"),
        (False, "semi_malicious", "OFF (server sees each update)"),
    ],
)
def test_the_summary_names_the_server_it_defends_against(enabled, adversary, said):
    console = Console(record=True, width=200)
    print_summary(_results(enabled, adversary), Path("run"), console)
    assert said in console.export_text()


def test_the_summary_states_the_institution_level_epsilon_where_distributed_dp_is_on():
    results = _results(True, "semi_malicious")
    results["privacy"]["institution"] = {
        "epsilon": 15.87,
        "target_epsilon": 16.0,
        "delta": 1e-5,
        "plan": {"mechanism": "skellam"},
    }
    console = Console(record=True, width=200)
    print_summary(results, Path("run"), console)
    text = console.export_text()
    assert "institution-level DP (skellam noise inside the secure sum): epsilon 15.9" in text
    assert "(target 16, delta 1e-05)" in text
    console = Console(record=True, width=200)
    print_summary(_results(True, "semi_malicious"), Path("run"), console)
    assert "institution-level" not in console.export_text()


def test_every_recipe_ends_with_the_table_the_audit_path_and_its_verdict(tmp_path):
    """``print_results`` is what ``securefed simulate`` and the Flower recipes end with."""
    (tmp_path / AUDIT_RECORD).write_text(json.dumps({"verdict": "verified: it holds"}))
    console = Console(record=True, width=200)
    print_results(_results(True, "semi_malicious"), Path("run"), tmp_path, console)
    lines = console.export_text().strip().splitlines()
    assert any("pooled accuracy" in line for line in lines)  # the table
    assert lines[-3] == "run folder: run"
    assert lines[-2:] == [f"audit: {tmp_path}", "verdict: verified: it holds"]
