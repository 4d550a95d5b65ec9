"""Property tests of the whole protocol: exact sums mod 2^32 under dropouts at every stage.

An oracle computes, from the dropout sets alone (and the graph, for Harary), whether the
round must succeed; the test checks that it succeeds exactly then, with the exact sum of the
encoded inputs of U3, and otherwise raises ``ProtocolAbort``.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from secagg_harness import ManualRound, make_context, random_inputs

from securefed.errors import ProtocolAbort
from securefed.secagg import SecAggParams
from securefed.secagg.params import (
    minimum_partners,
    neighbour_dropouts_tolerated,
    plan_round,
    security_minimum,
)
from securefed.secagg.roster import generate_identities
from securefed.secagg.stages import STAGES


def _expected_sum(inputs: dict[int, np.ndarray], survivors) -> np.ndarray:
    total = np.zeros_like(next(iter(inputs.values())))
    for u in survivors:
        np.add(total, inputs[u], out=total)
    return total


def _stage_sets(ids, drops):
    sets, live = [], set(ids)
    for stage in STAGES:
        live = live - set(drops.get(stage, ()))
        sets.append(live)
    return sets  # U1, U2, U3, U4 (signers), U5 (responders)


def _must_succeed(ids, drops, plan, adversary, graph) -> bool:
    t = plan.threshold
    u1, u2, u3, u4, u5 = _stage_sets(ids, drops)
    if min(len(u1), len(u2), len(u3), len(u4), len(u5)) < t:
        return False
    near = {u: graph[u] for u in u1}
    holders = {u: near[u] | {u} for u in u1}
    # every client in U2 needs enough live neighbours (params.minimum_partners) to go on
    partners = minimum_partners(plan, adversary)
    if any(len(near[u] & u2) < partners for u in u2 - set(drops.get("masked_input", ()))):
        return False
    # every signer needs t of its share holders in the survivor set it signs
    if any(len(holders[u] & u3) < t for u in u4 | set(drops.get("consistency_check", ()))):
        return False
    # every responder needs t signatures from its share holders, and t of them alive
    if any(min(len(holders[u] & u4), len(holders[u] & u3)) < t for u in u5):
        return False
    # the server needs t responses per secret: b_u for u in U3, s_v for dropped v with partners
    if any(len(holders[u] & u5) < t for u in u3):
        return False
    return all(len(near[v] & u5) >= t for v in u2 - u3 if near[v] & u3)


def _drop_sets(ids, data):
    remaining, drops = list(ids), {}
    for stage in STAGES:
        gone = data.draw(st.sets(st.sampled_from(remaining)) if remaining else st.just(set()))
        drops[stage] = sorted(gone)
        remaining = [u for u in remaining if u not in gone]
    return drops


def _check_round(ids, context, drops, seed: int, identities=None) -> bool:
    inputs = random_inputs(ids, context.vector_length, seed)
    roster, keys = identities or (None, None)
    manual = ManualRound(ids, context, seed=b"prop%d" % seed, roster=roster, identity_keys=keys)
    plan, adversary = manual.server.plan, context.params.adversary
    try:
        total = manual.run(inputs, drops)
    except ProtocolAbort:
        graph = manual.server.state.graph
        if not graph:  # aborted before the graph existed: only U1 < t explains that
            assert len(_stage_sets(ids, drops)[0]) < plan.threshold
            return False
        assert not _must_succeed(ids, drops, plan, adversary, graph)
        return False
    assert _must_succeed(ids, drops, plan, adversary, manual.server.state.graph)
    survivors = manual.server.participants["masked_input"]
    assert set(survivors) == _stage_sets(ids, drops)[2]
    np.testing.assert_array_equal(total, _expected_sum(inputs, survivors))
    return True


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 8), length=st.integers(1, 300), data=st.data())
def test_complete_graph_sum_is_exact_with_any_t_survivors(n, length, data) -> None:
    ids = sorted(data.draw(st.sets(st.integers(0, 2**40), min_size=n, max_size=n)))
    threshold = data.draw(st.integers(2, n))
    params = SecAggParams(threshold=threshold, adversary="curious", corrupt_fraction=0.0)
    context = make_context(n, dimension=length, params=params)
    drops = _drop_sets(ids, data)
    succeeded = _check_round(ids, context, drops, data.draw(st.integers(0, 1000)))
    u5 = _stage_sets(ids, drops)[4]
    assert succeeded == (len(u5) >= threshold)  # complete graph: t survivors suffice


@settings(max_examples=25, deadline=None)
@given(n=st.integers(3, 9), length=st.integers(1, 64), data=st.data())
def test_signed_rounds_survive_every_dropout_pattern_the_budget_allows(n, length, data) -> None:
    """Semi-malicious complete-graph plans with identities (the default run), at the default
    threshold or any lower one the rule accepts: any dropouts, at any stages including the
    consistency check, that the plan tolerates sum exactly. It tolerates n - t dropouts in
    all, of which ``neighbour_dropouts_tolerated`` before masked input (one fewer than n - t
    where the colluder-counting rule makes a client need t partners)."""
    ids = sorted(data.draw(st.sets(st.integers(0, 2**40), min_size=n, max_size=n)))
    default = plan_round(n, SecAggParams())
    lowest = security_minimum(n, 0.05, "semi_malicious")
    threshold = data.draw(st.integers(min(lowest, default.threshold), default.threshold))
    context = make_context(n, dimension=length, params=SecAggParams(threshold=threshold))
    plan = ManualRound(ids, context).server.plan
    early_budget = min(n - plan.threshold, neighbour_dropouts_tolerated(plan, "semi_malicious"))
    early = data.draw(st.lists(st.sampled_from(ids), unique=True, max_size=early_budget))
    rest = [u for u in ids if u not in early]
    late = data.draw(
        st.lists(st.sampled_from(rest), unique=True, max_size=n - plan.threshold - len(early))
    )
    drops = {s: [] for s in STAGES}
    for u in early:
        drops[data.draw(st.sampled_from(STAGES[:2]))].append(u)
    for u in late:
        drops[data.draw(st.sampled_from(STAGES[2:]))].append(u)
    identities = generate_identities(ids)
    assert _check_round(ids, context, drops, data.draw(st.integers(0, 1000)), identities)


@settings(max_examples=4, deadline=None)
@given(n=st.sampled_from([51, 60]), data=st.data())
def test_default_sparse_rounds_sum_exactly_or_abort_as_the_plan_says(n, data) -> None:
    """The Harary defaults whose plan the colluder-counting rule changed (n = 51: more
    partners needed; n = 60: k = 44, t = 25): up to the dropout budget's clients drop at
    any stages; the round sums exactly exactly when every client keeps the partners and
    share holders the plan needs (the oracle), else it aborts."""
    ids = list(range(n))
    context = make_context(n, dimension=8, params=SecAggParams())
    budget = int(SecAggParams().dropout_budget * n)
    gone = data.draw(st.lists(st.sampled_from(ids), unique=True, max_size=budget))
    drops = {s: [] for s in STAGES}
    for u in gone:
        drops[data.draw(st.sampled_from(STAGES))].append(u)
    _check_round(ids, context, drops, data.draw(st.integers(0, 1000)))


@settings(max_examples=15, deadline=None)
@given(n=st.integers(6, 14), length=st.integers(1, 64), data=st.data())
def test_harary_graph_sum_is_exact_or_the_round_aborts(n, length, data) -> None:
    degree = data.draw(st.sampled_from(range(2, n - 2, 2)))
    threshold = data.draw(st.integers(2, degree + 1))
    params = SecAggParams(
        graph="harary",
        degree=degree,
        threshold=threshold,
        adversary="curious",
        corrupt_fraction=0.0,
        dropout_budget=0.0,
    )
    ids = list(range(100, 100 + n))
    context = make_context(n, dimension=length, params=params)
    drops = _drop_sets(ids, data) if data.draw(st.booleans()) else dict.fromkeys(STAGES, [])
    succeeded = _check_round(ids, context, drops, data.draw(st.integers(0, 1000)))
    if not any(drops.values()):
        assert succeeded


@pytest.mark.parametrize("stage", STAGES)
def test_one_dropout_at_each_stage_is_recovered(stage: str) -> None:
    ids = [3, 7, 11, 19, 23]
    context = make_context(len(ids), dimension=50)
    drops = {s: [7] if s == stage else [] for s in STAGES}
    assert _check_round(ids, context, drops, seed=1)


def test_abort_says_how_many_remained_and_the_threshold() -> None:
    ids = list(range(5))
    context = make_context(5)  # t = 4
    manual = ManualRound(ids, context)
    with pytest.raises(ProtocolAbort, match="3 clients remained at share_keys, threshold 4"):
        manual.run(random_inputs(ids, context.vector_length), {"share_keys": [0, 4]})


def test_sparse_round_with_many_clients() -> None:
    """60 clients, auto parameters (Harary graph), 10% dropouts spread over the stages."""
    ids = list(range(60))
    context = make_context(60, dimension=16, params=SecAggParams())
    assert context.params.graph == "auto"
    drops = {
        "advertise_keys": [1],
        "share_keys": [2, 3],
        "masked_input": [5, 8],
        "consistency_check": [21],
        "unmasking": [13],
    }
    assert _check_round(ids, context, drops, seed=2)
