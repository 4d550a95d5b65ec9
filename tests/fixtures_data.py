"""Test helpers for tasks: fixture rows in each dataset's own schema, writers for the three file
formats, and a bag-of-words logistic regression used to check that synthetic tasks are
learnable (a plain linear model, deliberately not the transformer)."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np

# Rows as the hub datasets hold them (field names, nesting and label encodings).
MEDQA_ROWS: list[dict[str, Any]] = [
    {
        "question": "A 23-year-old woman has burning on urination. Best treatment?",
        "answer": "Nitrofuran",
        "options": {"A": "Ampicillin", "B": "Ceftriaxone", "C": "Doxycycline", "D": "Nitrofuran"},
        "meta_info": "step2&3",
        "answer_idx": "D",
        "metamap_phrases": ["woman", "burning"],
    },
    {
        "question": "Which nerve is injured in a midshaft humerus fracture?",
        "answer": "Radial nerve",
        "options": {"A": "Radial nerve", "B": "Ulnar nerve", "C": "Median nerve", "D": "Axillary"},
        "meta_info": "step1",
        "answer_idx": "A",
        "metamap_phrases": ["nerve"],
    },
]
MEDMCQA_ROWS: list[dict[str, Any]] = [
    {"id": "q1", "question": "Drug of choice for absence seizures?", "opa": "Phenytoin",
     "opb": "Ethosuximide", "opc": "Carbamazepine", "opd": "Phenobarbital", "cop": 1,
     "choice_type": "single", "exp": "Ethosuximide.", "subject_name": "Pharmacology",
     "topic_name": "Antiepileptics"},
    {"id": "q2", "question": "Largest organ of the body?", "opa": "Liver", "opb": "Brain",
     "opc": "Skin", "opd": "Lung", "cop": 2, "choice_type": "single", "exp": "",
     "subject_name": "Anatomy", "topic_name": "General"},
    {"id": "q3", "question": "Unlabelled test row?", "opa": "a", "opb": "b", "opc": "c",
     "opd": "d", "cop": -1, "choice_type": "single", "exp": "", "subject_name": "Anatomy",
     "topic_name": "General"},
]  # fmt: skip
FPB_ROWS: list[dict[str, Any]] = [
    {"sentence": "Operating profit rose to EUR 13.1 mn from EUR 8.7 mn.", "label": 2},
    {"sentence": "The company has 120 employees in Finland.", "label": 1},
    {"sentence": "Net sales fell by 15 % in the third quarter.", "label": 0},
]
FIQA_ROWS: list[dict[str, Any]] = [
    {"_id": "1", "sentence": "$AAPL breaking out, long here", "target": "AAPL",
     "aspect": "Stock/Price Action", "score": 0.53, "type": "post"},
    {"_id": "2", "sentence": "Barclays fined over forex rigging", "target": "Barclays",
     "aspect": "Corporate/Legal", "score": -0.48, "type": "headline"},
    {"_id": "3", "sentence": "Tesco sets out plans for new stores", "target": "Tesco",
     "aspect": "Corporate/Strategy", "score": 0.05, "type": "headline"},
]  # fmt: skip
ROWS = {"medqa": MEDQA_ROWS, "medmcqa": MEDMCQA_ROWS, "fpb": FPB_ROWS, "fiqa_sa": FIQA_ROWS}


def write_rows(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """Write rows as JSONL, CSV or Parquet by ``path``'s extension, the way each is made in
    practice: JSON lines by hand, CSV and Parquet through ``datasets`` (CSV holds nested
    objects such as MedQA's options as JSON text)."""
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif path.suffix == ".csv":
        flat = [{k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in r.items()}
                for r in rows]  # fmt: skip
        datasets.Dataset.from_list(flat).to_csv(str(path), index=False)
    else:
        datasets.Dataset.from_list(list(rows)).to_parquet(str(path))
    return path


def _tokens(text: str) -> list[str]:
    return re.findall(r"[a-z'%-]+", text.lower())  # words: a linear model can't compare figures


def fit_bow(
    texts: Sequence[str], labels: Sequence[int], num_labels: int, steps: int = 100
) -> Callable[[Sequence[str]], np.ndarray]:
    """A softmax regression on unigrams and bigrams seen at least twice, trained by gradient
    descent; returns a scorer mapping texts to (n, num_labels) logits.

    Features are binary and sparse, so products with them are ``np.bincount`` sums over the
    (row, feature) pairs present: dense BLAS is slower on this shared 2-core machine.
    """
    counts = Counter(w for text in texts for w in set(_features(text)))
    vocab = {w: i for i, w in enumerate(w for w, c in counts.items() if c >= 2)}
    k = np.arange(num_labels)

    def pairs(batch: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        found = [
            (i, vocab[w]) for i, t in enumerate(batch) for w in set(_features(t)) if w in vocab
        ]
        rows, cols = zip(*found, strict=True)
        return np.array(rows), np.array(cols)  # (nnz,), (nnz,)

    def spread(index: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
        """Sum (nnz, labels) values into (size, labels) rows by index."""
        flat = (index[:, None] * num_labels + k).ravel()
        return np.bincount(flat, values.ravel(), minlength=size * num_labels).reshape(size, -1)

    rows, cols = pairs(texts)
    y = np.eye(num_labels)[np.asarray(labels)]  # (n, labels)
    w, b = np.zeros((len(vocab), num_labels)), np.zeros(num_labels)
    for _ in range(steps):
        z = spread(rows, w[cols], len(texts)) + b  # (n, labels)
        p = np.exp(z - z.max(axis=1, keepdims=True))
        g = (p / p.sum(axis=1, keepdims=True) - y) / len(texts)  # (n, labels) softmax gradient
        w -= 2.0 * (spread(cols, g[rows], len(vocab)) + 1e-4 * w)
        b -= 2.0 * g.sum(axis=0)

    def score(batch: Sequence[str]) -> np.ndarray:
        r, c = pairs(batch)
        return spread(r, w[c], len(batch)) + b

    return score


def bow_accuracy(
    train_texts: Sequence[str],
    train_labels: Sequence[int],
    test_texts: Sequence[str],
    test_labels: Sequence[int],
    num_labels: int,
) -> float:
    """Test accuracy of ``fit_bow`` trained on the training texts."""
    scores = fit_bow(train_texts, train_labels, num_labels)(test_texts)
    return float(np.mean(scores.argmax(axis=1) == np.asarray(test_labels)))


def _features(text: str) -> list[str]:
    words = _tokens(text)
    return words + [f"{a}_{b}" for a, b in zip(words, words[1:], strict=False)]
