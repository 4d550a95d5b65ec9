"""Input canaries (black box) in a real run: carried as records, scored by the released
adapter's loss, audited, rescored by --verify; counted in nothing real.

One tiny DP-off run with 200 input canaries in institutions 0 and 2, built once; the coin and
the leak are checked on local training with a tiny random BERT (seconds).
"""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from audit_runs import PLAIN, TINY
from torch.utils.data import Subset, TensorDataset

from securefed.audit import verify_run, write_audit
from securefed.audit.empirical import one_run_lower_bound, one_shot_estimate
from securefed.config import load_config, validate
from securefed.errors import ConfigError
from securefed.privacy.canaries import CanaryPlan, input_canary_records, input_scores
from securefed.run.folder import CANARIES, PARTITION, RESULTS, RunFolder

INPUT = ["audit.canaries=200", "audit.canary_kind=input", "audit.canary_institutions=[0,2]"]


@pytest.fixture(scope="session")
def input_canary_run(tmp_path_factory):
    from securefed.run.simulate import simulate

    out = tmp_path_factory.mktemp("runs") / "input-canaries"
    cfg = load_config(overrides=["name=input-canaries", *TINY, *PLAIN, *INPUT])
    return simulate(cfg, out=str(out))[0]


def test_the_run_records_input_canaries_and_its_audit_verifies(input_canary_run, tmp_path):
    record = json.loads((input_canary_run / CANARIES).read_text())
    assert record["plan"]["kind"] == "input" and len(record["scores"]) == 200
    assert all(s < 0 for s in record["scores"])  # minus a cross-entropy
    audit = json.loads(
        (write_audit(input_canary_run, tmp_path / "audit") / "audit.json").read_text()
    )
    e = audit["empirical"]
    assert (e["canaries"], e["canary_kind"], e["plan"]["institutions"]) == (200, "input", [0, 2])
    assert e["claimed_epsilon"] == "inf" and e["epsilon_lower_bound"] >= 0
    assert "canaries_carried" in [f["code"] for f in audit["flags"]]
    assert audit["integrity"]["verified"]


def test_canaries_count_in_no_partition_size_and_no_accuracy(input_canary_run, plain_run):
    """The same partition, record for record, as the run without canaries; the reported
    accuracy is the final adapter's on the real test records (a setup without canaries)."""
    from securefed.run.setup import build_setup

    assert (input_canary_run / PARTITION).read_text() == (plain_run / PARTITION).read_text()
    folder = RunFolder(input_canary_run)
    results = json.loads((input_canary_run / RESULTS).read_text())
    cfg = load_config(folder.file("config.yaml"))
    final = folder.load_adapter(folder.checkpoint_rel(cfg.training.rounds - 1))
    assert build_setup(cfg).evaluate(final)["pooled"] == results["federated"]["pooled"]


@pytest.mark.parametrize(
    ("edit", "check"),
    [
        (lambda r: r["scores"].__setitem__(0, r["scores"][0] + 0.01), "canary scores"),
        (lambda r: r["plan"].__setitem__("seed", str(int(r["plan"]["seed"]) ^ 1)), "canary scores"),
        (lambda r: r.__setitem__("claimed_epsilon", 8.0), "canary claim"),
    ],
    ids=["score", "seed", "claim"],
)
def test_verify_rescores_input_canaries_and_detects_edits(input_canary_run, tmp_path, edit, check):
    copy = shutil.copytree(input_canary_run, tmp_path / "copy")
    assert verify_run(copy).ok  # the losses recomputed from config.yaml and the checkpoint
    path = copy / CANARIES
    record = json.loads(path.read_text())
    edit(record)
    path.write_text(json.dumps(record))
    assert check in [m.check for m in verify_run(copy).mismatches]


def test_input_canaries_are_records_of_carriers_in_every_round(monkeypatch):
    """Carriers train on their included input canaries (head-only rounds too); nobody else."""
    import securefed.run.setup as setup_module

    calls = {}

    def train_from(start, data, **kwargs):
        calls[kwargs["label"]] = kwargs["input_canaries"], kwargs["canaries"]

    plan = CanaryPlan("input", 40, (0, 2), seed=1)
    rows = TensorDataset(torch.arange(40))
    setup = SimpleNamespace(
        cfg=load_config(overrides=["training.linear_probe_rounds=1"]),
        canaries=plan,
        canary_rows=rows,
        client_train=[None] * 4,
        local_steps=lambda c: 1,
        train_from=train_from,
        bundle=SimpleNamespace(model=None),
    )
    monkeypatch.setattr(setup_module, "get_vector", lambda model: np.zeros(3, np.float32))
    for client in range(4):
        for round_index in (0, 1):
            setup_module.client_update(setup, client, np.zeros(3), round_index, None, None)
            carried, gradient = calls[f"client {client}"]
            assert gradient is None
            if client in (0, 2):
                assert carried.dataset is rows
                assert carried.indices == plan.included_at(client).tolist()
            else:
                assert carried is None


