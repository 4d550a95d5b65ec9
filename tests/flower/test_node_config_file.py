"""A node whose runtime gives it no node config of its own (Flower's simulation engine: only
``partition-id`` and ``num-partitions``) pins its settings from the operator's file
``$SECUREFED_NODE_CONFIG_DIR/node-<partition-id>.toml``, never from a server message: a run
it agrees to is joined, and a server that changes a pinned setting is refused."""

from __future__ import annotations

import pytest
import tomli_w
from deployment_checks import INSTITUTIONS, TINY
from inprocess_grid import InProcessGrid

from securefed.config import load_config
from securefed.errors import ConfigError, NoInstitutionJoined
from securefed.flower.client_app import app as client_app
from securefed.flower.node import NODE_CONFIG_DIR_ENV, node_config_of
from securefed.flower.node_security import pinned_node_config
from securefed.flower.server_app import ServerSettings, run_flower_federation

CURIOUS = "secure_aggregation.adversary=curious"  # these nodes pin no roster


def _write_node_files(folder, cfg, state_root) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in INSTITUTIONS:
        own = {"partition-id": i, "state-dir": str(state_root / f"node-{i}")}
        (folder / f"node-{i}.toml").write_text(tomli_w.dumps({**own, **pinned_node_config(cfg)}))


def test_the_file_adds_the_operators_keys_and_may_not_contradict_flower(tmp_path, monkeypatch):
    monkeypatch.setenv(NODE_CONFIG_DIR_ENV, str(tmp_path))
    (tmp_path / "node-1.toml").write_text('cohort-size = 3\n"partition-id" = 1\n')
    merged = node_config_of({"partition-id": 1, "num-partitions": 3})
    assert merged == {"partition-id": 1, "num-partitions": 3, "cohort-size": 3}
    (tmp_path / "node-1.toml").write_text("cohort-size = 2\n")
    with pytest.raises(ConfigError, match="node-config.cohort-size"):
        node_config_of({"partition-id": 1, "cohort-size": 3})
    with pytest.raises(ConfigError, match=NODE_CONFIG_DIR_ENV):
        node_config_of({"partition-id": 2})  # no node-2.toml: refused, not run unpinned
    monkeypatch.delenv(NODE_CONFIG_DIR_ENV)
    assert node_config_of({"partition-id": 2}) == {"partition-id": 2}


def test_simulated_nodes_pin_from_their_files_and_refuse_a_server_change(tmp_path, monkeypatch):
    agreed = load_config(None, [*TINY, CURIOUS])
    _write_node_files(tmp_path / "node-config", agreed, tmp_path)
    monkeypatch.setenv(NODE_CONFIG_DIR_ENV, str(tmp_path / "node-config"))
    simulated = {100 + i: {"partition-id": i, "num-partitions": 3} for i in INSTITUTIONS}
    changed = load_config(None, [*TINY, CURIOUS, "secure_aggregation.threshold=2"])
    settings = ServerSettings.from_run_config(
        {"run-dir": str(tmp_path / "run"), "join-timeout": 1.0, "final-evaluation": False}
    )
    grid = InProcessGrid(client_app, simulated, run_id=5)
    with pytest.raises(NoInstitutionJoined, match="secure_aggregation.threshold: server 2"):
        run_flower_federation(grid, changed, settings, run_id=5)
    for i in INSTITUTIONS:  # each node's own join record says what it pinned and why it refused
        (line,) = (tmp_path / f"node-{i}" / "run-5" / "join.jsonl").read_text().splitlines()
        assert "secure_aggregation.threshold" in line and "refused" in line
