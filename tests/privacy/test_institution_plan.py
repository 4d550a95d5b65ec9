"""A run's distributed-DP plan: calibrated for the threshold's smallest survivor set less the
protected institution's own share and the c colluders' (secure aggregation's bound), no
amplification claimed, and an unreachable target or a survivor set that leaves no protecting
share refused as a config error naming the key."""

from __future__ import annotations

import pytest

from securefed.config import load_config
from securefed.errors import ConfigError
from securefed.plan_inputs import plan_inputs
from securefed.privacy.institution import InstitutionPrivacy, plan_for_run
from securefed.secagg import plan_round

ON = [
    "privacy.distributed.enabled=true",
    "partition.num_clients=50",
    "training.clients_per_round=15",
    "training.rounds=20",
]


def test_the_plan_is_calibrated_for_the_threshold_and_claims_no_amplification():
    cfg = load_config(overrides=ON)
    plan = plan_for_run(plan_inputs(cfg), 7_000)
    assert plan.min_survivors == plan_round(15, cfg.secure_aggregation.params()).threshold == 11
    assert plan.sample_rate == 1.0 and plan.rounds == 20 and plan.delta == 1e-5
    privacy = InstitutionPrivacy(cfg, 7_000)
    assert privacy.invitation_rate == pytest.approx(0.3)
    for r in range(20):  # the worst run the plan allows still meets the target
        privacy.record(r, plan.min_survivors)
    assert privacy.ledger.epsilon() <= plan.target_epsilon
    assert privacy.ledger.epsilon() == pytest.approx(plan.target_epsilon, rel=0.01)


@pytest.mark.parametrize(("cohort", "colluders"), [(20, 1), (40, 2)])
def test_the_plan_counts_out_the_colluders_of_the_secure_aggregation_plan(cohort, colluders):
    cfg = load_config(overrides=[*ON, f"training.clients_per_round={cohort}"])
    round_plan = plan_round(cohort, cfg.secure_aggregation.params())
    assert round_plan.graph == "complete" and round_plan.colluders == colluders
    plan = plan_for_run(plan_inputs(cfg), 7_000)
    assert plan.colluders == colluders and plan.min_survivors == round_plan.threshold
    privacy = InstitutionPrivacy(cfg, 7_000)
    for r in range(20):
        privacy.record(r, plan.min_survivors)
    assert [e.protecting_shares for e in privacy.ledger.events] == [
        plan.min_survivors - 1 - colluders
    ] * 20
    assert plan.target_epsilon * 0.99 <= privacy.ledger.epsilon() <= plan.target_epsilon
    assert privacy.report()["colluders"] == [colluders] * 20


def test_a_threshold_that_leaves_only_the_colluders_shares_is_a_config_error():
    """Threshold 2 of 20 against a curious server: the smallest survivor set is the protected
    institution and one other, which may be the colluder c = floor(0.05 x 20) = 1."""
    refused = [
        *ON,
        "training.clients_per_round=20",
        "secure_aggregation.adversary=curious",
        "secure_aggregation.threshold=2",
    ]
    with pytest.raises(ConfigError) as err:
        plan_for_run(plan_inputs(load_config(overrides=refused)), 7_000)
    assert err.value.key == "secure_aggregation.threshold" and err.value.value == 2
    for named in ("at least 3", "training.clients_per_round", "corrupt_fraction", "c = 1"):
        assert named in str(err.value)
    ok = plan_for_run(
        plan_inputs(load_config(overrides=[*refused[:-1], "secure_aggregation.threshold=3"])), 7_000
    )
    assert (ok.min_survivors, ok.colluders) == (3, 1)


def test_an_unreachable_target_is_a_config_error():
    cfg = load_config(overrides=[*ON, "secure_aggregation.bits=12"])
    with pytest.raises(ConfigError) as err:
        plan_for_run(plan_inputs(cfg), 1_000_000)
    assert err.value.key == "privacy.distributed.target_epsilon"


def test_a_resumed_run_with_another_plan_is_refused():
    saved = InstitutionPrivacy(load_config(overrides=ON), 7_000).to_json()
    other = InstitutionPrivacy(load_config(overrides=[*ON, "secure_aggregation.bits=18"]), 7_000)
    with pytest.raises(ConfigError, match="plan the run started with"):
        other.restore(saved)
