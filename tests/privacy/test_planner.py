"""The DP planner: sigma and noise/signal per institution, and the warning before a useless run."""

from __future__ import annotations

import math

import pytest

from securefed.cli import main
from securefed.privacy.planner import (
    LEARNS_NOTHING_ABOVE,
    format_plan,
    learns_nothing_warning,
    noise_to_signal,
    plan_institutions,
)


def test_noise_to_signal_is_the_benchmarks_figure():
    # benchmarks/dp_signal_to_noise.py: (sigma * C / B) / (C / sqrt(d)) for any C
    sigma, batch, d, clip = 1.3, 64, 75_000, 0.7
    expected = (sigma * clip / batch) / (clip / math.sqrt(d))
    assert noise_to_signal(sigma, batch, d) == pytest.approx(expected)
    with pytest.raises(ValueError):
        noise_to_signal(1.0, 0.0, 10)


def test_plan_uses_the_expected_poisson_batch_and_all_steps():
    plans = plan_institutions(
        train_sizes=[160, 10],
        noise_multipliers=[1.0, 2.0],
        steps_per_round=[10, 1],
        rounds=5,
        batch_size=16,
        trainable_parameters=10_000,
    )
    assert [p.sample_rate for p in plans] == [0.1, 1.0]
    assert [p.expected_batch for p in plans] == pytest.approx([16.0, 10.0])
    assert [p.steps for p in plans] == [50, 5]
    assert plans[0].noise_to_signal == pytest.approx(100 / 16)


def test_warning_names_exactly_the_institutions_above_the_threshold():
    plans = plan_institutions(
        train_sizes=[1000, 1000],
        noise_multipliers=[0.5, 5.0],
        steps_per_round=[1, 1],
        rounds=1,
        batch_size=100,
        trainable_parameters=10_000,  # ratios 0.5 and 5
    )
    warning = learns_nothing_warning(plans)
    assert warning is not None and "institutions [1]" in warning and "ffa_lora" in warning
    assert learns_nothing_warning(plans[:1]) is None
    assert "LEARNS NOTHING" in format_plan(plans, 10_000).splitlines()[3]
    assert LEARNS_NOTHING_ABOVE == 1.0


def _plan_output(capsys, *overrides: str) -> str:
    args = ["plan", "--set", "privacy.dp.enabled=true", "--set", "privacy.dp.target_epsilon=8"]
    for item in overrides:
        args += ["--set", item]
    assert main(args) == 0
    return capsys.readouterr().out


@pytest.mark.slow
def test_warning_fires_on_the_default_with_dp_and_not_with_enough_records(capsys):
    default = _plan_output(capsys)
    assert "WARNING" in default and "LEARNS NOTHING" in default
    enough = _plan_output(
        capsys,
        "task.synthetic.num_examples=8000",
        "training.batch_size=512",
        "model.adapter=ffa_lora",
    )
    assert "noise/signal" in enough and "WARNING" not in enough, enough


def test_plan_says_so_when_dp_is_off(capsys):
    assert main(["plan"]) == 0
    assert "no DP noise to plan" in capsys.readouterr().out
