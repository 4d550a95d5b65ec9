"""Institution-level DP under add/remove on the config of record: the protected institution's
own noise share leaves with it and the c colluders the threat model allows know theirs, so in
a sum that n shares reached only n - 1 - c protect it.

The reported epsilon (the ledger of ``configs/distributed_dp.yaml``'s plan) is recomputed here
along a code path of its own: c as the threat model states it, floor(corrupt_fraction x
cohort size), from the config's numbers; Agarwal, Kairouz and Liu (NeurIPS 2021) Theorem 3.5
for the Skellam mechanism, written out per order with Python floats from the plan's
integer-domain sensitivities and noise, composed over the rounds, converted by dp-accounting's
RDP-to-epsilon (dp-accounting has no Skellam mechanism of its own). Cohorts are fixed-size, so
every round counts in full (no subsampling). Counting the institution's own share or a
colluder's in this recomputation gives a lower epsilon than the one reported.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
from dp_accounting.rdp.rdp_privacy_accountant import compute_epsilon

from securefed.config import load_config
from securefed.plan_inputs import plan_inputs
from securefed.privacy.display import epsilon_text
from securefed.privacy.distributed.events import INSTITUTION_PROTECTS, INSTITUTION_RELATION
from securefed.privacy.distributed.ledger import InstitutionLedger
from securefed.privacy.institution import plan_for_run
from securefed.run.setup import plan_sizes
from securefed.secagg import plan_round

ROOT = Path(__file__).resolve().parents[2]
ORDERS = [*range(2, 129), 256]


@pytest.fixture(scope="module")
def config():
    return load_config(str(ROOT / "configs/distributed_dp.yaml"))


@pytest.fixture(scope="module")
def plan(config):
    _, _, dimension = plan_sizes(config)
    return plan_for_run(plan_inputs(config), dimension)


@pytest.fixture(scope="module")
def colluders(config) -> int:
    """c as threat_model.md states it: floor(corrupt_fraction x k) of a cohort of k."""
    k, fraction = config.training.clients_per_round, config.secure_aggregation.corrupt_fraction
    return math.floor(fraction * k)


def theorem_3_5_epsilon(plan, shares_protecting: int) -> float:
    """Epsilon of ``plan.rounds`` Skellam rounds whose noise is ``shares_protecting`` shares."""
    mu = shares_protecting * plan.local_variance  # the variance of a sum of Skellams adds up
    d1, d2 = plan.l1_sensitivity, plan.l2_sensitivity
    rdp = [
        plan.rounds
        * (a * d2**2 / (2 * mu) + min(((2 * a - 1) * d2**2 + 6 * d1) / (4 * mu**2), 1.5 * d1 / mu))
        for a in ORDERS
    ]
    return float(compute_epsilon(ORDERS, rdp, plan.delta)[0])


def reported_epsilon(plan, arriving: int) -> float:
    ledger = InstitutionLedger(plan.delta, plan.target_epsilon)
    for r in range(plan.rounds):
        ledger.record(plan.event(r, arriving))
    return ledger.report()["epsilon"]


def test_the_plan_counts_out_the_colluders_secure_aggregation_is_secure_against(
    config, plan, colluders
):
    assert plan.mechanism == "skellam" and plan.sample_rate == 1.0
    assert plan.min_survivors == 18 and plan.cohort_size == 20  # the plan allows 18 to 20
    assert plan.colluders == colluders == 1
    # the complete graph's c: the bound the threshold 18 of 20 is secure against
    round_plan = plan_round(20, config.secure_aggregation.params())
    assert round_plan.graph == "complete" and round_plan.colluders == plan.colluders
    assert all(plan.event(0, n).colluders == colluders for n in (18, 19, 20))


@pytest.mark.parametrize("arriving", [18, 19, 20])
def test_reported_epsilon_is_theorem_3_5_without_the_own_and_the_colluders_shares(
    plan, colluders, arriving
):
    independent = theorem_3_5_epsilon(plan, arriving - 1 - colluders)
    reported = reported_epsilon(plan, arriving)
    assert reported == pytest.approx(independent, rel=1e-12)
    assert reported <= plan.target_epsilon
    if arriving == plan.min_survivors:  # the calibration point: tight, not loose
        assert reported >= 0.999 * plan.target_epsilon


@pytest.mark.parametrize("arriving", [18, 19, 20])
def test_counting_a_colluders_or_the_own_share_would_understate_epsilon(plan, colluders, arriving):
    reported = reported_epsilon(plan, arriving)
    assert colluders >= 1
    assert theorem_3_5_epsilon(plan, arriving - 1) < 0.98 * reported  # the colluder's counted
    assert theorem_3_5_epsilon(plan, arriving) < 0.95 * reported  # and the own as well


def test_one_share_fewer_than_the_plan_allows_is_past_the_target(plan, colluders):
    # 17 arriving (15 protecting), below the threshold: the calibration is not loose
    independent = theorem_3_5_epsilon(plan, 17 - 1 - colluders)
    assert reported_epsilon(plan, 17) == pytest.approx(independent, rel=1e-12)
    assert reported_epsilon(plan, 17) > plan.target_epsilon


def _flat(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("`", ""))


@pytest.mark.parametrize(
    "document", ["README.md", "threat_model.md", "docs/privacy/distributed-dp.md"]
)
def test_the_documents_quote_the_relation_and_what_it_protects_from_the_code(document):
    text = _flat((ROOT / document).read_text())
    assert _flat(INSTITUTION_RELATION) in text
    assert _flat(INSTITUTION_PROTECTS) in text


@pytest.mark.parametrize("document", ["README.md", "docs/privacy/distributed-dp.md"])
def test_the_documents_state_what_the_config_of_record_spends_when_all_20_arrive(plan, document):
    spent = epsilon_text(reported_epsilon(plan, 20))
    assert f"spends {spent} of 16" in _flat((ROOT / document).read_text())
