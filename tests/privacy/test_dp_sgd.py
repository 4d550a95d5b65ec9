"""DP-SGD: exact per-example gradients for every adapter, noise that is really there, no residue."""

from __future__ import annotations

import importlib.util
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from peft import IA3Config, LoraConfig, get_peft_model
from scipy import stats
from torch.utils.data import TensorDataset
from transformers import (
    BertConfig,
    BertForMultipleChoice,
    BertForSequenceClassification,
    BitsAndBytesConfig,
    LlamaConfig,
    LlamaForSequenceClassification,
)

from securefed.errors import AdapterCorrupted, ConfigError
from securefed.privacy.dp_sgd import dp_training, train_private
from securefed.privacy.plan import DPPlan
from securefed.privacy.secure_noise import NOISE_SOURCE_OS

pytestmark = pytest.mark.filterwarnings("ignore:DP-SGD without secure_mode")

VOCAB, LENGTH, LABELS = 64, 8, 3
BERT = dict(
    vocab_size=VOCAB,
    hidden_size=16,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=32,
    max_position_embeddings=32,
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
)


def _bert(adapter: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(num_labels=LABELS, **BERT))
    if adapter == "lora":  # random B as well as A, so every LoRA gradient is non-zero
        config = LoraConfig(
            task_type="SEQ_CLS", r=4, target_modules=["query", "value"], init_lora_weights=False
        )
    else:  # key/value scale outputs; both output.dense layers are feedforward (scale inputs)
        config = IA3Config(task_type="SEQ_CLS")
    model = get_peft_model(model, config)
    with torch.no_grad():  # move IA3 vectors off their all-ones start
        for name, p in model.named_parameters():
            if "ia3_l" in name:
                p.add_(0.3 * torch.randn_like(p))
    return model.train()


def _qlora(tmp_path) -> torch.nn.Module:
    """LoRA on a 4-bit NF4 Llama (bitsandbytes on CPU), built from a config: no download."""
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=32,
        num_labels=LABELS,
        pad_token_id=0,
    )
    LlamaForSequenceClassification(config).save_pretrained(tmp_path)
    quant = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=torch.float32,
        llm_int8_skip_modules=["score"],
    )
    base = LlamaForSequenceClassification.from_pretrained(
        tmp_path, quantization_config=quant, dtype=torch.float32, device_map={"": "cpu"}
    )
    for module in base.modules():  # as securefed.model.adapters does: no CPU repack between passes
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False
    lora = LoraConfig(
        task_type="SEQ_CLS",
        r=4,
        target_modules=["q_proj", "v_proj", "down_proj"],
        init_lora_weights=False,
    )
    return get_peft_model(base, lora).train()


def _batch(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(1, VOCAB, (n, LENGTH), generator=g)  # no pad id 0
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 5:] = 0  # one padded example
    return input_ids, attention_mask, torch.randint(0, LABELS, (n,), generator=g)


def _loss(model, batch) -> torch.Tensor:
    input_ids, attention_mask, labels = batch
    return F.cross_entropy(model(input_ids=input_ids, attention_mask=attention_mask).logits, labels)


def _trainable(model) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def _frozen_state(model) -> dict[str, torch.Tensor]:
    tensors = [*model.named_parameters(), *model.named_buffers()]
    return {n: t.detach().clone() for n, t in tensors if not t.requires_grad}


