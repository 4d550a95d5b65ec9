"""Canaries: secret coins, Dirac coordinates, the DP-SGD seam, and an audit that can fail."""

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
    canary_blocks,
    canary_coordinates,
    input_canary_records,
    input_scores,
    plan_canaries,
)
from securefed.privacy.canary_scores import gradient_scores
from securefed.privacy.canary_trace import CanaryTrace, CarriedCanaries
from securefed.privacy.dp_canary_rows import GradientCanaryRows
from securefed.privacy.dp_sgd import dp_training

pytestmark = pytest.mark.filterwarnings("ignore:DP-SGD without secure_mode")
DELTA = 1e-5
BLOCKS = ((0, 64, 64),)  # one 64 x 64 matrix at the start of the adapter vector


def test_plan_coins_carriers_and_json():
    plan = CanaryPlan("gradient", 1000, (2, 0, 5), seed=12345, blocks=BLOCKS)
    coins = plan.included
    assert coins.dtype == bool and 400 < coins.sum() < 600
    assert CanaryPlan.from_json(plan.to_json()) == plan
    other = CanaryPlan("gradient", 1000, (2, 0, 5), seed=12346, blocks=BLOCKS)
    assert not np.array_equal(coins, other.included)
    carried = [plan.included_at(i) for i in (2, 0, 5)]
    np.testing.assert_array_equal(np.sort(np.concatenate(carried)), np.flatnonzero(coins))
    assert all(
        plan.carrier(int(i)) == inst for inst, c in zip((2, 0, 5), carried, strict=True) for i in c
    )
    fresh = [plan_canaries(100, "gradient", (0, 1), BLOCKS) for _ in range(2)]
    assert fresh[0].seed != fresh[1].seed  # 64 bits from the OS each time
    with pytest.raises(ValueError, match="kind"):
        CanaryPlan("label", 10, (0,), 1)
    with pytest.raises(ValueError, match="count >= 1"):
        CanaryPlan("gradient", 0, (0,), 1, BLOCKS)
    with pytest.raises(ValueError, match="distinct coordinates"):
        CanaryPlan("gradient", 101, (0,), 1, ((5, 10, 10),))


def test_coordinates_are_distinct_signed_and_inside_the_blocks():
    blocks = ((10, 8, 8), (200, 16, 4))
    plan = CanaryPlan("gradient", 120, (0,), seed=7, blocks=blocks)
    coordinates, signs = canary_coordinates(plan)
    assert len(set(coordinates.tolist())) == 120
    inside = ((coordinates >= 10) & (coordinates < 74)) | (
        (coordinates >= 200) & (coordinates < 264)
    )
    assert inside.all()
    assert set(signs.tolist()) == {-1.0, 1.0}
    again = canary_coordinates(CanaryPlan("gradient", 120, (0,), seed=7, blocks=blocks))
    np.testing.assert_array_equal(coordinates, again[0])
    np.testing.assert_array_equal(signs, again[1])
    with pytest.raises(ValueError, match="gradient canaries"):
        canary_coordinates(CanaryPlan("input", 20, (0,), 3))


def test_canary_blocks_are_the_named_matrices_in_vector_order():
    names = ("q.lora_A", "q.lora_B", "modules_to_save.weight", "modules_to_save.bias", "v.lora_B")
    shapes = ((4, 16), (16, 4), (3, 16), (3,), (16, 4))
    assert canary_blocks(names, shapes, None) == ((0, 4, 16), (64, 16, 4), (179, 16, 4))
    assert canary_blocks(names, shapes, ["q.lora_B"]) == ((64, 16, 4),)
    assert canary_blocks(names, shapes, ["nothing"]) == ()


def _synthetic_trace(plan: CanaryPlan, steps: int, drift: float, seed: int = 0) -> CanaryTrace:
    """A trace of ``steps`` steps per carrier at q = 1/2, sigma = 1, B = 100: the records'
    part ``drift`` times a per-coordinate direction plus its own variation each step."""
    rng = np.random.default_rng(seed)
    _, signs = canary_coordinates(plan)
    trace = CanaryTrace(plan)
    for institution in plan.institutions:
        carried = plan.carried_by(institution)
        direction = rng.normal(size=len(carried))
        for _ in range(steps):
            records = drift * (direction + 0.3 * rng.normal(size=len(carried)))
            sampled = plan.included[carried] & (rng.random(len(carried)) < 0.5)
            summed = records + sampled * signs[carried] + rng.normal(size=len(carried))
            trace.add_step(institution, summed / 100.0, records, 100.0)
    return trace


