"""The per-institution ledger: persists across rounds and resumes, never understates epsilon."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from securefed.errors import RunFolderError
from securefed.privacy.accounting import make_accountant, to_dp_event
from securefed.privacy.events import PoissonGaussianEvent
from securefed.privacy.ledger import (
    PrivacyLedger,
    calibrate_noise_multiplier,
    recompute_epsilon,
    would_exceed,
)

DELTA = 1e-5
# Three heterogeneous rounds (sigma and q change), as a client's rounds may.
ROUNDS = [(1.3, 0.05, 40), (1.3, 0.05, 40), (2.0, 0.08, 25)]


def _fresh_accountant_epsilon(rounds, accountant="pld"):
    """One accountant fed every round's event, the way a single long run would be accounted."""
    events = [PoissonGaussianEvent(s, q, t, r) for r, (s, q, t) in enumerate(rounds)]
    return make_accountant(accountant).compose(to_dp_event(events)).get_epsilon(DELTA)


def test_ledger_after_rounds_equals_one_accountant_fed_all_events_across_resume():
    ledger = PrivacyLedger(client_id=3, delta=DELTA, target_epsilon=10.0)
    ledger.record(noise_multiplier=1.3, sample_rate=0.05, steps=40, round_index=0)
    # the run stops and resumes: the ledger comes back from its JSON text, not from memory
    resumed = PrivacyLedger.from_json(json.loads(json.dumps(ledger.to_json())))
    for r, (s, q, t) in enumerate(ROUNDS[1:], start=1):
        resumed.record(noise_multiplier=s, sample_rate=q, steps=t, round_index=r)
    for accountant in ("pld", "rdp"):
        assert resumed.epsilon(accountant) == _fresh_accountant_epsilon(ROUNDS, accountant)
    assert resumed.epsilon() > _fresh_accountant_epsilon(ROUNDS[1:])  # round 0 was not reset
    assert resumed.events == tuple(
        PoissonGaussianEvent(s, q, t, r) for r, (s, q, t) in enumerate(ROUNDS)
    )


def test_auditor_recomputes_report_from_the_json_alone():
    ledger = PrivacyLedger(client_id=0, delta=DELTA)
    for r, (s, q, t) in enumerate(ROUNDS):
        ledger.record(noise_multiplier=s, sample_rate=q, steps=t, round_index=r)
    report = ledger.report()
    on_disk = json.loads(json.dumps(ledger.to_json()))
    assert report["epsilon"] == recompute_epsilon(on_disk["events"], on_disk["delta"], "pld")
    assert report["accountant"].startswith("pld (dp-accounting")
    assert set(report["cross_checks"]) == {"rdp", "prv"}
    assert report["cross_checks"]["prv"] == pytest.approx(report["epsilon"], rel=0.02)
    assert report["cross_checks"]["rdp"] >= report["epsilon"]
    assert report["steps"] == 105 and report["rounds"] == [0, 1, 2]
    assert report["noise_multiplier"] is None and report["sample_rate"] is None  # they varied
    assert report["all_rounds_private"] is True
    assert any("secure_mode" in c for c in report["caveats"])


def test_non_private_round_makes_epsilon_infinite_in_a_json_safe_report():
    ledger = PrivacyLedger(client_id=1, delta=DELTA, target_epsilon=8.0)
    ledger.record(noise_multiplier=1.0, sample_rate=0.1, steps=10, round_index=0)
    ledger.record_non_private(steps=10, round_index=1)
    assert ledger.epsilon() == math.inf
    report = ledger.report(accountant="rdp")
    assert report["epsilon"] == "inf" and report["cross_checks"] == {"pld": "inf", "prv": "inf"}
    assert report["all_rounds_private"] is False
    json.dumps(report, allow_nan=False)  # strict JSON
    assert not ledger.can_afford(noise_multiplier=5.0, sample_rate=0.01, steps=1)


@settings(max_examples=5, deadline=None)
@given(
    rounds=st.lists(
        st.tuples(st.floats(0.8, 3.0), st.floats(0.01, 0.2), st.integers(1, 30)),
        min_size=1,
        max_size=3,
    )
)
def test_epsilon_only_grows_with_rounds(rounds):
    ledger = PrivacyLedger(client_id=0, delta=DELTA)
    previous = ledger.epsilon()
    assert previous == 0.0
    for r, (s, q, t) in enumerate(rounds):
        ledger.record(noise_multiplier=s, sample_rate=q, steps=t, round_index=r)
        current = ledger.epsilon()
        assert current >= previous
        previous = current


def test_calibrated_run_fits_its_budget_and_the_next_round_is_refused():
    rounds, steps, q, target = 3, 10, 0.1, 3.0
    sigma = calibrate_noise_multiplier(target, DELTA, q, rounds * steps)
    ledger = PrivacyLedger(client_id=2, delta=DELTA, target_epsilon=target)
    for r in range(rounds):
        assert ledger.can_afford(noise_multiplier=sigma, sample_rate=q, steps=steps)
        ledger.record(noise_multiplier=sigma, sample_rate=q, steps=steps, round_index=r)
    assert ledger.epsilon() <= target
    assert not ledger.can_afford(noise_multiplier=sigma, sample_rate=q, steps=steps)
    nxt = PoissonGaussianEvent(sigma, q, steps, rounds)
    assert would_exceed(ledger.events, nxt, target_epsilon=target, delta=DELTA)
    assert ledger.epsilon_after(noise_multiplier=sigma, sample_rate=q, steps=steps) > target


def test_record_always_records_even_past_the_budget():
    ledger = PrivacyLedger(client_id=0, delta=DELTA, target_epsilon=0.5)
    ledger.record(noise_multiplier=0.6, sample_rate=0.5, steps=20, round_index=0)
    assert ledger.epsilon() > 0.5 and len(ledger.events) == 1


def test_rounds_are_recorded_once_and_in_order():
    ledger = PrivacyLedger(client_id=0, delta=DELTA)
    ledger.record(noise_multiplier=1.0, sample_rate=0.1, steps=5, round_index=2)
    with pytest.raises(ValueError, match="recorded once, in order"):
        ledger.record(noise_multiplier=1.0, sample_rate=0.1, steps=5, round_index=2)
    with pytest.raises(ValueError, match="recorded once, in order"):
        ledger.record_non_private(steps=5, round_index=1)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda o: o.pop("events"),
        lambda o: o.update(format="securefed.privacy-ledger/0"),
        lambda o: o.update(neighbouring_relation="replace_one"),
        lambda o: o["events"].append(
            {
                "kind": "poisson_gaussian",
                "noise_multiplier": -1.0,
                "sample_rate": 0.1,
                "steps": 1,
                "round_index": 9,
            }
        ),
        lambda o: o["events"].append(dict(o["events"][0])),  # the same round twice
    ],
)
def test_malformed_ledger_json_is_refused(mutate):
    ledger = PrivacyLedger(client_id=0, delta=DELTA)
    ledger.record(noise_multiplier=1.0, sample_rate=0.1, steps=5, round_index=0)
    obj = json.loads(json.dumps(ledger.to_json()))
    mutate(obj)
    with pytest.raises(RunFolderError):
        PrivacyLedger.from_json(obj)
