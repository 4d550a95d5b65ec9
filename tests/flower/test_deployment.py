"""Flower's deployment engine on loopback: one SuperLink and three SuperNodes, each its own
process, TLS on, only registered node keys admitted, two rounds of secure aggregation.

What is compared with an in-process ``securefed simulate`` of the same config and seed: the
institutions sampled and aggregated each round, the graph and threshold, and every
institution's privacy ledger (event by event) and epsilon. The adapters themselves cannot
be compared bit for bit -- DP-SGD's noise and sampling come from the OS on purpose -- so the
aggregate is checked against what each node kept of its own update: the server's global
step is their weighted mean within the quantization error.
"""

from __future__ import annotations

import json

import pytest
from deployment_checks import INSTITUTIONS, TINY, check_aggregates, node_runs, wait_for_stage

from securefed.config import load_config
from securefed.flower.localhost import LocalFederation
from securefed.flower.node_security import pinned_node_config
from securefed.flower.records import collect_node_records
from securefed.run.folder import RunFolder, read_json

DP = ["privacy.dp.enabled=true", "privacy.dp.noise_multiplier=1.0"]
# Timeouts that hold on a loaded 2-core machine (the CI suite once took 47 minutes). A long
# timeout costs nothing while every node answers: a warm node answers a protocol stage in well
# under a second and loads and trains in 75-85 s (measured before warm nodes, each stage paid a
# ClientApp start: 12.6-22.2 s per protocol stage with seven other jobs on the two cores, where
# a 20 s stage timeout dropped live nodes). Only the killed-node test waits, at most
# STAGE_TIMEOUT_S, for its dead node (Flower's heartbeat check finds it within about 60 s); a
# round waits up to ONLINE_WAIT_S only for a node the SuperLink lists offline, which the
# restarted one is until its SuperNode (a Python start, slow under load) is admitted again.
# Whole-run waits are ceilings for a hung run, several times the ~330 s measured.
STAGE_TIMEOUT_S = 90.0
TRAIN_TIMEOUT_S = 600.0
ONLINE_WAIT_S = 300.0
RUN_TIMEOUT_S = 1500.0
KEEP_UPDATES = {i: {"keep-updates": True} for i in INSTITUTIONS}


def _launch(
    fed: LocalFederation,
    overrides: list[str],
    run_dir,
    *,
    stage_timeout: float,
    final_evaluation: bool,
) -> int:
    return fed.launch(
        {
            "overrides": "; ".join(overrides),
            "run-dir": str(run_dir),
            "stage-timeout": stage_timeout,
            "train-timeout": TRAIN_TIMEOUT_S,
            "poll-interval": 0.1,
            "online-wait": ONLINE_WAIT_S,
            "final-evaluation": final_evaluation,
        }
    )


def test_two_dp_rounds_over_tls_match_simulate(tmp_path):
    from securefed.run.simulate import simulate

    overrides = TINY + DP
    cfg = load_config(None, overrides)
    run_dir = tmp_path / "run"
    pinned = {i: {**KEEP_UPDATES[i], **pinned_node_config(cfg)} for i in INSTITUTIONS}
    with LocalFederation(tmp_path / "fed", INSTITUTIONS, node_config=pinned) as fed:
        run_id = _launch(
            fed, overrides, run_dir, stage_timeout=STAGE_TIMEOUT_S, final_evaluation=False
        )
        fed.wait(run_id, timeout_s=RUN_TIMEOUT_S)
        superlink_log = (fed.workdir / "superlink.log").read_text()
    nodes = node_runs(tmp_path / "fed", run_id)
    privacy = collect_node_records(run_dir, nodes, audit_dir=tmp_path / "audit")
    assert "Uvicorn running on https://127.0.0.1" in superlink_log  # TLS on the one port
    assert "SuperNode authentication is disabled" not in superlink_log

    sim_dir, sim = simulate(cfg, out=str(tmp_path / "sim"))
    flower_records = RunFolder(run_dir).read_metrics()
    sim_records = RunFolder(sim_dir).read_metrics()
    assert [r["round"] for r in flower_records] == [0, 1]
    for ours, theirs in zip(flower_records, sim_records, strict=True):
        assert ours["sampled"] == theirs["sampled"]
        assert ours["aggregated"] == theirs["aggregated"] == INSTITUTIONS
        transcript = read_json(run_dir / f"secagg/round-{ours['round']:04d}.json")
        reference = read_json(sim_dir / f"secagg/round-{ours['round']:04d}.json")
        for key in ("graph", "degree", "threshold", "cohort_size", "participants", "dropouts"):
            assert transcript[key] == reference[key], key
        assert transcript["wrap_count"] == 0
        for i in INSTITUTIONS:  # bytes through Flower: one masked uint32 vector up, at least
            assert ours["bytes"][str(i)]["up"] > 4 * transcript["quantization"]["dimension"]
    for i in INSTITUTIONS:  # each node's own ledger equals the simulated one
        ours, theirs = privacy["clients"][str(i)], sim["privacy"]["clients"][str(i)]
        assert ours["events"] == theirs["events"]
        assert ours["epsilon"] == pytest.approx(theirs["epsilon"], rel=1e-9)
    check_aggregates(cfg, run_dir, nodes)
    _check_audit(tmp_path / "audit" / "audit.json")


