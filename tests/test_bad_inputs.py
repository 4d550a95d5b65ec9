"""Bad input and faults, through the real ``securefed`` command: one table, one line each.

Every case drives ``securefed.cli.main`` as a user would and checks the four things a user
meets: the exit status (2 for a user error, 1 for a failed ``audit --verify``), no traceback,
one message that names the problem (the file, the line or 1-based row as the file numbers
it, the column or key, and what is allowed), and what is left on disk. Each bad input fails
before any training starts, so the whole table runs in seconds; the ``audit --verify`` cases
share one tiny finished run.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from fixtures_data import FIQA_ROWS, MEDQA_ROWS, ROWS, write_rows

from securefed.cli import main

TINY = [
    "task.synthetic.num_examples=120",
    "training.rounds=1",
    "training.local_steps=2",
    "training.batch_size=8",
    "model.max_length=32",
    "partition.num_clients=3",
    "training.clients_per_round=3",
]
SETS = [arg for item in TINY for arg in ("--set", item)]


@dataclass(frozen=True)
class Case:
    """One bad input: ``setup(tmp)`` writes its files and returns the CLI arguments."""

    id: str
    setup: Callable[[Path], list[str]]
    expect: tuple[str, ...]  # fragments of the one error line; "{tmp}" is the case's folder
    code: int = 2
    skip: str | None = None


def simulate(
    *extra: str, config: str | None = None, out: str = "run"
) -> Callable[[Path], list[str]]:
    def args(tmp: Path) -> list[str]:
        return [
            "simulate",
            *([str(tmp / config)] if config else []),
            "--out",
            str(tmp / out),
            "--quiet",
            *SETS,
            *(arg for item in extra for arg in ("--set", item.format(tmp=tmp))),
        ]

    return args


def with_file(name: str, content: bytes | str, then: Callable[[Path], list[str]]):
    def args(tmp: Path) -> list[str]:
        data = content.encode() if isinstance(content, str) else content
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp / name).write_bytes(data)
        return then(tmp)

    return args


def with_rows(name: str, rows: list[dict], then: Callable[[Path], list[str]]):
    def args(tmp: Path) -> list[str]:
        write_rows(rows, tmp / name)
        return then(tmp)

    return args


def data(task: str, name: str, content: bytes | str, *extra: str) -> Callable[[Path], list[str]]:
    return with_file(
        name, content, simulate(f"task.name={task}", f"task.path={{tmp}}/{name}", *extra)
    )


def rows(task: str, name: str, table: list[dict], *extra: str) -> Callable[[Path], list[str]]:
    return with_rows(
        name, table, simulate(f"task.name={task}", f"task.path={{tmp}}/{name}", *extra)
    )


def jsonl(*records: dict) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


FPB_OK = '{"sentence": "Profit rose.", "label": 2}\n'
MEDQA_LINE = json.dumps(MEDQA_ROWS[0])
NO_CUDA = "torch finds CUDA here"


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


CASES = [
    # ---- the config file ------------------------------------------------------------------
    Case("config_missing", simulate(config="absent.yaml"), ("absent.yaml", "existing YAML file")),
    Case(
        "config_not_utf8",
        with_file("c.yaml", b"name: demo\nseed: 1 # caf\xe9\n", simulate(config="c.yaml")),
        ("c.yaml", "UTF-8", "line 2", "0xe9"),
    ),
    Case(
        "config_bad_yaml",
        with_file("c.yaml", "training:\n  rounds: [2\n", simulate(config="c.yaml")),
        ("c.yaml", "valid YAML", "line 3"),
    ),
    Case(
        "config_duplicate_key",
        with_file("c.yaml", "training:\n  rounds: 2\n  rounds: 3\n", simulate(config="c.yaml")),
        ("training.rounds", "set once", "c.yaml", "lines 2 and 3"),
    ),
    Case(
        "config_duplicate_section",
        with_file(
            "c.yaml",
            "privacy:\n  dp: {enabled: true}\nseed: 1\nprivacy:\n  dp: {enabled: false}\n",
            simulate(config="c.yaml"),
        ),
        ("privacy", "set once", "lines 1 and 4"),
    ),
    Case(
        "config_not_a_mapping",
        with_file("c.yaml", "- rounds\n- 2\n", simulate(config="c.yaml")),
        ("c.yaml", "YAML mapping"),
    ),
    Case(
        "config_unknown_key",
        with_file("c.yaml", "training:\n  roundz: 2\n", simulate(config="c.yaml")),
        ("training.roundz", "allowed keys here", "rounds"),
    ),
    Case(
        "config_nan",
        with_file("c.yaml", "training:\n  lr: .nan\n", simulate(config="c.yaml")),
        ("training.lr", "finite number"),
    ),
    Case("set_infinity", simulate("training.lr=.inf"), ("training.lr", "finite number")),
    Case(
        "set_nan_epsilon",
        simulate("privacy.dp.target_epsilon=.nan"),
        ("privacy.dp.target_epsilon", "finite number"),
    ),
    Case(
        "set_negative_infinity",
        simulate("secure_aggregation.clip_norm=-.inf"),
        ("secure_aggregation.clip_norm", "finite number"),
    ),
    Case(
        "set_without_equals", simulate("training.rounds"), ("training.rounds", "dotted.key=value")
    ),
    Case("set_into_a_value", simulate("seed.x=1"), ("seed.x", "seed is not a section")),
    Case(
        "set_wrong_type", simulate("training.rounds=abc"), ("training.rounds", "'abc'", "integer")
    ),
    Case(
        "set_out_of_range",
        simulate("training.rounds=0"),
        ("training.rounds", "greater than or equal to 1"),
    ),
    Case("unknown_task", simulate("task.name=mmlu"), ("task.name", "'mmlu'", "'medqa'")),
    Case(
        "cohort_above_institutions",
        simulate("training.clients_per_round=9"),
        ("training.clients_per_round", "at most partition.num_clients (3)"),
    ),
    Case(
        "natural_without_column",
        simulate("partition.scheme=natural"),
        ("partition.column", "required"),
    ),
    Case(
        "threshold_too_low",
        simulate("secure_aggregation.threshold=1"),
        ("secure_aggregation.threshold", "1"),
    ),
    Case(
        "cuda_without_cuda",
        simulate("training.device=cuda"),
        ("training.device", "'cuda'", "auto or cpu", "no CUDA device"),
        skip=NO_CUDA if _cuda() else None,
    ),
    Case(
        "backbone_not_found",
        simulate("model.backbone={tmp}/no-such-model"),
        ("model.backbone", "no-such-model", "an existing local model folder"),
    ),
    Case(
        "path_missing",
        simulate("task.name=fpb", "task.path={tmp}/absent.csv"),
        ("task.path", "absent.csv", "existing file"),
    ),
    Case(
        "path_bad_suffix",
        data("fpb", "fpb.txt", FPB_OK),
        ("task.path", "fpb.txt", ".jsonl, .json, .csv, .parquet"),
    ),
    Case(
        "path_for_synthetic",
        data("synthetic_finance", "s.jsonl", FPB_OK),
        ("task.path", "null for the generated task"),
    ),
    # ---- the run folder and other outputs ----------------------------------------------------
    Case(
        "out_is_a_file",
        with_file("run", "x", simulate()),
        ("--out", "{tmp}/run", "is a file", "allowed: a new or empty folder"),
    ),
    Case(
        "out_under_a_file",
        with_file("taken", "x", simulate(out="taken/run")),
        (
            "--out",
            "cannot create the run folder",
            "taken/run",
            "Not a directory",
            "where you can write",
        ),
    ),
    Case(
        "out_unwritable",
        lambda tmp: ["simulate", "--out", "/sys/securefed-no-such-run", "--quiet", *SETS],
        (
            "--out",
            "cannot create the run folder",
            "/sys/securefed-no-such-run",
            "where you can write",
        ),
    ),
    Case(
        "output_dir_is_a_file",
        with_file(
            "runs",
            "x",
            lambda tmp: ["simulate", "--quiet", *SETS, "--set", f"output.dir={tmp / 'runs'}"],
        ),
        ("output.dir", "cannot create the run folder", "where you can write"),
    ),
    Case(
        "out_not_empty",
        with_file("run/notes.txt", "mine", simulate()),
        ("--out", "exists and is not empty", "--resume"),
    ),
    Case(
        "resume_with_set",
        lambda tmp: ["simulate", "--resume", str(tmp / "run"), "--set", "seed=1"],
        ("--resume", "do not pass CONFIG, --set or --out"),
    ),
    Case(
        "resume_missing_folder",
        lambda tmp: ["simulate", "--resume", str(tmp / "gone")],
        ("gone/config.yaml", "existing YAML file"),
    ),
    # ---- data files: encoding, structure, rows ------------------------------------------------
    Case(
        "csv_blank_label",
        data("fpb", "fpb.csv", "sentence,label\nProfit rose.,2\nFlat quarter.,\nSales fell.,0\n"),
        (
            "fpb.csv line 3",
            "column 'label' is blank",
            "allowed: 0, 1, 2 or negative, neutral, positive",
        ),
    ),
    Case(
        "jsonl_blank_label",
        data("fpb", "fpb.jsonl", FPB_OK + '{"sentence": "Flat.", "label": ""}\n'),
        ("fpb.jsonl line 2", "column 'label' is blank", "allowed: 0, 1, 2"),
    ),
    Case(
        "jsonl_null_label",
        data("fpb", "fpb.jsonl", FPB_OK + "\n" + '{"sentence": "Flat.", "label": null}\n'),
        ("fpb.jsonl line 3", "column 'label' is blank"),
    ),
    Case(
        "parquet_label_out_of_range",
        rows("fpb", "fpb.parquet", [*ROWS["fpb"][:2], {"sentence": "Odd.", "label": 7}]),
        ("fpb.parquet row 3", "column 'label' is 7", "allowed: 0, 1, 2"),
    ),
    Case(
        "label_unknown_word",
        data("fpb", "fpb.jsonl", FPB_OK + '{"sentence": "Up.", "label": "bullish"}\n'),
        ("fpb.jsonl line 2", "column 'label' is 'bullish'", "negative, neutral, positive"),
    ),
    Case(
        "blank_sentence",
        data("fpb", "fpb.csv", 'sentence,label\nProfit rose.,2\n"  ",1\n'),
        ("fpb.csv line 3", "column 'sentence' is blank", "non-empty text"),
    ),
    Case(
        "csv_not_utf8",
        data("fpb", "fpb.csv", b"sentence,label\nProfit rose.,2\nCaf\xe9 sales fell.,0\n"),
        ("fpb.csv line 3", "byte 4 (0xe9) is not UTF-8", "allowed: UTF-8 text"),
    ),
    Case(
        "jsonl_not_utf8",
        data("fpb", "fpb.jsonl", FPB_OK.encode() + b'{"sentence": "Caf\xe9", "label": 1}\n'),
        ("fpb.jsonl line 2", "(0xe9) is not UTF-8"),
    ),
    Case(
        "jsonl_truncated",
        data("fpb", "fpb.jsonl", FPB_OK * 2 + '{"sentence": "Sales fe'),
        ("fpb.jsonl line 3", "not valid JSON", "truncated", "one JSON object per line"),
    ),
    Case(
        "jsonl_not_an_object",
        data("fpb", "fpb.jsonl", FPB_OK + "[1, 2]\n"),
        ("fpb.jsonl line 2", "a JSON array", "one JSON object per line"),
    ),
    Case(
        "csv_wrong_field_count",
        data("fpb", "fpb.csv", "sentence,label\nProfit rose.,2\nUp, a lot,2\n"),
        ("fpb.csv line 3", "3 fields", "allowed: 2"),
    ),
    Case(
        "empty_file",
        data("fpb", "fpb.jsonl", ""),
        ("fpb.jsonl", "no rows", "sentence, label"),
    ),
    Case(
        "parquet_garbage",
        data("fpb", "fpb.parquet", b"PAR1 this is not parquet"),
        ("fpb.parquet", "not a readable parquet file"),
    ),
    Case(
        "missing_column",
        data("fpb", "fpb.csv", "sentence,sentiment\nProfit rose.,2\n"),
        ("fpb.csv", "missing column 'label'", "needs sentence, label"),
    ),
    Case(
        "fiqa_score_out_of_range",
        rows("fiqa_sa", "fiqa.jsonl", [*FIQA_ROWS[:2], {**FIQA_ROWS[2], "score": 3.5}]),
        ("fiqa.jsonl line 3", "column 'score' is 3.5", "allowed: a number in [-1, 1]"),
    ),
    Case(
        "fiqa_score_nan_csv",
        data("fiqa_sa", "fiqa.csv", "sentence,score\nUp.,0.5\nHm.,nan\n"),
        ("fiqa.csv line 3", "column 'score' is blank", "[-1, 1]"),
    ),
    Case(
        "fiqa_score_infinity_csv",
        data("fiqa_sa", "fiqa.csv", "sentence,score\nUp.,0.5\nHm.,inf\n"),
        ("fiqa.csv line 3", "column 'score' is inf", "[-1, 1]"),
    ),
    Case(
        "fiqa_score_nan_jsonl",
        data(
            "fiqa_sa",
            "fiqa.jsonl",
            '{"sentence": "Up.", "score": 0.5}\n{"sentence": "Hm.", "score": NaN}\n',
        ),
        ("fiqa.jsonl line 2", "NaN is not a JSON number", "allowed: a finite number"),
    ),
    Case(
        "fiqa_score_infinity_jsonl",
        data("fiqa_sa", "fiqa.jsonl", '{"sentence": "Up.", "score": -Infinity}\n'),
        ("fiqa.jsonl line 1", "-Infinity is not a JSON number"),
    ),
    Case(
        "fiqa_score_text",
        rows("fiqa_sa", "fiqa.parquet", [{**FIQA_ROWS[0], "score": "high"}]),
        ("fiqa.parquet row 1", "column 'score' is 'high'", "[-1, 1]"),
    ),
    Case(
        "medqa_answer_not_a_letter",
        data(
            "medqa",
            "medqa.jsonl",
            MEDQA_LINE + "\n" + json.dumps({**MEDQA_ROWS[1], "answer_idx": "E"}) + "\n",
        ),
        ("medqa.jsonl line 2", "column 'answer_idx' is 'E'", "one of A, B, C, D"),
    ),
    Case(
        "medqa_blank_answer",
        rows("medqa", "medqa.csv", [MEDQA_ROWS[0], {**MEDQA_ROWS[1], "answer_idx": ""}]),
        ("medqa.csv line 3", "column 'answer_idx' is blank"),
    ),
    Case(
        "medqa_options_incomplete",
        rows(
            "medqa",
            "medqa.parquet",
            [{**MEDQA_ROWS[0], "options": {"A": "x", "B": "y", "C": "z", "D": None}}],
        ),
        ("medqa.parquet row 1", "column 'options'", "each of A, B, C, D"),
    ),
    Case(
        "medqa_blank_question",
        rows("medqa", "medqa.jsonl", [MEDQA_ROWS[0], {**MEDQA_ROWS[1], "question": " "}]),
        ("medqa.jsonl line 2", "column 'question' is blank", "non-empty text"),
    ),
    Case(
        "medmcqa_cop_out_of_range",
        rows("medmcqa", "m.csv", [ROWS["medmcqa"][0], {**ROWS["medmcqa"][1], "cop": 7}]),
        ("m.csv line 3", "column 'cop' is 7", "0-3, a-d"),
    ),
    Case(
        "medmcqa_no_labelled_rows",
        rows("medmcqa", "m.jsonl", [ROWS["medmcqa"][2]]),
        ("m.jsonl", "no labelled rows", "cop is 0-3 or a-d"),
    ),
    Case(
        "medqa_dirichlet_over_letters_warns",  # the warning comes first; the backbone then fails
        rows(
            "medqa",
            "medqa.jsonl",
            MEDQA_ROWS * 30,
            "partition.scheme=dirichlet",
            "model.backbone={tmp}/none",
        ),
        ("model.backbone",),
    ),
]
VERIFY_CASES = [
    ("results.json", ("results.json", "missing")),
    ("baselines/centralized.json", ("baselines/centralized.json", "missing")),
    ("baselines/isolated.json", ("baselines/isolated.json", "missing")),
    ("energy.json", ("energy totals", "missing")),
    ("privacy/ledgers.json", ("privacy/ledgers.json", "missing")),
    ("checkpoints/round-0000.safetensors", ("round-0000.safetensors", "missing")),
    ("environment.json", ("not a run folder", "environment.json missing")),
    ("config.yaml", ("not a run folder", "config.yaml missing")),
    ("partition.json", ("not a run folder", "partition.json missing")),
    ("checkpoints/initial.safetensors", ("initial.safetensors", "missing")),
    ("metrics.jsonl", ("results.json federated.rounds", "rounds")),
    ("state.json", ("state.json", "missing")),
    ("warnings.json", ("warnings.json", "missing")),
]


@dataclass
class Outcome:
    code: int
    out: str
    err: str
    before: dict[str, str]
    after: dict[str, str]


def tree(root: Path) -> dict[str, str]:
    """Every file under ``root`` with its SHA-256 (folders as "dir")."""
    return {
        str(p.relative_to(root)): "dir"
        if p.is_dir()
        else hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
    }


_OUTCOMES: dict[str, Outcome] = {}


def invoke(key: str, setup: Callable[[Path], list[str]], tmp: Path, capsys, monkeypatch) -> Outcome:
    """Run the CLI once per case (both tests below read the same outcome)."""
    if key not in _OUTCOMES:
        monkeypatch.chdir(tmp)
        monkeypatch.setenv("COLUMNS", "200")  # rich tables in one line per row
        argv = setup(tmp)
        capsys.readouterr()
        before = tree(tmp)
        code = main(argv)  # an exception escaping here is the traceback a user would see
        captured = capsys.readouterr()
        _OUTCOMES[key] = Outcome(code, captured.out, captured.err, before, tree(tmp))
    return _OUTCOMES[key]


def _params() -> list:
    """One parameter per case; every case must leave the disk as it was."""
    return [
        pytest.param(
            case, id=case.id, marks=[pytest.mark.skip(reason=case.skip)] if case.skip else []
        )
        for case in CASES
    ]


def case_folder(tmp_path_factory, case_id: str) -> Path:
    """One folder per case, shared by the tests that read its outcome."""
    folder = tmp_path_factory.getbasetemp() / "bad_inputs" / case_id
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.mark.parametrize("case", _params())
def test_bad_input_is_one_clear_line(case: Case, tmp_path_factory, capsys, monkeypatch):
    case_dir = case_folder(tmp_path_factory, case.id)
    outcome = invoke(case.id, case.setup, case_dir, capsys, monkeypatch)
    text = outcome.out + outcome.err
    assert outcome.code == case.code, text
    assert "Traceback" not in text
    errors = [line for line in outcome.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, outcome.err
    for fragment in case.expect:
        assert fragment.format(tmp=case_dir) in errors[0], (fragment, errors[0])


@pytest.mark.parametrize("case", _params())
def test_bad_input_leaves_the_disk_as_it_was(case: Case, tmp_path_factory, capsys, monkeypatch):
    case_dir = case_folder(tmp_path_factory, case.id)
    outcome = invoke(case.id, case.setup, case_dir, capsys, monkeypatch)
    assert outcome.code == case.code
    assert outcome.after == outcome.before  # nothing created, nothing changed


def test_label_skew_over_answer_letters_is_warned_with_what_to_use(
    tmp_path_factory, capsys, monkeypatch
):
    case = next(c for c in CASES if c.id == "medqa_dirichlet_over_letters_warns")
    case_dir = case_folder(tmp_path_factory, case.id)
    outcome = invoke(case.id, case.setup, case_dir, capsys, monkeypatch)
    warned = [line for line in outcome.err.splitlines() if line.startswith("warning:")]
    assert len(warned) == 1, outcome.err
    for fragment in (
        "partition.scheme=dirichlet",
        "answer letters",
        "medqa",
        "quantity",
        "iid",
        "natural",
    ):
        assert fragment in warned[0]


# ---- audit: the output folder, and --verify on a finished run missing a file ----------------
@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A tiny finished run with both baselines (DP and secure aggregation off: fast)."""
    from securefed.config import load_config
    from securefed.run.simulate import simulate

    overrides = [*TINY, "secure_aggregation.enabled=false", "privacy.dp.enabled=false"]
    run_dir, _ = simulate(
        load_config(overrides=overrides), out=str(tmp_path_factory.mktemp("finished") / "run")
    )
    return run_dir