def test_scores_take_the_records_part_out_of_each_step():
    """The records' part, 50x a canary's C and different at every coordinate, leaves the
    scores as they would be without it: the canary's samples plus the noise."""
    plan = CanaryPlan("gradient", 400, (0, 3), seed=3, blocks=((0, 64, 32),))
    quiet, loud = (gradient_scores(plan, _synthetic_trace(plan, 30, d)) for d in (0.0, 50.0))
    np.testing.assert_allclose(loud, quiet, atol=1e-3)  # float32 released values
    coins = plan.included
    auc = np.mean(loud[coins][:, None] > loud[~coins][None, :])
    assert auc > 0.97  # 15 samples of C against sqrt(30) of noise


def test_the_trace_round_trips_and_refuses_what_does_not_fit_the_plan():
    plan = CanaryPlan("gradient", 41, (0, 3), seed=4, blocks=((0, 64, 32),))
    trace = _synthetic_trace(plan, 3, 5.0)
    arrays = trace.arrays()
    assert arrays["released/0"].shape == (3, 21) and arrays["records/3"].shape == (3, 20)
    again = CanaryTrace.from_arrays(plan, arrays)
    np.testing.assert_array_equal(gradient_scores(plan, again), gradient_scores(plan, trace))
    with pytest.raises(ValueError, match="expected"):
        CanaryTrace.from_arrays(plan, {k: v for k, v in arrays.items() if k != "divisor/3"})
    with pytest.raises(ValueError, match="carries 21"):
        CanaryTrace.from_arrays(
            plan,
            {
                **arrays,
                "released/0": arrays["released/0"][:, 1:],
                "records/0": arrays["records/0"][:, 1:],
            },
        )


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


def _model_and_data(in_features: int = 256, out_features: int = 64, bias: bool = True):
    """A linear "adapter" (256 x 64 + 64 = 16448 parameters by default) and 8 records."""
    torch.manual_seed(0)
    model = torch.nn.Linear(in_features, out_features, bias=bias)
    data = TensorDataset(torch.randn(RECORDS, in_features), torch.randint(0, 4, (RECORDS,)))
    return model, data


def _flat(model) -> np.ndarray:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()]).numpy().copy()


def _one_round(model, data, plan, *, sigma, noise_scale, loss_scale=1.0, steps=1, trace=None):
    """``steps`` DP-SGD steps of plain SGD (lr 1) at q = 1, recorded into ``trace`` when
    given; returns (initial, final) vectors."""
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
        canaries=CarriedCanaries(plan, 0, trace),
        noise_scale_for_testing=noise_scale,
    ) as dp:
        assert dp.sample_rate == 1.0 and dp.noise_multiplier == sigma  # the claim, unscaled
        for _ in range(steps):
            (x, y) = next(iter(dp.loader))
            dp.optimizer.zero_grad(set_to_none=True)
            (loss_scale * F.cross_entropy(model(x), y)).backward()
            dp.optimizer.step()
    return initial, _flat(model)


WEIGHT = ((0, 64, 256),)  # the linear model's weight, first in its parameter vector


def test_sampled_canaries_join_the_clipped_sum():
    """No noise, no data gradient, q = 1: the step is exactly -C sum_included s_i e_k_i / B
    (no bias: nothing would move it, and DP-SGD stops on a parameter a step left unchanged)."""
    model, data = _model_and_data(bias=False)
    plan = CanaryPlan("gradient", 40, (0,), seed=5, blocks=WEIGHT)
    initial, final = _one_round(model, data, plan, sigma=1.0, noise_scale=0.0, loss_scale=0.0)
    coordinates, signs = canary_coordinates(plan)
    included = plan.included_at(0)
    expected = np.zeros(initial.size)
    expected[coordinates[included]] = signs[included]
    clipped = CLIP * GRADIENT_NORM_FACTOR * CLIP / (GRADIENT_NORM_FACTOR * CLIP + 1e-6)
    np.testing.assert_allclose(final - initial, -clipped * expected / RECORDS, atol=1e-6)


