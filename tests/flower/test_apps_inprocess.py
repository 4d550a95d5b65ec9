"""The ServerApp and ClientApp logic with every message in this process (no Flower daemons):
two rounds, a node that goes silent after key sharing in round 1, and a node that claims
another institution's id."""

from __future__ import annotations

import numpy as np
import pytest
from deployment_checks import INSTITUTIONS, TINY, check_aggregates
from inprocess_grid import InProcessGrid

from securefed.config import load_config
from securefed.flower.client_app import app as client_app
from securefed.flower.node_security import pinned_node_config
from securefed.flower.records import collect_node_records
from securefed.flower.server_app import ServerSettings, run_flower_federation
from securefed.run.folder import RunFolder, read_json

NODE_IDS = {i: 100 + i for i in INSTITUTIONS}
CURIOUS_RUN = "secure_aggregation.adversary=curious"  # a node that pins no roster says so


def _node_configs(tmp_path, cfg, **pinned) -> dict[int, dict]:
    """Each institution's node config: its id, its own state folder, the plan inputs of the
    run ``cfg`` it agrees to (``pinned_node_config``), and ``pinned``."""
    agreed = pinned_node_config(cfg)
    return {
        NODE_IDS[i]: {
            "partition-id": i,
            "state-dir": str(tmp_path / f"node-{i}"),
            **agreed,
            **pinned,
        }
        for i in INSTITUTIONS
    }


def _settings(run_dir) -> ServerSettings:
    return ServerSettings.from_run_config(
        {
            "run-dir": str(run_dir),
            "stage-timeout": 1.0,
            "train-timeout": 60.0,
            "join-timeout": 1.0,
            "final-evaluation": False,
        }
    )


def test_silent_node_is_recovered_and_the_aggregate_is_the_mean_of_the_rest(tmp_path):
    """Signed rounds: each node pins its roster and threshold in its own node config."""
    from securefed.secagg import generate_roster

    roster = tmp_path / "roster.json"
    generate_roster(INSTITUTIONS, roster)
    cfg = load_config(
        None,
        [*TINY, "secure_aggregation.threshold=2", f"secure_aggregation.identity_roster={roster}"],
    )
    configs = _node_configs(
        tmp_path,
        cfg,
        **{
            "keep-updates": True,
            "roster": str(roster),
            "identity-keys": str(tmp_path / "roster.keys.json"),
        },
    )
    grid = InProcessGrid(
        client_app, configs, run_id=7, silent_from={NODE_IDS[2]: ("1", "train.masked_input")}
    )
    run_dir = run_flower_federation(grid, cfg, _settings(tmp_path / "run"), run_id=7)

    records = RunFolder(run_dir).read_metrics()
    assert [r["aggregated"] for r in records] == [INSTITUTIONS, [0, 1]]
    transcript = read_json(run_dir / "secagg/round-0001.json")
    assert transcript["dropouts"] == {
        "advertise_keys": [],
        "share_keys": [],
        "masked_input": [2],
        "consistency_check": [],
        "unmasking": [],
    }
    assert transcript["participants"]["consistency_check"] == [0, 1]
    assert transcript["failures"]["masked_input"] == {"2": "timed out"}
    nodes = {i: tmp_path / f"node-{i}" / "run-7" for i in INSTITUTIONS}
    errors = check_aggregates(cfg, run_dir, nodes)
    assert len(errors) == 2


def test_a_node_speaking_for_another_institution_is_dropped(tmp_path):
    cfg = load_config(None, [*TINY, "training.rounds=1", CURIOUS_RUN])
    configs = _node_configs(tmp_path, cfg)

    def impersonating(message, context):
        """Node 1 joins as institution 1, then answers as if it were institution 2."""
        if context.node_id == NODE_IDS[1] and message.metadata.message_type != "query.join":
            context.node_config["partition-id"] = 2
        return client_app(message, context)

    grid = InProcessGrid(impersonating, configs, run_id=8)
    run_dir = run_flower_federation(grid, cfg, _settings(tmp_path / "run"), run_id=8)
    transcript = read_json(run_dir / "secagg/round-0000.json")
    assert transcript["failures"]["advertise_keys"] == {"1": "invalid message"}
    assert transcript["participants"]["advertise_keys"] == [0, 2]
    assert "3 of 3" in transcript["aborted"] or "threshold 3" in transcript["aborted"]


def test_a_run_every_node_refuses_fails_and_says_why(tmp_path):
    """Nodes that pinned another threshold refuse the run; rounds without a single
    institution would "complete" having trained nothing, so the ServerApp fails instead."""
    from securefed.errors import NoInstitutionJoined

    cfg = load_config(None, [*TINY, "secure_aggregation.threshold=2", CURIOUS_RUN])
    configs = _node_configs(tmp_path, load_config(None, [*TINY, CURIOUS_RUN]))
    grid = InProcessGrid(client_app, configs, run_id=9)
    with pytest.raises(NoInstitutionJoined, match="secure_aggregation.threshold: server 2"):
        run_flower_federation(grid, cfg, _settings(tmp_path / "run"), run_id=9)
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


