"""A node's security settings come from its own node config, never from a server message."""

from __future__ import annotations

import json

import pytest
from flwr.app import Message
from inprocess_grid import InProcessGrid

from securefed.config import RunConfig, dump_config, load_config, validate
from securefed.config_yaml import apply_overrides, default_config_path, read_yaml
from securefed.errors import ConfigError
from securefed.flower import wire
from securefed.flower.client_app import JOIN_LOG, _run_config
from securefed.flower.client_app import app as client_app
from securefed.flower.node_security import PINNED, node_security, pinned_node_config
from securefed.plan_inputs import Pinned, plan_inputs
from securefed.secagg import STAGE_TABLE, generate_roster

NODE = 101
BASE = [
    "partition.num_clients=3",
    "training.clients_per_round=3",
    "secure_aggregation.adversary=curious",
]
CURIOUS = {"secagg-adversary": "curious", "cohort-size": 3, "institutions": 3}


def _grid(tmp_path, **node_config) -> InProcessGrid:
    config = {"partition-id": 0, "state-dir": str(tmp_path / "node"), **node_config}
    return InProcessGrid(client_app, {NODE: config}, run_id=5)


def _join(grid: InProcessGrid, overrides: list[str]) -> dict:
    return _join_config(grid, load_config(None, [*BASE, *overrides]))


def _join_config(grid: InProcessGrid, cfg: RunConfig) -> dict:
    text = dump_config(cfg)
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
    grid = _grid(tmp_path, **CURIOUS, **{"secagg-threshold": 3})
    assert _join(grid, ["secure_aggregation.threshold=3"]) == {"institution": 0}
    second = _join(grid, ["secure_aggregation.threshold=2"])
    assert "join is accepted once" in second["refused"]
    cfg = _run_config(grid.contexts[NODE])
    assert cfg.secure_aggregation.threshold == 3  # the node kept what it agreed to
    log = _join_log(tmp_path)
    assert log[0]["accepted"] and log[0]["pinned"]["secure_aggregation.threshold"] == 3
    assert log[0]["pinned"]["training.clients_per_round"] == 3
    assert log[0]["pinned"]["source"] == "node-config"
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
        ({}, ["training.clients_per_round=2"], "training.clients_per_round: server 2, node 3"),
    ],
)
def test_a_server_that_disagrees_with_the_pinned_settings_is_refused(tmp_path, pinned, sent, named):
    grid = _grid(tmp_path, **CURIOUS, **pinned)
    reply = _join(grid, sent)
    assert named in reply["refused"]
    assert "securefed.run" not in grid.contexts[NODE].state.config_records  # not joined
    assert named in _join_log(tmp_path)[0]["refused"]


def test_identity_keys_without_a_pinned_roster_are_refused(tmp_path):
    """The server names a roster in its config; the node does not fall back to it."""
    roster = tmp_path / "roster.json"
    generate_roster([0, 1, 2], roster)
    keys = {"identity-keys": str(tmp_path / "roster.keys.json")}
    grid = _grid(tmp_path, **{k: v for k, v in CURIOUS.items() if k != "secagg-adversary"}, **keys)
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
    pinned = {**CURIOUS, "ddp-enabled": True, "ddp-target-epsilon": 4.0}
    security = node_security(pinned, 0)
    ddp = security.inputs.distributed
    assert ddp.enabled and ddp.target_epsilon == 4.0
    assert security.record()["privacy.distributed.target_epsilon"] == 4.0
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

    grid = _grid(tmp_path, **CURIOUS)
    assert _join(grid, []) == {"institution": 0}
    cfg = _run_config(grid.contexts[NODE])
    beyond = cfg.training.rounds
    msg = Message(
        wire.content(
            {"round": beyond, "invited": sample_clients(cfg, cfg.partition.num_clients, beyond)},
            np.zeros(4, dtype=np.float32),
        ),
        dst_node_id=NODE,
        message_type=wire.message_type(STAGE_TABLE[0]),
        group_id=str(beyond),
    )
    (reply,) = grid.pull_messages(grid.push_messages([msg]))
    assert f"outside the run's {beyond} rounds" in wire.fields_of(reply)["aborted"]


# ---- every plan input, one case each, generated from the planners' own input type ------------
BASE_CFG = load_config(None, BASE)
_CANDIDATES = (0.001, 2, 3, 4, "auto", "complete", "harary", "semi_malicious", "curious", "dgauss")


def _with(key: str, value) -> dict:
    """The raw (unresolved) base config with the dotted ``key`` set to ``value``."""
    raw = apply_overrides(read_yaml(default_config_path()), BASE)
    *parents, leaf = key.split(".")
    node = raw
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
    return raw


def _sent_change(pinned: Pinned) -> RunConfig | None:
    """A valid server config that differs from ``BASE_CFG`` in exactly this input, or None
    when no run config can state it (then no server can send it)."""
    current = pinned.of(plan_inputs(BASE_CFG))
    own = [not current] if isinstance(current, bool) else []
    if isinstance(current, int | float) and not isinstance(current, bool):
        own = [current + 1, current - 1, current * 2, current / 2]
    for value in (*own, *_CANDIDATES):
        try:
            sent = validate(_with(pinned.config_key, value))
        except ConfigError:
            continue
        if pinned.of(plan_inputs(sent)) != current:
            return sent
    return None


@pytest.mark.parametrize("pinned", PINNED, ids=lambda p: p.config_key)
def test_a_pinned_node_refuses_a_server_sent_change_of_each_plan_input(tmp_path, pinned):
    """A node pinned to ``BASE_CFG`` refuses a server config that changes any one input of
    the round plan, naming the run-config key, both values and its own node-config key."""
    sent = _sent_change(pinned)
    if sent is None:  # not a run-config key: the server cannot state it at all
        with pytest.raises(ConfigError, match="unknown key") as err:
            validate(_with(pinned.config_key, 1))
        assert err.value.key == pinned.config_key
        return
    grid = _grid(tmp_path, **pinned_node_config(BASE_CFG))
    reply = _join_config(grid, sent)
    server, node = pinned.of(plan_inputs(sent)), pinned.of(plan_inputs(BASE_CFG))
    stated = (
        f"{pinned.config_key}: server {server!r}, node {node!r} (node-config {pinned.node_key})"
    )
    assert stated in reply["refused"]
    assert "securefed.run" not in grid.contexts[NODE].state.config_records  # not joined
    assert _join(_grid(tmp_path / "agrees", **pinned_node_config(BASE_CFG)), []) == {
        "institution": 0
    }


@pytest.mark.parametrize(
    "overrides",
    [
        BASE,
        [*BASE, "privacy.distributed.enabled=true", "secure_aggregation.corrupt_fraction=0.0"],
        ["partition.num_clients=120", "training.clients_per_round=100", "training.rounds=3"],
    ],
)
def test_the_node_plans_from_its_own_config_alone(overrides):
    """What a node pins for a run config is every plan input of that config: the node's
    ``PlanInputs`` equal the server's field by field, so nothing is left to the server."""
    cfg = load_config(None, overrides)
    node_config = pinned_node_config(cfg)
    if cfg.secure_aggregation.adversary != "curious":
        node_config = {**node_config, "secagg-adversary": "curious"}
        cfg = load_config(None, [*overrides, "secure_aggregation.adversary=curious"])
    assert node_security(node_config, 0).inputs == plan_inputs(cfg)
