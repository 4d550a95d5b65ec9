"""The DP planner: sigma and noise/signal per institution, and the warning before a useless run."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from securefed.cli import main
from securefed.privacy.planner import (
    LEARNS_NOTHING_ABOVE,
    format_plan,
    learns_nothing_warning,
    noise_to_signal,
    plan_institutions,
)

DP_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "dp.yaml"


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
        dp_optimizer="adamw",
    )
    assert [p.sample_rate for p in plans] == [0.1, 1.0]
    assert [p.expected_batch for p in plans] == pytest.approx([16.0, 10.0])
    assert [p.steps for p in plans] == [50, 5]
    assert plans[0].noise_to_signal == pytest.approx(100 / 16)


def _two_institutions(dp_optimizer: str, sigmas=(0.5, 5.0)):
    return plan_institutions(
        train_sizes=[1000, 1000],
        noise_multipliers=list(sigmas),
        steps_per_round=[1, 1],
        rounds=1,
        batch_size=100,
        trainable_parameters=10_000,  # ratio = sigma
        dp_optimizer=dp_optimizer,
    )


def test_warning_names_exactly_the_institutions_above_the_threshold():
    plans = _two_institutions("sgd")
    warning = learns_nothing_warning(plans)
    assert warning is not None and "institutions [1]" in warning and "ffa_lora" in warning
    assert learns_nothing_warning(plans[:1]) is None
    assert "LEARNS NOTHING" in format_plan(plans, 10_000).splitlines()[3]


@pytest.mark.parametrize("dp_optimizer", ["adamw", "adam_bc"])
def test_warning_suggests_sgd_only_to_a_run_not_already_on_it(dp_optimizer):
    assert "dp_optimizer sgd" not in learns_nothing_warning(_two_institutions("sgd"))
    assert "dp_optimizer sgd" in learns_nothing_warning(_two_institutions(dp_optimizer))


@pytest.mark.parametrize(
    ("dp_optimizer", "learned", "did_not"),
    # measured (planner docstring): SGD momentum learned at 2.04 and not at 2.77; AdamW did
    # not learn at 0.555; DP-AdamBC learned at 0.555
    [("sgd", 2.04, 2.77), ("adamw", None, 0.555), ("adam_bc", 0.555, None)],
)
def test_each_optimizers_threshold_sits_between_its_measured_outcomes(
    dp_optimizer, learned, did_not
):
    threshold = LEARNS_NOTHING_ABOVE[dp_optimizer]
    assert learned is None or learned <= threshold
    assert did_not is None or did_not > threshold
    plans = _two_institutions(dp_optimizer, sigmas=(threshold * 0.99, threshold * 1.01))
    assert [p.learns_nothing for p in plans] == [False, True]
    assert f"above {threshold:g} with this DP optimizer" in format_plan(plans, 10_000)


def _plan_output(capsys, *overrides: str) -> str:
    args = ["plan", "--set", "privacy.dp.enabled=true", "--set", "privacy.dp.target_epsilon=8"]
    for item in overrides:
        args += ["--set", item]
    assert main(args) == 0
    return capsys.readouterr().out


def test_warning_fires_on_the_default_with_dp_and_not_on_the_dp_config(capsys):
    default = _plan_output(capsys)
    assert "WARNING" in default and "LEARNS NOTHING" in default
    assert main(["plan", str(DP_CONFIG)]) == 0
    dp_config = capsys.readouterr().out
    assert "noise/signal" in dp_config and "WARNING" not in dp_config, dp_config


def test_plan_says_so_when_dp_is_off(capsys):
    assert main(["plan"]) == 0
    assert "no DP noise to plan" in capsys.readouterr().out
