"""Distributed DP in a whole simulated run: dropouts at every stage of one round, the ledger
accounts the noise shares that reached the sum less the own and the colluder's, the audit
recomputes the epsilon and the colluder bound, and a run that is killed and resumed records
each round once."""

from __future__ import annotations

import json
import shutil

import pytest

from securefed.audit import build_audit, verify_run
from securefed.config import load_config
from securefed.privacy.distributed.accounting import institution_epsilon
from securefed.privacy.distributed.events import event_from_json
from securefed.privacy.distributed.parameters import DistributedDpPlan
from securefed.run.resume import privacy_before
from securefed.run.setup import load_and_partition
from securefed.run.simulate import simulate

COHORT = 8
DROPS = {  # one institution drops before each stage of round 0 (ids among the 8 invited)
    "advertise_keys": 0,
    "share_keys": 1,
    "masked_input": 2,
    "consistency_check": 3,
    "unmasking": 4,
}
TINY_DDP = [
    "task.synthetic.num_examples=120",
    "training.rounds=2",
    "training.local_steps=1",
    "training.batch_size=8",
    "model.max_length=32",
    "model.adapter_layers=top-1",
    "model.target_modules=[query,value]",
    "model.lora_r=2",
    f"partition.num_clients={COHORT}",
    f"training.clients_per_round={COHORT}",
    "baselines=[]",
    "privacy.distributed.enabled=true",
    "secure_aggregation.adversary=curious",
    "secure_aggregation.corrupt_fraction=0.125",  # c = 1 colluder among the 8
    "secure_aggregation.dropout_budget=0.7",  # threshold 3 of 8: five drops leave enough
    *(f"secure_aggregation.dropout.{stage}=[{cid}]" for stage, cid in DROPS.items()),
    "secure_aggregation.dropout.rounds=[0]",
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp") / "run"
    simulate(load_config(overrides=TINY_DDP), out=str(out))
    return out


def _ledgers(run_dir) -> dict:
    return json.loads((run_dir / "privacy/ledgers.json").read_text())


def test_dropouts_at_every_stage_are_accounted_with_the_survivors_noise(run_dir):
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    # the two institutions that left after masking their input are in the sum (recovered)
    assert metrics[0]["aggregated"] == [3, 4, 5, 6, 7]
    assert metrics[1]["aggregated"] == list(range(COHORT))
    saved = _ledgers(run_dir)["institution"]
    plan = DistributedDpPlan(**saved["plan"])
    assert (plan.min_survivors, plan.colluders) == (3, 1)
    events = [event_from_json(e) for e in saved["ledger"]["events"]]
    assert [e.noise_contributors for e in events] == [5, COHORT]
    assert [e.protecting_shares for e in events] == [5 - 2, COHORT - 2]
    reported = json.loads((run_dir / "results.json").read_text())["privacy"]["institution"]
    survivors = institution_epsilon([plan.event(0, 5), plan.event(1, COHORT)], plan.delta)
    assert reported["epsilon"] == pytest.approx(survivors, rel=1e-12)
    for claimed in ([COHORT, COHORT], [3, 3]):  # the invited or the calibration point: wrong
        wrong = [plan.event(r, n) for r, n in enumerate(claimed)]
        assert institution_epsilon(wrong, plan.delta) != pytest.approx(survivors, rel=1e-3)
    transcript = json.loads((run_dir / "secagg/round-0000.json").read_text())
    assert transcript["distributed_dp"]["noise_contributors"] == 5
    assert transcript["dropouts"] == {stage: [cid] for stage, cid in DROPS.items()}


def _count_the_colluder(run_dir) -> None:
    """Rewrite the run as if the colluder's share protected: c = 0 in the plan and every event,
    and the epsilon (and events) in results.json recomputed to match, so only c is wrong."""
    ledgers = _ledgers(run_dir)
    institution = ledgers["institution"]
    institution["plan"]["colluders"] = 0
    for e in institution["ledger"]["events"]:
        e["colluders"] = 0
    (run_dir / "privacy/ledgers.json").write_text(json.dumps(ledgers))
    results = json.loads((run_dir / "results.json").read_text())
    events = institution["ledger"]["events"]
    reported = results["privacy"]["institution"]
    lower = institution_epsilon([event_from_json(e) for e in events], reported["delta"])
    assert lower < reported["epsilon"]
    reported.update(events=events, epsilon=lower)
    (run_dir / "results.json").write_text(json.dumps(results))


def test_verify_recomputes_the_institution_epsilon_and_catches_edits(run_dir, tmp_path):
    assert verify_run(run_dir).ok
    for edit in ("contributors", "epsilon", "colluders"):
        copy = tmp_path / edit
        shutil.copytree(run_dir, copy)
        if edit == "contributors":  # claim the full cohort's noise in the round with dropouts
            ledgers = _ledgers(copy)
            ledgers["institution"]["ledger"]["events"][0]["noise_contributors"] = COHORT
            (copy / "privacy/ledgers.json").write_text(json.dumps(ledgers))
        elif edit == "colluders":
            _count_the_colluder(copy)
        else:
            results = json.loads((copy / "results.json").read_text())
            results["privacy"]["institution"]["epsilon"] *= 0.9
            (copy / "results.json").write_text(json.dumps(results))
        found = {m.check for m in verify_run(copy).mismatches}
        expected = {
            "contributors": "noise contributors = institutions aggregated",
            "epsilon": "institution-level epsilon",
            "colluders": "institution-level colluders = the config's bound",
        }[edit]
        assert expected in found


def test_the_verdict_states_the_institution_level_epsilon_not_dp_off(run_dir):
    """Sample-level DP is off in this run; the audit's first line must not say "DP OFF" as if
    nothing protected the institutions, and must give the institution-level epsilon."""
    audit = build_audit(run_dir)
    epsilon = json.loads((run_dir / "results.json").read_text())["privacy"]["institution"][
        "epsilon"
    ]
    assert "DP OFF" not in audit["verdict"]
    assert "sample-level DP off" in audit["verdict"]
    assert "institution-level epsilon <= " in audit["verdict"]
    shown = audit["verdict"].split("institution-level epsilon <= ")[1].split(" ")[0]
    assert float(shown) >= epsilon  # rounded up, never down
    assert float(shown) == pytest.approx(epsilon, rel=1e-2)


def test_resume_drops_the_uncommitted_rounds_institution_events(run_dir):
    """A kill after round 1 wrote the ledgers but before state.json committed it: resuming
    at round 1 keeps round 0's event only, so round 1 is not charged twice."""
    saved = _ledgers(run_dir)
    restored = privacy_before(saved, next_round=1)
    assert [e["round_index"] for e in restored["institution"]["ledger"]["events"]] == [0]
    assert restored["institution"]["plan"] == saved["institution"]["plan"]


def _json_values(obj):
    yield obj
    children = obj.values() if isinstance(obj, dict) else obj if isinstance(obj, list) else ()
    for child in children:
        yield from _json_values(child)


def test_a_run_under_institution_level_dp_writes_no_record_derived_count(run_dir):
    """DP-SGD is off here: institution-level DP alone withholds what is counted from the
    training records, from every file of the run folder."""
    cfg = load_config(overrides=TINY_DDP)
    assert not cfg.privacy.dp.enabled
    task, _, part = load_and_partition(cfg)
    full = part.summary(list(task.label_names))  # what a run without DP publishes
    train = [c["train_labels"] for c in full["clients"]]
    test = [c["test_labels"] for c in full["clients"]]
    files = [f for f in run_dir.rglob("*") if f.is_file()]
    assert len(files) > 10
    histograms = [h for h, t in zip(train, test, strict=True) if h != t]
    for f in files:
        raw = f.read_bytes()
        for key in (b"train_size", b"train_labels", b"label_skew"):
            assert key not in raw, (f, key)
        if f.suffix in (".json", ".jsonl"):
            lines = raw.decode().splitlines() if f.suffix == ".jsonl" else [raw.decode()]
            for value in (v for line in lines for v in _json_values(json.loads(line))):
                if isinstance(value, dict):  # the pooled count, or a training histogram
                    assert "num_examples" not in value, f
                    assert value not in histograms, (f, value)
    published = json.loads((run_dir / "partition.json").read_text())
    assert "training_counts" in published and "withheld" in published["training_counts"]