@pytest.mark.parametrize("bad", [{"partition-id": -1}, {}])
def test_node_config_is_checked(bad):
    from securefed.errors import ConfigError
    from securefed.flower.node import NodeIdentity

    with pytest.raises(ConfigError):
        NodeIdentity.from_node_config(bad)


def test_nodes_with_their_own_data_files(tmp_path):
    """data-path nodes: each trains on its own file, the server holds no data at all."""
    import json

    from securefed.flower.node import NodeLedger

    words = ["profit rose", "sales fell", "staff count is stable", "margin grew", "loss widened"]
    configs = {}
    for i in INSTITUTIONS:
        rows = [
            {"sentence": f"Institution {i} report {k}: {words[k % 5]}.", "label": k % 3}
            for k in range(24)
        ]
        path = tmp_path / f"shard-{i}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        configs[NODE_IDS[i]] = {
            "partition-id": i,
            "data-path": str(path),
            "state-dir": str(tmp_path / f"node-{i}"),
        }
    cfg = load_config(
        None,
        [
            *TINY,
            CURIOUS_RUN,
            "task.name=fpb",
            "training.rounds=1",
            "privacy.dp.enabled=true",
            "privacy.dp.noise_multiplier=1.0",
        ],
    )
    for config in configs.values():
        config |= pinned_node_config(cfg)
    grid = InProcessGrid(client_app, configs, run_id=9)
    settings = ServerSettings.from_run_config(
        {
            "run-dir": str(tmp_path / "run"),
            "stage-timeout": 1.0,
            "train-timeout": 60.0,
            "join-timeout": 1.0,
            "final-evaluation": False,
            "server-evaluation": False,
        }
    )
    run_dir = run_flower_federation(grid, cfg, settings, run_id=9)

    record = RunFolder(run_dir).read_metrics()[0]
    assert record["aggregated"] == INSTITUTIONS and record["eval"] is None
    assert not (run_dir / "partition.json").exists()  # the server never saw the data
    for i in INSTITUTIONS:
        saved = read_json(tmp_path / f"node-{i}" / "run-9" / NodeLedger.FILE)
        assert list(saved["ledgers"]) == [str(i)] and saved["ledgers"][str(i)]["client_id"] == i
        assert [e["round_index"] for e in saved["ledgers"][str(i)]["events"]] == [0]


def test_without_dp_the_flower_run_is_simulate_bit_for_bit(tmp_path):
    """DP off, secure aggregation on, same config and seed: every checkpoint of the Flower run
    equals ``securefed simulate``'s exactly. Training is seeded per (round, institution) and
    so is each node's stochastic rounding, and the masked sum is exact modular arithmetic, so
    any difference would be a transport that changed what is trained or summed."""
    from securefed.run.simulate import simulate

    cfg = load_config(None, [*TINY, CURIOUS_RUN])
    configs = _node_configs(tmp_path, cfg)
    grid = InProcessGrid(client_app, configs, run_id=11)
    flower = RunFolder(run_flower_federation(grid, cfg, _settings(tmp_path / "run"), run_id=11))
    sim = RunFolder(simulate(cfg, out=str(tmp_path / "sim"))[0])

    previous = None
    for r in (None, *range(cfg.training.rounds)):
        ours = flower.load_adapter(flower.checkpoint_rel(r))
        assert np.array_equal(ours, sim.load_adapter(sim.checkpoint_rel(r))), r
        assert previous is None or not np.array_equal(ours, previous)  # each round trained
        previous = ours


def test_a_server_whose_setup_fails_leaves_no_run_folder(tmp_path):
    from securefed.errors import ConfigError

    cfg = load_config(None, [*TINY, CURIOUS_RUN, f"model.backbone={tmp_path}/no-such-model"])
    grid = InProcessGrid(client_app, {}, run_id=10)
    with pytest.raises(ConfigError, match="model.backbone"):
        run_flower_federation(grid, cfg, _settings(tmp_path / "run"), run_id=10)
    assert not (tmp_path / "run").exists()


DDP_RUN = [
    "privacy.distributed.enabled=true",
    "privacy.distributed.target_epsilon=20.0",
    "secure_aggregation.corrupt_fraction=0.0",
    "secure_aggregation.threshold=2",
    "model.adapter_layers=top-1",
    "model.lora_r=2",
]


