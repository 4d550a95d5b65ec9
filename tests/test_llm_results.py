"""The README's LLM figures are the committed runs' in ``audits/llm_config`` and ``audits/llm_dp``.

Each ``audits/llm_config/seed-N/`` holds one run's results.json and its resolved config.yaml
(copied from the run folder). Checked here, without training: every committed run is today's
``configs/llm.yaml`` at its seed; seed 0 meets the bar (0.60, zero-shot + 20 points, isolated + 5);
and the README states seed 0's figures and the three seeds' mean and range as these files give
them. ``tests/test_llm_config_learns.py`` (slow) reruns seed 0.

``audits/llm_dp/seed-N/`` (N = 0, 1, 2) is the whole run folder of ``configs/llm_dp.yaml`` (DP-SGD
at epsilon 8) at seed N, ``seed-2-rerun/`` the same command at seed 2 run again, and
``seed-0-natural/`` seed 0 under the natural split. Each is today's config with its overrides, and
no other run folder sits beside them; each institution's epsilon, recomputed from its privacy
ledger by the PLD accountant, is the one results.json reports and at most the config's target (at
most 8); every run's federated pooled accuracy clears the majority-class floor of its test splits
by 10 points; the README and docs/llm.md state every run's figures and the seeds' mean and range.
The slow test runs ``securefed audit --verify``'s checks (every hash and epsilon).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from securefed.audit.epsilons import epsilon_of
from securefed.audit.verify import verify_records
from securefed.config import load_config
from securefed.run.folder import LEDGERS
from securefed.tasks.partition import majority_class

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "audits" / "llm_config"
SEEDS = (0, 1, 2)
DP_DIR = ROOT / "audits" / "llm_dp"
# Each committed DP run folder and its overrides of configs/llm_dp.yaml: one run a seed, seed 2
# (the one nearest the bar) rerun as it is (DP noise is drawn afresh each run), and seed 0 under
# the natural split (one institution per firm)
DP_SEED_RUNS = {DP_DIR / f"seed-{seed}": [f"seed={seed}"] for seed in SEEDS}
NATURAL = ["partition.scheme=natural", "partition.column=institution"]
DP_RUNS = DP_SEED_RUNS | {DP_DIR / "seed-2-rerun": ["seed=2"], DP_DIR / "seed-0-natural": NATURAL}
DP_MARGIN = 0.10  # the bar: federated pooled accuracy at least the majority floor + 10 points


def _results(seed: int) -> dict:
    return json.loads((RUNS / f"seed-{seed}" / "results.json").read_text())


def _pooled(results: dict, arm: str) -> float:
    return results[arm]["pooled"]["accuracy"]


def test_each_committed_run_is_todays_llm_config_at_its_seed():
    for seed in SEEDS:
        committed = load_config(str(RUNS / f"seed-{seed}" / "config.yaml"))
        today = load_config(str(ROOT / "configs" / "llm.yaml"), [f"seed={seed}"])
        assert committed.model_dump() == today.model_dump(), seed


def test_seed_0_meets_the_bar():
    results = _results(0)
    federated = _pooled(results, "federated")
    assert federated >= 0.60
    assert federated >= _pooled(results, "zero_shot") + 0.20
    assert federated >= _pooled(results, "isolated") + 0.05


def test_the_readme_states_the_committed_figures():
    flat = " ".join((ROOT / "README.md").read_text().split())
    seed0 = _results(0)
    for arm in ("federated", "zero_shot", "isolated", "centralized"):
        assert f"{arm.replace('_', '-')} {_pooled(seed0, arm):.3f}" in flat, arm
    federated = [_pooled(_results(s), "federated") for s in SEEDS]
    stated = (
        f"seeds 0-2 federated mean {np.mean(federated):.3f} "
        f"(range {min(federated):.3f}-{max(federated):.3f})"
    )
    assert stated in flat, stated


def _dp_json(rel: str, run: Path) -> dict:
    return json.loads((run / rel).read_text())


def _dp_figures(run: Path) -> dict[str, float]:
    """Pooled accuracy of each arm a committed DP run has, and its majority-class floor."""
    results = _dp_json("results.json", run)
    arms = ("federated", "zero_shot", "centralized", "isolated")
    figures = {arm.replace("_", "-"): _pooled(results, arm) for arm in arms if results.get(arm)}
    figures["majority floor"] = majority_class(_dp_json("partition.json", run))["pooled"]
    return figures


@pytest.mark.parametrize("run", DP_RUNS, ids=lambda run: run.name)
def test_each_committed_dp_run_is_todays_llm_dp_config(run):
    committed = load_config(str(run / "config.yaml"))
    today = load_config(str(ROOT / "configs" / "llm_dp.yaml"), DP_RUNS[run])
    assert committed.model_dump() == today.model_dump()


@pytest.mark.parametrize("run", DP_RUNS, ids=lambda run: run.name)
def test_each_dp_run_is_at_epsilon_8_recomputed_by_pld(run):
    dp = load_config(str(run / "config.yaml")).privacy.dp
    assert dp.enabled and dp.accountant == "pld" and dp.target_epsilon <= 8.0
    ledgers = _dp_json(LEDGERS, run)
    reported = _dp_json("results.json", run)["privacy"]["clients"]
    assert ledgers["accountant"] == "pld"
    assert set(ledgers["ledgers"]) == set(reported) and len(reported) == 4
    for c, ledger in ledgers["ledgers"].items():
        epsilon = epsilon_of(ledger["events"], ledger["delta"], "pld")
        assert epsilon <= dp.target_epsilon, c
        assert reported[c]["epsilon"] == epsilon, c


def test_the_committed_dp_runs_are_the_seeds_runs():
    assert sorted(path.name for path in DP_DIR.iterdir()) == sorted(run.name for run in DP_RUNS)


@pytest.mark.parametrize("run", DP_RUNS, ids=lambda run: run.name)
def test_each_dp_run_clears_the_majority_floor_by_10_points(run):
    figures = _dp_figures(run)
    assert figures["federated"] >= figures["majority floor"] + DP_MARGIN


@pytest.mark.parametrize("run", DP_RUNS, ids=lambda run: run.name)
def test_the_readme_and_docs_state_each_dp_runs_figures(run):
    stated = ", ".join(f"{arm} {value:.3f}" for arm, value in _dp_figures(run).items())
    for page in ("README.md", "docs/llm.md"):
        flat = " ".join((ROOT / page).read_text().split())
        assert "securefed simulate configs/llm_dp.yaml" in flat, page
        assert stated in flat, (page, stated)


def test_the_readme_and_docs_state_the_dp_seeds_mean_and_range():
    federated = [_dp_figures(run)["federated"] for run in DP_SEED_RUNS]
    stated = (
        f"epsilon 8 over seeds 0-2, federated mean {np.mean(federated):.3f} "
        f"(range {min(federated):.3f}-{max(federated):.3f})"
    )
    for page in ("README.md", "docs/llm.md"):
        assert stated in " ".join((ROOT / page).read_text().split()), (page, stated)


@pytest.mark.slow
@pytest.mark.parametrize("run", DP_RUNS, ids=lambda run: run.name)
def test_each_dp_run_verifies(run):
    verification = verify_records(run)
    assert verification.ok, verification.mismatches
