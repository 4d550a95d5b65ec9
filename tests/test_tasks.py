"""Tasks: real loaders on fixture files in each dataset's own schema, metrics, prompts, and the
SYNTHETIC tasks' determinism, labelling and learnability."""

from __future__ import annotations

from pathlib import Path

import datasets
import numpy as np
import pytest
from fixtures_data import FIQA_ROWS, MEDQA_ROWS, ROWS, bow_accuracy, fit_bow, write_rows
from hypothesis import given, settings
from hypothesis import strategies as st

from securefed.config import TASK_NAMES, PartitionConfig, SyntheticConfig, TaskConfig
from securefed.errors import ConfigError, DataError
from securefed.tasks import TASKS, Example, accuracy, column_values, get_task, macro_f1
from securefed.tasks.fiqa_sa import score_to_label
from securefed.tasks.partition import partition
from securefed.tasks.synthetic_medqa import knowledge_base

FORMATS = ("jsonl", "csv", "parquet")
REAL = ("medqa", "medmcqa", "fpb", "fiqa_sa")


def load_file(name: str, path: Path, **kw: object) -> list[Example]:
    return get_task(name).load(TaskConfig(name=name, path=str(path), **kw), seed=0)


def by_text(examples: list[Example]) -> dict[str, Example]:
    return {ex.text: ex for ex in examples}


# --- registry ---------------------------------------------------------------------------------


def test_registry_holds_every_configurable_task():
    assert set(TASKS) == set(TASK_NAMES)
    for name, task in TASKS.items():
        assert task.name == name and get_task(name) is task
        assert task.kind in ("classification", "multiple_choice")
        assert task.num_choices == len(task.label_names)
        assert task.primary_metric == "accuracy"
        assert task.synthetic == name.startswith("synthetic")


def test_unknown_task_names_the_key():
    with pytest.raises(ConfigError, match="task.name"):
        get_task("mmlu")


# --- real loaders on fixture files --------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_medqa_loader(tmp_path, fmt):
    examples = by_text(load_file("medqa", write_rows(MEDQA_ROWS, tmp_path / f"m.{fmt}")))
    first = examples[MEDQA_ROWS[0]["question"]]
    assert first.choices == ("Ampicillin", "Ceftriaxone", "Doxycycline", "Nitrofuran")
    assert first.label == 3 and first.columns["meta_info"] == "step2&3"
    assert examples[MEDQA_ROWS[1]["question"]].label == 0


@pytest.mark.parametrize("fmt", FORMATS)
def test_medmcqa_loader_skips_unlabelled_rows(tmp_path, fmt):
    examples = by_text(load_file("medmcqa", write_rows(ROWS["medmcqa"], tmp_path / f"m.{fmt}")))
    assert len(examples) == 2  # the cop=-1 row is the hub test split's "no answer"
    ex = examples["Drug of choice for absence seizures?"]
    assert ex.label == 1 and ex.choices[1] == "Ethosuximide"
    assert ex.columns["subject_name"] == "Pharmacology"


@pytest.mark.parametrize("fmt", FORMATS)
def test_fpb_loader(tmp_path, fmt):
    examples = load_file("fpb", write_rows(ROWS["fpb"], tmp_path / f"f.{fmt}"))
    got = {ex.text: ex.label for ex in examples}
    assert got == {r["sentence"]: r["label"] for r in ROWS["fpb"]}
    assert all(ex.choices == ("negative", "neutral", "positive") for ex in examples)


@pytest.mark.parametrize("fmt", FORMATS)
def test_fiqa_loader_maps_scores_and_keeps_target(tmp_path, fmt):
    examples = by_text(load_file("fiqa_sa", write_rows(FIQA_ROWS, tmp_path / f"q.{fmt}")))
    assert [examples[r["sentence"]].label for r in FIQA_ROWS] == [2, 0, 1]
    ex = examples[FIQA_ROWS[0]["sentence"]]
    assert ex.columns["target"] == "AAPL"
    assert "Target: AAPL" in get_task("fiqa_sa").prompt(ex)


def test_fiqa_thresholds():
    assert [score_to_label(s) for s in (-0.9, -0.1001, -0.1, 0.0, 0.0999, 0.1, 0.8)] == [
        0, 0, 1, 1, 1, 2, 2,
    ]  # fmt: skip


def test_fpb_accepts_label_names(tmp_path):
    rows = [{"sentence": "Up.", "label": "positive"}, {"sentence": "Flat.", "label": "neutral"}]
    examples = load_file("fpb", write_rows(rows, tmp_path / "f.jsonl"))
    assert sorted(ex.label for ex in examples) == [1, 2]


@pytest.mark.parametrize("name", REAL)
def test_missing_column_names_column_and_file(tmp_path, name):
    column = get_task(name).required[0]  # type: ignore[attr-defined]
    rows = [{k: v for k, v in r.items() if k != column} for r in ROWS[name]]
    path = write_rows(rows, tmp_path / f"{name}.parquet")
    with pytest.raises(DataError, match=rf"{path}.*missing column '{column}'"):
        load_file(name, path)


