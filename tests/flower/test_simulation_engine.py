"""Flower's simulation engine (``flwr run`` on a local simulation SuperLink, ClientApps in Ray
actors) runs the same apps, unchanged: two rounds of secure aggregation with DP."""

from __future__ import annotations

import pytest
from deployment_checks import INSTITUTIONS, TINY, node_runs

from securefed.flower.localhost import LocalSimulation
from securefed.flower.records import collect_node_records
from securefed.run.folder import RunFolder, read_json

pytest.importorskip("ray", reason="Flower's simulation engine needs flwr[simulation] (ray)")


@pytest.mark.slow
def test_simulation_engine_runs_the_same_apps(tmp_path):
    overrides = [*TINY, "privacy.dp.enabled=true", "privacy.dp.noise_multiplier=1.0"]
    run_dir = tmp_path / "run"
    with LocalSimulation(tmp_path / "sim", INSTITUTIONS) as sim:
        run_id = sim.launch(
            {"overrides": "; ".join(overrides), "run-dir": str(run_dir), "final-evaluation": False}
        )
        sim.wait(run_id, timeout_s=480)
    privacy = collect_node_records(run_dir, node_runs(tmp_path / "sim", run_id))

    records = RunFolder(run_dir).read_metrics()
    assert [r["aggregated"] for r in records] == [INSTITUTIONS, INSTITUTIONS]
    for r in range(2):
        transcript = read_json(run_dir / f"secagg/round-{r:04d}.json")
        assert transcript["wrap_count"] == 0 and not any(transcript["dropouts"].values())
    for i in INSTITUTIONS:  # each node's ledger holds one DP-SGD event per round
        events = privacy["clients"][str(i)]["events"]
        assert [e["round_index"] for e in events] == [0, 1]
