"""The table printed at the end of ``securefed simulate`` and of every Flower recipe."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from securefed.privacy.display import epsilon_text
from securefed.run.folder import AUDIT_RECORD, read_json


def _cell(block: dict | None, key: str) -> str:
    if not block or block.get("pooled") is None:
        return "-"
    return f"{block['pooled'][key]:.3f}"


def print_summary(results: dict, run_dir: Path, console: Console) -> None:
    """Federated vs centralized vs isolated on the pooled test set, plus privacy at a glance."""
    task = results["task"]
    metrics = list((results["federated"]["pooled"] or {}).keys())
    title = (
        f"{task['name']}{' (SYNTHETIC data)' if task['synthetic'] else ''} | "
        f"{results['backbone']} + {results['adapter']}"
    )
    table = Table(title=title)
    table.add_column("training")
    for m in metrics:
        table.add_column(f"pooled {m}", justify="right")
    for name in ("zero_shot", "federated", "centralized", "isolated"):
        if name in results:
            table.add_row(name, *(_cell(results[name], m) for m in metrics))
    console.print(table)
    privacy = results["privacy"]
    eps = {c: float(v["epsilon"]) for c, v in privacy["clients"].items()}
    worst = max(eps.values()) if eps else float("nan")
    dp = "on" if privacy["dp_enabled"] else "OFF (epsilon = inf)"
    secure = results["secure_aggregation"]
    if not secure["enabled"]:
        sa = "OFF (server sees each update)"
    elif secure.get("adversary") == "curious":
        sa = "on, HONEST-BUT-CURIOUS server only (no signed identities, no consistency check)"
    else:
        sa = "on, against a server that lies in its lists (signed identities, consistency check)"
    console.print(
        f"DP-SGD: {dp}; max epsilon over institutions: {epsilon_text(worst, 3, 'inf')} "
        f"({privacy['accountant_of_record']}); secure aggregation: {sa}"
    )
    institution = privacy.get("institution")
    if institution is not None:  # privacy.distributed: the other unit of protection
        plan = institution["plan"]
        console.print(
            f"institution-level DP ({plan['mechanism']} noise inside the secure sum): epsilon "
            f"{epsilon_text(institution['epsilon'], 3, 'inf')} for the content of each "
            "institution's update "
            f"(target {epsilon_text(institution['target_epsilon'], 3, 'inf')}, delta "
            f"{institution['delta']:.3g})"
        )
    console.print(f"base weights unchanged: {results['base_weights']['unchanged']}")
    console.print(f"run folder: {run_dir}")


def print_results(results: dict, run_dir: Path, audit_dir: Path, console: Console) -> None:
    """What every way of running ends with: the table and privacy lines of ``print_summary``,
    then the audit's path and its verdict (from its record)."""
    print_summary(results, run_dir, console)
    console.print(f"audit: {audit_dir}")
    verdict = read_json(Path(audit_dir) / AUDIT_RECORD)["verdict"]
    console.print(f"verdict: {verdict}", soft_wrap=True, highlight=False, markup=False)