def test_distributed_dp_over_flower_accounts_the_noise_that_reached_the_sum(tmp_path):
    """Institution-level DP on Flower: each node adds its own noise share (drawn on the node
    from OS entropy) inside its masked input; node 2 goes silent before masking in round 1,
    so that round's sum carries 2 shares, and the server's ledger, results and audit say so."""
    from securefed.audit import verify_run
    from securefed.privacy.distributed.accounting import institution_epsilon
    from securefed.privacy.distributed.parameters import DistributedDpPlan, central_noise_std

    cfg = load_config(None, [*TINY, CURIOUS_RUN, *DDP_RUN])
    configs = _node_configs(tmp_path, cfg, **{"keep-updates": True})
    grid = InProcessGrid(
        client_app, configs, run_id=12, silent_from={NODE_IDS[2]: ("1", "train.masked_input")}
    )
    run_dir = run_flower_federation(grid, cfg, _settings(tmp_path / "run"), run_id=12)

    records = RunFolder(run_dir).read_metrics()
    assert [r["aggregated"] for r in records] == [INSTITUTIONS, [0, 1]]
    saved = read_json(run_dir / "privacy/ledgers.json")["institution"]
    plan = DistributedDpPlan(**saved["plan"])
    assert plan.min_survivors == 2
    assert [e["noise_contributors"] for e in saved["ledger"]["events"]] == [3, 2]
    reported = read_json(run_dir / "results.json")["privacy"]["institution"]
    survivors = institution_epsilon([plan.event(0, 3), plan.event(1, 2)], plan.delta)
    assert reported["epsilon"] == pytest.approx(survivors, rel=1e-12)
    assert (
        read_json(run_dir / "secagg/round-0001.json")["distributed_dp"]["noise_contributors"] == 2
    )
    for i in INSTITUTIONS:  # each node states the share it added, from its own plan
        node_records = RunFolder(tmp_path / f"node-{i}" / "run-12").read_metrics()
        shares = [r["distributed_dp"] for r in node_records if r.get("stage") == "advertise_keys"]
        assert shares and all(s["noise_source"] == "os" for s in shares)
        assert all(s["local_variance"] == plan.local_variance for s in shares)
    verification = verify_run(run_dir)
    assert verification.ok, verification.mismatches
    nodes = {i: tmp_path / f"node-{i}" / "run-12" for i in INSTITUTIONS}
    collect_node_records(run_dir, nodes, audit_dir=tmp_path / "audit")
    filed = read_json(run_dir / "privacy/ledgers.json")
    assert filed["institution"] == saved and filed["ledgers"]  # the nodes' filed beside it

    # The noise is in the sum: round 0's step minus the mean of the clipped updates the nodes
    # kept has the variance of 3 shares (not 2, not none).
    folder = RunFolder(run_dir)
    step = folder.load_adapter(folder.checkpoint_rel(0)) - folder.load_adapter(
        folder.checkpoint_rel(None)
    )
    updates = np.stack(
        [
            RunFolder(tmp_path / f"node-{i}" / "run-12").load_adapter(
                "updates/round-0000.safetensors"
            )
            for i in INSTITUTIONS
        ]
    ).astype(np.float64)
    norms = np.linalg.norm(updates, axis=1, keepdims=True)
    clipped = updates * np.minimum(1.0, plan.clip_norm / norms)
    residual = 3 * step / cfg.training.server_lr - clipped.sum(axis=0)
    tolerance = 5 * np.sqrt(2 / residual.shape[0])
    for shares, expected in ((3, True), (2, False)):
        ratio = float(np.mean(residual**2)) / central_noise_std(plan, shares) ** 2
        assert bool(abs(ratio - 1) < tolerance) is expected, (shares, ratio)


def test_a_node_that_pinned_no_distributed_dp_refuses_a_run_with_it(tmp_path):
    """The noise share protects the institution, so its size is the node's to pin: a server
    that turns distributed DP on (or sets its epsilon) against the node's pins is refused."""
    from securefed.errors import NoInstitutionJoined

    without = [o for o in DDP_RUN if not o.startswith("privacy.distributed")]
    cfg = load_config(None, [*TINY, CURIOUS_RUN, *DDP_RUN])
    configs = _node_configs(tmp_path, load_config(None, [*TINY, CURIOUS_RUN, *without]))
    configs[NODE_IDS[0]] |= {"ddp-enabled": True, "ddp-target-epsilon": 8.0}
    grid = InProcessGrid(client_app, configs, run_id=13)
    with pytest.raises(NoInstitutionJoined, match="privacy.distributed.enabled: server True"):
        run_flower_federation(grid, cfg, _settings(tmp_path / "run"), run_id=13)
    refusal = (tmp_path / "node-0" / "run-13" / "join.jsonl").read_text()
    assert "privacy.distributed.target_epsilon: server 20.0, node 8.0" in refusal