def test_canary_rows_are_poisson_sampled_at_the_records_rate():
    model, data = _model_and_data(64, 16)
    plan = CanaryPlan("gradient", 400, (0,), seed=6, blocks=((0, 16, 64),))
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    with dp_training(
        model,
        optimizer,
        data,
        noise_multiplier=1.0,
        max_grad_norm=CLIP,
        batch_size=2,
        generator=torch.Generator().manual_seed(2),
        canaries=CarriedCanaries(plan, 0),
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
    plan = CanaryPlan("gradient", 2, (0,), seed=8, blocks=WEIGHT)
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
    """DP off: no clipping, no noise; the loop adds the sampled rows' batch mean to .grad,
    and the trace's released sum less the records' part is exactly those rows."""
    model, data = _model_and_data()
    params = list(model.parameters())
    plan = CanaryPlan("gradient", 200, (0,), seed=10, blocks=WEIGHT)
    carried = CarriedCanaries(plan, 0, CanaryTrace(plan))
    rows = GradientCanaryRows(carried, params, 1.0, CLIP, torch.Generator().manual_seed(4))
    optimizer = torch.optim.SGD(params, lr=1.0)
    initial = _flat(model)
    x, y = data.tensors
    optimizer.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    records = torch.cat([p.grad.reshape(-1) for p in params]).numpy().copy()
    rows.note_batch_records([p.grad for p in params], len(x))
    for p, r in rows().items():
        p.grad += r.sum(0) / len(x)
    rows.note_released([p.grad for p in params], len(x))
    optimizer.step()
    coordinates, signs = canary_coordinates(plan)
    included = plan.included_at(0)
    expected = np.zeros(initial.size)
    expected[coordinates[included]] = GRADIENT_NORM_FACTOR * CLIP * signs[included] / len(x)
    np.testing.assert_allclose(initial - _flat(model) - records, expected, atol=1e-5)
    scores = gradient_scores(plan, carried.trace)
    np.testing.assert_allclose(scores, GRADIENT_NORM_FACTOR * CLIP * plan.included, atol=1e-3)


def test_the_trace_holds_the_clipped_sum_less_the_records_part():
    """No noise, q = 1, three steps on real records (whose clipped gradients are nonzero at
    the canaries' coordinates): each included canary's score is exactly 3 C, an excluded
    one's 0. Summing the records' rows unclipped, or reading the step before the canaries
    join, would leave the records' gradient in the scores."""
    model, data = _model_and_data()
    plan = CanaryPlan("gradient", 300, (0,), seed=12, blocks=WEIGHT)
    trace = CanaryTrace(plan)
    _one_round(model, data, plan, sigma=1.0, noise_scale=0.0, steps=3, trace=trace)
    released, records, divisor = trace.steps(0)
    assert released.shape == (3, 300) and np.all(divisor == RECORDS)
    assert np.abs(records).max() > 0.05  # the records move the canaries' coordinates too
    clipped = CLIP * GRADIENT_NORM_FACTOR * CLIP / (GRADIENT_NORM_FACTOR * CLIP + 1e-6)
    expected = 3 * clipped * plan.included
    np.testing.assert_allclose(gradient_scores(plan, trace), expected, atol=1e-5)


# ---- the audit end to end: large without noise, silent when honest, loud when broken ----------


def _audit(noise_scale: float, claimed_epsilon: float = 2.0) -> dict:
    # q = 1 and one step: the Gaussian mechanism, whose sigma the analytic formula gives.
    sigma = dp_accounting.get_sigma_gaussian(claimed_epsilon, DELTA)
    model, data = _model_and_data()
    plan = CanaryPlan("gradient", 1000, (0,), seed=11, blocks=WEIGHT)
    trace = CanaryTrace(plan)
    _one_round(model, data, plan, sigma=sigma, noise_scale=noise_scale, trace=trace)
    scores = gradient_scores(plan, trace)
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
    names = tuple(n for n, p in model.named_parameters() if p.requires_grad)
    blocks = canary_blocks(names, tuple(tuple(p.shape) for p in params), None)
    if not blocks:  # IA3's vectors: canaries over every adapter entry, one row each
        blocks = ((0, 1, sum(p.numel() for p in params)),)
    plan = CanaryPlan("gradient", 40, (0,), seed=4, blocks=blocks)
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
        canaries=CarriedCanaries(plan, 0, trace := CanaryTrace(plan)),
        noise_scale_for_testing=0.05,  # a little noise, as any real step has
    ) as dp:
        x, y = next(iter(dp.loader))
        dp.optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(input_ids=x).logits, y).backward()
        dp.optimizer.step()
    final = torch.cat([p.detach().reshape(-1) for p in params]).numpy()
    coordinates, signs = canary_coordinates(plan)
    moved = signs * (initial - final)[coordinates]  # the step moves against included ones
    for scores in (moved, gradient_scores(plan, trace)):
        inside, outside = scores[plan.included], scores[~plan.included]
        # Mapped to the wrong parameters, the canaries would score like the excluded (AUC 0.5).
        assert np.mean(inside[:, None] > outside[None, :]) > 0.8
