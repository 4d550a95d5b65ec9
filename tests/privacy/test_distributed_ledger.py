"""The institution-level ledger: survivors' noise is what counts, JSON round trips and an
independent recomputation from the events gives the reported epsilon."""

from __future__ import annotations

import dataclasses
import json

import pytest

from securefed.errors import RunFolderError
from securefed.privacy.distributed.accounting import institution_epsilon
from securefed.privacy.distributed.events import event_from_json
from securefed.privacy.distributed.ledger import InstitutionLedger
from securefed.privacy.distributed.parameters import plan_distributed_dp


@pytest.fixture(scope="module")
def plan():
    return plan_distributed_dp(
        mechanism="skellam",
        target_epsilon=3.0,
        delta=1e-5,
        clip_norm=1.0,
        bits=20,
        dimension=50_000,
        cohort_size=15,
        min_survivors=10,
        colluders=0,
        sample_rate=0.3,
        rounds=10,
    )


def test_report_is_recomputable_from_the_json_events(plan):
    ledger = InstitutionLedger(plan.delta, plan.target_epsilon)
    for r, survivors in enumerate([15, 14, 10, 12, 15, 11, 13, 15, 10, 15]):
        ledger.record(plan.event(r, survivors))
    report = json.loads(json.dumps(ledger.report()))
    recomputed = institution_epsilon([event_from_json(e) for e in report["events"]], plan.delta)
    assert report["epsilon"] == pytest.approx(recomputed, rel=1e-12)
    assert report["epsilon"] < plan.target_epsilon  # at least min_survivors every round
    # never less than the continuous Gaussian of the same variance; here (large variance) the
    # whole gap is the generic subsampling bound: without subsampling the two agree
    assert report["gaussian_reference_epsilon"] <= report["epsilon"]
    unsampled = InstitutionLedger(
        plan.delta, events=[dataclasses.replace(e, sample_rate=1.0) for e in ledger.events]
    )
    assert unsampled.epsilon() == pytest.approx(unsampled.gaussian_reference_epsilon(), rel=1e-6)
    restored = InstitutionLedger.from_json(json.loads(json.dumps(ledger.to_json())))
    assert restored.events == ledger.events and restored.epsilon() == ledger.epsilon()


def test_a_round_below_the_calibration_point_shows_in_epsilon(plan):
    full = InstitutionLedger(plan.delta, events=[plan.event(r, 10) for r in range(10)])
    short = InstitutionLedger(plan.delta, events=[plan.event(r, 10 if r else 6) for r in range(10)])
    assert short.epsilon() > full.epsilon()


def test_rounds_are_recorded_once_in_order_and_bad_json_is_refused(plan):
    ledger = InstitutionLedger(plan.delta, events=[plan.event(3, 12)])
    with pytest.raises(ValueError, match="in order"):
        ledger.record(plan.event(3, 12))
    obj = ledger.to_json()
    with pytest.raises(RunFolderError, match="keys"):
        InstitutionLedger.from_json({**obj, "extra": 1})
    with pytest.raises(RunFolderError, match="format"):
        InstitutionLedger.from_json({**obj, "format": "securefed.privacy-ledger/1"})
    with pytest.raises(RunFolderError, match="delta"):
        InstitutionLedger.from_json({**obj, "delta": 2.0})
