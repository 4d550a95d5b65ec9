"""Flower's simulation engine (``flwr run`` on a local simulation SuperLink, ClientApps in Ray
actors) runs the same apps, unchanged. Each simulated node pins its settings from its
operator's file (``$SECUREFED_NODE_CONFIG_DIR/node-<id>.toml``, ``LocalSimulation``), never
from a server message: with DP off the run is ``securefed simulate`` bit for bit, and a run
whose server changes a pinned setting is refused by every node."""

from __future__ import annotations

import numpy as np
import pytest
from deployment_checks import INSTITUTIONS, TINY, node_runs

from securefed.config import load_config
from securefed.flower.localhost import DeploymentError, LocalSimulation
from securefed.flower.node_security import pinned_node_config
from securefed.run.folder import RunFolder

pytest.importorskip("ray", reason="Flower's simulation engine needs flwr[simulation] (ray)")


@pytest.mark.slow
def test_simulation_engine_is_simulate_bit_for_bit_and_keeps_the_pins(tmp_path):
    from securefed.run.simulate import simulate

    cfg = load_config(None, TINY)
    assert not cfg.privacy.dp.enabled  # DP-SGD's noise comes from the OS: not comparable
    pinned = {i: pinned_node_config(cfg) for i in INSTITUTIONS}
    run_dir = tmp_path / "run"
    with LocalSimulation(tmp_path / "sim", INSTITUTIONS, node_config=pinned) as sim:
        run_id = sim.launch(
            {"overrides": "; ".join(TINY), "run-dir": str(run_dir), "final-evaluation": False}
        )
        sim.wait(run_id, timeout_s=900)
        changed = [*TINY, "secure_aggregation.threshold=2"]
        refused = sim.launch(
            {
                "overrides": "; ".join(changed),
                "run-dir": str(tmp_path / "changed"),
                "join-timeout": 120.0,
            }  # fmt: skip
        )
        with pytest.raises(DeploymentError, match="secure_aggregation.threshold: server 2"):
            sim.wait(refused, timeout_s=600)

    flower = RunFolder(run_dir)
    reference = RunFolder(simulate(cfg, out=str(tmp_path / "reference"))[0])
    for r in (None, *range(cfg.training.rounds)):
        ours = flower.load_adapter(flower.checkpoint_rel(r))
        assert np.array_equal(ours, reference.load_adapter(reference.checkpoint_rel(r))), r
    for i, folder in node_runs(tmp_path / "sim", refused).items():
        (line,) = (folder / "join.jsonl").read_text().splitlines()
        assert "refused" in line and "secure_aggregation.threshold" in line, i
