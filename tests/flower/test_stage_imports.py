"""The protocol-only stages start fast: a fresh process that imports the ClientApp and
answers each of them (here with an abort: the node has joined but started no round) never
imports torch or loads a model. Secure aggregation itself never reaches torch
(``tests/test_architecture.py``); this checks the ClientApp's path to it."""

from __future__ import annotations

import subprocess
import sys

from deployment_checks import TINY

from securefed.secagg import STAGE_TABLE

SCRIPT = """
import sys
from flwr.app import ConfigRecord, Context, Message, RecordDict
from securefed.config import dump_config, load_config
from securefed.flower import wire
from securefed.flower.client_app import app
from securefed.flower.node_security import pinned_node_config
from securefed.secagg import STAGE_TABLE
from flwr.supercore.task_identity import TaskIdentity

TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 3, 1, 1  # as the grid sets
cfg = load_config(None, {overrides!r})
node_config = {{"partition-id": 0, "state-dir": {state!r}, **pinned_node_config(cfg)}}
context = Context(run_id=3, node_id=7, node_config=node_config, state=RecordDict(),
                  run_config={{}})
context.state["securefed.run"] = ConfigRecord({{"config_yaml": dump_config(cfg)}})
for stage in STAGE_TABLE[1:]:
    message = Message(wire.content({{"round": 0, "payload": b"x"}}), dst_node_id=7,
                      message_type=wire.message_type(stage))
    reply = wire.fields_of(app(message, context))
    assert "aborted" in reply, (stage.name, reply)
    print(stage.name, reply["aborted"])
heavy = sorted(m for m in ("torch", "transformers", "peft", "opacus") if m in sys.modules)
print("heavy:", heavy)
"""


def test_protocol_stages_never_import_torch(tmp_path):
    overrides = [*TINY, "secure_aggregation.adversary=curious"]
    script = SCRIPT.format(overrides=overrides, state=str(tmp_path))
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.strip().splitlines()
    assert [line.split()[0] for line in lines[:-1]] == [s.name for s in STAGE_TABLE[1:]]
    assert lines[-1] == "heavy: []", run.stdout
