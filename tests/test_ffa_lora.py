"""FFA-LoRA: A frozen at a shared seeded init, only B trains and travels, FedAvg of B is exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from peft.tuners.lora import LoraLayer
from torch.utils.data import TensorDataset
from transformers import BertConfig

from securefed.config import ModelConfig
from securefed.model.adapters import (
    attach_adapter,
    base_weights_hash,
    freeze_lora_a,
    get_vector,
    set_vector,
)
from securefed.privacy.dp_sgd import dp_training, train_private
from securefed.privacy.plan import DPPlan

LABELS = 3


def _config(tokenizer) -> BertConfig:
    return BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )


def _bundle(tokenizer, adapter: str = "ffa_lora", seed: int = 0):
    cfg = ModelConfig(adapter=adapter, lora_r=4)
    return attach_adapter(cfg, _config(tokenizer), tokenizer, num_labels=LABELS, seed=seed)


def _a_parameters(model) -> dict[str, torch.nn.Parameter]:
    """The live A matrices (not copies: ``requires_grad`` and ``grad_sample`` live on these)."""
    return {n: p for n, p in model.named_parameters() if ".lora_A." in n}


def _a_matrices(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in _a_parameters(model).items()}


def _data(tokenizer, n: int = 24, seed: int = 0) -> TensorDataset:
    words = ["revenue", "fell", "rose", "profit", "loss", "bank", "stock", "beat", "missed"]
    rng = np.random.default_rng(seed)
    texts = [" ".join(rng.choice(words, size=5)) for _ in range(n)]
    enc = tokenizer(texts, padding="max_length", max_length=12, return_tensors="pt")
    labels = torch.from_numpy(rng.integers(0, LABELS, n))
    return TensorDataset(enc["input_ids"], enc["attention_mask"], labels)


def _loss(bundle, batch) -> torch.Tensor:
    logits = bundle.model(input_ids=batch[0], attention_mask=batch[1]).logits
    return F.cross_entropy(logits, batch[2])


@pytest.fixture(scope="module")
def tokenizer(offline_tokenizer):
    return offline_tokenizer


def test_only_b_and_the_head_train_and_travel(tokenizer):
    ffa, lora = _bundle(tokenizer), _bundle(tokenizer, "lora")
    assert not any(".lora_A." in n for n in ffa.spec.names)
    assert any(".lora_B." in n for n in ffa.spec.names)
    assert _a_parameters(ffa.model) and not any(
        p.requires_grad for p in _a_parameters(ffa.model).values()
    )
    a_size = sum(p.numel() for p in _a_matrices(lora.model).values())
    assert ffa.spec.size == lora.spec.size - a_size
    assert set(ffa.spec.names) < set(lora.spec.names)


def test_every_institution_holds_the_same_a_from_the_run_seed(tokenizer):
    torch.manual_seed(123)  # other use of the global RNG must not change A
    one = _a_matrices(_bundle(tokenizer, seed=7).model)
    torch.rand(1000)
    two = _a_matrices(_bundle(tokenizer, seed=7).model)
    other = _a_matrices(_bundle(tokenizer, seed=8).model)
    assert one.keys() == two.keys() and len(one) == 4  # query, value x 2 layers
    assert all(torch.equal(one[n], two[n]) for n in one)
    assert all(not torch.equal(one[n], other[n]) for n in one)
    assert all(a.abs().max() > 0 for a in one.values()), "A must be a random init, not zero"


@pytest.mark.parametrize("private", [False, True])
def test_a_never_changes_across_steps_and_rounds_while_b_trains(tokenizer, private):
    bundle = _bundle(tokenizer)
    a_before, base_before = _a_matrices(bundle.model), base_weights_hash(bundle.model)
    data = _data(tokenizer)
    vector = get_vector(bundle.model)
    for round_index in range(2):
        set_vector(bundle.model, vector, bundle.spec)
        params = [p for p in bundle.model.parameters() if p.requires_grad]
        optimizer = torch.optim.SGD(params, lr=0.5)
        if private:
            train_private(
                bundle,
                data,
                optimizer,
                steps=3,
                batch_size=8,
                plan=DPPlan(1.0, 1.0),
                loss_fn=_loss,
                generator=torch.Generator().manual_seed(round_index),
            )
        else:
            for _ in range(3):
                optimizer.zero_grad()
                _loss(bundle, data.tensors).backward()
                optimizer.step()
        new = get_vector(bundle.model)
        assert np.any(new != vector), "B must train"
        vector = new
    a_after = _a_matrices(bundle.model)
    assert all(torch.equal(a_before[n], a_after[n]) for n in a_before)
    assert base_weights_hash(bundle.model) == base_before  # frozen A is part of the base hash


def _delta_weights(bundle) -> list[torch.Tensor]:
    return [
        m.get_delta_weight("default").detach().clone()
        for m in bundle.model.modules()
        if isinstance(m, LoraLayer)
    ]


def test_fedavg_of_b_is_exact_under_a_shared_a(tokenizer):
    """mean_k(B_k) A = mean_k(B_k A): averaging the travelling vectors averages the updates."""
    bundle = _bundle(tokenizer)
    rng = np.random.default_rng(0)
    vectors = [rng.normal(size=bundle.spec.size).astype(np.float32) for _ in range(3)]
    per_client = []
    for v in vectors:
        set_vector(bundle.model, v, bundle.spec)
        per_client.append(_delta_weights(bundle))
    set_vector(bundle.model, np.mean(vectors, axis=0), bundle.spec)
    of_mean = _delta_weights(bundle)
    assert of_mean and all(d.abs().max() > 0 for d in of_mean)
    for layer, w in enumerate(of_mean):
        expected = torch.stack([c[layer] for c in per_client]).mean(0)
        torch.testing.assert_close(w, expected, rtol=1e-5, atol=1e-6)


def test_with_a_trained_too_the_average_is_not_the_average_update(tokenizer):
    """Why FFA-LoRA: plain LoRA's FedAvg of A and B is not the mean of the clients' B A."""
    bundle = _bundle(tokenizer, "lora")
    rng = np.random.default_rng(0)
    vectors = [rng.normal(size=bundle.spec.size).astype(np.float32) for _ in range(3)]
    per_client = []
    for v in vectors:
        set_vector(bundle.model, v, bundle.spec)
        per_client.append(_delta_weights(bundle))
    set_vector(bundle.model, np.mean(vectors, axis=0), bundle.spec)
    expected = torch.stack([c[0] for c in per_client]).mean(0)
    assert not torch.allclose(_delta_weights(bundle)[0], expected, rtol=1e-3, atol=1e-4)


def test_per_sample_gradients_of_ffa_lora_equal_one_example_at_a_time(tokenizer):
    bundle = _bundle(tokenizer)
    with torch.no_grad():  # B off zero, so every gradient of B and the head is non-zero
        for n, p in bundle.model.named_parameters():
            if ".lora_B." in n:
                p.normal_(0.0, 0.5, generator=torch.Generator().manual_seed(1))
    freeze_lora_a(bundle.model, seed=0)  # idempotent: A stays frozen and seeded
    bundle.model.train()
    params = [p for p in bundle.model.parameters() if p.requires_grad]
    batch = _data(tokenizer, n=5).tensors
    reference = [
        torch.autograd.grad(_loss(bundle, [t[i : i + 1] for t in batch]), params) for i in range(5)
    ]
    with dp_training(
        bundle.model,
        torch.optim.SGD(params, lr=0.1),
        TensorDataset(*batch),
        noise_multiplier=1.0,
        max_grad_norm=1.0,
        batch_size=2,
    ):
        _loss(bundle, batch).backward()
        for j, p in enumerate(params):
            expected = torch.stack([reference[i][j] for i in range(5)])  # [5, *p.shape]
            assert expected.abs().max() > 0, "a zero reference would prove nothing"
            torch.testing.assert_close(p.grad_sample, expected, rtol=1e-4, atol=1e-6)
        frozen = _a_parameters(bundle.model)
        assert frozen and not any(hasattr(p, "grad_sample") for p in frozen.values())


def test_linear_probe_rounds_train_the_head_only_then_everything(tokenizer):
    """RunSetup.train_from with head_only_round: the adapter layers do not move, the head
    does, and afterwards every adapter parameter trains again under the same vector spec."""
    from types import SimpleNamespace

    from securefed.config import load_config
    from securefed.run.progress import Progress
    from securefed.run.setup import RunSetup

    bundle = _bundle(tokenizer, "lora")
    spec, names = bundle.spec, list(bundle.spec.names)
    setup = SimpleNamespace(cfg=load_config(), bundle=bundle, scorer=bundle)
    start = get_vector(bundle.model)
    ids, mask, labels = _data(tokenizer).tensors
    data = TensorDataset(ids, mask, torch.zeros((len(ids), LABELS), dtype=torch.long), labels)
    head = np.array([".modules_to_save." in n for n in names])
    sizes = [int(np.prod(s)) for s in spec.shapes]
    head_mask = np.repeat(head, sizes)  # (d,) True on head coordinates

    def round_from(vector, head_only_round):
        RunSetup.train_from(
            setup,
            vector,
            data,
            steps=3,
            seed_parts=("t", 0),
            dp=None,
            progress=Progress(enabled=False),
            label="probe",
            head_only_round=head_only_round,
        )
        return get_vector(bundle.model)

    probed = round_from(start, True)
    assert np.any(probed[head_mask] != start[head_mask]), "the head must train"
    assert np.array_equal(probed[~head_mask], start[~head_mask]), "adapter layers moved"
    assert list(bundle.spec.names) == names
    assert [n for n, p in bundle.model.named_parameters() if p.requires_grad] == names
    tuned = round_from(probed, False)
    assert np.any(tuned[~head_mask] != probed[~head_mask]), "after probing the adapter trains"


def test_linear_probe_rounds_are_validated():
    from securefed.config import load_config
    from securefed.errors import ConfigError

    assert load_config(overrides=["training.linear_probe_rounds=2"]).training.linear_probe_rounds
    rounds = load_config().training.rounds
    with pytest.raises(ConfigError, match="training.linear_probe_rounds"):
        load_config(overrides=[f"training.linear_probe_rounds={rounds + 1}"])  # more than all
