"""A node's security settings come from its own node config, never from a server message."""

from __future__ import annotations

import json

import pytest
from flwr.app import Message
from inprocess_grid import InProcessGrid

from securefed.config import dump_config, load_config
from securefed.errors import ConfigError
from securefed.flower import wire
from securefed.flower.client_app import JOIN_LOG, _run_config
from securefed.flower.client_app import app as client_app
from securefed.flower.node_security import node_security
from securefed.secagg import generate_roster

NODE = 101
BASE = [
    "partition.num_clients=3",
    "training.clients_per_round=3",
    "secure_aggregation.adversary=curious",
]


def _grid(tmp_path, **node_config) -> InProcessGrid:
    config = {"partition-id": 0, "state-dir": str(tmp_path / "node"), **node_config}
    return InProcessGrid(client_app, {NODE: config}, run_id=5)


def _join(grid: InProcessGrid, overrides: list[str]) -> dict:
    text = dump_config(load_config(None, [*BASE, *overrides]))
    msg = Message(
        wire.content({"config_yaml": text}),
        dst_node_id=NODE,
        message_type=wire.JOIN,
        group_id="join",
    )
    (reply,) = grid.pull_messages(grid.push_messages([msg]))
    return wire.fields_of(reply)


def _join_log(tmp_path) -> list[dict]:
    path = tmp_path / "node" / "run-5" / JOIN_LOG
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_second_join_cannot_move_the_threshold(tmp_path):
    grid = _grid(tmp_path, **{"secagg-adversary": "curious", "secagg-threshold": 3})
    assert _join(grid, ["secure_aggregation.threshold=3"]) == {"institution": 0}
    second = _join(grid, ["secure_aggregation.threshold=2"])
    assert "join is accepted once" in second["refused"]
    cfg = _run_config(grid.contexts[NODE])
    assert cfg.secure_aggregation.threshold == 3  # the node kept what it agreed to
    log = _join_log(tmp_path)
    assert log[0]["accepted"] and log[0]["secure_aggregation"]["threshold"] == 3
    assert log[0]["secure_aggregation"]["source"] == "node-config"
    assert "accepted once" in log[1]["refused"]


@pytest.mark.parametrize(
    ("pinned", "sent", "named"),
    [
        ({}, ["secure_aggregation.threshold=2"], "secure_aggregation.threshold: server 2"),
        ({}, ["secure_aggregation.dropout_budget=0.5"], "dropout_budget"),
        ({}, ["secure_aggregation.bits=16"], "secure_aggregation.bits"),
        ({}, ["secure_aggregation.clip_norm=100.0"], "clip_norm"),
        ({}, ["secure_aggregation.graph=complete"], "secure_aggregation.graph"),
        ({"secagg-threshold": 3}, [], "secure_aggregation.threshold: server 'auto', node 3"),
    ],
)
def test_a_server_that_disagrees_with_the_pinned_settings_is_refused(tmp_path, pinned, sent, named):
    grid = _grid(tmp_path, **{"secagg-adversary": "curious", **pinned})
    reply = _join(grid, sent)
    assert named in reply["refused"]
    assert "securefed.run" not in grid.contexts[NODE].state.config_records  # not joined
    assert named in _join_log(tmp_path)[0]["refused"]


def test_identity_keys_without_a_pinned_roster_are_refused(tmp_path):
    """The server names a roster in its config; the node does not fall back to it."""
    roster = tmp_path / "roster.json"
    generate_roster([0, 1, 2], roster)
    grid = _grid(tmp_path, **{"identity-keys": str(tmp_path / "roster.keys.json")})
    reply = _join(grid, [f"secure_aggregation.identity_roster={roster}"])
    assert "node-config.roster" in reply["refused"]
    assert "never takes its roster from the server" in reply["refused"]


def test_a_lying_server_model_needs_a_roster_on_the_node(tmp_path):
    with pytest.raises(ConfigError, match="node-config.secagg-adversary"):
        node_security({"partition-id": 0}, 0)
    with pytest.raises(ConfigError, match="node-config.secagg-adversary"):
        node_security({"secagg-adversary": "honest"}, 0)
    with pytest.raises(ConfigError, match="node-config.secagg-treshold"):
        node_security({"secagg-treshold": 3, "secagg-adversary": "curious"}, 0)
    with pytest.raises(ConfigError, match="node-config.secagg-bits"):
        node_security({"secagg-bits": 99, "secagg-adversary": "curious"}, 0)


def test_pinned_roster_and_key_are_what_the_node_uses(tmp_path):
    roster = tmp_path / "roster.json"
    generate_roster([0, 1, 2], roster)
    security = node_security(
        {"roster": str(roster), "identity-keys": str(tmp_path / "roster.keys.json")}, 1
    )
    params = security.params()
    assert params.adversary == "semi_malicious" and params.roster is security.identity.roster
    assert security.identity.key is not None and 1 in params.roster
    assert security.record()["identities"] is True
    with pytest.raises(ConfigError, match="a key for 7"):
        node_security(
            {"roster": str(roster), "identity-keys": str(tmp_path / "roster.keys.json")}, 7
        )


def test_distributed_dp_is_pinned_by_the_node(tmp_path):
    """The node's noise share comes from its own ddp- keys: a server that sends a larger
    epsilon (a smaller share) is refused, and a bad or unknown ddp- key names itself."""
    pinned = {"secagg-adversary": "curious", "ddp-enabled": True, "ddp-target-epsilon": 4.0}
    security = node_security(pinned, 0)
    assert security.distributed.enabled and security.distributed.target_epsilon == 4.0
    assert security.record()["distributed_dp"]["target_epsilon"] == 4.0
    on = ["privacy.distributed.enabled=true"]
    reply = _join(_grid(tmp_path, **pinned), [*on, "privacy.distributed.target_epsilon=16.0"])
    assert "privacy.distributed.target_epsilon: server 16.0, node 4.0" in reply["refused"]
    with pytest.raises(ConfigError, match="node-config.ddp-target-epsilon"):
        node_security({"secagg-adversary": "curious", "ddp-target-epsilon": -1.0}, 0)
    with pytest.raises(ConfigError, match="node-config.ddp-epsilon"):
        node_security({"secagg-adversary": "curious", "ddp-epsilon": 4.0}, 0)
    with pytest.raises(ConfigError, match="node-config.ddp-mechanism"):
        node_security({"secagg-adversary": "curious", "ddp-mechanism": "laplace"}, 0)


def test_a_round_beyond_the_planned_rounds_is_refused(tmp_path):
    """Every noise plan covers the run's planned rounds; a server asking for one more round
    (with the right invitation) gets a refusal before the node trains or releases anything."""
    import numpy as np

    from securefed.run.federation import sample_clients

    grid = _grid(tmp_path, **{"secagg-adversary": "curious"})
    assert _join(grid, []) == {"institution": 0}
    cfg = _run_config(grid.contexts[NODE])
    beyond = cfg.training.rounds
    msg = Message(
        wire.content(
            {"round": beyond, "invited": sample_clients(cfg, cfg.partition.num_clients, beyond)},
            np.zeros(4, dtype=np.float32),
        ),
        dst_node_id=NODE,
        message_type=wire.ADVERTISE,
        group_id=str(beyond),
    )
    (reply,) = grid.pull_messages(grid.push_messages([msg]))
    assert f"outside the run's {beyond} rounds" in wire.fields_of(reply)["aborted"]
