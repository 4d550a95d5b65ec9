"""Canaries in a real run: carried, scored, audited, verified; counted in nothing real.

One tiny DP-off run with 200 gradient canaries in institutions 0 and 2 (about 10 s), built
once; the rest are unit checks of the seams (local training, who carries, Flower, resume),
and two DP runs of configs/dp.yaml's recipe on the tiny task, honest and without noise
(about 30 s each).
"""

from __future__ import annotations

import functools
import json
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from audit_runs import TINY

from securefed.audit import build_audit, verify_audit, verify_run
from securefed.audit.verify import verify_records
from securefed.config import load_config
from securefed.errors import ConfigError, RunFolderError
from securefed.privacy.canaries import CanaryPlan, canary_blocks, canary_coordinates
from securefed.privacy.canary_scores import gradient_scores
from securefed.privacy.canary_trace import CanaryTrace, CarriedCanaries
from securefed.run.folder import CANARIES, CANARY_TRACE, PARTITION, RunFolder


def _copy(run_dir, tmp_path):
    return shutil.copytree(run_dir, tmp_path / "copy")


def _edit_canaries(run_dir, edit) -> None:
    path = run_dir / CANARIES
    record = json.loads(path.read_text())
    edit(record)
    path.write_text(json.dumps(record))


def test_without_dp_the_canaries_show_a_leak_and_verify(canary_audit):
    audit = json.loads((canary_audit / "audit.json").read_text())
    e = audit["empirical"]
    assert (e["canaries"], e["canary_kind"], e["plan"]["institutions"]) == (200, "gradient", [0, 2])
    assert e["claimed_epsilon"] == "inf" and not e["lower_bound_exceeds_claim"]
    # Without DP each canary's score is exactly GRADIENT_NORM_FACTOR x C for each step that
    # drew it: an excluded one scores 0, an included one 0 when its carrier's 2 steps a round
    # (of 5 batches an epoch) never drew it, else 1000 or 2000.
    scores, coins = np.array(e["scores"]), CanaryPlan.from_json(e["plan"]).included
    np.testing.assert_allclose(scores[~coins], 0.0, atol=1e-3)
    drawn = np.round(scores[coins] / 1000.0)
    np.testing.assert_allclose(scores[coins], 1000.0 * drawn, atol=1e-2)
    assert set(drawn.tolist()) <= {0.0, 1.0, 2.0, 3.0, 4.0} and drawn.mean() > 0.5
    codes = [f["code"] for f in audit["flags"]]
    assert "canaries_carried" in codes and "empirical_leak" not in codes
    assert audit["integrity"]["verified"]
    assert verify_audit(canary_audit).ok


def test_the_audit_shows_the_figures_beside_the_claim_with_the_plot(canary_audit):
    page = (canary_audit / "audit.html").read_text()
    section = page[page.index("Empirical privacy") :]
    assert "one-run lower bound" in section and "claimed epsilon" in section
    assert "Observer: the scores read each carrier's own privatized gradient" in section
    assert '<img src="data:image/png;base64,' in section and 'alt="canary scores"' in section
    assert (canary_audit / "plots" / "canary_scores.png").is_file()


def test_canaries_count_in_no_partition_size(canary_run, plain_run):
    """Same seed and config but the canaries: the same partition, record for record."""
    assert (canary_run / PARTITION).read_text() == (plain_run / PARTITION).read_text()


def test_recorded_scores_are_the_traces_scores(canary_run):
    record = json.loads((canary_run / CANARIES).read_text())
    plan = CanaryPlan.from_json(record["plan"])
    trace = CanaryTrace.from_arrays(plan, RunFolder(canary_run).load_arrays(CANARY_TRACE))
    for carrier in (0, 2):  # 2 steps in each of 2 rounds, at each of its 100 canaries
        assert trace.steps(carrier)[0].shape == (4, 100)
    np.testing.assert_allclose(record["scores"], gradient_scores(plan, trace), rtol=1e-12)


def _edit_trace(run_dir, name: str) -> None:
    folder = RunFolder(run_dir)
    arrays = folder.load_arrays(CANARY_TRACE)
    arrays[name] = arrays[name] + 1.0
    folder.save_arrays(CANARY_TRACE, arrays)


@pytest.mark.parametrize("name", ["released/0", "records/2"])
def test_verify_fails_when_the_trace_is_edited(canary_run, tmp_path, name):
    copy = _copy(canary_run, tmp_path)
    _edit_trace(copy, name)
    mismatches = verify_run(copy).mismatches
    assert {"canary scores", "sealed file sha256"} <= {m.check for m in mismatches}


