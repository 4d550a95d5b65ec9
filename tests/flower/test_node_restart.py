"""A restarted SuperNode (same node config, empty ``context.state``) takes back the config it
accepted at ``join`` from its own run folder, checked against its pins again, and holds no
round state; ``join`` stays accepted once per run across the restart. The full kill and
restart over Flower is in ``test_deployment.py``."""

from __future__ import annotations

from deployment_checks import TINY
from flwr.app import Context, Message, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from securefed.config import dump_config, load_config
from securefed.flower import wire
from securefed.flower.client_app import app
from securefed.flower.node_security import pinned_node_config
from securefed.secagg import STAGE_TABLE

RUN_ID, NODE_ID = 3, 7
CURIOUS = "secure_aggregation.adversary=curious"  # this node pins no roster


def _context(node_config: dict) -> Context:
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = RUN_ID, 1, 1
    return Context(RUN_ID, NODE_ID, node_config, RecordDict(), {})


def _send(context: Context, message_type: str, fields: dict) -> dict:
    message = Message(wire.content(fields), dst_node_id=NODE_ID, message_type=message_type)
    return wire.fields_of(app(message, context))


def test_a_restarted_node_takes_back_only_the_config_it_joined_with(tmp_path):
    cfg = load_config(None, [*TINY, CURIOUS])
    node_config = {"partition-id": 0, "state-dir": str(tmp_path), **pinned_node_config(cfg)}
    joined = _send(_context(node_config), wire.JOIN, {"config_yaml": dump_config(cfg)})
    assert joined == {"institution": 0}

    restarted = _context(node_config)  # the SuperNode's state is gone
    again = _send(restarted, wire.JOIN, {"config_yaml": dump_config(cfg)})
    assert "join is accepted once" in again["refused"]
    share_keys = wire.message_type(STAGE_TABLE[1])
    answer = _send(restarted, share_keys, {"round": 0, "payload": b"x"})
    assert "holds nothing" in answer["aborted"]  # it rejoined, and has no round-0 secret
    assert "securefed.run" in restarted.state.config_records

    # a config file that no longer matches the node's pins is not taken back
    edited = load_config(None, [*TINY, CURIOUS, "secure_aggregation.threshold=2"])
    (tmp_path / f"run-{RUN_ID}" / "config.yaml").write_text(dump_config(edited))
    refused = _send(_context(node_config), share_keys, {"round": 0, "payload": b"x"})
    assert "differs from its pins" in refused["aborted"]
    assert "secure_aggregation.threshold" in refused["aborted"]