def test_the_finished_run_verifies(finished_run, capsys):
    assert main(["audit", "--verify", str(finished_run)]) == 0, capsys.readouterr().out


@pytest.mark.parametrize(("missing", "expect"), VERIFY_CASES, ids=[m for m, _ in VERIFY_CASES])
def test_verify_fails_on_a_finished_run_missing_a_file(
    missing, expect, finished_run, tmp_path, capsys, monkeypatch
):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    (run / missing).unlink()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "200")
    before = tree(tmp_path)
    code = main(["audit", "--verify", str(run)])
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert "Traceback" not in text
    if "not a run folder" in expect:  # not even the files every run starts with: a user error
        assert code == 2
        line = next(ln for ln in captured.err.splitlines() if ln.startswith("error:"))
    else:
        assert code == 1
        line = next(ln for ln in captured.out.splitlines() if expect[0] in ln)
        assert "verification failed" in captured.out
    assert all(fragment in line for fragment in expect), line
    assert tree(tmp_path) == before  # verification writes nothing


@pytest.mark.parametrize("where", ["file", "under_a_file"])
def test_audit_out_that_is_not_a_folder(where, finished_run, tmp_path, capsys):
    (tmp_path / "taken").write_text("mine")
    out = tmp_path / "taken" if where == "file" else tmp_path / "taken" / "audit"
    before = tree(tmp_path)
    code = main(["audit", str(finished_run), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    line = next(ln for ln in err.splitlines() if ln.startswith("error:"))
    assert str(out) in line and "allowed: a folder" in line
    assert tree(tmp_path) == before


def test_audit_of_a_folder_that_is_no_run(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["audit", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert "not a run folder" in err and "config.yaml" in err and "Traceback" not in err


def test_the_real_command_exits_2_without_a_traceback(tmp_path):
    """The installed entry point, as a separate process: the exit status a shell sees."""
    (tmp_path / "c.yaml").write_bytes(b"seed: 1 # \xff\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "securefed.cli",
            "simulate",
            str(tmp_path / "c.yaml"),
            "--out",
            str(tmp_path / "run"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "UTF-8" in proc.stderr and "c.yaml" in proc.stderr
    assert not (tmp_path / "run").exists()