def test_a_node_killed_mid_round_and_restarted_drops_out_then_rejoins_warm(tmp_path):
    """The SuperNode of institution 2 is killed after key sharing in round 0 and restarted at
    once; its warm executor (the node's long-running ClientApp process) lives on. Round 0
    recovers without it: the restarted node lost the round's seed with its state, so it
    answers nothing more of that round. The SuperLink lets the node back in only once it has
    marked it offline, so round 1 may open before it is back: the server waits for it
    (``online-wait``; with three institutions one dropout before key sharing aborts the
    round). Round 1 takes it back with the model still loaded, under a fresh seed: its
    advertised keys differ from round 0's (a reused seed would advertise the very same
    keys)."""
    overrides = TINY + ["secure_aggregation.threshold=2"]
    cfg = load_config(None, overrides)
    run_dir = tmp_path / "run"
    pinned = {i: {**KEEP_UPDATES[i], **pinned_node_config(cfg)} for i in INSTITUTIONS}  # agree
    with LocalFederation(tmp_path / "fed", INSTITUTIONS, node_config=pinned) as fed:
        run_id = _launch(
            fed, overrides, run_dir, stage_timeout=STAGE_TIMEOUT_S, final_evaluation=True
        )
        wait_for_stage(fed, run_id, run_dir, 0, "share_keys", timeout_s=RUN_TIMEOUT_S)
        fed.kill_node(2, executor=False)
        fed.restart_node(2, timeout_s=ONLINE_WAIT_S)
        fed.wait(run_id, timeout_s=RUN_TIMEOUT_S)
    nodes = node_runs(tmp_path / "fed", run_id)
    collect_node_records(run_dir, nodes, audit_dir=tmp_path / "audit")

    records = RunFolder(run_dir).read_metrics()
    assert [r["aggregated"] for r in records] == [[0, 1], INSTITUTIONS], [
        (r["round"], r.get("aborted"), r["stage_wall_s"], _failures(run_dir, r["round"]))
        for r in records
    ]
    progress = [json.loads(line) for line in (run_dir / "flower/progress.jsonl").open()]
    opened = {e["round"]: e for e in progress if e.get("stage") == "online"}
    assert opened[1]["offline"] == [], opened  # back within the wait (or never marked offline)
    transcript = read_json(run_dir / "secagg/round-0000.json")
    assert transcript["participants"]["share_keys"] == INSTITUTIONS
    assert transcript["dropouts"]["masked_input"] == [2]
    assert list(transcript["failures"]["masked_input"]) == ["2"]
    assert transcript["participants"]["unmasking"] == [0, 1]
    check_aggregates(cfg, run_dir, nodes)
    own = RunFolder(nodes[2]).read_metrics()
    after_kill = [
        r for r in own if r["round"] == 0 and r["stage"] not in ("advertise_keys", "share_keys")
    ]
    # the restarted node has no round-0 secret: anything of round 0 it was still sent, it
    # refused (if the server's message reached it before its stage closed)
    assert all("holds nothing" in r["aborted"] for r in after_kill), after_kill
    keys = {r["round"]: r for r in own if r.get("stage") == "advertise_keys"}
    assert keys[1]["warm"] and not keys[0]["warm"]  # loaded once, in round 0
    assert keys[0]["keys_sha256"] != keys[1]["keys_sha256"]
    assert [(r["round"], r.get("stage")) for r in own][-1] == (2, "final")
    _check_audit(tmp_path / "audit" / "audit.json")


def _failures(run_dir, round_index: int) -> dict:
    """What each stage of a round recorded against each institution (for a failure's message)."""
    path = run_dir / f"secagg/round-{round_index:04d}.json"
    return read_json(path)["failures"] if path.exists() else {}


def _check_audit(path) -> None:
    """The audit is built from the server's and the nodes' records; the only claims it cannot
    verify are per-round epsilons, which the server never sees (each node's own records hold
    them: nodes/<id>/metrics.jsonl)."""
    integrity = json.loads(path.read_text())["integrity"]
    checks = {m["check"] for m in integrity["mismatches"]}
    assert checks <= {"epsilon after round"}, integrity["mismatches"]
