"""The run folder's contract: a renamed key is an error naming the file and the key.

A finished run's ``results.json``, ``privacy/ledgers.json``, ``environment.json`` and
``partition.json`` each get one required key renamed (in ``partition.json``, one institution's);
``securefed audit --verify`` and ``securefed audit`` then stop with one line naming that file and
that key (before, the renamed key read as ``None`` into the audit).
"""

from __future__ import annotations

import json
import shutil

import pytest

from securefed.cli import EXIT_USER_ERROR, main
from securefed.config import PartitionConfig
from securefed.run.contract import missing_keys
from securefed.run.folder import ENVIRONMENT, LEDGERS, PARTITION, RESULTS
from securefed.run.records import LedgersFile, PartitionClient, PartitionFile, Results
from securefed.tasks.partition import partition


def _renamed(run_dir, tmp_path, rel: str, key: str):
    """A copy of the run with ``key`` (dotted; ``clients[1]`` indexes a list) renamed in ``rel``."""
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    record = json.loads((copy / rel).read_text())
    *parents, last = key.split(".")
    holder = record
    for part in parents:
        name, _, index = part.partition("[")
        holder = holder[name][int(index[:-1])] if index else holder[name]
    holder[f"{last}_renamed"] = holder.pop(last)
    (copy / rel).write_text(json.dumps(record))
    return copy


@pytest.mark.parametrize(
    ("rel", "key"),
    [
        (RESULTS, "federated"),
        (LEDGERS, "noise_multipliers"),
        (ENVIRONMENT, "vector_spec_hash"),
        (PARTITION, "clients[1].test_size"),
    ],
)
@pytest.mark.parametrize("verify", [True, False], ids=["audit --verify", "audit"])
def test_a_renamed_key_is_an_error_naming_the_file_and_the_key(
    plain_run, tmp_path, capsys, rel, key, verify
):
    run = _renamed(plain_run, tmp_path, rel, key)
    args = ["audit", str(run), "--out", str(tmp_path / "audit"), *(["--verify"] if verify else [])]
    assert main(args) == EXIT_USER_ERROR
    error = capsys.readouterr().err
    assert rel in error and f"required key '{key}' is missing" in error, error
    assert not (tmp_path / "audit" / "audit.json").exists()


def test_the_shapes_name_nested_and_every_missing_key():
    results = {key: {} for key in Results.__required_keys__}
    results["task"] = {"name": "t", "synthetic": True, "primary_metric": "accuracy"}
    assert missing_keys(results, Results) == [
        "federated.clients",
        "federated.pooled",
        "federated.pooled_by_round",
        "federated.rounds",
    ]
    assert missing_keys({"dp_enabled": False}, LedgersFile) == [
        "accountant",
        "ledgers",
        "noise_multipliers",
    ]
    assert missing_keys([], LedgersFile) == ["<the whole record>"]


@pytest.mark.parametrize("withhold", [False, True], ids=["counts", "under DP"])
@pytest.mark.parametrize("scheme", ["dirichlet", "natural"])
def test_partition_summary_writes_exactly_the_declared_shape(withhold, scheme):
    """Every key ``summary`` writes is declared in ``PartitionFile``/``PartitionClient``, and
    every key they require is written: the shape cannot drift from its writer."""
    labels = [0, 1, 2, 0, 1, 2, 0, 1] * 10
    groups = [f"clinic-{i % 3}" for i in range(len(labels))] if scheme == "natural" else None
    cfg = PartitionConfig(scheme=scheme, num_clients=3, alpha=0.5, column="clinic")
    record = partition(labels, cfg, seed=0, groups=groups).summary(
        ["a", "b", "c"], withhold_training_counts=withhold
    )
    assert missing_keys(record, PartitionFile) == []
    assert set(record) <= PartitionFile.__required_keys__ | PartitionFile.__optional_keys__
    declared = PartitionClient.__required_keys__ | PartitionClient.__optional_keys__
    for client in record["clients"]:
        assert set(client) <= declared, set(client) - declared
