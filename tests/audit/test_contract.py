"""The run folder's contract: a renamed key is an error naming the file and the key.

A finished run's ``results.json`` and ``privacy/ledgers.json`` each get one required key
renamed; ``securefed audit --verify`` and ``securefed audit`` then stop with one line naming
that file and that key (before, the renamed key read as ``None`` into the audit).
"""

from __future__ import annotations

import json
import shutil

import pytest

from securefed.cli import EXIT_USER_ERROR, main
from securefed.run.contract import missing_keys
from securefed.run.folder import LEDGERS, RESULTS
from securefed.run.records import LedgersFile, Results


def _renamed(run_dir, tmp_path, rel: str, key: str):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    record = json.loads((copy / rel).read_text())
    record[f"{key}_renamed"] = record.pop(key)
    (copy / rel).write_text(json.dumps(record))
    return copy


@pytest.mark.parametrize(("rel", "key"), [(RESULTS, "federated"), (LEDGERS, "noise_multipliers")])
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
