"""The findings of a heterogeneity sweep (partition x federated optimizer x privacy x seed),
read off its table alone: per partition and privacy level, each optimizer's mean and seed range,
its gap to the IID run, its margin over the majority-class floor, and the optimizer the stated
rule picks; which cells are missing.

The rule: among the optimizers with at least ``PICK_SEEDS`` seeds done under a partition and
privacy level, the highest mean over seeds of ``federated_tail`` (the pooled metric averaged
over the last rounds: one round's figure swings by several points, see docs/heterogeneity.md).
The pick names how many optimizers qualified and, against the runner-up, in how many of the
seeds both ran it scored higher (a seed fixes the records and the split, so seeds pair up).
"""

from __future__ import annotations

from collections import defaultdict
from statistics import mean
from typing import Any

from securefed.sweep.table import TAIL_ROUNDS, SweepTable

PICK_SEEDS = 3
EPS_KEY = "privacy.dp.target_epsilon"
OPTIMIZER_KEYS = (
    "training.server_optimizer.name",
    "training.server_optimizer.momentum",
    "training.server_lr",
    "training.proximal_mu",
)


def is_heterogeneity_sweep(swept_keys: tuple[str, ...]) -> bool:
    """A sweep that varies the partition or the federated optimizer."""
    return any(k.startswith("partition.") or k in OPTIMIZER_KEYS for k in swept_keys)


def partition_label(row: dict[str, Any]) -> str:
    """``Dirichlet 0.5``, ``IID``, ``natural (institution)``, ``quantity 0.5`` or the preset."""
    if row.get("partition.preset") and not row.get("partition.scheme"):
        return str(row["partition.preset"])
    scheme = row.get("partition.scheme") or "base config's partition"
    if scheme == "iid":
        return "IID"
    if scheme == "natural":
        return f"natural ({row.get('partition.column')})"
    alpha = row.get("partition.alpha")
    return f"{'Dirichlet' if scheme == 'dirichlet' else scheme}" + (f" {alpha}" if alpha else "")


def optimizer_label(row: dict[str, Any]) -> str:
    """E.g. ``fedavgm (momentum 0.5)``, ``fedadam (server_lr 0.03)``, ``fedavg + FedProx 0.01``."""
    name = row.get("training.server_optimizer.name") or "fedavg"
    extras = [
        f"{label} {row[key]}"
        for key, label in (
            ("training.server_optimizer.momentum", "momentum"),
            ("training.server_lr", "server_lr"),
        )
        if row.get(key) is not None
    ]
    text = name + (f" ({', '.join(extras)})" if extras else "")
    mu = row.get("training.proximal_mu")
    return text + (f" + FedProx {mu}" if mu else "")


def privacy_label(row: dict[str, Any]) -> str:
    eps = row.get(EPS_KEY)
    return "non-private" if eps is None else f"epsilon {eps:g}"


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def spread(values: list[float]) -> str:
    """Mean of the seeds' values with their range, or the one value, to three decimals."""
    if not values:
        return "-"
    if len(values) == 1:
        return _fmt(values[0])
    return f"{_fmt(mean(values))} ({_fmt(min(values))}-{_fmt(max(values))})"


def _points(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:+.1f}"