@pytest.mark.parametrize(
    ("edit", "check"),
    [
        (lambda r: r["scores"].__setitem__(0, r["scores"][0] + 0.01), "canary scores"),
        (lambda r: r["plan"].__setitem__("seed", str(int(r["plan"]["seed"]) ^ 1)), "canary scores"),
        (lambda r: r.__setitem__("claimed_epsilon", 8.0), "canary claim"),
        (lambda r: r["plan"].__setitem__("count", 100), "canaries"),
        (lambda r: r["plan"]["blocks"].pop(), "canary blocks"),
    ],
    ids=["score", "seed", "claim", "count", "blocks"],
)
def test_verify_fails_when_canaries_json_is_edited(canary_run, tmp_path, edit, check):
    copy = _copy(canary_run, tmp_path)
    assert verify_run(copy).ok
    _edit_canaries(copy, edit)
    assert check in [m.check for m in verify_run(copy).mismatches]
    audit = build_audit(copy)  # an edited file never stops the audit: it flags it
    assert "verification_failed" in [f["code"] for f in audit["flags"]]


def test_verify_fails_when_canaries_json_is_missing(canary_run, tmp_path):
    copy = _copy(canary_run, tmp_path)
    (copy / CANARIES).unlink()
    assert {m.where for m in verify_records(copy).mismatches} == {CANARIES}  # and its seal
    assert "never scored" in build_audit(copy)["empirical"]["note"]


def test_verify_fails_when_the_audit_folder_figures_are_edited(canary_audit, tmp_path):
    copy = shutil.copytree(canary_audit, tmp_path / "audit")
    path = copy / "audit.json"
    audit = json.loads(path.read_text())
    audit["empirical"]["epsilon_lower_bound"] = 0.5
    path.write_text(json.dumps(audit))
    recorded = [m.recorded for m in verify_audit(copy).mismatches]
    assert any("epsilon_lower_bound" in r for r in recorded)


def test_a_run_with_canaries_cannot_be_resumed(canary_run, tmp_path):
    from securefed.run.simulate import simulate

    with pytest.raises(RunFolderError, match="canaries"):
        simulate(resume=str(_copy(canary_run, tmp_path)))


def test_flower_refuses_canaries():
    from securefed.flower.server_app import run_flower_federation

    cfg = load_config(overrides=["audit.canaries=100"])
    with pytest.raises(ConfigError, match="audit.canaries"):
        run_flower_federation(None, cfg, None, 0)  # type: ignore[arg-type]


def test_only_carriers_train_with_canaries_and_never_in_head_only_rounds(monkeypatch):
    import securefed.run.setup as setup_module

    calls = {}

    def train_from(start, data, **kwargs):
        calls[kwargs["label"]] = kwargs["canaries"]

    plan = CanaryPlan("gradient", 40, (0, 2), seed=1, blocks=((0, 8, 8),))
    cfg = load_config(overrides=["training.linear_probe_rounds=1"])
    setup = SimpleNamespace(
        cfg=cfg,
        canaries=plan,
        canary_trace=CanaryTrace(plan),
        client_train=[None] * 4,
        local_steps=lambda c: 1,
        train_from=train_from,
        bundle=SimpleNamespace(model=None),
    )
    monkeypatch.setattr(setup_module, "get_vector", lambda model: np.zeros(3, np.float32))
    for client in range(4):
        for round_index in (0, 1):
            calls.clear()
            setup_module.client_update(
                setup, client, np.zeros(3, np.float32), round_index, None, None
            )
            carried = calls[f"client {client}"]
            carries = client in (0, 2) and round_index == 1
            expected = CarriedCanaries(plan, client, setup.canary_trace) if carries else None
            assert carried == expected


def _tiny_bundle():
    from peft import LoraConfig, get_peft_model
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    bert = BertForSequenceClassification(
        BertConfig(
            vocab_size=64,
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            max_position_embeddings=16,
            num_labels=3,
        )
    )
    model = get_peft_model(bert, LoraConfig(task_type="SEQ_CLS", r=4, target_modules=["query"]))
    return SimpleNamespace(model=model, kind="encoder")


