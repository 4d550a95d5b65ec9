"""Canaries: secret coins, directions, the DP-SGD seam, and an audit that can fail."""

from __future__ import annotations

import dp_accounting
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from securefed.audit.empirical_report import empirical_flags, empirical_section
from securefed.privacy.canaries import (
    GRADIENT_NORM_FACTOR,
    CanaryPlan,
    canary_direction,
    gradient_scores,
    input_canary_records,
    input_scores,
    plan_canaries,
)
from securefed.privacy.dp_canary_rows import GradientCanaryRows
from securefed.privacy.dp_sgd import dp_training

pytestmark = pytest.mark.filterwarnings("ignore:DP-SGD without secure_mode")
DELTA = 1e-5


def test_plan_coins_carriers_and_json():
    plan = CanaryPlan("gradient", 1000, (2, 0, 5), seed=12345)
    coins = plan.included
    assert coins.dtype == bool and 400 < coins.sum() < 600
    np.testing.assert_array_equal(coins, CanaryPlan.from_json(plan.to_json()).included)
    assert not np.array_equal(coins, CanaryPlan("gradient", 1000, (2, 0, 5), seed=12346).included)
    carried = [plan.included_at(i) for i in (2, 0, 5)]
    np.testing.assert_array_equal(np.sort(np.concatenate(carried)), np.flatnonzero(coins))
    assert all(
        plan.carrier(int(i)) == inst for inst, c in zip((2, 0, 5), carried, strict=True) for i in c
    )
    fresh = [plan_canaries(100, "gradient", (0, 1)) for _ in range(2)]
    assert fresh[0].seed != fresh[1].seed  # 64 bits from the OS each time
    with pytest.raises(ValueError, match="kind"):
        CanaryPlan("label", 10, (0,), 1)
    with pytest.raises(ValueError, match="count >= 1"):
        CanaryPlan("gradient", 0, (0,), 1)


def test_directions_are_fixed_unit_and_nearly_orthogonal():
    u = np.stack([canary_direction(7, i, 4096) for i in range(50)])
    np.testing.assert_allclose(np.linalg.norm(u, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(u[3], canary_direction(7, 3, 4096))
    off_diagonal = (u @ u.T)[~np.eye(50, dtype=bool)]
    assert np.abs(off_diagonal).max() < 6 / np.sqrt(4096)


def test_gradient_score_is_the_cosine_with_the_released_delta():
    plan = CanaryPlan("gradient", 20, (0,), seed=3)
    initial = np.random.default_rng(0).normal(size=4096).astype(np.float32)
    final = initial - 0.5 * canary_direction(3, 11, 4096)  # a step against canary 11
    scores = gradient_scores(plan, initial, final)
    assert scores[11] == pytest.approx(1.0, abs=1e-6)
    assert np.abs(np.delete(scores, 11)).max() < 0.1
    with pytest.raises(ValueError, match="gradient canaries"):
        gradient_scores(CanaryPlan("input", 20, (0,), 3), initial, final)


def test_input_canaries_are_uniform_random_records():
    plan = CanaryPlan("input", 300, (0, 1), seed=9)
    tokens, labels = input_canary_records(plan, vocab_size=50, length=12, num_labels=3)
    assert tokens.shape == (300, 12) and tokens.min() >= 1 and tokens.max() <= 49
    assert set(labels.tolist()) == {0, 1, 2}
    again, _ = input_canary_records(plan, vocab_size=50, length=12, num_labels=3)
    np.testing.assert_array_equal(tokens, again)
    np.testing.assert_array_equal(input_scores(np.array([0.5, 2.0])), [-0.5, -2.0])


# ---- the DP-SGD seam: canaries are Poisson-sampled, clipped and noised like records ----------

RECORDS, CLIP = 8, 1.0


def _model_and_data(in_features: int = 256, out_features: int = 64):
    """A linear "adapter" (256 x 64 + 64 = 16448 parameters by default) and 8 records."""
    torch.manual_seed(0)
    model = torch.nn.Linear(in_features, out_features)
    data = TensorDataset(torch.randn(RECORDS, in_features), torch.randint(0, 4, (RECORDS,)))
    return model, data


def _flat(model) -> np.ndarray:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()]).numpy().copy()


