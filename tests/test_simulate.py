"""End to end: a tiny federation, its run folder, and resume equivalence."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from kill_points import CrashAfterRound

from securefed.config import load_config
from securefed.run.folder import RunFolder
from securefed.run.simulate import simulate

TINY = [
    "task.synthetic.num_examples=120",
    "training.rounds=2",
    "training.local_steps=2",
    "training.batch_size=8",
    "model.max_length=32",
    "partition.num_clients=3",
    "training.clients_per_round=2",
]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "tiny"
    run_dir, results = simulate(load_config(overrides=TINY), out=str(out))
    return run_dir, results


def test_each_round_records_the_time_it_took(tiny_run):
    """A round's cpu_s and wall_s are its own (end minus start), a share of this process's."""
    run_dir, _ = tiny_run
    records = RunFolder(run_dir).read_metrics()
    spent = time.process_time()
    assert all(0.0 < r["cpu_s"] <= spent and r["wall_s"] > 0.0 for r in records)
    assert sum(r["cpu_s"] for r in records) <= spent


def test_run_folder_has_every_artefact(tiny_run):
    run_dir, results = tiny_run
    for rel in [
        "config.yaml",
        "environment.json",
        "partition.json",
        "metrics.jsonl",
        "state.json",
        "results.json",
        "privacy/ledgers.json",
        "checkpoints/initial.safetensors",
        "checkpoints/round-0001.safetensors",
        "secagg/round-0000.json",
        "baselines/centralized.json",
        "baselines/isolated.json",
    ]:
        assert (run_dir / rel).is_file(), rel
    assert len(RunFolder(run_dir).read_metrics()) == 2
    for block in ("federated", "centralized", "isolated"):
        assert set(results[block]["pooled"]) == {"accuracy", "macro_f1"}
        assert len(results[block]["clients"]) == 3
    assert results["base_weights"]["unchanged"] is True
    assert results["task"]["synthetic"] is True
    partition = json.loads((run_dir / "partition.json").read_text())
    sizes = [c["train_size"] for c in partition["clients"]]
    assert len(sizes) == 3 and all(
        sum(c["train_labels"].values()) == c["train_size"] for c in partition["clients"]
    )


def test_metrics_records_are_hash_chained(tiny_run):
    from securefed.run.folder import GENESIS_HASH, record_hash

    records = RunFolder(tiny_run[0]).read_metrics()
    assert records[0]["prev_hash"] == GENESIS_HASH
    for prev, cur in zip(records, records[1:], strict=False):
        assert cur["prev_hash"] == prev["record_hash"]
    assert all(record_hash(r) == r["record_hash"] for r in records)


def test_nothing_per_client_in_the_clear_under_secure_aggregation(tiny_run):
    records = RunFolder(tiny_run[0]).read_metrics()
    assert all(isinstance(r["train_loss"], float) for r in records)  # one aggregate number
    assert all(set(r) >= {"aggregated", "sampled", "bytes"} for r in records)


def test_resume_ends_like_an_uninterrupted_run(tmp_path):
    overrides = [*TINY, "secure_aggregation.enabled=false"]
    cfg = load_config(overrides=overrides)
    full_dir, full = simulate(cfg, out=str(tmp_path / "full"))
    with pytest.raises(KeyboardInterrupt):
        simulate(cfg, out=str(tmp_path / "cut"), progress=CrashAfterRound(0))
    assert json.loads((tmp_path / "cut" / "state.json").read_text())["next_round"] == 1
    cut_dir, resumed = simulate(resume=str(tmp_path / "cut"))
    assert resumed["federated"] == full["federated"]
    assert resumed["centralized"]["pooled"] == full["centralized"]["pooled"]
    final_full = RunFolder(full_dir).load_adapter("checkpoints/round-0001.safetensors")
    final_cut = RunFolder(cut_dir).load_adapter("checkpoints/round-0001.safetensors")
    assert np.array_equal(final_full, final_cut)
    timing = {"wall_s", "cpu_s", "record_hash", "prev_hash", "artefacts"}
    strip = lambda records: [{k: v for k, v in r.items() if k not in timing} for r in records]  # noqa: E731
    assert strip(RunFolder(cut_dir).read_metrics()) == strip(RunFolder(full_dir).read_metrics())


def test_secure_aggregation_matches_plain_fedavg_within_quantization_error(tmp_path):
    base = [*TINY, "baselines=[]"]
    plain_dir, plain = simulate(
        load_config(overrides=[*base, "secure_aggregation.enabled=false"]),
        out=str(tmp_path / "plain"),
    )
    sa_dir, secure = simulate(load_config(overrides=base), out=str(tmp_path / "secure"))
    transcript = json.loads((sa_dir / "secagg" / "round-0000.json").read_text())
    bound = transcript["quantization"]["error_bound_delta"]  # per coordinate, on the sum
    a = RunFolder(plain_dir).load_adapter("checkpoints/round-0000.safetensors")
    b = RunFolder(sa_dir).load_adapter("checkpoints/round-0000.safetensors")
    assert 0 < np.max(np.abs(a - b)) <= bound  # masked, quantized, and no more wrong than that
    assert (
        abs(plain["federated"]["pooled"]["accuracy"] - secure["federated"]["pooled"]["accuracy"])
        <= 0.02
    )


def test_dropouts_at_every_stage_are_recovered_and_recorded(tmp_path):
    overrides = [
        *TINY,
        "baselines=[]",
        "partition.num_clients=4",
        "training.clients_per_round=4",
        "secure_aggregation.dropout.unmasking=[1]",
        "secure_aggregation.dropout.rounds=[0]",
    ]
    run_dir, results = simulate(load_config(overrides=overrides), out=str(tmp_path / "drop"))
    records = RunFolder(run_dir).read_metrics()
    assert records[0]["aggregated"] == [0, 1, 2, 3]  # dropped before unmasking: still summed
    transcript = json.loads((run_dir / "secagg" / "round-0000.json").read_text())
    assert transcript["dropouts"]["unmasking"] == [1]
    assert records[1]["aggregated"] == [0, 1, 2, 3]
    assert results["secure_aggregation"]["aborted_rounds"] == []


def test_a_run_with_the_zero_shot_baseline_verifies(tmp_path):
    """Every baseline the config allows is read back by the audit: zero_shot too (it was
    missing from the audit's own list, so its file counted as missing and verify failed)."""
    from tiny_run import TINY as SMALLEST

    from securefed.audit.verify import verify_records

    cfg = load_config(overrides=[*SMALLEST, "baselines=[zero_shot]"])
    run_dir, results = simulate(cfg, out=str(tmp_path / "run"))
    assert (run_dir / "baselines/zero_shot.json").is_file() and "zero_shot" in results
    assert verify_records(run_dir).mismatches == []
