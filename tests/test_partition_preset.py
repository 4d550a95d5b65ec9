"""``partition.preset``: a named heterogeneity preset expands to its partition keys at load,
refuses a key that contradicts it, and stays out of every config that does not set it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from securefed.config import dump_config, load_config, validate
from securefed.config_training import PARTITION_PRESETS
from securefed.errors import ConfigError
from securefed.sweep import plan_cells
from securefed.sweep.spec import SweepSpec

ROOT = Path(__file__).resolve().parents[1]
DP = ROOT / "configs" / "dp.yaml"


def test_each_preset_sets_the_keys_the_docs_table_states():
    # The docs page's preset table, read back: one row per preset, its keys in backquotes.
    text = (ROOT / "docs" / "heterogeneity.md").read_text()
    rows = dict(re.findall(r"^\| `(\w+)` \| ((?:`partition\.\w+=[\w.]+` ?)+) \|", text, re.M))
    assert sorted(rows) == sorted(PARTITION_PRESETS)
    for name, keys in rows.items():
        cfg = load_config(None, [f"partition.preset={name}"])
        for key, value in re.findall(r"`partition\.(\w+)=([\w.]+)`", keys):
            assert str(getattr(cfg.partition, key)) == value, (name, key)
    assert load_config(None, ["partition.preset=label_skew_severe"]).partition.alpha == 0.1


def test_a_preset_replaces_the_file_s_partition_and_the_resolved_config_records_it():
    # dp.yaml sets partition.scheme: iid; the preset given with --set takes its place.
    cfg = load_config(DP, ["partition.preset=label_skew"])
    assert (cfg.partition.preset, cfg.partition.scheme, cfg.partition.alpha) == (
        "label_skew",
        "dirichlet",
        0.5,
    )
    resolved = dump_config(cfg)
    assert "preset: label_skew" in resolved
    assert validate(yaml.safe_load(resolved)) == cfg  # what --resume reads back
    natural = load_config(DP, ["partition.preset=natural"]).partition
    assert (natural.scheme, natural.column) == ("natural", "institution")


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["partition.preset=label_skew", "partition.alpha=0.1"], "partition.alpha"),
        (["partition.preset=iid", "partition.scheme=dirichlet"], "partition.scheme"),
        (["partition.preset=natural", "partition.column=subject_name"], "partition.column"),
    ],
)
def test_a_key_contradicting_the_preset_is_refused_naming_it(overrides, key):
    with pytest.raises(ConfigError) as err:
        load_config(DP, overrides)
    assert err.value.key == key
    assert "partition.preset" in str(err.value)
    for order in (overrides, overrides[::-1]):  # the same whatever order --set gives them in
        with pytest.raises(ConfigError):
            load_config(DP, order)


def test_a_preset_in_a_file_refuses_a_contradicting_key_of_the_same_file(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("partition: {preset: label_skew, scheme: iid}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert err.value.key == "partition.scheme"
    path.write_text("partition: {preset: label_skew, alpha: 0.5}\n")  # agrees: accepted
    assert load_config(path).partition.alpha == 0.5


def test_an_unknown_preset_names_the_key_and_the_allowed_values():
    with pytest.raises(ConfigError) as err:
        load_config(None, ["partition.preset=skewed"])
    assert err.value.key == "partition.preset"
    assert all(name in str(err.value) for name in PARTITION_PRESETS)


def test_without_a_preset_the_resolved_config_is_unchanged():
    # A committed sweep cell's config resolves to the same text: no preset key appears, so
    # cell ids (a hash of the resolved config) and resumes of earlier runs stay as they were.
    committed = sorted((ROOT / "audits").glob("*/cells/*/config.yaml"))
    assert committed
    for path in committed[:5]:
        text = path.read_text()
        assert dump_config(validate(yaml.safe_load(text))) == text, path
    assert "preset" not in dump_config(load_config(DP, ["partition.preset=null"]))


def test_a_sweep_axis_of_presets_over_dp_yaml_plans_one_cell_each():
    spec = SweepSpec(name="presets", grid={"partition.preset": list(PARTITION_PRESETS)})
    base = yaml.safe_load(DP.read_text())
    cells = plan_cells(spec, base)
    assert [c.config.partition.preset for c in cells] == list(PARTITION_PRESETS)
    assert cells[0].config.partition.scheme == "iid"