def _one_round(model, data, plan, *, sigma, noise_scale, loss_scale=1.0, steps=1):
    """``steps`` DP-SGD steps of plain SGD (lr 1) at q = 1; returns (initial, final) vectors."""
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    initial = _flat(model)
    with dp_training(
        model,
        optimizer,
        data,
        noise_multiplier=sigma,
        max_grad_norm=CLIP,
        batch_size=RECORDS,  # q = 1: every record and every included canary, every step
        generator=torch.Generator().manual_seed(1),
        canaries=(plan, 0),
        noise_scale_for_testing=noise_scale,
    ) as dp:
        assert dp.sample_rate == 1.0 and dp.noise_multiplier == sigma  # the claim, unscaled
        for _ in range(steps):
            (x, y) = next(iter(dp.loader))
            dp.optimizer.zero_grad(set_to_none=True)
            (loss_scale * F.cross_entropy(model(x), y)).backward()
            dp.optimizer.step()
    return initial, _flat(model)


def test_sampled_canaries_join_the_clipped_sum():
    """No noise, no data gradient, q = 1: the step is exactly -C sum_included u_i / B."""
    model, data = _model_and_data()
    plan = CanaryPlan("gradient", 40, (0,), seed=5)
    initial, final = _one_round(model, data, plan, sigma=1.0, noise_scale=0.0, loss_scale=0.0)
    dim = initial.size
    included = plan.included_at(0)
    expected = sum(canary_direction(plan.seed, int(i), dim) for i in included)
    clipped = CLIP * GRADIENT_NORM_FACTOR * CLIP / (GRADIENT_NORM_FACTOR * CLIP + 1e-6)
    np.testing.assert_allclose(final - initial, -clipped * expected / RECORDS, atol=1e-6)
    scores = gradient_scores(plan, initial, final)
    assert scores[plan.included].min() > 0.1 > np.abs(scores[~plan.included]).max()


def test_canary_rows_are_poisson_sampled_at_the_records_rate():
    model, data = _model_and_data(8, 4)
    plan = CanaryPlan("gradient", 400, (0,), seed=6)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    with dp_training(
        model,
        optimizer,
        data,
        noise_multiplier=1.0,
        max_grad_norm=CLIP,
        batch_size=2,
        generator=torch.Generator().manual_seed(2),
        canaries=(plan, 0),
        real_records=RECORDS,
    ) as dp:
        rows = dp.optimizer.extra_rows
        counts = [len(next(iter(rows().values()))) for _ in range(200)]
    q, k = 2 / RECORDS, len(plan.included_at(0))
    assert dp.sample_rate == q
    assert np.mean(counts) == pytest.approx(q * k, rel=0.05)
    assert np.var(counts) == pytest.approx(q * (1 - q) * k, rel=0.25)  # Binomial, not fixed


def test_noise_switch_scales_the_noise_but_not_the_claim():
    model, data = _model_and_data()
    plan = CanaryPlan("gradient", 2, (0,), seed=8)
    spreads = {}
    for scale in (1.0, 0.1):
        model, data = _model_and_data()
        initial, final = _one_round(model, data, plan, sigma=2.0, noise_scale=scale, loss_scale=0)
        spreads[scale] = np.std(final - initial)
    expected = 2.0 * CLIP / RECORDS
    assert spreads[1.0] == pytest.approx(expected, rel=0.03)
    assert spreads[0.1] == pytest.approx(0.1 * expected, rel=0.05)
    with pytest.raises(ValueError, match="noise_scale_for_testing"):
        _one_round(model, data, plan, sigma=2.0, noise_scale=1.5)


def test_a_non_private_loop_carries_the_same_canary_rows():
    """DP off: no clipping, no noise; the loop adds the sampled rows' batch mean to .grad."""
    model, data = _model_and_data()
    params = list(model.parameters())
    plan = CanaryPlan("gradient", 200, (0,), seed=10)
    rows = GradientCanaryRows(plan, 0, params, 1.0, CLIP, torch.Generator().manual_seed(4))
    optimizer = torch.optim.SGD(params, lr=1.0)
    initial = _flat(model)
    x, y = data.tensors
    optimizer.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    for p, r in rows().items():
        p.grad += r.sum(0) / len(x)
    optimizer.step()
    scores = gradient_scores(plan, initial, _flat(model))
    assert scores[plan.included].min() > np.abs(scores[~plan.included]).max()


