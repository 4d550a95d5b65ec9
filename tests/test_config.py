"""Config: every kind of bad input is one line naming key, value and what is allowed."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from securefed import config
from securefed.config import dump_config, load_config, validate
from securefed.errors import ConfigError


def test_embedded_default_loads_and_round_trips():
    cfg = load_config()
    assert cfg.task.name == "synthetic_finance"
    assert validate(yaml.safe_load(dump_config(cfg))) == cfg


@pytest.mark.parametrize(
    ("override", "key", "fragment"),
    [
        ("training.roundz=3", "training.roundz", "allowed keys here"),
        ("trainng.rounds=3", "trainng", "allowed keys here"),
        ("model.adapter=lorax", "model.adapter", "'lora', 'ffa_lora', 'qlora' or 'ia3'"),
        ("training.rounds=abc", "training.rounds", "valid integer"),
        ("training.rounds=0", "training.rounds", "greater than or equal to 1"),
        ("training.lr=-1", "training.lr", "greater than 0"),
        ("partition.test_fraction=1.5", "partition.test_fraction", "less than 1"),
        (
            "training.clients_per_round=9",
            "training.clients_per_round",
            "at most partition.num_clients",
        ),
        ("partition.scheme=natural", "partition.column", "required"),
        ("secure_aggregation.threshold=2", "secure_aggregation.threshold", "[3, 4]"),
        (
            "secure_aggregation.dropout.share_keys=[7]",
            "secure_aggregation.dropout.share_keys",
            "[0, 3]",
        ),
        ("privacy.dp.delta=2.0", "privacy.dp", "delta"),
    ],
)
def test_bad_input_names_the_key(override, key, fragment):
    with pytest.raises(ConfigError) as info:
        load_config(overrides=[override])
    message = str(info.value)
    assert key in message and fragment in message
    assert "\n" not in message


def test_modular_overflow_is_ruled_out_at_load():
    # 64 clients x (2^(bits-1) - 1) must stay below 2^31: bits 26 fits, 27 could wrap.
    cohort = ["partition.num_clients=64", "training.clients_per_round=64"]
    with pytest.raises(ConfigError, match="secure_aggregation.bits=27"):
        load_config(overrides=[*cohort, "secure_aggregation.bits=27"])
    load_config(overrides=[*cohort, "secure_aggregation.bits=26"])


def test_dp_needs_a_noise_source():
    with pytest.raises(ConfigError, match="target_epsilon or noise_multiplier"):
        load_config(overrides=["privacy.dp.enabled=true", "privacy.dp.target_epsilon=null"])


def test_missing_config_file():
    with pytest.raises(ConfigError, match="existing YAML file"):
        load_config("does/not/exist.yaml")


def test_cli_user_error_is_one_line_without_traceback(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "securefed.cli",
            "simulate",
            "--set",
            "model.adapter=lorax",
            "--out",
            str(tmp_path / "run"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "model.adapter" in proc.stderr and "lorax" in proc.stderr
    assert not (tmp_path / "run").exists(), "nothing may start before the config is valid"


@pytest.mark.parametrize("sigma", ["0", "0.01"])
def test_noise_too_small_to_account_is_rejected_at_load(sigma):
    from securefed.privacy import accounting

    assert accounting.MIN_NOISE_MULTIPLIER == config.MIN_NOISE_MULTIPLIER  # one floor
    with pytest.raises(ConfigError, match=r"privacy\.dp\.noise_multiplier.*0\.05"):
        load_config(overrides=[f"privacy.dp.noise_multiplier={sigma}"])


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ([], "examples"),  # DP off: FedAvg's own weighting
        (["privacy.dp.enabled=true"], "uniform"),  # record counts are outside the DP guarantee
        (["privacy.dp.enabled=true", "training.weighting=examples"], "examples"),  # explicit
        (["training.weighting=uniform"], "uniform"),
    ],
)
def test_auto_weighting_resolves_at_load_and_is_recorded(overrides, expected):
    cfg = load_config(overrides=overrides)
    assert cfg.training.weighting == expected
    assert yaml.safe_load(dump_config(cfg))["training"]["weighting"] == expected


def test_distributed_dp_is_off_by_default_and_loads_when_on():
    assert load_config().privacy.distributed.enabled is False
    cfg = load_config(overrides=["privacy.distributed.enabled=true"])
    assert cfg.privacy.distributed.mechanism == "skellam"
    assert cfg.training.weighting == "uniform"  # auto resolves to uniform under it
    assert not load_config(
        overrides=["secure_aggregation.enabled=false"]
    ).privacy.distributed.enabled


@pytest.mark.parametrize(
    ("overrides", "key", "fragment"),
    [
        (["secure_aggregation.enabled=false"], "privacy.distributed.enabled", "secure_agg"),
        (["training.weighting=examples"], "training.weighting", "uniform or auto"),
        (["privacy.distributed.delta=0.3"], "privacy.distributed.delta", "(0, 1/4)"),
        (["privacy.distributed.mechanism=laplace"], "privacy.distributed.mechanism", "skellam"),
        (
            ["secure_aggregation.bits=4", "privacy.distributed.modclip_probability=1e-30"],
            "secure_aggregation.bits",
            "at least 5",
        ),
        (["privacy.distributed.clip_norm=0"], "privacy.distributed.clip_norm", "greater than 0"),
    ],
)
def test_distributed_dp_bad_settings_are_one_line_errors(overrides, key, fragment):
    with pytest.raises(ConfigError) as info:
        load_config(overrides=["privacy.distributed.enabled=true", *overrides])
    message = str(info.value)
    assert "\n" not in message and key in message and fragment in message


@pytest.mark.parametrize(
    ("body", "name"),
    [("seed: 3\n", "fpb-lora-v2"), ("name: chosen\nseed: 3\n", "chosen")],
)
def test_a_run_is_named_after_its_config_file_unless_the_config_names_it(tmp_path, body, name):
    path = tmp_path / "fpb-lora v2.yaml"  # the space is not allowed in a name: replaced
    path.write_text(body)
    assert load_config(path).name == name
    assert load_config(path, ["name=over"]).name == "over"
    assert load_config().name == "default"  # the embedded default.yaml
