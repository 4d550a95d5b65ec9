"""A spent privacy budget never ends a run, in the federation or in the baselines.

The run: DP-SGD with sigma fixed at 1.0 and a target epsilon of 3.7, secure aggregation on
(the default), three institutions of different sizes. Institution 0 cannot afford even its
first round; institution 1 stops after one round; from round 1 on only institution 2 is left,
too few for secure aggregation, so rounds 1 and 2 are skipped and recorded. The baselines'
planned steps overshoot the same target, so they stop where their budget ends.
"""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
from kill_points import CrashAfterRound

from securefed.cli import main
from securefed.config import load_config
from securefed.privacy.budget import ClientPrivacy
from securefed.privacy.ledger import recompute_epsilon
from securefed.privacy.plan import LocalStats
from securefed.run.aggregation import aggregate_round, cohort_shortfall
from securefed.run.folder import RunFolder
from securefed.run.simulate import simulate

TARGET = 3.7
STOPPING = [
    "task.synthetic.num_examples=120",
    "training.rounds=3",
    "training.local_steps=2",
    "training.batch_size=8",
    "model.max_length=32",
    "partition.num_clients=3",
    "training.clients_per_round=3",
    "privacy.dp.enabled=true",
    "privacy.dp.noise_multiplier=1.0",  # explicit: rounds and baseline steps overshoot
    f"privacy.dp.target_epsilon={TARGET}",
]
SKIPPED = [1, 2]
THREE = ["partition.num_clients=3", "training.clients_per_round=3"]


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory):
    """The run through the CLI, as a user starts it; its exit status and folder."""
    base = tmp_path_factory.mktemp("budget")
    argv = ["simulate", "--quiet", "--out", str(base / "run")]
    for override in STOPPING:
        argv += ["--set", override]
    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(printed):
        mp.chdir(base)  # the audit goes to audits/run/ under the current directory
        code = main(argv)
    stopped_run_output[:] = printed.getvalue().splitlines()
    return code, base / "run"


stopped_run_output: list[str] = []  # what the command printed, line by line


def _records(run_dir) -> list[dict]:
    return RunFolder(run_dir).read_metrics()


def test_a_budget_stop_under_secure_aggregation_runs_to_the_end(stopped_run):
    code, run_dir = stopped_run
    assert code == 0
    records = _records(run_dir)
    assert [r["round"] for r in records] == [0, 1, 2]
    assert records[0]["budget_stopped"] == [0] and records[0]["aggregated"] == [1, 2]
    assert "skipped" not in records[0]
    for r in SKIPPED:
        assert records[r]["budget_stopped"] == [0, 1] and records[r]["aggregated"] == []
        assert "secure aggregation needs at least 2" in records[r]["skipped"]
        # the global adapter stays as it was; nothing travelled, so no transcript
        assert records[r]["global_adapter_sha256"] == records[0]["global_adapter_sha256"]
        assert not (run_dir / f"secagg/round-{r:04d}.json").exists()
    ledgers = json.loads((run_dir / "privacy/ledgers.json").read_text())["ledgers"]
    # skipped before anyone trained: no institution is charged for a round that released nothing
    assert [[e["round_index"] for e in ledgers[c]["events"]] for c in "012"] == [[], [0], [0]]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["secure_aggregation"]["aborted_rounds"] == SKIPPED
    assert all(
        0 <= report["epsilon"] <= TARGET for report in results["privacy"]["clients"].values()
    )


def test_the_last_line_says_rounds_were_skipped(stopped_run):
    last = stopped_run_output[-1]
    assert last.startswith("verdict: ") and "2 of 3 rounds SKIPPED" in last, stopped_run_output


def test_every_epsilon_of_the_stopped_run_recomputes(stopped_run, capsys):
    _, run_dir = stopped_run
    assert main(["audit", "--verify", str(run_dir)]) == 0, capsys.readouterr().out
    audit = json.loads((run_dir.parent / "audits/run/audit.json").read_text())
    assert audit["integrity"]["verified"], audit["integrity"]["mismatches"]
    skipped = [r for r in audit["secure_aggregation"]["rounds"] if r["round"] in SKIPPED]
    assert all(r["trained"] == [] and r["aborted"].startswith("skipped:") for r in skipped)
    assert main(["audit", "--verify", str(run_dir.parent / "audits/run")]) == 0