# ---- the audit end to end: large without noise, silent when honest, loud when broken ----------


def _audit(noise_scale: float, claimed_epsilon: float = 2.0) -> dict:
    # q = 1 and one step: the Gaussian mechanism, whose sigma the analytic formula gives.
    sigma = dp_accounting.get_sigma_gaussian(claimed_epsilon, DELTA)
    model, data = _model_and_data()
    plan = CanaryPlan("gradient", 1000, (0,), seed=11)
    initial, final = _one_round(model, data, plan, sigma=sigma, noise_scale=noise_scale)
    scores = gradient_scores(plan, initial, final)
    return empirical_section(
        scores, plan.included, kind="gradient", delta=DELTA, claimed_epsilon=claimed_epsilon
    )


def test_without_noise_the_lower_bound_is_large():
    section = _audit(noise_scale=0.0)
    assert section["epsilon_lower_bound"] >= 4.5  # the ceiling of 1000 canaries is 4.92
    assert section["epsilon_estimate"] > 5 * section["epsilon_lower_bound"]
    assert empirical_flags(section)[0]["severity"] == "critical"


def test_honest_noise_stays_below_the_claim():
    section = _audit(noise_scale=1.0)
    assert section["epsilon_lower_bound"] < 2.0
    assert section["epsilon_estimate_interval"][0] <= 2.0
    assert empirical_flags(section) == []


def test_a_tenth_of_the_noise_fires_the_critical_flag_at_epsilon_2():
    section = _audit(noise_scale=0.1)
    assert section["epsilon_lower_bound"] > 2.0
    (flag,) = empirical_flags(section)
    assert flag["code"] == "empirical_leak" and flag["severity"] == "critical"


@pytest.mark.parametrize("adapter", ["lora", "ia3"])
def test_canaries_ride_a_peft_adapter_in_adapter_vector_order(adapter):
    """On a tiny BERT with a PEFT adapter, the step moves against the included canaries."""
    from peft import IA3Config, LoraConfig, get_peft_model
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    bert = BertForSequenceClassification(
        BertConfig(
            vocab_size=64,
            hidden_size=16,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=32,
            max_position_embeddings=32,
            num_labels=3,
        )
    )
    config = (
        LoraConfig(task_type="SEQ_CLS", r=4, target_modules=["query", "value"])
        if adapter == "lora"
        else IA3Config(task_type="SEQ_CLS")
    )
    model = get_peft_model(bert, config).train()
    params = [p for _, p in model.named_parameters() if p.requires_grad]  # adapter vector order
    data = TensorDataset(torch.randint(1, 64, (RECORDS, 8)), torch.randint(0, 3, (RECORDS,)))
    plan = CanaryPlan("gradient", 40, (0,), seed=4)
    optimizer = torch.optim.SGD(params, lr=0.1)
    initial = torch.cat([p.detach().reshape(-1) for p in params]).numpy().copy()
    with dp_training(
        model,
        optimizer,
        data,
        noise_multiplier=1.0,
        max_grad_norm=CLIP,
        batch_size=RECORDS,
        generator=torch.Generator().manual_seed(3),
        canaries=(plan, 0),
        noise_scale_for_testing=0.0,
    ) as dp:
        x, y = next(iter(dp.loader))
        dp.optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(input_ids=x).logits, y).backward()
        dp.optimizer.step()
    final = torch.cat([p.detach().reshape(-1) for p in params]).numpy()
    scores = gradient_scores(plan, initial, final)
    inside, outside = scores[plan.included], scores[~plan.included]
    # A few hundred adapter coordinates hold 16-20 canaries: separation is clear, not perfect.
    # Mapped to the wrong parameters, the canaries would score like the excluded ones (AUC 0.5).
    auc = np.mean(inside[:, None] > outside[None, :])
    assert auc > 0.9