@pytest.mark.parametrize("private", [False, True], ids=["plain", "dp"])
def test_local_training_carries_the_canaries_and_counts_only_records(private):
    """q = 1: every included canary joins every step; ``examples`` counts the 8 records only."""
    from securefed.model.adapters import get_vector
    from securefed.model.training import train_local
    from securefed.privacy.plan import DPPlan

    bundle = _tiny_bundle()
    records = 8
    data = torch.utils.data.TensorDataset(
        torch.randint(1, 64, (records, 8)),
        torch.ones(records, 8, dtype=torch.long),
        torch.zeros(records, 3, dtype=torch.long),
        torch.randint(0, 3, (records,)),
    )
    trainable = [(n, p) for n, p in bundle.model.named_parameters() if p.requires_grad]
    names, shapes = zip(*((n, tuple(p.shape)) for n, p in trainable), strict=True)
    plan = CanaryPlan("gradient", 40, (0,), seed=2, blocks=canary_blocks(names, shapes, None))
    dp = DPPlan(
        noise_multiplier=0.01,
        max_grad_norm=1.0,
        secure_mode=False,
        noise_source="aes_ctr",
        optimizer="sgd",
        lr=None,
        momentum=0.0,
    )
    initial = get_vector(bundle.model)
    stats = train_local(
        bundle,
        data,
        steps=3,
        batch_size=records,
        lr=0.05,
        weight_decay=0.0,
        generator=torch.Generator().manual_seed(0),
        dp=dp if private else None,
        canaries=CarriedCanaries(plan, 0),
    )
    assert stats.examples == 3 * records
    if private:
        assert stats.sample_rate == 1.0  # B / (records), not B / (records + canaries)
    coordinates, signs = canary_coordinates(plan)
    moved = signs * (initial - get_vector(bundle.model))[coordinates]  # against each gradient
    inside, outside = moved[plan.included], moved[~plan.included]
    assert np.mean(inside[:, None] > outside[None, :]) > 0.9  # AUC: the canaries moved it


# configs/dp.yaml's DP recipe on the tiny task: SGD with momentum, FFA-LoRA on the top layer's
# query and value, canaries in the query's B, a fixed sigma (no calibration): about 30 s a run.
DP_RECIPE = [
    "privacy.dp.enabled=true",
    "privacy.dp.noise_multiplier=4.0",  # claims epsilon 3.48 at delta 1e-5
    "training.local_steps=8",
    "training.batch_size=16",  # q = 1/2: every canary sampled about 8 times
    "training.dp_optimizer=sgd",
    "training.dp_lr=4.0",
    "model.adapter=ffa_lora",
    "model.adapter_layers=top-1",
    "model.target_modules=[query,value]",
    "audit.canary_parameters=[query.lora_B]",
    "secure_aggregation.enabled=false",
    "baselines=[]",
    "audit.canaries=1000",
]


@pytest.mark.parametrize(("noise_scale", "fires"), [(1.0, False), (0.1, True)])
def test_the_audit_catches_a_tenth_of_the_noise_and_verifies(tmp_path, noise_scale, fires):
    """DP runs with 1000 canaries: honest noise stays below the claim; a tenth of the noise
    (the ledger still records the full sigma) fires the critical flag: 4.1-4.6 against 3.48
    in simulation of 16 steps at q = 1/2 (configs/dp.yaml's figures: benchmarks/
    canary_audit.py). Either way every score recomputes from the run's canary trace
    (``verify_run``), and a trace with a step left out disagrees with the ledger."""
    import securefed.privacy.dp_sgd as dp_sgd
    from securefed.run.simulate import simulate

    scaled = functools.partial(dp_sgd.dp_training, noise_scale_for_testing=noise_scale)
    cfg = load_config(overrides=["name=noise", *TINY, *DP_RECIPE])
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(dp_sgd, "dp_training", scaled)
        run_dir, _ = simulate(cfg, out=str(tmp_path / "run"))
    assert verify_run(run_dir).ok
    audit = build_audit(run_dir)
    e = audit["empirical"]
    assert float(e["claimed_epsilon"]) == pytest.approx(3.48, abs=0.01)  # the ledger's claim
    assert e["lower_bound_exceeds_claim"] is fires
    assert ("empirical_leak" in [f["code"] for f in audit["flags"]]) is fires
    folder = RunFolder(run_dir)  # a trace with a step left out no longer matches the ledger
    arrays = folder.load_arrays(CANARY_TRACE)
    folder.save_arrays(CANARY_TRACE, {k: v[:-1] for k, v in arrays.items()})
    assert "canary trace steps" in [m.check for m in verify_run(run_dir).mismatches]
