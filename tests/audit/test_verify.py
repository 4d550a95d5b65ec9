"""``securefed audit --verify``: passes on an untouched run, fails on any edited figure or file."""

from __future__ import annotations

import argparse
import io
import json
import shutil

import numpy as np
import pytest
from rich.console import Console

from securefed.audit import add_audit_parser, verify_run
from securefed.audit.verify import vector_hash


def _cli(*argv: str) -> tuple[int, str]:
    parser = argparse.ArgumentParser()
    add_audit_parser(parser.add_subparsers())
    args = parser.parse_args(["audit", *argv])
    buffer = io.StringIO()
    code = args.func(args, Console(file=buffer, width=200))
    return code, buffer.getvalue()


@pytest.fixture
def plain_copy(plain_run, tmp_path):
    return shutil.copytree(plain_run, tmp_path / "run")


@pytest.fixture
def private_copy(private_run, tmp_path):
    return shutil.copytree(private_run, tmp_path / "run")


def _checks_failed(run) -> set[str]:
    result = verify_run(run)
    assert not result.ok
    return {m.check for m in result.mismatches}


def test_untouched_run_verifies(plain_run):
    # The private run's verification is asserted through its audit (integrity.verified).
    code, output = _cli("--verify", str(plain_run))
    assert code == 0, output
    assert "verified" in output


def test_edited_metric_fails(plain_copy):
    path = plain_copy / "metrics.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    records[0]["eval"]["pooled"]["accuracy"] = 0.999
    path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
    assert "record hash" in _checks_failed(plain_copy)
    code, output = _cli("--verify", str(plain_copy))
    assert code == 1 and "record hash" in output


def test_edited_privacy_event_fails(private_copy):
    path = private_copy / "privacy" / "ledgers.json"
    ledgers = json.loads(path.read_text())
    event = ledgers["ledgers"]["0"]["events"][0]
    event["noise_multiplier"] *= 2  # claims more noise than was added
    path.write_text(json.dumps(ledgers, indent=2))
    failed = _checks_failed(private_copy)
    assert {"artefact sha256", "epsilon after round", "events in results.json"} <= failed


def test_edited_epsilon_claim_fails(private_copy):
    path = private_copy / "results.json"
    results = json.loads(path.read_text())
    results["privacy"]["clients"]["0"]["epsilon"] = 0.5  # claims less privacy spent
    path.write_text(json.dumps(results, indent=2))
    assert "epsilon of record" in _checks_failed(private_copy)


def test_edited_config_fails(plain_copy):
    path = plain_copy / "config.yaml"
    path.write_text(path.read_text().replace("seed: 0", "seed: 1"))
    assert "artefact sha256" in _checks_failed(plain_copy)


def test_deleted_last_round_fails(plain_copy):
    path = plain_copy / "metrics.jsonl"
    path.write_text(path.read_text().splitlines(keepends=True)[0])
    failed = _checks_failed(plain_copy)
    assert {"events after the last recorded round", "rounds"} <= failed


def test_swapped_checkpoint_fails(plain_copy):
    first, second = (
        plain_copy / "checkpoints/round-0000.safetensors",
        plain_copy / "checkpoints/round-0001.safetensors",
    )
    data = first.read_bytes()
    first.write_bytes(second.read_bytes())
    second.write_bytes(data)
    assert {"artefact sha256", "global adapter hash"} <= _checks_failed(plain_copy)


def test_vector_hash_is_sha256_of_the_float32_bytes():
    # The adapter-vector hash is stated once (securefed.run.folder); what it must be is pinned
    # here, since records, the session binding and the audit all rely on it.
    import hashlib

    vector = np.random.default_rng(0).normal(size=17)
    expected = hashlib.sha256(vector.astype(np.float32).tobytes()).hexdigest()
    assert vector_hash(vector) == expected
