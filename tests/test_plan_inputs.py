"""The round planners' inputs are one typed value, ``PlanInputs``, and what a Flower node pins
is walked from its fields: a new planner input cannot be added without being pinned."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from securefed.plan_inputs import NODE_IDENTITY, PlanInputs, pinned_fields
from securefed.privacy.distributed.parameters import plan_distributed_dp
from securefed.privacy.institution import plan_for_run
from securefed.secagg import RoundContext, SecAggParams, plan_round

# What a RoundContext holds beside the pinned inputs: facts of one round that each node
# computes itself (the round it is asked for, the hash of the adapter it received, its own
# adapter spec and the encoded length it derives from them).
ROUND_FACTS = {"round_index", "global_adapter_hash", "vector_spec_hash", "dimension"}


def test_every_field_of_the_planners_input_types_is_pinned():
    keys = {p.config_key for p in pinned_fields()}
    for f in dataclasses.fields(SecAggParams):
        assert f.name in NODE_IDENTITY or f"secure_aggregation.{f.name}" in keys, f.name
    assert {"training.clients_per_round", "partition.num_clients", "training.rounds"} <= keys
    assert len({p.node_key for p in pinned_fields()}) == len(pinned_fields())  # no clash


def test_the_planners_read_nothing_but_plan_inputs():
    """The planners' signatures: secure aggregation's takes the cohort size and SecAggParams
    (both in PlanInputs), distributed DP's the inputs and the adapter's dimension, and every
    RoundContext field is a pinned input or a per-round fact. A new parameter or field fails
    here until it is made a field of PlanInputs (and so pinned) or shown to be a round fact."""
    assert list(inspect.signature(plan_round).parameters) == ["cohort_size", "params"]
    assert list(inspect.signature(plan_for_run).parameters) == ["inputs", "dimension"]
    pinned_in_context = {"cohort_size", "params", "extras_count"}  # extras: from dp_sgd, ddp
    assert {f.name for f in dataclasses.fields(RoundContext)} == pinned_in_context | ROUND_FACTS
    computed = {  # colluders: from cohort_size and secure_aggregation.corrupt_fraction
        "dimension",
        "cohort_size",
        "min_survivors",
        "colluders",
        "sample_rate",
        "bits",
        "delta",
    }
    from_ddp = {
        "mechanism",
        "target_epsilon",
        "clip_norm",
        "rounds",
        "modclip_probability",
    }
    constants = {"beta"}  # left at the package's default: no config states it
    assert set(inspect.signature(plan_distributed_dp).parameters) == computed | from_ddp | constants


def test_a_new_plan_input_is_pinned_or_refused_by_construction():
    """A field added to PlanInputs either names its run-config key (and is then pinned, with
    a node-config key of its own) or makes the pinned set fail to build."""
    with_source = dataclasses.make_dataclass(
        "WithSource",
        [("local_epochs", float, dataclasses.field(metadata={"config": "training.local_epochs"}))],
        bases=(PlanInputs,),
        frozen=True,
    )
    added = {p.node_key: p.config_key for p in pinned_fields(with_source)}
    assert added["local-epochs"] == "training.local_epochs"
    without = dataclasses.make_dataclass(
        "WithoutSource", [("local_epochs", float, 1.0)], bases=(PlanInputs,), frozen=True
    )
    with pytest.raises(KeyError, match="config"):
        pinned_fields(without)