def _records_and_canaries(records: int, canaries: int, seed: int = 3):
    """Token rows of ``records`` records and of ``canaries`` input canaries (vocab 64)."""
    data = TensorDataset(
        torch.randint(1, 64, (records, 8), generator=torch.Generator().manual_seed(seed)),
        torch.ones(records, 8, dtype=torch.long),
        torch.zeros(records, 3, dtype=torch.long),
        torch.randint(0, 3, (records,), generator=torch.Generator().manual_seed(seed)),
    )
    plan = CanaryPlan("input", canaries, (0,), seed=seed)
    tokens, labels = input_canary_records(plan, vocab_size=64, length=8, num_labels=3)
    rows = TensorDataset(
        torch.from_numpy(tokens),
        torch.ones(canaries, 8, dtype=torch.long),
        torch.zeros(canaries, 3, dtype=torch.long),
        torch.from_numpy(labels),
    )
    return data, plan, rows


@pytest.mark.parametrize("private", [False, True], ids=["plain", "dp"])
def test_an_excluded_canary_is_never_in_a_batch_and_counts_are_records_only(private, monkeypatch):
    """Every batch is spied on: canary rows seen are all included (under DP at q = 1, every
    included one in every step); ``examples`` and ``mean_loss`` count the records only."""
    from test_canary_run import _tiny_bundle

    import securefed.model.training as training
    from securefed.privacy.plan import DPPlan

    records = 8
    data, plan, rows = _records_and_canaries(records, 40)
    canary_rows = {tuple(r) for r in rows.tensors[0].tolist()}
    seen: list[list[tuple]] = []
    record_losses: list[float] = []
    example_losses = training.example_losses

    def spied(bundle, batch):
        losses = example_losses(bundle, batch)
        batch_rows = [tuple(r) for r in batch[0].tolist()]
        seen.append([r for r in batch_rows if r in canary_rows])
        record_losses.extend(
            float(x)
            for r, x in zip(batch_rows, losses.detach(), strict=True)
            if r not in canary_rows
        )
        return losses

    monkeypatch.setattr(training, "example_losses", spied)
    dp = DPPlan(
        noise_multiplier=0.01,
        max_grad_norm=1.0,
        secure_mode=False,
        noise_source="aes_ctr",
        optimizer="sgd",
        lr=None,
        momentum=0.0,
    )
    included = plan.included_at(0).tolist()
    stats = training.train_local(
        _tiny_bundle(),
        data,
        steps=3,
        batch_size=records,
        lr=0.05,
        weight_decay=0.0,
        generator=torch.Generator().manual_seed(0),
        dp=dp if private else None,
        input_canaries=Subset(rows, included),
    )
    allowed = {tuple(rows.tensors[0][i].tolist()) for i in included}
    assert seen and all(set(batch) <= allowed for batch in seen)
    assert stats.examples == len(record_losses)
    assert stats.mean_loss == pytest.approx(np.mean(record_losses), rel=1e-6)
    if private:  # q = B / records = 1: every record and every included canary, every step
        assert stats.sample_rate == 1.0 and stats.examples == 3 * records
        assert all(set(batch) == allowed for batch in seen)
    else:  # shuffled passes over records and canaries together: steps count records' batches
        assert sum(len(b) for b in seen) + stats.examples == 3 * records


def test_without_dp_trained_canaries_lose_less_and_the_bound_is_positive():
    """Black box at small scale: a tiny random BERT, 16 records and 200 input canaries, 150
    plain steps. The included canaries' loss falls below the excluded ones' and the one-run
    bound is above 0 (measured 0.13 here; gradient canaries reach 1.5+ with fewer steps)."""
    from test_canary_run import _tiny_bundle

    from securefed.model.input_canaries import canary_losses
    from securefed.model.training import train_local

    bundle = _tiny_bundle()
    data, plan, rows = _records_and_canaries(16, 200)
    train_local(
        bundle,
        data,
        steps=150,
        batch_size=16,
        lr=0.05,
        weight_decay=0.0,
        generator=torch.Generator().manual_seed(0),
        input_canaries=Subset(rows, plan.included_at(0).tolist()),
    )
    scores = input_scores(canary_losses(bundle, rows, 64))
    inside, outside = scores[plan.included], scores[~plan.included]
    assert inside.mean() > outside.mean()
    assert one_run_lower_bound(scores, plan.included, 1e-5).epsilon > 0
    assert one_shot_estimate(scores, plan.included, 1e-5).epsilon > 1


@pytest.mark.parametrize(
    ("audit", "key"),
    [
        ({"canaries": 10, "canary_kind": "input"}, "audit.canaries"),
        ({"canaries": 100, "canary_kind": "inputs"}, "audit.canary_kind"),
        ({"canaries": 100, "canary_kind": "input", "canary_institutions": []}, "institutions"),
        ({"canaries": 100, "canary_kind": "input", "canary_institutions": [1, 1]}, "institutions"),
        ({"canaries": 100, "canary_kind": "input", "canary_institutions": [4]}, "institutions"),
    ],
)
def test_input_canary_config_errors_are_one_line(audit, key):
    with pytest.raises(ConfigError, match=key) as err:
        validate({"audit": audit})
    assert "\n" not in str(err.value)