@pytest.mark.parametrize(
    ("name", "rows", "message"),
    [
        ("medqa", [{**MEDQA_ROWS[0], "answer_idx": "E"}], "answer_idx"),
        ("medqa", [{**MEDQA_ROWS[0], "options": {"A": "x", "B": "y"}}], "options"),
        ("medmcqa", [{**ROWS["medmcqa"][0], "cop": 7}], "cop"),
        ("medmcqa", [ROWS["medmcqa"][2]], "no labelled rows"),
        ("fpb", [{"sentence": "x", "label": "bullish"}], "label"),
        ("fiqa_sa", [{**FIQA_ROWS[0], "score": "high"}], "score"),
    ],
)
def test_bad_values_are_data_errors(tmp_path, name, rows, message):
    with pytest.raises(DataError, match=message):
        load_file(name, write_rows(rows, tmp_path / "bad.jsonl"))


def test_bad_paths_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="task.path"):
        load_file("fpb", tmp_path / "missing.jsonl")
    (tmp_path / "rows.txt").write_text("x")
    with pytest.raises(ConfigError, match="task.path"):
        load_file("fpb", tmp_path / "rows.txt")


def test_load_is_a_seeded_shuffle_with_a_cap(tmp_path):
    rows = [{"sentence": f"sentence {i}", "label": i % 3} for i in range(40)]
    path = write_rows(rows, tmp_path / "f.jsonl")
    task = get_task("fpb")
    cfg = TaskConfig(name="fpb", path=str(path), max_examples=12)
    first, again = task.load(cfg, seed=3), task.load(cfg, seed=3)
    assert first == again and len(first) == 12
    assert task.load(cfg, seed=4) != first
    full = task.load(cfg.model_copy(update={"max_examples": None}), seed=3)
    assert sorted(ex.text for ex in full) == sorted(r["sentence"] for r in rows)


def test_hub_requests(monkeypatch):
    """Default ids, the FPB Parquet export, overrides; an unreachable hub is a DataError."""
    calls: list[tuple[str, dict[str, object]]] = []

    def fake_load_dataset(path: str, **kwargs: object) -> datasets.Dataset:
        calls.append((path, kwargs))
        return datasets.Dataset.from_list(ROWS["fpb"])

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    get_task("fpb").load(TaskConfig(name="fpb"), seed=0)
    get_task("fpb").load(TaskConfig(name="fpb", hub_config="sentences_50agree"), seed=0)
    get_task("fpb").load(TaskConfig(name="fpb", hub_id="me/fpb", hub_config="all"), seed=0)
    assert calls == [
        ("takala/financial_phrasebank",
         {"split": "train", "revision": "refs/convert/parquet", "data_dir": "sentences_allagree"}),
        ("takala/financial_phrasebank",
         {"split": "train", "revision": "refs/convert/parquet", "data_dir": "sentences_50agree"}),
        ("me/fpb", {"split": "train", "revision": None, "name": "all"}),
    ]  # fmt: skip

    def offline(path: str, **kwargs: object) -> datasets.Dataset:
        raise ConnectionError(f"Couldn't reach '{path}' on the Hub")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError, match="GBaker/MedQA-USMLE-4-options.*task.path"):
        get_task("medqa").load(TaskConfig(name="medqa"), seed=0)


# --- prompts and metrics -----------------------------------------------------------------------


def test_prompts_end_before_the_answer():
    mc = Example("Which?", ("x", "y", "z", "w"), 2)
    medqa = get_task("medqa")
    assert medqa.prompt(mc).endswith("C. z\nD. w\nAnswer:")
    assert medqa.option_texts(mc) == [f" {o}" for o in mc.choices]  # type: ignore[attr-defined]
    assert medqa.encoder_rows(mc) == ["Which?", *mc.choices]  # type: ignore[attr-defined]
    sentiment = Example("Sales rose.", ("negative", "neutral", "positive"), 2)
    fpb = get_task("fpb")
    assert fpb.prompt(sentiment).endswith("Text: Sales rose.\nSentiment:")
    assert fpb.answer_texts(sentiment) == [" negative", " neutral", " positive"]
    assert fpb.encoder_text(sentiment) == "Sales rose."  # type: ignore[attr-defined]


def test_macro_f1_matches_a_hand_computation():
    y_true = [0, 0, 0, 1, 1, 2]
    y_pred = [0, 0, 1, 1, 2, 2]
    # class 0: tp2 fp0 fn1 -> 4/5; class 1: tp1 fp1 fn1 -> 2/4; class 2: tp1 fp1 fn0 -> 2/3
    assert macro_f1(y_true, y_pred) == pytest.approx((4 / 5 + 1 / 2 + 2 / 3) / 3)
    assert accuracy(y_true, y_pred) == pytest.approx(4 / 6)
    assert get_task("fpb").metrics(y_true, y_pred) == {
        "accuracy": pytest.approx(4 / 6),
        "macro_f1": pytest.approx((4 / 5 + 1 / 2 + 2 / 3) / 3),
    }
    assert get_task("medmcqa").metrics([1, 2], [1, 3]) == {"accuracy": 0.5}


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=1, max_size=60))
def test_macro_f1_agrees_with_sklearn(pairs):
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    y_true, y_pred = zip(*pairs, strict=True)
    expected = sklearn_metrics.f1_score(y_true, y_pred, average="macro", zero_division=0)
    assert macro_f1(y_true, y_pred) == pytest.approx(expected)


