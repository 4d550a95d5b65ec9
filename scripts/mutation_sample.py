"""Mutation testing on a seeded sample: what share of small faults in a package do its tests catch?

    nice -n 10 .venv/bin/python scripts/mutation_sample.py [--packages secagg privacy run]
        [--per-package 40] [--seed 0] [--timeout 120] [--rev HEAD] [--out FILE]

For each package, cosmic-ray lists every mutant of its modules (``cosmic-ray init``: each
operator at each place it applies); a seeded sample of ``--per-package`` is drawn from them.
Each sampled mutant is applied (``cosmic-ray apply``) in a private copy of the tree (the working
tree, or ``--rev``'s files), never in the checkout, and the test files that cover its module
run under pytest with xdist off, ``-x``, the CI marker selection (``not slow``) and a per-mutant
timeout. The covering tests are read from the import graph (``tests/import_graph.py``): the
test files that import the module itself; where none does, those importing a module of its
package that reaches it inside the package; else those importing the package at all. The
module's own test file (its name in the file's) runs first, then its package's test folder.

A mutant is killed when a test fails (a mutant that breaks collection counts: the tests
noticed), survives when they all pass, and times out apart. The report (``--out``, JSON,
written after every mutant so nothing is lost if stopped) lists every mutant with its
outcome and the changed line; the summary gives per package killed / (killed + survived).
``--rerun REPORT`` tests again only the survivors and timeouts of an earlier report (same
mutants; a larger ``--timeout`` settles a slow test set), and carries the killed over: the
check after the tests were fixed. ``--resume`` continues an
interrupted run from its ``--out`` (the sample of k is the first k of a larger one: the
seeded draw picks one mutant at a time).

cosmic-ray and not mutmut: mutmut 3 rewrites every function through a trampoline and runs
the whole suite to map tests first; cosmic-ray applies one mutant to the source as written.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from import_graph import build_graph, securefed_imports_of_file  # noqa: E402

BIN = Path(sys.executable).parent
ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def copy_tree(dest: Path, rev: str | None) -> None:
    """The repository's files (tracked, and untracked but not ignored) or ``rev``'s, in ``dest``."""
    if rev:
        archive = subprocess.run(["git", "archive", rev], cwd=ROOT, capture_output=True, check=True)
        subprocess.run(["tar", "x", "-C", str(dest)], input=archive.stdout, check=True)
        return
    names = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True
    ).stdout.split(b"\0")
    for name in filter(None, names):
        src = ROOT / name.decode()
        if src.is_file():
            (dest / name.decode()).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name.decode())


def covering_tests(work: Path) -> dict[str, list[str]]:
    """Module file (relative) -> the test files that import it (else: its package)."""
    graph = build_graph(work / "securefed")
    tests = sorted((work / "tests").rglob("test_*.py"))
    imported = {t: securefed_imports_of_file(t, graph) for t in tests}
    out = {}
    for name, mod in graph.items():
        rel = str(mod.path.relative_to(work))
        direct = [t for t in tests if name in imported[t]]
        package = name.rsplit(".", 1)[0]
        # else: tests importing a module of the same package that reaches this one inside it
        via = {
            m for m in graph if m.startswith(package + ".") and name in _reach(graph, m, package)
        }
        through = [t for t in tests if imported[t] & via]
        in_package = [
            t
            for t in tests
            if any(m == package or m.startswith(package + ".") for m in imported[t])
        ]
        # the module's own test file first, then its package's test folder (``-x`` stops at
        # the first failure)
        own = work / "tests" / (name.split(".") + [""])[1]  # the root package: none
        chosen = sorted(
            direct or through or in_package,
            key=lambda t: (mod.path.stem not in t.stem, t.parent != own, t),
        )
        out[rel] = [str(t.relative_to(work)) for t in chosen]
    return out


def _reach(graph: dict, start: str, package: str) -> set[str]:
    """The modules of ``package`` that ``start`` imports, directly or through others of it."""
    seen, todo = set(), [start]
    while todo:
        for nxt in graph[todo.pop()].imports:
            if nxt.startswith(package + ".") and nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def list_mutants(work: Path, package: str) -> list[dict]:
    """Every mutant cosmic-ray makes of the package (``__init__`` modules left out)."""
    config = work.parent / f"{package}.toml"
    config.write_text(
        "[cosmic-ray]\n"
        f'module-path = "securefed/{package}"\n'
        "timeout = 60.0\n"
        f'excluded-modules = ["securefed/{package}/**/__init__.py", '
        f'"securefed/{package}/__init__.py"]\n'
        'test-command = "true"\n'
        '[cosmic-ray.distributor]\nname = "local"\n'
    )
    session = work.parent / f"{package}.sqlite"
    session.unlink(missing_ok=True)
    subprocess.run([BIN / "cosmic-ray", "init", config, session], cwd=work, check=True)
    dump = subprocess.run(
        [BIN / "cosmic-ray", "dump", session], cwd=work, capture_output=True, text=True, check=True
    )
    mutants = []
    for line in dump.stdout.splitlines():
        (m,) = json.loads(line)[0]["mutations"]
        mutants.append(
            {
                "module": m["module_path"],
                "operator": m["operator_name"],
                "occurrence": m["occurrence"],
                "line": m["start_pos"][0],
                "function": m.get("definition_name"),
            }
        )
    return sorted(mutants, key=lambda m: (m["module"], m["operator"], m["occurrence"]))


def run_mutant(work: Path, mutant: dict, tests: list[str], timeout: float) -> dict:
    """Apply one mutant, run its tests, restore the module; the outcome and the changed line."""
    path = work / mutant["module"]
    original = path.read_text()
    subprocess.run(
        [
            BIN / "cosmic-ray",
            "apply",
            mutant["module"],
            mutant["operator"],
            str(mutant["occurrence"]),
        ],
        cwd=work,
        check=True,
        capture_output=True,
    )
    changed = [
        line[1:].strip()
        for line in difflib.unified_diff(original.splitlines(), path.read_text().splitlines(), n=0)
        if line.startswith("+") and not line.startswith("+++")
    ]
    cmd = [BIN / "python", "-m", "pytest", "-x", "-q", "-n", "0", "-p", "no:cacheprovider"]
    cmd += ["-m", "not slow", *tests]
    env = {**os.environ, **ENV, "PYTHONPATH": str(work)}
    start = time.monotonic()
    # its own session, so a timeout ends what the tests started too (Flower's nodes)
    proc = subprocess.Popen(
        cmd,
        cwd=work,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        rc = proc.wait(timeout=timeout)
        outcome = "survived" if rc == 0 else ("no tests" if rc == 5 else "killed")
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        outcome = "timeout"
    finally:
        path.write_text(original)
    return {
        **mutant,
        "mutated": changed[:1],
        "outcome": outcome,
        "tests": tests,
        "seconds": round(time.monotonic() - start, 1),
    }


def _key(mutant: dict) -> tuple:
    return mutant["module"], mutant["operator"], mutant["occurrence"]


def summary(results: list[dict]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for r in results:
        package = r["module"].split("/")[1]
        counts = out.setdefault(package, {"killed": 0, "survived": 0, "timeout": 0, "no tests": 0})
        counts[r["outcome"]] += 1
    for counts in out.values():
        judged = counts["killed"] + counts["survived"]
        counts["kill_rate"] = round(counts["killed"] / judged, 3) if judged else None
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packages", nargs="+", default=["secagg", "privacy", "run"])
    parser.add_argument("--per-package", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument(
        "--rev", default=None, help="test this revision's files (default: the tree)"
    )
    parser.add_argument("--rerun", type=Path, default=None, help="an earlier report: its survivors")
    parser.add_argument("--resume", action="store_true", help="keep the results in --out")
    parser.add_argument("--out", type=Path, default=ROOT / "mutation-report.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="securefed-mutants-") as tmp:
        work = Path(tmp) / "tree"
        work.mkdir()
        copy_tree(work, args.rev)
        check = subprocess.run(
            [BIN / "python", "-c", "import securefed; print(securefed.__file__)"],
            cwd=work,
            env={**os.environ, "PYTHONPATH": str(work)},
            capture_output=True,
            text=True,
        )
        assert check.stdout.startswith(str(work)), f"securefed not imported from the copy: {check}"
        tests = covering_tests(work)
        if args.rerun:
            earlier = json.loads(args.rerun.read_text())["mutants"]
            plan = [(m, m["outcome"] not in ("survived", "timeout")) for m in earlier]
        else:
            plan = []
            for package in args.packages:
                mutants = list_mutants(work, package)
                rng = random.Random(f"{args.seed}/{package}")
                sample = rng.sample(mutants, min(args.per_package, len(mutants)))
                plan += [(m, False) for m in sample]
                print(f"{package}: {len(mutants)} mutants, {len(sample)} drawn", flush=True)
        done = {}
        if args.resume and args.out.is_file():
            earlier = json.loads(args.out.read_text())["mutants"]
            done = {_key(m): m for m in earlier if m["outcome"] != "timeout"}  # tried again
        results: list[dict] = []
        for i, (mutant, carried) in enumerate(plan, 1):
            if carried or _key(mutant) in done:
                result = mutant if carried else done[_key(mutant)]
            else:
                result = run_mutant(work, mutant, tests.get(mutant["module"], []), args.timeout)
            results.append(result)
            print(
                f"[{i}/{len(plan)}] {result['outcome']:8} {result['module']}:{result['line']} "
                f"{result['operator']} {result['mutated']}",
                flush=True,
            )
            report = {
                "seed": args.seed,
                "rev": args.rev,
                "summary": summary(results),
                "mutants": results,
            }
            args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(summary(results), indent=1))


if __name__ == "__main__":
    main()
