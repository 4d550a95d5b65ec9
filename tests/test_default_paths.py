"""A run with the default paths leaves the repository as it found it (``make demo`` included).

``securefed simulate`` writes its run folder under ``runs/`` and its audit under
``audits/<run folder name>/``; both are ignored by the repository's ``.gitignore``, while the
committed audits (``audits/example``, ``audits/sweeps``) stay tracked. The run happens in a
fresh git repository holding this repository's ``.gitignore``, so the check reads the real
ignore rules against the real default paths.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from securefed.cli import main

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "task.synthetic.num_examples=80",
    "training.rounds=1",
    "training.local_steps=1",
    "training.batch_size=8",
    "model.max_length=24",
    "partition.num_clients=2",
    "training.clients_per_round=2",
    "baselines=[]",
]


def _git(repo: Path, *args: str) -> str:
    command = ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args]
    return subprocess.run(command, cwd=repo, capture_output=True, text=True, check=True).stdout


def test_a_default_run_leaves_git_status_clean(tmp_path, monkeypatch):
    repo = tmp_path / "clone"
    (repo / "audits").mkdir(parents=True)
    shutil.copy(ROOT / ".gitignore", repo / ".gitignore")
    shutil.copy(ROOT / "audits" / "README.md", repo / "audits" / "README.md")
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "a clone")
    monkeypatch.chdir(repo)
    overrides = [arg for item in TINY for arg in ("--set", item)]
    assert main(["simulate", "--quiet", *overrides]) == 0
    (run,) = (repo / "runs").iterdir()  # runs/<name>-<time>
    assert (run / "results.json").is_file()
    assert (repo / "audits" / run.name / "audit.json").is_file()
    assert _git(repo, "status", "--porcelain", "--untracked-files=all") == ""


def test_the_committed_audits_stay_tracked():
    for committed in ("audits/example/audit.json", "audits/sweeps", "audits/README.md"):
        ignored = subprocess.run(["git", "check-ignore", "-q", committed], cwd=ROOT)
        assert ignored.returncode == 1, f"{committed} is ignored"
