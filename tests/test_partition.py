"""Partitioning: every scheme is disjoint, complete, seeded, honours min_examples and gives each
client a stratified test split; alpha controls skew; impossible requests name the key."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from securefed.config import PartitionConfig
from securefed.errors import ConfigError
from securefed.tasks.partition import Partition, label_skew, partition

SCHEMES = ("iid", "dirichlet", "quantity", "natural")


@st.composite
def problems(draw):
    """A feasible (labels, config, seed, groups) for any scheme."""
    scheme = draw(st.sampled_from(SCHEMES))
    num_clients = draw(st.integers(1, 6))
    min_examples = draw(st.integers(2, 6))
    test_fraction = draw(st.sampled_from((0.1, 0.2, 0.5)))
    # natural: each value gets a block of >= 2*min_examples+2 rows, enough for any client
    num_values = draw(st.integers(num_clients, 2 * num_clients)) if scheme == "natural" else 1
    n = draw(st.integers(max(num_clients, num_values) * (2 * min_examples + 2), 300))
    num_labels = draw(st.integers(1, 5))
    labels = np.array(draw(st.lists(st.integers(0, num_labels - 1), min_size=n, max_size=n)))
    block = n // num_values
    groups = (
        [f"v{min(i // block, num_values - 1)}" for i in range(n)] if scheme == "natural" else None
    )
    cfg = PartitionConfig(
        scheme=scheme,
        num_clients=num_clients,
        alpha=draw(st.sampled_from((0.05, 0.5, 5.0))),
        column="site" if scheme == "natural" else None,
        test_fraction=test_fraction,
        min_examples=min_examples,
    )
    return labels, cfg, draw(st.integers(0, 2**32 - 1)), groups


@settings(max_examples=120, deadline=None)
@given(problems())
def test_every_example_in_exactly_one_client(problem):
    labels, cfg, seed, groups = problem
    part = partition(labels, cfg, seed, groups)
    assert part.num_clients == cfg.num_clients
    everything = np.concatenate([np.concatenate([c.train, c.test]) for c in part.clients])
    assert np.array_equal(np.sort(everything), np.arange(labels.size))  # disjoint and complete
    for shard in part.clients:
        assert shard.train.size >= cfg.min_examples
        assert shard.test.size >= 1
        assert shard.train.dtype == shard.test.dtype == np.int64
    assert np.array_equal(
        part.pooled_test(), np.sort(np.concatenate([c.test for c in part.clients]))
    )


@settings(max_examples=40, deadline=None)
@given(problems())
def test_same_seed_same_partition(problem):
    labels, cfg, seed, groups = problem
    first, again = partition(labels, cfg, seed, groups), partition(labels, cfg, seed, groups)
    for a, b in zip(first.clients, again.clients, strict=True):
        assert np.array_equal(a.train, b.train) and np.array_equal(a.test, b.test)
    assert first.summary() == again.summary()


@settings(max_examples=30, deadline=None)
@given(problems())
def test_natural_clients_hold_whole_groups(problem):
    labels, cfg, seed, groups = problem
    if cfg.scheme != "natural":
        return
    part = partition(labels, cfg, seed, groups)
    values = np.asarray(groups)
    seen: set[str] = set()
    for shard, own in zip(part.clients, part.client_groups or (), strict=True):
        held = set(values[np.concatenate([shard.train, shard.test])])
        assert held == set(own) and not held & seen
        seen |= held


# Not per seed: rebalancing small clients can undo the skew of one draw (seed 35367 gives
# 0.034 at alpha 0.1 against 0.037 at alpha 100), so the property is stated over seeds.
def test_smaller_alpha_gives_much_more_label_skew_on_average():
    labels = np.arange(900) % 3

    def mean_skew(alpha: float) -> float:
        cfg = PartitionConfig(scheme="dirichlet", alpha=alpha)
        return float(np.mean([label_skew(partition(labels, cfg, seed)) for seed in range(10)]))

    assert mean_skew(0.1) > mean_skew(100.0) + 0.1


def test_label_skew_falls_steadily_with_alpha():
    labels = np.arange(1200) % 4

    def mean_skew(alpha: float) -> float:
        cfg = PartitionConfig(scheme="dirichlet", alpha=alpha, num_clients=5)
        return float(np.mean([label_skew(partition(labels, cfg, s)) for s in range(8)]))

    skews = [mean_skew(a) for a in (0.1, 0.5, 2.0, 20.0)]
    assert skews == sorted(skews, reverse=True)
    assert skews[-1] < 0.1 < 0.4 < skews[0]


def test_quantity_skews_sizes_not_labels():
    labels = np.arange(1200) % 3

    def sizes_and_skew(alpha: float) -> tuple[float, float]:
        part = partition(labels, PartitionConfig(scheme="quantity", alpha=alpha), seed=1)
        sizes = np.array([c.train.size + c.test.size for c in part.clients])
        return float(sizes.std() / sizes.mean()), label_skew(part)

    uneven, skew_small_alpha = sizes_and_skew(0.3)
    even, _ = sizes_and_skew(100.0)
    assert uneven > 0.5 > 0.15 > even
    assert skew_small_alpha < 0.15  # labels stay mixed within each client


def test_test_split_is_stratified():
    labels = np.repeat([0, 1, 2], [300, 200, 100])
    part = partition(labels, PartitionConfig(scheme="dirichlet", alpha=1.0), seed=0)
    for shard in part.clients:
        held = np.concatenate([shard.train, shard.test])
        client_mix = np.bincount(labels[held], minlength=3) / held.size
        test_counts = np.bincount(labels[shard.test], minlength=3)
        # each label's test count is its exact share, rounded down or up
        assert np.all(np.abs(test_counts - client_mix * shard.test.size) < 1)


def test_rebalancing_gives_every_client_min_examples():
    labels = np.repeat([0, 1], [200, 20])
    cfg = PartitionConfig(scheme="dirichlet", alpha=0.01, num_clients=8, min_examples=20)
    part = partition(labels, cfg, seed=3)
    assert min(c.train.size for c in part.clients) >= 20


def test_too_little_data_names_num_clients():
    with pytest.raises(ConfigError, match="partition.num_clients.*at most 3"):
        partition(np.zeros(35, dtype=int), PartitionConfig(num_clients=4, min_examples=8), 0)


def test_natural_errors_name_the_key():
    labels = np.zeros(60, dtype=int)
    cfg = PartitionConfig(scheme="natural", column="site", num_clients=3)
    with pytest.raises(ConfigError, match="partition.num_clients.*distinct values"):
        partition(labels, cfg, 0, groups=["a"] * 30 + ["b"] * 30)
    with pytest.raises(ConfigError, match="partition.column"):
        partition(labels, cfg, 0, groups=None)
    with pytest.raises(ConfigError, match="partition.min_examples.*site=c"):
        partition(labels, cfg, 0, groups=["a"] * 27 + ["b"] * 27 + ["c"] * 6)


def test_natural_packs_more_values_than_clients():
    groups = ["a"] * 40 + ["b"] * 30 + ["c"] * 20 + ["d"] * 10
    cfg = PartitionConfig(scheme="natural", column="site", num_clients=2)
    part = partition(np.zeros(100, dtype=int), cfg, 0, groups=groups)
    assert part.client_groups == (("a", "d"), ("b", "c"))
    assert part.summary()["clients"][0]["groups"] == ["a", "d"]


def test_summary_is_json_and_adds_up():
    labels = np.arange(400) % 3
    part = partition(labels, PartitionConfig(alpha=0.5), seed=7)
    summary = json.loads(json.dumps(part.summary(["negative", "neutral", "positive"])))
    assert summary["scheme"] == "dirichlet" and summary["alpha"] == 0.5 and summary["seed"] == 7
    assert sum(c["train_size"] + c["test_size"] for c in summary["clients"]) == 400
    for client, shard in zip(summary["clients"], part.clients, strict=True):
        assert set(client["train_labels"]) == {"negative", "neutral", "positive"}
        assert sum(client["train_labels"].values()) == client["train_size"] == shard.train.size
        assert sum(client["test_labels"].values()) == client["test_size"]
    assert isinstance(part, Partition) and 0.0 <= summary["label_skew"] <= 1.0


def test_under_dp_nothing_counted_from_the_training_records_is_in_the_summary():
    labels = np.arange(400) % 3
    part = partition(labels, PartitionConfig(alpha=0.5), seed=7)
    full = part.summary()
    withheld = part.summary(withhold_training_counts=True)
    assert "withheld" in withheld["training_counts"]
    for key in ("num_examples", "label_skew"):
        assert key in full and key not in withheld
    text = json.dumps(withheld)
    assert "train_size" not in text and "train_labels" not in text
    for client, shard in zip(withheld["clients"], part.clients, strict=True):
        assert set(client) == {"client", "test_size", "test_labels"}
        assert client["test_size"] == shard.test.size  # the test split is named as outside DP
    # what remains is the DP-off summary with the training counts removed, nothing rewritten
    for f, w in zip(full["clients"], withheld["clients"], strict=True):
        assert {k: v for k, v in f.items() if not k.startswith("train")} == w


@pytest.mark.parametrize("dp", [False, True])
def test_the_run_folder_record_withholds_training_counts_exactly_when_dp_is_on(dp):
    from securefed.config import load_config
    from securefed.run.simulate import partition_record

    labels = np.arange(400) % 3
    setup = SimpleNamespace(
        cfg=load_config(overrides=[f"privacy.dp.enabled={str(dp).lower()}"]),
        partition=partition(labels, PartitionConfig(alpha=0.5), seed=7),
        task=SimpleNamespace(label_names=("negative", "neutral", "positive")),
    )
    record = json.dumps(partition_record(setup))
    assert ("train_labels" in record) is not dp and ("withheld" in record) is dp
