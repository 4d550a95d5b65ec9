"""Learning-rate tuning (run.tuning): the validation parts come from the training shards only;
each arm then trains at the rate it chose; with DP on nothing is tuned."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tiny_run

import securefed.run.tuning as tuning
from securefed.audit import verify_run
from securefed.config import load_config
from securefed.run.progress import Progress
from securefed.run.setup import build_setup
from securefed.run.simulate import simulate

TINY = [*tiny_run.TINY, "task.synthetic.num_examples=120", "baselines=[centralized]"]


def _indices(subsets) -> list[set[int]]:
    return [set(np.asarray(s.indices).tolist()) for s in subsets]


def test_the_validation_parts_are_carved_from_the_training_shards_only():
    setup = build_setup(load_config(overrides=[*TINY, "training.validation_fraction=0.25"]))
    held_out = tuning.validation_setup(setup)
    tests = set().union(*_indices(setup.client_test))
    for train, fit, val in zip(
        _indices(setup.client_train),
        _indices(held_out.client_train),
        _indices(held_out.client_test),
        strict=True,
    ):
        assert fit | val == train and not fit & val
        assert len(val) == max(1, round(0.25 * len(train)))
    assert not tests & set(np.asarray(held_out.pooled_test.indices).tolist())
    assert not tests & set(np.asarray(held_out.pooled_train.indices).tolist())


def test_with_dp_on_nothing_is_tuned(monkeypatch):
    cfg = load_config(overrides=[*TINY, "training.lr_grid=[0.001,0.01]", "privacy.dp.enabled=true"])
    monkeypatch.setattr(tuning, "validation_setup", lambda s: pytest.fail("tuned under DP"))

    class Fake:
        pass

    setup = Fake()
    setup.cfg = cfg
    chosen = tuning.choose_learning_rates(setup, Progress(enabled=False))
    assert chosen["tuned"] is False and "DP is on" in chosen["reason"]
    assert chosen["lr"] == {"federated": cfg.training.lr, "centralized": cfg.training.lr}


def test_each_arm_trains_at_the_rate_it_chose(tmp_path):
    """The tuned run equals, arm by arm, a run without a grid at that arm's chosen rate."""
    grid = [1.0e-4, 3.0e-2]
    _, tuned = simulate(
        load_config(overrides=[*TINY, f"training.lr_grid={grid}"]), out=str(tmp_path / "t")
    )
    record = json.loads((tmp_path / "t" / "tuning.json").read_text())
    assert tuned["tuning"] == record and record["tuned"]
    assert verify_run(tmp_path / "t").ok  # tuning.json is bound into the records
    for arm in ("federated", "centralized"):
        scores = record["arms"][arm]["validation_accuracy"]
        assert list(scores) == [repr(lr) for lr in grid]
        assert record["lr"][arm] == grid[int(np.argmax(list(scores.values())))]
        _, fixed = simulate(
            load_config(overrides=[*TINY, f"training.lr={record['lr'][arm]!r}"]),
            out=str(tmp_path / arm),
        )
        assert tuned[arm]["pooled"] == fixed[arm]["pooled"], arm


def test_the_audit_states_how_each_rate_was_chosen():
    from securefed.audit.markdown import _learning_rates

    assert "not tuned" in _learning_rates(None)
    fixed = {
        "grid": [0.1],
        "tuned": False,
        "reason": tuning.NOT_TUNED_UNDER_DP,
        "lr": {"federated": 4.0},
    }
    assert "federated 4" in _learning_rates(fixed) and "DP is on" in _learning_rates(fixed)
    chosen = {
        "grid": [0.001, 0.003],
        "tuned": True,
        "lr": {"federated": 0.003, "centralized": 0.001},
        "metric": "pooled accuracy on the validation parts of the training shards",
        "validation_records": 64,
        "validation_fraction": 0.1,
    }
    text = _learning_rates(chosen)
    assert "federated 0.003, centralized 0.001" in text and "64 records" in text