@pytest.mark.parametrize("adapter", ["lora", "qlora", "ia3"])
def test_per_sample_gradients_equal_one_example_at_a_time(adapter, tmp_path):
    model = _qlora(tmp_path) if adapter == "qlora" else _bert(adapter)
    params, batch = _trainable(model), _batch(5)
    reference = [  # brute force: each example alone, plain autograd, no Opacus
        torch.autograd.grad(_loss(model, [t[i : i + 1] for t in batch]), params) for i in range(5)
    ]
    optimizer = torch.optim.SGD(params, lr=0.1)
    with dp_training(
        model,
        optimizer,
        TensorDataset(*batch),
        noise_multiplier=1.0,
        max_grad_norm=1.0,
        batch_size=2,
    ):
        _loss(model, batch).backward()
        for j, p in enumerate(params):
            expected = torch.stack([reference[i][j] for i in range(5)])  # [5, *p.shape]
            assert expected.abs().max() > 0, "a zero reference would prove nothing"
            torch.testing.assert_close(p.grad_sample, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("adapter", ["lora", "ia3"])
def test_with_dp_only_adapter_parameters_change(adapter):
    model = _bert(adapter)
    frozen, adapter_before = _frozen_state(model), [p.detach().clone() for p in _trainable(model)]
    optimizer = torch.optim.SGD(_trainable(model), lr=0.5)
    stats = train_private(
        SimpleNamespace(model=model),
        TensorDataset(*_batch(24)),
        optimizer,
        steps=5,
        batch_size=6,
        plan=DPPlan(1.0, 1.0),
        loss_fn=lambda bundle, batch: _loss(bundle.model, batch),
    )
    assert (stats.steps, stats.sample_rate, stats.noise_multiplier) == (5, 0.25, 1.0)
    after = _frozen_state(model)
    assert after.keys() == frozen.keys()
    assert all(torch.equal(after[n], frozen[n]) for n in frozen), "a base weight moved"
    assert all(
        not torch.equal(b, p) for b, p in zip(adapter_before, _trainable(model), strict=True)
    )


def _update_noise(model, generator=None, sigma=2.0, clip=0.5, batch_size=4) -> torch.Tensor:
    """One DP step on zero per-example gradients: the update is the noise alone (lr 1)."""
    params = _trainable(model)
    before = torch.cat([p.detach().flatten() for p in params])
    optimizer = torch.optim.SGD(params, lr=1.0)
    with dp_training(
        model,
        optimizer,
        TensorDataset(*_batch(16)),
        noise_multiplier=sigma,
        max_grad_norm=clip,
        batch_size=batch_size,
        generator=generator,
    ) as dp:
        batch = next(b for b in dp.loader if len(b[0]) > 0)
        (0.0 * _loss(model, batch)).backward()
        dp.optimizer.step()
        assert dp.steps == 1
    return before - torch.cat([p.detach().flatten() for p in params])


def test_noise_has_the_calibrated_scale_and_fails_if_switched_off():
    model = _bert("lora")
    noise = _update_noise(model)
    assert noise.numel() > 500
    expected_std = 2.0 * 0.5 / 4  # sigma * C / expected batch size
    assert noise.std().item() == pytest.approx(expected_std, rel=0.15)
    # the noise is drawn from the OS (unseeded): a 3-sigma bound on its mean failed once in CI
    # (3.4 sigma, p = 7e-4 a run); 5 sigma fails an honest run with p < 6e-7
    assert noise.mean().abs().item() < 5 * expected_std / noise.numel() ** 0.5


def test_noise_is_fresh_each_round_unless_pinned():
    model = _bert("lora")
    assert not torch.equal(_update_noise(model), _update_noise(model))  # OS entropy
    pinned = [_update_noise(model, torch.Generator().manual_seed(7)) for _ in range(2)]
    torch.testing.assert_close(pinned[0], pinned[1])


def test_empty_poisson_batch_still_takes_a_noised_step():
    model = _bert("lora")
    params = _trainable(model)
    before = [p.detach().clone() for p in params]
    optimizer = torch.optim.SGD(params, lr=1.0)
    with dp_training(
        model,
        optimizer,
        TensorDataset(*_batch(50)),
        noise_multiplier=1.0,
        max_grad_norm=1.0,
        batch_size=1,
        generator=torch.Generator().manual_seed(0),
    ) as dp:
        while True:
            batch = next(iter(dp.loader))
            if len(batch[0]) == 0:
                break
        dp.step_on_empty_batch()
        assert dp.steps == 1
    assert all(not torch.equal(b, p) for b, p in zip(before, params, strict=True))


@pytest.mark.parametrize("adapter", ["lora", "ia3"])
def test_rounds_leave_no_hooks_or_opacus_state_behind(adapter):
    model = _bert(adapter)
    names = [n for n, p in model.named_parameters() if p.requires_grad]

    def hook_count() -> int:
        return sum(len(m._forward_hooks) + len(m._backward_hooks) for m in model.modules())

    hooks = hook_count()
    for _ in range(2):  # a fresh wrap each round
        optimizer = torch.optim.SGD(_trainable(model), lr=0.1)
        train_private(
            SimpleNamespace(model=model),
            TensorDataset(*_batch(12)),
            optimizer,
            steps=2,
            batch_size=4,
            plan=DPPlan(1.0, 1.0),
            loss_fn=lambda bundle, batch: _loss(bundle.model, batch),
        )
        assert hook_count() == hooks
        assert [n for n, p in model.named_parameters() if p.requires_grad] == names
        leftovers = {
            "grad_sample",
            "summed_grad",
            "_forward_counter",
            "activations",
            "max_batch_len",
            "autograd_grad_sample_hooks",
        }
        objects = [*model.parameters(), *model.modules()]
        assert not any(name in vars(obj) for obj in objects for name in leftovers)


def test_a_model_that_splits_examples_into_rows_is_refused():
    """BertForMultipleChoice makes [N, C, L] N*C rows: clipping rows is not clipping records."""
    torch.manual_seed(0)
    model = get_peft_model(
        BertForMultipleChoice(BertConfig(**BERT)),
        LoraConfig(r=2, target_modules=["query"], modules_to_save=["classifier"]),
    )
    model.train()
    g = torch.Generator().manual_seed(0)
    input_ids = torch.randint(1, VOCAB, (8, 3, LENGTH), generator=g)  # [N, C, L]
    data = TensorDataset(
        input_ids, torch.ones_like(input_ids), torch.randint(0, 3, (8,), generator=g)
    )
    with dp_training(
        model,
        torch.optim.SGD(_trainable(model), lr=0.1),
        data,
        noise_multiplier=1.0,
        max_grad_norm=1.0,
        batch_size=4,
        generator=g,
    ) as dp:
        batch = next(b for b in dp.loader if len(b[0]) > 0)
        _loss(model, batch).backward()
        with pytest.raises(RuntimeError, match="one row per example"):
            dp.optimizer.step()


def test_every_step_must_use_a_batch_from_the_private_loader():
    model = _bert("lora")
    data = TensorDataset(*_batch(8))
    with dp_training(
        model,
        torch.optim.SGD(_trainable(model), lr=0.1),
        data,
        noise_multiplier=1.0,
        max_grad_norm=1.0,
        batch_size=4,
    ) as dp:
        _loss(model, data.tensors).backward()  # a fixed batch, not Poisson-sampled
        with pytest.raises(RuntimeError, match="drawn from the private loader"):
            dp.optimizer.step()


def test_optimizer_must_hold_exactly_the_adapter():
    model = _bert("lora")
    optimizer = torch.optim.SGD(_trainable(model)[:-1], lr=0.1)
    with (
        pytest.raises(ValueError, match="exactly the model's trainable"),
        dp_training(
            model,
            optimizer,
            TensorDataset(*_batch(8)),
            noise_multiplier=1.0,
            max_grad_norm=1.0,
            batch_size=4,
        ),
    ):
        pass


@pytest.mark.skipif(
    importlib.util.find_spec("torchcsprng") is not None, reason="torchcsprng is installed"
)
def test_secure_mode_without_torchcsprng_is_refused_not_downgraded():
    model = _bert("lora")
    with (
        pytest.raises(ConfigError, match="torchcsprng"),
        dp_training(
            model,
            torch.optim.SGD(_trainable(model), lr=0.1),
            TensorDataset(*_batch(8)),
            noise_multiplier=1.0,
            max_grad_norm=1.0,
            batch_size=4,
            secure_mode=True,
            noise_source="torch",
        ),
    ):
        pass


def test_default_noise_and_sampling_come_from_the_csprng_not_torch(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("torch's generator was used for DP randomness")

    model = _bert("lora")
    monkeypatch.setattr(torch, "normal", refuse)
    monkeypatch.setattr(torch, "rand", refuse)
    stats = train_private(
        SimpleNamespace(model=model),
        TensorDataset(*_batch(16)),
        torch.optim.SGD(_trainable(model), lr=0.1),
        steps=3,
        batch_size=4,
        plan=DPPlan(1.0, 1.0),
        loss_fn=lambda bundle, batch: _loss(bundle.model, batch),
    )
    assert stats.noise_source == NOISE_SOURCE_OS and stats.steps == 3


def test_pinned_generator_is_labelled_test_only():
    model = _bert("lora")
    with dp_training(
        model,
        torch.optim.SGD(_trainable(model), lr=0.1),
        TensorDataset(*_batch(8)),
        noise_multiplier=1.0,
        max_grad_norm=1.0,
        batch_size=4,
        generator=torch.Generator().manual_seed(0),
    ) as dp:
        assert dp.noise_source.startswith("TEST ONLY")


@pytest.mark.parametrize("noise_source", ["aes_ctr", "torch"])
def test_optimizer_noise_has_the_calibrated_variance_and_less_is_caught(noise_source):
    """Eight one-step rounds on zero gradients: the update is N(0, (sigma C / B)^2) per
    coordinate; a chi-square test accepts that std and rejects 0.9 times it."""
    model = _bert("lora")
    noise = torch.cat(
        [
            _update_noise_from(model, torch.Generator().manual_seed(s), noise_source)
            for s in range(8)
        ]
    ).double()
    std, n = 2.0 * 0.5 / 4, noise.numel()
    assert n > 4000

    def variance_p(scale: float) -> float:
        cdf = stats.chi2.cdf(float(((noise / (scale * std)) ** 2).sum()), df=n)
        return 2 * min(cdf, 1 - cdf)

    assert variance_p(1.0) > 1e-6
    assert variance_p(1 / 0.9) < 1e-6  # had the noise been 0.9 x std, this is what we'd see
    assert abs(float(noise.mean())) < 5 * std / n**0.5


def _update_noise_from(model, generator, noise_source) -> torch.Tensor:
    params = _trainable(model)
    before = torch.cat([p.detach().flatten() for p in params])
    with dp_training(
        model,
        torch.optim.SGD(params, lr=1.0),
        TensorDataset(*_batch(16)),
        noise_multiplier=2.0,
        max_grad_norm=0.5,
        batch_size=4,
        generator=generator,
        noise_source=noise_source,
    ) as dp:
        batch = next(b for b in dp.loader if len(b[0]) > 0)
        (0.0 * _loss(model, batch)).backward()
        dp.optimizer.step()
    return before - torch.cat([p.detach().flatten() for p in params])


def test_csprng_poisson_batches_have_the_sampling_rate():
    model = _bert("lora")
    data = TensorDataset(*_batch(40))
    with dp_training(
        model,
        torch.optim.SGD(_trainable(model), lr=0.1),
        data,
        noise_multiplier=1.0,
        max_grad_norm=1.0,
        batch_size=10,
        generator=torch.Generator().manual_seed(3),
    ) as dp:
        sizes = []
        for _ in range(50):
            sizes.extend(len(b[0]) for b in dp.loader)
    n = len(sizes)  # each batch is Binomial(40, 0.25): mean 10, variance 7.5
    assert dp.sample_rate == 0.25 and n == 50 * 4
    assert abs(sum(sizes) / n - 10) < 5 * (7.5 / n) ** 0.5
    assert len(set(sizes)) > 3, "Poisson batches vary in size"


@pytest.mark.parametrize("fault", ["nan", "frozen"])
def test_a_corrupted_or_lost_update_stops_the_round_naming_the_parameter(fault):
    """The Opacus issue 820 guard: after a DP step every adapter tensor is finite and moved."""
    model = _bert("lora")
    params = _trainable(model)
    optimizer = torch.optim.SGD(params, lr=0.0 if fault == "frozen" else 0.1)

    def loss_fn(bundle, batch):
        loss = _loss(bundle.model, batch)
        return loss * float("nan") if fault == "nan" else loss

    with pytest.raises(AdapterCorrupted, match=r"adapter parameter \S*lora_A") as err:
        train_private(
            SimpleNamespace(model=model),
            TensorDataset(*_batch(16)),
            optimizer,
            steps=2,
            batch_size=4,
            plan=DPPlan(1.0, 1.0),
            loss_fn=loss_fn,
        )
    assert ("non-finite" if fault == "nan" else "did not change") in str(err.value)