def _groups(rows: list[dict]) -> dict[tuple[str, str], dict[str, list[dict]]]:
    """(partition, privacy) -> optimizer -> the done rows (one per seed), in table order."""
    groups: dict[tuple[str, str], dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        groups[(partition_label(row), privacy_label(row))][optimizer_label(row)].append(row)
    return groups


def _iid_reference(groups, privacy: str, optimizer: str) -> tuple[str, list[dict]] | None:
    """The IID run at the same privacy: the same optimizer's, else FedAvg's; None if neither."""
    iid = groups.get(("IID", privacy), {})
    for name in (optimizer, "fedavg"):
        if iid.get(name):
            return name, iid[name]
    return None


def pick(by_optimizer: dict[str, list[dict]]) -> tuple[str | None, str]:
    """The optimizer the rule picks (None if none has ``PICK_SEEDS`` seeds), and why."""
    eligible = {
        name: mean(r["federated_tail"] for r in rows)
        for name, rows in by_optimizer.items()
        if len(rows) >= PICK_SEEDS and all(r.get("federated_tail") is not None for r in rows)
    }
    if not eligible:
        most = max(len(rows) for rows in by_optimizer.values())
        return None, f"no pick: no optimizer has {PICK_SEEDS} seeds done (at most {most})"
    ranked = sorted(eligible.items(), key=lambda kv: -kv[1])
    best, value = ranked[0]
    why = f"pick: {best}, mean of the last {TAIL_ROUNDS} rounds {_fmt(value)}"
    if len(ranked) == 1:
        return best, why + f" (the only optimizer with {PICK_SEEDS} seeds)"
    second, second_value = ranked[1]
    ahead, shared = _seeds_ahead(by_optimizer[best], by_optimizer[second])
    return best, (
        f"{why}, the best of {len(ranked)} optimizers with {PICK_SEEDS} seeds: "
        f"{100 * (value - second_value):.1f} points above {second}, "
        f"higher in {ahead} of the {shared} seeds both ran"
    )


def _seeds_ahead(rows: list[dict], other: list[dict]) -> tuple[int, int]:
    """Of the seeds both optimizers ran (the same records and split), in how many ``rows``'
    ``federated_tail`` is strictly higher; and how many seeds they share."""
    theirs = {r.get("seed"): r["federated_tail"] for r in other}
    shared = [(r["federated_tail"], theirs[r.get("seed")]) for r in rows if r.get("seed") in theirs]
    return sum(mine > its for mine, its in shared), len(shared)


def _section(groups, partition: str, privacy: str) -> list[str]:
    by_optimizer = groups[(partition, privacy)]
    lines = [
        f"### {partition}, {privacy}",
        "",
        f"| optimizer | seeds | last round | last {TAIL_ROUNDS} rounds | minus IID, last round "
        f"(points) | minus IID, last {TAIL_ROUNDS} (points) | above the floor: mean, lowest "
        "seed (points) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, rows in by_optimizer.items():
        final = [r["federated"] for r in rows]
        tail = [r["federated_tail"] for r in rows if r.get("federated_tail") is not None]
        margins = [r["federated"] - r["majority"] for r in rows if r.get("majority") is not None]
        gap_final = gap_tail = None
        ref_note = ""
        reference = _iid_reference(groups, privacy, name) if partition != "IID" else None
        if reference is not None:
            ref_name, ref_rows = reference
            gap_final = mean(final) - mean(r["federated"] for r in ref_rows)
            ref_tail = [r["federated_tail"] for r in ref_rows if r.get("federated_tail")]
            gap_tail = mean(tail) - mean(ref_tail) if tail and ref_tail else None
            ref_note = "" if ref_name == name else f" vs {ref_name}"
        margin = f"{_points(mean(margins))}, {_points(min(margins))}" if margins else "-"
        lines.append(
            f"| {name} | {len(rows)} | {spread(final)} | {spread(tail)} "
            f"| {_points(gap_final)}{ref_note} | {_points(gap_tail)}{ref_note} | {margin} |"
        )
    why = pick(by_optimizer)[1]
    lines += ["", f"{why[0].upper()}{why[1:]}.", ""]
    return lines


def provenance(shrunk: dict, base: str | None) -> list[str]:
    """The opening lines of a sweep's FINDINGS.md: where its numbers come from, what each cell
    is (the base config, its swept keys, and the keys ``shrunk`` set in every cell)."""
    return [
        "Generated by `scripts/make_sweep_audit.py` from `table.csv`; every number below is "
        "read from that table. The data are SYNTHETIC (seeded generator).",
        "",
        f"Every cell is `{base or 'the embedded default'}` with its swept keys set"
        + (", and " + ", ".join(f"`{k}={v}`" for k, v in shrunk.items()) if shrunk else "")
        + ".",
    ]


def heterogeneity_findings(table: SweepTable, shrunk: dict, base: str | None = None) -> str:
    """FINDINGS.md of a heterogeneity sweep: every number read from ``table``."""
    rows = [r for r in table.done_rows() if r.get("federated") is not None]
    missing = [r["cell"] for r in table.rows if r["status"] != "done"]
    metric = rows[0]["metric"] if rows else "accuracy"
    groups = _groups(rows)
    lines = [
        "# Heterogeneity sweep: findings",
        "",
        *provenance(shrunk, base),
        "",
        f"{len(rows)} of {len(table.rows)} cells done."
        + (" Not yet run: " + ", ".join(f"`{c}`" for c in missing) + "." if missing else ""),
        "",
        f"Federated pooled {metric} per partition and privacy level: mean over the seeds done "
        "(lowest-highest), after the last round and averaged over the last "
        f"{TAIL_ROUNDS} rounds; minus IID: the mean minus the IID run's at the same privacy "
        "(the same optimizer's, else FedAvg's, named); above the floor: federated minus the "
        "majority-class accuracy of the pooled test split.",
        "",
        f"The rule that picks: among optimizers with at least {PICK_SEEDS} seeds done, the "
        f"highest mean over seeds of the {metric} averaged over the last {TAIL_ROUNDS} rounds "
        "(the last round alone swings by several points from one round to the next).",
        "",
        "## Picks",
        "",
    ]
    order = sorted(groups, key=lambda k: (k[0] != "IID", k[0], k[1] != "non-private", k[1]))
    for partition, privacy in order:
        lines.append(f"- {partition}, {privacy}: {pick(groups[(partition, privacy)])[1]}")
    lines += ["", "## By partition and privacy", ""]
    for partition, privacy in order:
        lines += _section(groups, partition, privacy)
    return "\n".join(lines).rstrip("\n") + "\n"


def picks(table: SweepTable) -> dict[tuple[str, str], str | None]:
    """(partition, privacy) -> the optimizer the rule picks (None: not enough seeds yet)."""
    groups = _groups([r for r in table.done_rows() if r.get("federated") is not None])
    return {key: pick(by_optimizer)[0] for key, by_optimizer in groups.items()}