def test_metrics_reject_mismatched_lists():
    with pytest.raises(ValueError):
        accuracy([0, 1], [0])


def test_column_values_names_missing_column():
    examples = [Example("a", ("x",), 0, {"institution": "A"})]
    assert column_values(examples, "institution") == ["A"]
    with pytest.raises(ConfigError, match="partition.column.*institution"):
        column_values(examples, "subject_name")


# --- synthetic tasks ---------------------------------------------------------------------------

SYNTHETIC = ("synthetic_finance", "synthetic_medqa")


def synthetic_cfg(name: str, **knobs: float) -> TaskConfig:
    return TaskConfig(name=name, synthetic=SyntheticConfig(**knobs))


@pytest.mark.parametrize("name", SYNTHETIC)
def test_synthetic_is_deterministic_and_labelled(name):
    task = get_task(name)
    cfg = synthetic_cfg(name, num_examples=200, num_institutions=3)
    examples = task.load(cfg, seed=5)
    assert examples == task.load(cfg, seed=5)
    assert examples != task.load(cfg, seed=6)
    assert len(examples) == 200
    assert task.synthetic and "SYNTHETIC" in task.description and "synthetic" in task.name
    assert {ex.columns["source"] for ex in examples} == {"synthetic"}
    assert len({ex.columns["institution"] for ex in examples}) == 3
    assert len({ex.label for ex in examples}) == task.num_choices
    assert all(len(ex.choices) == task.num_choices for ex in examples)
    assert len({ex.text for ex in examples}) > 190  # varied text, not a handful of templates


@pytest.mark.parametrize("name", SYNTHETIC)
def test_synthetic_rejects_a_data_source(name):
    with pytest.raises(ConfigError, match="task.path"):
        get_task(name).load(TaskConfig(name=name, path="x.jsonl"), seed=0)


def test_institution_vocab_controls_house_words():
    def house_prefixed(rate: float) -> float:
        cfg = synthetic_cfg("synthetic_finance", num_examples=400, institution_vocab=rate)
        examples = get_task("synthetic_finance").load(cfg, seed=0)
        return np.mean([ex.columns["institution"] in ex.text for ex in examples])

    assert house_prefixed(0.0) == 0.0
    assert house_prefixed(1.0) > 0.4


def test_medqa_knowledge_base_is_seeded():
    assert knowledge_base(1) == knowledge_base(1)
    assert knowledge_base(1) != knowledge_base(2)
    assert len({d.name for d in knowledge_base(1)}) == 16


def _finance_bow(difficulty: float, client: int | None = None) -> float:
    examples = get_task("synthetic_finance").load(
        synthetic_cfg("synthetic_finance", difficulty=difficulty), seed=0
    )
    labels = np.array([ex.label for ex in examples])
    part = partition(labels, PartitionConfig(scheme="dirichlet", alpha=0.5), seed=0)
    train = part.pooled_train() if client is None else part.clients[client].train
    test = part.pooled_test()
    return bow_accuracy(
        [examples[i].text for i in train], labels[train],
        [examples[i].text for i in test], labels[test], num_labels=3,
    )  # fmt: skip


def test_synthetic_finance_is_learnable_but_not_trivial():
    pooled = _finance_bow(0.3)
    assert 0.6 < pooled < 0.95  # chance is about 0.35
    assert _finance_bow(1.0) < pooled - 0.05  # difficulty makes it harder
    # a label-skewed client (Dirichlet alpha 0.5) alone does clearly worse on the pooled test
    assert min(_finance_bow(0.3, c) for c in range(4)) < pooled - 0.15


def test_synthetic_medqa_is_learnable_but_not_trivial():
    """Learn the disease from the question's words, then answer with the best offered option."""
    examples = get_task("synthetic_medqa").load(
        synthetic_cfg("synthetic_medqa", num_examples=1200), seed=0
    )
    names = sorted({c for ex in examples for c in ex.choices})
    train, test = examples[:960], examples[960:]
    score = fit_bow(
        [ex.text for ex in train], [names.index(ex.choices[ex.label]) for ex in train], len(names)
    )
    scores = score([ex.text for ex in test])  # (n, diseases)
    offered = [[names.index(c) for c in ex.choices] for ex in test]
    picks = [int(np.argmax(s[o])) for s, o in zip(scores, offered, strict=True)]
    correct = np.mean([p == ex.label for p, ex in zip(picks, test, strict=True)])
    assert 0.5 < correct < 0.9  # chance is 1/4