def test_the_baselines_stop_where_their_budget_ends(stopped_run):
    _, run_dir = stopped_run
    isolated = json.loads((run_dir / "baselines/isolated.json").read_text())
    centralized = json.loads((run_dir / "baselines/centralized.json").read_text())
    for c, block in isolated["clients"].items():
        report = isolated["privacy"]["clients"][c]
        assert block["planned_steps"] == 6 and block["stopped_on_budget"]
        assert 0 < block["steps"] < 6 and report["steps"] == block["steps"]
        assert report["epsilon"] <= TARGET
        # one more step would have broken the budget
        more = [{**report["events"][0], "steps": block["steps"] + 1}]
        assert recompute_epsilon(more, report["delta"], "pld") > TARGET
    assert centralized["steps"] == centralized["planned_steps"] == 18  # pooled: q is small
    assert not centralized["stopped_on_budget"]
    assert centralized["privacy"]["clients"]["0"]["epsilon"] <= TARGET


def test_resume_across_a_skipped_round_ends_like_the_uninterrupted_run(stopped_run, tmp_path):
    cfg = load_config(overrides=[*STOPPING, "baselines=[]"])
    with pytest.raises(KeyboardInterrupt):
        simulate(cfg, out=str(tmp_path / "cut"), progress=CrashAfterRound(0))
    assert len(_records(tmp_path / "cut")) == 1  # the budget stop's round is still ahead
    cut_dir, _ = simulate(resume=str(tmp_path / "cut"))
    # DP noise comes from the OS, so adapters differ; what happened in each round may not
    same = ("round", "sampled", "budget_stopped", "aggregated", "skipped", "epsilon")
    strip = lambda records: [{k: r.get(k) for k in same} for r in records]  # noqa: E731
    assert strip(_records(cut_dir)) == strip(_records(stopped_run[1]))
    assert main(["audit", "--verify", str(cut_dir)]) == 0


@pytest.mark.parametrize(
    ("cohort", "overrides", "reason"),
    [
        ([], [], "no institution left to train"),
        ([2], [], "secure aggregation needs at least 2"),
        ([0, 2], ["secure_aggregation.threshold=3"], "secure_aggregation.threshold=3"),
        ([0, 2], [], None),
        ([2], ["secure_aggregation.enabled=false"], None),
    ],
)
def test_a_cohort_too_small_to_aggregate_is_named(cohort, overrides, reason):
    cfg = load_config(overrides=[*THREE, *overrides])
    found = cohort_shortfall(cfg, cohort)
    assert found == reason if reason is None else reason in found


def test_aggregation_aborts_a_round_too_small_for_secure_aggregation():
    """Should a lone update reach aggregation, the round aborts instead of ending the run."""
    cfg = load_config(overrides=THREE)
    stats = LocalStats(steps=1, examples=8, mean_loss=1.0)
    delta = np.ones(4, dtype=np.float32)
    result = aggregate_round(cfg, 0, {1: (delta, stats)}, {1: 1.0}, np.zeros(4), "00" * 32)
    assert result.mean_delta is None and result.survivors == ()
    assert "secure aggregation needs at least 2" in result.aborted


def test_affordable_steps_is_the_most_the_budget_allows():
    cfg = load_config(
        overrides=[
            "privacy.dp.enabled=true",
            "privacy.dp.noise_multiplier=1.0",
            f"privacy.dp.target_epsilon={TARGET}",
        ]
    )
    privacy = ClientPrivacy(cfg, train_sizes=[32], steps_per_round=[40], rounds=1)
    taken = privacy.affordable_steps(0, 40)
    assert 0 < taken < 40
    ledger = privacy.ledgers[0]
    q = privacy.sample_rate(0)
    epsilon = lambda steps: ledger.epsilon_after(noise_multiplier=1.0, sample_rate=q, steps=steps)  # noqa: E731
    assert epsilon(taken) <= TARGET < epsilon(taken + 1)
    assert privacy.affordable_steps(0, taken) == taken  # within budget: all of them
