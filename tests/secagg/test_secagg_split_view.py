"""The split-view attack of issue 11, planned by a real adversary, against real clients.

With the consistency check switched off (the test-only ``check_consistency`` flag), the
planner's lists recover the victim's update exactly -- delta and extras -- so these tests can
fail. With it on, the planner finds no complete plan, and its best attempt, forced through,
is refused: no client releases shares that complete an unmasking of the victim.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
from secagg_harness import ManualRound, make_context, pinned_entropy
from split_view_planner import (
    SplitViewServer,
    choose_partners,
    plan_lists,
    plan_signed,
)

from securefed.errors import ConfigError, ProtocolAbort
from securefed.secagg import SecAggParams, crypto, masked_input
from securefed.secagg.params import minimum_partners, plan_round
from securefed.secagg.quantize import encode_input, error_bound
from securefed.secagg.roster import Roster

DIMENSION = 48
VICTIM = 0

# (cohort, params): the defaults, the lowest threshold and the highest dropout budget the
# config accepts (``test_variant_parameters_are_the_extremes`` pins why these are extremes)
VARIANTS = {
    "n10-default": (10, SecAggParams()),
    "n10-lowest-threshold": (10, SecAggParams(threshold=6)),
    "n10-highest-dropout-budget": (10, SecAggParams(dropout_budget=0.99)),
    "n51-default": (51, SecAggParams()),
    "n51-lowest-threshold": (51, SecAggParams(corrupt_fraction=0.0)),
    "n51-highest-dropout-budget": (51, SecAggParams(dropout_budget=0.99)),
    "n100-default": (100, SecAggParams()),
    "n100-lowest-threshold": (100, SecAggParams(corrupt_fraction=0.0)),
    "n100-highest-dropout-budget": (100, SecAggParams(dropout_budget=0.99)),
}
SLOW = {"n100-default", "n100-lowest-threshold", "n100-highest-dropout-budget"}


def _variant_ids():
    return [pytest.param(v, marks=pytest.mark.slow) if v in SLOW else v for v in VARIANTS]


def _server(n: int, params: SecAggParams) -> tuple[SplitViewServer, dict[int, np.ndarray]]:
    ids = list(range(n))
    draw = pinned_entropy(b"split-view identities")
    keys = {u: draw(32) for u in ids}
    roster = Roster({u: crypto.ed25519_public_key(k) for u, k in keys.items()})
    context = make_context(n, dimension=DIMENSION, extras_count=2, params=params)
    manual = ManualRound(ids, context, roster=roster, identity_keys=keys, seed=b"split")
    rng = np.random.default_rng(n)
    truth, inputs = {}, {}
    for u in ids:
        delta = rng.normal(size=DIMENSION).astype(np.float32)
        extras = np.array([1.0, rng.uniform(0.0, 5.0)])  # weight, weight x loss
        inputs[u] = encode_input(delta, 1.0, extras, params.quantization, rng)
        clipped = delta.astype(np.float64) * min(1.0, params.clip_norm / np.linalg.norm(delta))
        truth[u] = np.concatenate([clipped, extras])
    return SplitViewServer(manual, inputs), truth


def _within_quantization(recovered: np.ndarray, truth: np.ndarray, params) -> bool:
    delta_bound, extras_bound = error_bound(1, params.quantization)
    error = np.abs(recovered - truth)
    return bool(error[:DIMENSION].max() <= delta_bound and error[DIMENSION:].max() <= extras_bound)


def _holder_capacity(plan, partners: int) -> tuple[int, int]:
    """Dropped declarations needed (t per partner) and available (k + 1 - t per holder, the
    victim only |P| + 1 - t): the lists attack is possible on the complete graph iff
    needed <= available."""
    t, k, n = plan.threshold, plan.degree, plan.cohort_size
    return t * partners, (n - 1) * (k + 1 - t) + max(0, partners + 1 - t)


@pytest.mark.parametrize("variant", _variant_ids())
def test_without_the_consistency_check_the_planner_unmasks_the_victim(variant: str) -> None:
    n, params = VARIANTS[variant]
    server, truth = _server(n, params)
    plan = server.state.plan
    partners = choose_partners(server.graph, VICTIM, minimum_partners(plan, params.adversary))
    attack = plan_lists(server.graph, plan.threshold, VICTIM, partners)
    if plan.graph == "complete":
        needed, available = _holder_capacity(plan, len(partners))
        assert attack.complete == (needed <= available)
    if not attack.complete:
        # n = 10 at the defaults (t = 7): 7 x 6 drops needed, 9 x 3 available -- the
        # threshold alone stops the lists attack there; everywhere else it works
        assert variant == "n10-default"
        return
    server.deliver(VICTIM, partners)
    for client in server.manual.clients.values():
        client.state.check_consistency = False  # the test-only switch
    outcome = server.run(attack)
    assert outcome.refused == set()
    assert outcome.recovered is not None
    assert _within_quantization(outcome.recovered, truth[VICTIM], params)


@pytest.mark.parametrize("variant", _variant_ids())
def test_with_the_consistency_check_every_variant_is_refused(variant: str) -> None:
    n, params = VARIANTS[variant]
    server, truth = _server(n, params)
    plan = server.state.plan
    t = plan.threshold
    partners = choose_partners(server.graph, VICTIM, minimum_partners(plan, params.adversary))
    best = plan_signed(server.graph, t, VICTIM, partners, time_limit_s=2.0)
    assert not best.complete
    # the best attempt of each planner, forced through (fresh clients for each)
    for attempt in (best, plan_lists(server.graph, t, VICTIM, partners)):
        fresh = server if attempt is best else _server(n, params)[0]
        fresh.deliver(VICTIM, partners)
        outcome = fresh.run(attempt)
        assert outcome.recovered is None
        completes_seed = outcome.seed_shares >= t
        completes_keys = all(c >= t for c in outcome.key_shares.values())
        assert not (completes_seed and completes_keys)


def test_variant_parameters_are_the_extremes() -> None:
    """n = 10: threshold 6 is the lowest accepted; n = 51, 100: corrupt_fraction 0 gives the
    lowest secure threshold of its graph; dropout_budget 0.99 is the highest on a 0.01 grid
    (the config accepts < 1), where the threshold falls to its security minimum."""
    with pytest.raises(ConfigError, match="threshold"):
        plan_round(10, SecAggParams(threshold=5))
    for n in (51, 100):
        low = plan_round(n, SecAggParams(corrupt_fraction=0.0))
        assert low.threshold < plan_round(n, SecAggParams()).threshold
        with pytest.raises(ConfigError, match="threshold"):
            plan_round(
                n,
                SecAggParams(corrupt_fraction=0.0, degree=low.degree, threshold=low.threshold - 1),
            )
    assert plan_round(10, SecAggParams(dropout_budget=0.99)).threshold == 6


def _accepted_plans():
    """Every plan the finder outputs for a semi-malicious server over a grid of cohorts,
    corrupt fractions, dropout budgets and graph choices."""
    for n, alpha, budget, graph in itertools.product(
        [*range(2, 41), 51, 64, 100, 200, 1000],
        (0.0, 0.05, 0.2, 0.45),
        (0.0, 0.1, 0.33, 0.5, 0.99),
        ("complete", "harary"),  # what 'auto' picks is one of these
    ):
        params = SecAggParams(corrupt_fraction=alpha, dropout_budget=budget, graph=graph)
        try:
            plan = plan_round(n, params)
        except ConfigError:
            continue
        yield plan
        if plan.graph == "complete":  # every explicit threshold above the minimum, too
            for t in range(plan.threshold - 1, 1, -1):
                try:
                    yield plan_round(n, dataclasses.replace(params, threshold=t))
                except ConfigError:
                    break


def test_counting_argument_holds_for_every_accepted_parameter_combination() -> None:
    """2t > k + 1 + c, and the masked-input rule leaves fewer than t shares of the victim's
    seed outside its honest partners, the c colluders' included -- for every plan a
    semi-malicious config can produce -- while an honest client with all k neighbours still
    meets the rule, and needs no more live neighbours than the threshold."""
    seen = 0
    for plan in _accepted_plans():
        t, k, c = plan.threshold, plan.degree, plan.colluders
        partners = minimum_partners(plan, "semi_malicious")
        assert 2 * t > k + 1 + c, plan
        assert k + 1 + c - partners < t, plan
        assert t - 1 <= partners <= min(t, k), plan
        seen += 1
    assert seen > 500


def test_the_planner_agrees_with_the_counting_argument_when_the_rule_is_relaxed(
    monkeypatch,
) -> None:
    """The counting argument says the attack needs t holders of the victim's seed outside P.
    Relax the masked-input rule (test only) so the victim accepts |P| = k - t partners on the
    complete graph: then t of its neighbours lie outside P, the signed planner finds a plan
    that passes every check, consistency check included, and it recovers the victim. With the
    rule, that delivery is refused before anything is uploaded."""
    params = SecAggParams(threshold=6)
    server, truth = _server(10, params)
    plan = server.state.plan
    t, k = plan.threshold, plan.degree
    partners = choose_partners(server.graph, VICTIM, k - t)
    attack = plan_signed(server.graph, t, VICTIM, partners)
    assert attack.complete
    with pytest.raises(ProtocolAbort, match="fewer than the 5 it needs"):
        server.deliver(VICTIM, partners)
    relaxed, truth = _server(10, params)
    monkeypatch.setattr(masked_input, "minimum_partners", lambda plan, adversary: k - t)
    relaxed.deliver(VICTIM, partners)
    outcome = relaxed.run(attack)
    assert outcome.recovered is not None
    assert _within_quantization(outcome.recovered, truth[VICTIM], params)
